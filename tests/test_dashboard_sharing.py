"""One Explanations tab shared by several people: bounded memory per decode and per cache,
state-changing requests only from the tab itself, only the documented image formats, a broken or
slow run that never blocks another, long jobs computed once, nothing of the server's disk shown."""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time

import keras
import numpy as np
import pytest
from PIL import Image
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from cifar_xai import images as image_io
from cifar_xai.dashboard.limits import Jobs, LRUCache, Uploads
from cifar_xai.dashboard.plugin import WRITE_HEADER, ExplanationsPlugin
from cifar_xai.dashboard.runs import find_runs
from cifar_xai.errors import Busy, NotFound, Pending, UserError
from cifar_xai.models import build_model

TAB = {WRITE_HEADER: "1"}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """A good run, a run whose metrics.json is valid JSON but no run record, a damaged one, and a
    logdir run that carries a shipped model's name."""
    root = tmp_path_factory.mktemp("shared-logdir")
    keras.utils.set_random_seed(0)
    model = build_model("interpretable_cnn", "small")
    for name in ("good", "list-metrics", "damaged-metrics", "shipped/interpretable_cnn"):
        (root / name).mkdir(parents=True)
        model.save(root / name / "model.keras")
        (root / name / "config.json").write_text(json.dumps({"model": "interpretable_cnn", "epochs": 1}))
    (root / "list-metrics" / "metrics.json").write_text("[1, 2]")
    (root / "damaged-metrics" / "metrics.json").write_text('{"test": \x01}')
    return root


@pytest.fixture(scope="module")
def plugin(logdir, tiny_data_dir):
    return ExplanationsPlugin(base_plugin.TBContext(
        logdir=os.fspath(logdir), flags=argparse.Namespace(cifar_xai_data_dir=os.fspath(tiny_data_dir))))


def call(plugin, route, query="", **kwargs):
    response = Client(plugin.get_plugin_apps()[route]).open(f"{route}?{query}", **kwargs)
    return response.status_code, json.loads(response.get_data())


def png(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(plugin, content: bytes, name: str = "mine.png", headers=TAB):
    return call(plugin, "/upload", method="POST", data={"file": (io.BytesIO(content), name)}, headers=headers)


# ---- cross-site requests -----------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "says"), [
    ({}, f"they carry the {WRITE_HEADER} header"),                                   # a plain cross-site form
    ({"Origin": "http://evil.example", **TAB}, "a request from http://evil.example may not change"),
    ({"Sec-Fetch-Site": "cross-site", **TAB}, "come only from the Explanations tab"),
])
def test_an_upload_from_another_site_is_refused_in_one_line(plugin, headers, says):
    code, body = upload(plugin, png(), headers=headers)
    assert code == 403 and says in body["error"] and "\n" not in body["error"]


def test_the_tabs_own_upload_works_with_and_without_an_origin(plugin):
    for headers in (TAB, {**TAB, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}):
        code, body = upload(plugin, png(), headers=headers)
        assert code == 200 and body["source"].startswith("upload:"), body
    code, body = call(plugin, "/upload", method="GET")
    assert code == 400 and "takes a POST" in body["error"]


# ---- image formats and decoding memory -----------------------------------------------------------

