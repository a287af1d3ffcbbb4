"""The Explanations dashboard: its routes, called as TensorBoard calls them, and the page in a
real headless Chromium against a TensorBoard started by the test."""

from __future__ import annotations

import argparse
import io
import json
import os
import time

import keras
import numpy as np
import pytest
from PIL import Image
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from cifar_xai import CLASS_NAMES
from cifar_xai.dashboard.plugin import PLUGIN_NAME, ExplanationsPlugin
from cifar_xai.models import build_model
from tests.conftest import ROOT, watched


@pytest.fixture(scope="module")
def plugin(logdir, tiny_data_dir):
    context = base_plugin.TBContext(logdir=os.fspath(logdir),
                                    flags=argparse.Namespace(cifar_xai_data_dir=os.fspath(tiny_data_dir)))
    return ExplanationsPlugin(context)


def call(plugin, route: str, query: str = "", **kwargs):
    response = Client(plugin.get_plugin_apps()[route]).open(f"{route}?{query}", **kwargs)
    return response.status_code, response.get_data()


def answer(plugin, route, query="", **kwargs):
    code, body = call(plugin, route, query, **kwargs)
    return code, json.loads(body)


# What the tab's own page sends with every request that changes something.
TAB = {"X-Cifar-Xai": "1"}


def png_bytes(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_runs_lists_trained_runs_and_the_shipped_models(plugin):
    code, found = answer(plugin, "/runs")
    names = [run["name"] for run in found["runs"]]
    assert code == 200 and "tiny" in names and "not-a-run" not in names
    assert {"shipped/interpretable_cnn", "shipped/prototype_cnn"} <= set(names)


def test_a_run_lists_its_methods_with_what_it_cannot_run(plugin):
    code, found = answer(plugin, "/run", "run=tiny")
    applicable = {m["name"]: m["applicable"] for m in found["methods"]}
    assert code == 200 and found["kind"] == "interpretable_cnn"
    assert applicable["cam"] and not applicable["prototypes"]


def test_gallery_pages_and_filters(plugin):
    code, page = answer(plugin, "/gallery", "run=tiny")
    assert code == 200 and page["total"] == 24 and len(page["items"]) == 24
    wrong = answer(plugin, "/gallery", "run=tiny&filter=wrong")[1]
    correct = answer(plugin, "/gallery", "run=tiny&filter=correct")[1]
    assert wrong["total"] + correct["total"] == 24 and not any(item["correct"] for item in wrong["items"])
    unsure = answer(plugin, "/gallery", "run=tiny&filter=least_confident")[1]["items"]
    assert [i["confidence"] for i in unsure] == sorted(i["confidence"] for i in unsure)
    cats = answer(plugin, "/gallery", "run=tiny&class=cat")[1]["items"]
    assert cats and all(item["label"] == "cat" for item in cats)


def test_detail_explains_any_class_with_any_method_and_says_what_does_not_apply(plugin):
    code, found = answer(plugin, "/detail", "run=tiny&source=test:3&method=gradcam&class=dog")
    assert code == 200 and found["explained"] == "dog" and found["map"].startswith("data:image/png;base64,")
    assert abs(sum(found["probabilities"].values()) - 1) < 1e-4 and len(found["top"]) == 3
    code, found = answer(plugin, "/detail", "run=tiny&source=test:3&method=prototypes")
    assert code == 200 and found["map"] is None and found["reason"].startswith("n/a: Prototypes needs a prototype")


@pytest.mark.parametrize(("route", "query", "status", "message"), [
    ("/detail", "run=nope&source=test:0", 404, "unknown run 'nope'; valid: "),
    ("/detail", "run=tiny&source=test:24", 404, "image 24 is out of range; the test split has 24 images (0-23)"),
    ("/detail", "run=tiny&source=test:0&method=magic", 400, "unknown method 'magic'; valid: cam, "),
    ("/detail", "run=tiny&source=upload:99", 404, "no upload '99'; upload the image again"),
    ("/gallery", "run=tiny&filter=odd", 400, "unknown filter 'odd'; valid: all, "),
    ("/gallery", "run=tiny&page=5", 404, "page 5 is out of range"),
    ("/image", "index=-1", 404, "image -1 is out of range"),
    ("/detail", "run=tiny", 400, "missing the 'source' parameter"),
])
def test_bad_requests_get_a_4xx_with_one_line(plugin, route, query, status, message):
    code, body = answer(plugin, route, query)
    assert code == status and body["error"].startswith(message) and "\n" not in body["error"]


def test_an_upload_is_explained_like_a_test_image(plugin):
    code, found = answer(plugin, "/upload", method="POST", data={"file": (io.BytesIO(png_bytes()), "mine.png")},
                         headers=TAB)
    assert code == 200 and found["source"].startswith("upload:")
    code, detail = answer(plugin, "/detail", f"run=tiny&source={found['source']}&method=cam")
    assert code == 200 and detail["label"] is None and detail["map"]


@pytest.mark.parametrize(("content", "name", "status", "message"), [
    (b"", "empty.png", 400, "empty.png is empty"),
    (b"not an image at all", "fake.png", 400, "is not an image file we read"),
    (b"\0" * (11 * 2**20), "huge.png", 413, "the file is over 10 MB"),
])
def test_a_bad_upload_gets_a_one_line_message(plugin, content, name, status, message):
    code, body = answer(plugin, "/upload", method="POST", data={"file": (io.BytesIO(content), name)}, headers=TAB)
    assert code == status and message in body["error"] and "\n" not in body["error"]


def test_measurements_come_with_the_registrys_columns(plugin, logdir):
    code, found = answer(plugin, "/measurements", "run=tiny&run=shipped/interpretable_cnn")
    assert code == 200 and [r["run"] for r in found["runs"]] == ["tiny", "shipped/interpretable_cnn"]
    assert found["runs"][1]["accuracy"] > 0.9 and found["runs"][0]["accuracy"] is None
    assert "road_lerf" in [c["key"] for c in found["columns"]]
    frontier = found["frontiers"]["tiny"]
    assert frontier["png"].startswith("data:image/png;base64,") and frontier["rule"] == "best clean + mCA"
    assert frontier["rows"] == [["tiny-recipe (shipped)", 0.91, 0.84, 0.045, 0.955, "yes"],
                                ["other", 0.9, 0.85, 0.05, "-", "yes"]]


def test_the_frontend_is_served_as_an_es_module(plugin):
    code, body = call(plugin, "/index.js")
    assert code == 200 and b"export async function render()" in body
    assert plugin.frontend_metadata().es_module_path == "/index.js"
    assert plugin.plugin_name == PLUGIN_NAME


# ---- the page, in a real browser -------------------------------------------------------------

@pytest.mark.slow
def test_inside_the_network_mistakes_and_shareable_views_in_a_real_browser(tensorboard, browser, tmp_path):
    """The layers view of an image; a channel's card with its dataset examples; a confusion-matrix
    cell filters the gallery to its true and predicted classes; a copied link reopens the same
    image and method in a fresh page; the detail view downloads as a PNG. With CIFAR_XAI_SCREENSHOTS=DIR,
    each view's screenshot is saved in DIR."""
    frame = f"{tensorboard}/data/plugin_entry.html?name={PLUGIN_NAME}"
    shots = os.environ.get("CIFAR_XAI_SCREENSHOTS")   # a folder for the views' screenshots
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    errors, failed = watched(page)
    page.goto(frame)
    page.wait_for_selector("#run option[value='tiny']", state="attached", timeout=60_000)
    page.select_option("#run", "tiny")
    page.wait_for_function("document.querySelectorAll('.thumb').length === 24", timeout=60_000)
    # Mistakes: a cell of the confusion matrix opens the gallery of its images.
    page.wait_for_selector("#confusion td.cell", timeout=60_000)
    cell = page.query_selector("#confusion td.cell:not(:text-is('0'))")
    true_class, predicted = cell.get_attribute("data-true"), cell.get_attribute("data-predicted")
    count = int(cell.inner_text())
    cell.click()
    page.wait_for_function(f"document.querySelectorAll('.thumb').length === {count}", timeout=60_000)
    labels = page.eval_on_selector_all(".thumb", "ts => ts.map(t => [t.dataset.label, t.dataset.predicted])")
    assert labels and all(pair == [true_class, predicted] for pair in labels)
    if shots:
        page.screenshot(path=os.path.join(shots, "tab-mistakes.png"), full_page=True)
    # Inside the network: the layers view, then a channel's card.
    page.click(".thumb >> nth=0")
    page.wait_for_selector("#overlay[src^='data:image/png']", timeout=60_000)
    page.select_option("#method", "saliency")
    page.wait_for_function("document.querySelector('#overlay').alt.toLowerCase().includes('saliency') && "
                           "document.querySelector('#overlay').src.startsWith('data:image/png')", timeout=60_000)
    with page.expect_download() as download:
        page.click("#download-png")
    saved = tmp_path / "view.png"
    download.value.save_as(saved)
    with Image.open(saved) as picture:
        assert picture.format == "PNG" and picture.width >= 256 and picture.height > 256
    link = page.evaluate("window.location.href")
    assert "source=test" in link and "method=saliency" in link
    source = page.eval_on_selector("#detail", "d => d.innerText.split(':')[0]")
    if shots:
        page.screenshot(path=os.path.join(shots, "tab-detail.png"), full_page=True)
    page.click("#panel-layers")
    page.wait_for_selector(".channel img[src^='data:image/png']", timeout=60_000)
    blocks = page.eval_on_selector_all(".block-title", "bs => bs.map(b => b.innerText)")
    assert any("stem" in b for b in blocks) and any("CAM map" in b for b in blocks)
    page.click(".channel[data-layer='cam_features'] >> nth=0")
    page.wait_for_function("document.querySelectorAll('#examples img').length >= 2", timeout=60_000)
    examples = page.eval_on_selector_all("#examples img", "is => is.every(i => i.complete && i.naturalWidth > 0)")
    assert examples and "votes for" in page.inner_text("#channel-card")
    if shots:
        page.screenshot(path=os.path.join(shots, "tab-layers.png"), full_page=True)
    layers_link = page.evaluate("window.location.href")
    # A fresh page from the copied link: the same run, image and method (and the channel's card).
    fresh = browser.new_page()
    fresh_errors, fresh_failed = watched(fresh)
    fresh.goto(link)
    fresh.wait_for_selector("#overlay[src^='data:image/png']", timeout=60_000)
    assert fresh.eval_on_selector("#method", "m => m.value") == "saliency"
    assert fresh.eval_on_selector("#run", "r => r.value") == "tiny"
    assert fresh.eval_on_selector("#detail", "d => d.innerText.split(':')[0]") == source
    fresh.close()
    fresh = browser.new_page()      # a new page: going to a link that differs only in its hash would not reload
    fresh.goto(layers_link)
    fresh.wait_for_function("document.querySelectorAll('#examples img').length >= 2", timeout=60_000)
    fresh.close()
    page.close()
    assert failed == [] and fresh_failed == [], (failed, fresh_failed)
    assert errors == [] and fresh_errors == [], (errors, fresh_errors)


@pytest.mark.parametrize(("route", "query", "message"), [
    ("/layers", "run=tiny", "missing the 'source' parameter"),
    ("/channel", "run=tiny&layer=nope&channel=0", "unknown layer 'nope'; valid: stem_relu"),
    ("/channel", "run=tiny&layer=cam_features&channel=4096", "channel 4096 is out of range for cam_features"),
    ("/channel", "run=tiny&layer=cam_features&channel=x", "channel 'x' is not a whole number"),
    ("/channel_image", "run=tiny&layer=block1a_relu&channel=-1", "channel -1 is out of range"),
])
def test_the_layer_routes_refuse_bad_parameters_in_one_line(plugin, route, query, message):
    code, body = answer(plugin, route, query)
    assert code == 400 and body["error"].startswith(message) and "\n" not in body["error"]


def test_the_layers_view_shows_every_block_and_the_channel_card_adds_up(plugin):
    """Every block from the stem to the CAM map, its top channels highest first; a CAM channel's
    share of the logit is mean activation x weight, and all shares add up to the logit minus its bias."""
    from cifar_xai.explain.channels import block_activations, block_layers
    from cifar_xai.models import LOGITS_LAYER

    code, found = answer(plugin, "/layers", "run=tiny&source=test:3")
    model = plugin.dashboard.run("tiny").model
    assert code == 200 and [b["layer"] for b in found["blocks"]] == block_layers(model)
    for block in found["blocks"]:
        values = [item["activation"] for item in block["top"]]
        assert values == sorted(values, reverse=True) and len(values) == min(8, block["channels"])
    code, card = answer(plugin, "/channel", "run=tiny&layer=cam_features&channel=3&source=test:3")
    assert code == 200 and len(card["examples"]) == 8
    shown = [e["activation"] for e in card["examples"]]
    assert shown == sorted(shown, reverse=True)
    image = plugin.dashboard.image("test:3")[0]
    cam = block_activations(model, image[None])["cam_features"][0]
    weights = np.asarray(model.get_layer(LOGITS_LAYER).kernel)
    target = CLASS_NAMES.index(card["share"]["class"])
    assert card["share"]["channel"] == pytest.approx(float(cam[..., 3].mean() * weights[3, target]), rel=1e-4, abs=1e-6)
    logit_without_bias = float(cam.mean(axis=(0, 1)) @ weights[:, target])
    assert card["share"]["all_channels"] == pytest.approx(logit_without_bias, rel=1e-4, abs=1e-5)
    assert card["votes"][card["share"]["class"]] == pytest.approx(float(weights[3, target]), rel=1e-5)
    code, other = answer(plugin, "/channel", "run=tiny&layer=block2a_relu&channel=0")
    assert code == 200 and other["votes"] is None and other["votes_reason"].startswith("n/a")


def test_the_confusion_matrix_agrees_with_the_gallery_cells(plugin):
    code, found = answer(plugin, "/confusion", "run=tiny")
    assert code == 200 and sum(map(sum, found["counts"])) == found["images"] == 24
    i, j = next((i, j) for i, row in enumerate(found["counts"]) for j, c in enumerate(row) if c)
    code, page = answer(plugin, "/gallery", f"run=tiny&class={found['classes'][i]}&predicted={found['classes'][j]}")
    assert code == 200 and page["total"] == found["counts"][i][j]
    assert {(x["label"], x["predicted"]) for x in page["items"]} == {(found["classes"][i], found["classes"][j])}
    recall = found["counts"][i][i] / sum(found["counts"][i])
    assert found["recall"][i] == pytest.approx(recall)


def test_a_shipped_models_measurements_show_what_was_measured_for_it(plugin):
    code, found = answer(plugin, "/measurements", "run=shipped/interpretable_cnn&run=tiny")
    shipped, tiny = found["runs"]
    record = json.loads((ROOT / "saved_models" / "interpretable_cnn.run" / "robustness.json").read_text())
    assert shipped["mca"] == pytest.approx(record["mca"]) and shipped["far_ood_worst"] > 0.5
    assert "mca" not in found["measure"]["shipped/interpretable_cnn"]
    assert tiny["mca"] is None and "benchmarks.robustness" in found["measure"]["tiny"]["mca"]


@pytest.mark.slow
def test_the_tab_in_a_real_browser(tensorboard, browser, tmp_path):
    """The tab is listed; the gallery renders with every image loaded; a click opens the detail;
    switching method changes the overlay; an upload works; a bad one shows a message; no console error."""
    import urllib.request

    listing = json.loads(urllib.request.urlopen(f"{tensorboard}/data/plugins_listing").read())
    assert listing[PLUGIN_NAME]["tab_name"] == "Explanations"
    (tmp_path / "mine.png").write_bytes(png_bytes())
    (tmp_path / "bad.png").write_bytes(b"this is text")
    page = browser.new_page()
    errors, failed = watched(page)
    # The plugin's own frame, as TensorBoard's shell loads it.
    page.goto(f"{tensorboard}/data/plugin_entry.html?name={PLUGIN_NAME}")
    page.wait_for_selector(".thumb img", timeout=60_000)
    page.select_option("#run", "tiny")
    page.wait_for_function("document.querySelectorAll('.thumb').length === 24", timeout=60_000)
    loaded = "[...document.querySelectorAll('.thumb img')].every(i => i.complete && i.naturalWidth === 32)"
    page.wait_for_function(loaded, timeout=60_000)
    page.click(".thumb >> nth=0")
    page.wait_for_selector("#overlay[src^='data:image/png']", timeout=60_000)
    before = page.get_attribute("#overlay", "src")
    assert page.inner_text("#probabilities").count("%") == 10
    page.select_option("#method", "saliency")
    page.wait_for_function(f"document.querySelector('#overlay').src !== {json.dumps(before)}", timeout=60_000)
    page.fill("#opacity", "0.2")
    assert page.eval_on_selector("#overlay", "o => o.style.opacity") == "0.2"
    page.select_option("#compare", "shipped/interpretable_cnn")     # two runs side by side
    page.wait_for_selector("#beside #overlay-beside[src^='data:image/png']", timeout=60_000)
    assert page.inner_text("#beside h4").startswith("shipped/interpretable_cnn: predicted")
    page.set_input_files("#upload", os.fspath(tmp_path / "mine.png"))
    page.wait_for_function("document.body.innerText.includes('upload:')", timeout=60_000)
    page.set_input_files("#upload", os.fspath(tmp_path / "bad.png"))
    page.wait_for_function("document.querySelector('#upload-message').innerText.includes('bad.png')",
                           timeout=60_000)
    assert "is not an image file" in page.inner_text("#upload-message")
    assert page.inner_text("#run-figures")
    page.wait_for_selector("img.frontier[src^='data:image/png']", timeout=60_000)   # tiny's recipe frontier
    assert "tiny-recipe (shipped)" in page.inner_text(".frontier-table")
    page.close()
    # The bad upload's 400 is the one expected failed request (the browser logs it as an error).
    assert [url for url in failed if not url.endswith("/upload")] == []
    assert len([e for e in errors if "status of 400" not in e]) == 0, errors


def test_a_prototype_network_shows_its_prototypes_with_the_exact_arithmetic(plugin):
    code, found = answer(plugin, "/detail", "run=shipped/prototype_cnn&source=test:0&method=prototypes")
    assert code == 200 and found["map"] and found["reason"] is None
    evidence = found["prototypes"]
    assert len(evidence["top"]) == 3 and evidence["prototypes"] == 100
    assert abs(evidence["sum_of_contributions"] - evidence["logit"]) < 1e-3
    for item in evidence["top"]:
        assert abs(item["similarity"] * item["weight"] - item["contribution"]) < 1e-3
        assert item["source"].startswith("data:image/png;base64,")
    code, found = answer(plugin, "/detail", "run=shipped/prototype_cnn&source=test:0&method=cam")
    assert code == 200 and found["reason"].startswith("n/a: CAM needs a Global-Average-Pooling head")


def test_concepts_split_the_class_logit_exactly_or_say_why_not(plugin):
    code, found = answer(plugin, "/concepts", "run=tiny&source=test:2&class=cat")
    assert code == 200 and found["class"] == "cat" and len(found["top"]) == min(3, len(found["concepts"]))
    total = found["bias"] + sum(c["contribution"] for c in found["concepts"]) + found["residual"]
    assert abs(total - found["logit"]) < 1e-4                      # the split adds up to the logit
    code, found = answer(plugin, "/concepts", "run=shipped/prototype_cnn&source=test:2")
    assert code == 200 and found["reason"].startswith("n/a: the logit splits over concepts only under a GAP head")


def test_a_runs_first_gallery_page_answers_before_the_whole_split_is_scored(logdir, tiny_data_dir):
    """The unfiltered first page comes from its own images; the whole split is scored behind it,
    and the filters then agree with that page."""
    from cifar_xai.dashboard.backend import Dashboard

    dashboard = Dashboard(logdir, tiny_data_dir)
    early = dashboard.gallery("tiny")
    run = dashboard.run("tiny")
    for _ in range(600):   # wait for the background scoring
        if run.probabilities is not None:
            break
        time.sleep(0.1)
    assert run.probabilities is not None
    late = dashboard.gallery("tiny")
    assert early["items"] == late["items"] and early["total"] == 24


def test_each_gallery_image_names_its_place_in_test_batch_bin(plugin, tiny_cifar):
    """The gallery numbers images in tfds' order; each also carries its index in test_batch.bin
    (samples/README's numbers), and that index really is where the file holds the same image."""
    from cifar_xai.data.sources import TEST_FILE, read_batch

    folder, _ = tiny_cifar
    stored, _ = read_batch(folder / TEST_FILE)
    code, page = answer(plugin, "/gallery", "run=tiny")
    images, _ = plugin.dashboard.test_images()
    assert code == 200 and sorted(item["file_index"] for item in page["items"]) == list(range(24))
    for item in page["items"]:
        assert np.array_equal(images[item["index"]], stored[item["file_index"]])
    code, found = answer(plugin, "/detail", f"run=tiny&source=test:{page['items'][0]['index']}&method=cam")
    assert found["file_index"] == page["items"][0]["file_index"]


@pytest.mark.parametrize("kind", ["interpretable_cnn", "standard_cnn", "prototype_cnn"])
def test_the_layers_library_reads_every_model_kind(kind):
    """Every block of every kind of network, stem to CAM map; only a GAP head's CAM channels vote."""
    from cifar_xai.explain.channels import block_activations, block_layers, channel_votes, votes_apply

    keras.utils.set_random_seed(0)
    model = build_model(kind, "small")
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    found = block_activations(model, image[None])
    assert list(found) == block_layers(model) and list(found)[0].startswith("stem") and "cam_features" in found
    assert found["cam_features"].shape[1:3] == (4, 4)
    assert votes_apply(model, "cam_features") == (kind == "interpretable_cnn")
    assert (channel_votes(model, 0) is None) == (kind != "interpretable_cnn")
