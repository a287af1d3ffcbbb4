"""reports.build end to end on the tiny dataset: metrics.json, an HTML page that really renders
(headless Chromium: every image loads, no console errors), TensorBoard tags, escaping."""

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_xai.data.pipeline import split_arrays
from cifar_xai.interpretability import suite
from cifar_xai.interpretability.attributions import BASELINES
from cifar_xai.models import build_model
from cifar_xai.report.build import build
from cifar_xai.report.frontier import FRONTIER_FILE, Point, to_json

# Trains models or starts TensorFlow in subprocesses: the full lane only (make test-fast skips it).
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A model file name that is also HTML: the report must show it as text, never run it.
HOSTILE_NAME = '<img src=x onerror="document.title=1">.keras'
TINY = suite.Settings(test_images=24, grids=3, faithfulness_images=4, faithfulness_steps=4, sanity_images=2,
                      visualisation_steps=4,
                      confidence=0.0, method_options={"smoothgrad": {"samples": 2},
                                                      "integrated_gradients": {"steps": 4}})


@pytest.fixture(scope="module")
def report(tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    keras.utils.set_random_seed(0)
    model = build_model("interpretable_cnn", "small")
    # A few steps on the tiny set's colour-coded classes: the grid game needs right answers.
    train_images, train_labels = (t.numpy() for t in split_arrays(tiny_data_dir, "train"))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(train_images.astype("float32"), train_labels, epochs=30, batch_size=40, verbose=0)
    images, labels = suite.load_test_set(tiny_data_dir)
    model_path = root / HOSTILE_NAME
    model.save(model_path)
    from cifar_xai.uncertainty.detector import fit_detector, ood_path

    # The OOD statistics beside the model turn on the "knowing when not to trust it" section.
    fit_detector(model, train_images, train_images[-30:], train_labels, knn_bank=None).save(ood_path(model_path))
    # A run record beside the model with the frontier of the recipes it was chosen from.
    (root / "config.json").write_text(json.dumps({"model": "interpretable_cnn", "width": "small", "epochs": 30}))
    points = [Point("chosen-one", 0.93, 0.85, 0.045, "validation", 2000, 0.955),
              Point("plain", 0.935, 0.66, 0.12, "validation", 2000)]
    (root / FRONTIER_FILE).write_text(json.dumps(to_json(points, "chosen-one", "best clean + mCA")))
    out = root / "out"
    metrics = build(model, model_path, out, images, labels, TINY, "python -m reports.build --quick",
                    tensorboard_dir=root / "tb", log=lambda _: None, training_images=(train_images, train_labels))
    return out, root / "tb", metrics


def test_metrics_json_holds_every_figure_for_every_method_and_baseline(report):
    out, _, metrics = report
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["classification"]["accuracy"] == pytest.approx(metrics["classification"]["accuracy"])
    assert 0 <= saved["classification"]["ece"] <= 1
    names = set(saved["interpretability"])
    assert {"cam", "gradcam", "saliency", "integrated_gradients", *BASELINES} <= names
    for name, values in saved["interpretability"].items():
        for key in ("gridpg_2x2_median", "gridpg_3x3_median", "deletion_auc", "insertion_auc",
                    "sanity_spearman_full_random"):
            assert isinstance(values[key], float) and np.isfinite(values[key]), (name, key)
    assert saved["interpretability"]["gaussian"]["gridpg_2x2_median"] == pytest.approx(0.25)
    assert saved["interpretability"]["sobel"]["sanity_spearman_full_random"] == pytest.approx(1.0)
    assert saved["model"]["path"].endswith(HOSTILE_NAME)
    assert saved["notes"] == []


def test_report_shows_selective_prediction_for_every_score(report):
    out, _, metrics = report
    uncertainty = json.loads((out / "metrics.json").read_text())["uncertainty"]
    assert {"msp", "energy", "knn", "energy_blocks"} <= set(uncertainty["selective"])
    for name, values in uncertainty["selective"].items():
        assert 0 <= values["aurc"] <= 1, name
        # at full coverage every prediction is kept: the accuracy is the classifier's
        assert values["accuracy_at"]["100%"] == pytest.approx(metrics["classification"]["accuracy"]), name
    html = (out / "index.html").read_text()
    assert "Knowing when not to trust it" in html and 'alt="risk-coverage curves"' in html
    assert 'alt="most uncertain"' in html


def test_report_splits_every_class_logit_among_its_concepts(report):
    out, _, metrics = report
    concepts = json.loads((out / "metrics.json").read_text())["concepts"]
    assert len(concepts) == 10
    for name, record in concepts.items():
        parts = record["bias"] + sum(c["contribution"] for c in record["concepts"]) + record["mean_residual"]
        assert parts == pytest.approx(record["mean_logit"], abs=1e-6), name
        assert record["k"] == len(record["concepts"]) >= 1
        assert set(record["region_deletion_test"]) >= {"concept_regions_drop", "random_regions_drop"}
    page = (out / "index.html").read_text()
    assert "<h2>Concepts</h2>" in page and page.count('alt="concepts of ') == 10


def test_report_shows_the_frontier_the_recipe_was_chosen_from(report):
    out, _, _ = report
    page = (out / "index.html").read_text()
    section = page[page.index("<h2>How this recipe was chosen</h2>"):]
    section = section[: section.index("</section>")]
    assert 'alt="recipe frontier"' in section and "Rule, stated before choosing: best clean + mCA" in section
    # both recipes in the table, the shipped one named, each on the frontier (neither beats the other)
    assert "chosen-one (shipped)" in section and "95.50%" in section and section.count(">yes<") == 2


def test_html_escapes_text_from_outside(report):
    out, _, _ = report
    page = (out / "index.html").read_text()
    assert HOSTILE_NAME not in page
    assert "&lt;img src=x onerror=&quot;document.title=1&quot;&gt;.keras" in page


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_report_renders_in_headless_chromium(report, browser, tmp_path):
    # The session's one browser (tests/conftest.py): a second Playwright in the same process would
    # refuse to start inside the first one's event loop.
    out, _, _ = report
    errors = []
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
    page.goto((out / "index.html").as_uri(), wait_until="load")
    images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
                           "i.naturalWidth])")
    title = page.title()
    text = page.inner_text("body")
    page.screenshot(path=os.fspath(tmp_path / "report.png"), full_page=True)
    page.close()
    assert errors == []
    assert len(images) >= 10
    assert all(complete and width > 0 for _, complete, width in images), images
    assert title != "1" and HOSTILE_NAME in text  # shown as text, never executed
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_tensorboard_holds_images_text_hparams_and_pr_curves(report):
    _, tb, _ = report
    events = EventAccumulator(os.fspath(tb), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"classification", "interpretability", "eval/accuracy", "eval/ece", "eval/aurc_msp",
            "eval/test_flagged_ood"} <= tags
    assert {f"pr_curves/{name}/pr_curves" for name in ("airplane", "cat", "truck")} <= tags
    assert sum(tag.startswith("report/") for tag in tags) >= 8
    assert "_hparams_/session_start_info" in tags
    text = b"".join(e.tensor_proto.string_val[0] for e in events.Tensors("interpretability")).decode()
    assert "| gradcam |" in text and "(baseline)" in text


def test_cli_refuses_a_model_that_is_not_ours(tmp_path):
    from tests.conftest import run_module

    (tmp_path / "m.keras").write_text("zip? no")
    result = run_module("reports.build", "--model", os.fspath(tmp_path / "m.keras"), "--out", os.fspath(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "is not a Keras model file" in result.stderr
    assert not Path(tmp_path / "index.html").exists()