def test_an_eps_file_named_png_is_refused_by_name_and_never_opened(plugin, tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    code, body = upload(plugin, eps, "x.png")
    assert code == 400 and "x.png is a PostScript / EPS file" in body["error"]
    (tmp_path / "x.png").write_bytes(eps)
    with pytest.raises(UserError, match="PostScript / EPS"):    # the CLI reads files the same way
        image_io.load_image(tmp_path / "x.png")
    assert opened == []


@pytest.fixture(scope="module")
def amplifying(tmp_path_factory):
    from benchmarks.decode_memory import write_kinds

    return write_kinds(tmp_path_factory.mktemp("amplifying"), side=3000)


@pytest.mark.parametrize("kind", ["grey16", "rgba16", "palette + transparency", "jpeg"])
def test_a_small_file_of_many_pixels_decodes_in_bounded_memory(amplifying, kind):
    """Measured in a fresh process. The decoder before this bound took ~26 bytes per pixel for a
    16-bit grey PNG (float64 copies at full size); now at most one raw and one converted copy."""
    from benchmarks.decode_memory import measure

    found = measure([amplifying[kind]])
    assert found["outcomes"][0][0] == "decoded"
    assert found["extra_mb"] * 2**20 < 10 * 3000 * 3000, found


def test_the_review_file_is_refused_from_its_header_and_eight_at_once_stay_bounded(amplifying):
    from benchmarks.decode_memory import measure

    refused = measure([amplifying["grey16 6300 (review)"]])
    assert "is too large to decode safely (6300x6300" in refused["outcomes"][0][0]
    assert refused["extra_mb"] < 20
    single = measure([amplifying["grey16"]])["extra_mb"]
    together = measure([amplifying["grey16"]], at_once=8)
    assert {outcome for outcome, _ in together["outcomes"]} == {"decoded"}
    # At most MAX_DECODES decode at once (8 unbounded took 8x a single decode, and the decoder before
    # this one ~26 bytes a pixel each); the rest is the allocator's slack across threads.
    assert together["extra_mb"] < 2 * image_io.MAX_DECODES * single, (together, single)


def test_decoding_waits_for_a_free_slot_then_says_busy_in_one_line(monkeypatch):
    monkeypatch.setattr(image_io, "DECODE_WAIT", 0.2)
    held = [image_io._DECODES.acquire(timeout=1) for _ in range(image_io.MAX_DECODES)]
    try:
        assert all(held)
        with pytest.raises(Busy, match="try x.png again in a few seconds"):
            image_io.decode_image(png(), "x.png")
    finally:
        for _ in held:
            image_io._DECODES.release()
    assert image_io.decode_image(png(), "x.png")[0].shape == (32, 32, 3)


def test_decoding_changes_no_process_wide_state(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    Image.new("1", (6000, 6000)).save(tmp_path / "bomb.png")
    with pytest.raises(UserError, match="too large to decode safely"):
        image_io.load_image(tmp_path / "bomb.png")
    assert Image.MAX_IMAGE_PIXELS == before


# ---- runs: broken, slow, unknown ----------------------------------------------------------------

@pytest.mark.parametrize(("run", "says"), [
    ("list-metrics", "metrics.json is not a run record file (not a JSON object)"),
    ("damaged-metrics", "metrics.json is not a run record file (Expecting value: line 1"),
])
def test_a_run_record_that_is_not_ours_gets_a_4xx_naming_the_file(plugin, logdir, run, says):
    code, body = call(plugin, "/run", f"run={run}")
    assert code == 400 and says in body["error"] and "internal error" not in body["error"]
    assert os.fspath(logdir) not in body["error"] and body["error"].startswith(f"{run}/metrics.json")


def test_a_failed_load_is_remembered_until_its_files_change(plugin, logdir, monkeypatch):
    from cifar_xai.dashboard.runs import RunStore

    store = plugin.dashboard.store
    loads = []
    real = RunStore._load
    monkeypatch.setattr(RunStore, "_load", staticmethod(lambda name, path: loads.append(name) or real(name, path)))
    for _ in range(3):
        assert call(plugin, "/run", "run=list-metrics")[0] == 400
    assert loads == []                                  # the first test's failure, remembered
    record = logdir / "list-metrics" / "metrics.json"
    record.write_text("[1, 2, 3]")                      # changed: tried again, once
    for _ in range(2):
        assert call(plugin, "/run", "run=list-metrics")[0] == 400
    assert loads == ["list-metrics"]
    record.write_text("[1, 2]")
    assert store.get("good").name == "good"


def test_a_slow_run_never_holds_up_another(plugin, monkeypatch):
    from cifar_xai.dashboard.runs import RunStore

    plugin.dashboard.run("good")
    real = RunStore._load
    release = threading.Event()

    def slow(name, path):
        release.wait(30)
        return real(name, path)

    monkeypatch.setattr(RunStore, "_load", staticmethod(slow))
    loading = threading.Thread(target=call, args=(plugin, "/run", "run=shipped/interpretable_cnn (project)"))
    loading.start()
    try:
        time.sleep(0.2)
        start = time.perf_counter()
        code, _ = call(plugin, "/run", "run=good")
        assert code == 200 and time.perf_counter() - start < 1.0
        start = time.perf_counter()
        code, body = call(plugin, "/run", "run=no-such-run")
        assert code == 404 and "unknown run 'no-such-run'" in body["error"] and time.perf_counter() - start < 1.0
    finally:
        release.set()
        loading.join(60)


def test_a_logdir_run_is_never_hidden_by_a_shipped_models_name(logdir):
    runs = find_runs(logdir)
    assert runs["shipped/interpretable_cnn"] == logdir / "shipped" / "interpretable_cnn" / "model.keras"
    assert runs["shipped/interpretable_cnn (project)"].parent.name == "saved_models"


def test_no_answer_shows_a_server_path(plugin, logdir):
    code, body = call(plugin, "/runs")
    assert code == 200 and all(set(run) == {"name"} for run in body["runs"])
    code, body = call(plugin, "/detail", "run=good&source=upload:nope")
    text = json.dumps(body)
    assert code == 404 and os.fspath(logdir) not in text and "/tmp" not in text


def test_a_page_far_out_of_range_is_answered_before_any_prediction(plugin, monkeypatch):
    import cifar_xai.dashboard.gallery as gallery

    monkeypatch.setattr(gallery, "scored", lambda *a: pytest.fail("predicted for an impossible page"))
    code, body = call(plugin, "/gallery", "run=good&filter=wrong&page=10000000")
    assert code == 404 and "page 10000000 is out of range" in body["error"]


# ---- bounded caches, uploads, single-flight jobs ------------------------------------------------

def test_the_cache_drops_the_least_recently_used_past_its_bytes():
    cache = LRUCache(max_bytes=3000)
    for key in "abc":
        cache.put(key, "x" * 1000)
    cache.get("a")                    # a is now the most recent
    cache.put("d", "x" * 1000)
    assert "b" not in cache and all(k in cache for k in "acd") and cache.bytes <= 3000


def test_uploads_are_bounded_and_their_ids_cannot_be_guessed():
    uploads = Uploads(max_count=3)
    keys = [uploads.add(np.zeros((32, 32, 3), np.uint8)) for _ in range(5)]
    assert len(set(keys)) == 5 and all(len(k) >= 20 for k in keys)
    assert not any(k.isdigit() for k in keys)
    with pytest.raises(NotFound):
        uploads.get(keys[0])
    assert uploads.get(keys[-1]).shape == (32, 32, 3)


def test_a_long_job_runs_once_however_many_ask_and_waiters_are_told_it_runs():
    jobs, calls, release = Jobs(), [], threading.Event()

    def compute():
        calls.append(1)
        release.wait(10)
        return 42

    answers = []

    def ask():
        try:
            answers.append(jobs.result("k", compute, wait=0.3, what="discovery"))
        except Pending as err:
            answers.append(str(err))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(a.startswith("discovery is running") for a in answers)
    release.set()
    assert jobs.result("k", compute, wait=10, what="discovery") == 42 and len(calls) == 1


def test_concurrent_first_requests_for_concepts_discover_once(plugin, monkeypatch):
    import cifar_xai.concepts.discovery as discovery

    real, calls = discovery.discover_concepts, []

    def counted(*args, **kwargs):
        calls.append(args[2])
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(discovery, "discover_concepts", counted)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        call(plugin, "/concepts", "run=good&source=test:1&class=frog"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [6] and {code for code, _ in results} == {200}
