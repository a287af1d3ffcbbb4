"""trainers.fit end to end on the tiny dataset: outputs, resume after kill -9, one-line errors."""

import csv
import json
import os
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import cifar_xai.models  # noqa: F401  (registers our layers and schedule for keras.models.load_model)
from cifar_xai.model_io import load_model
from cifar_xai.models import logit_scale
from tests.conftest import ROOT, run_module

# Trains models or starts TensorFlow in subprocesses: the full lane only (make test-fast skips it).
pytestmark = pytest.mark.slow

# A logit scale other than the default, to see the flag reach the model, the card and the config.
# 20 of the 120 tiny training images held out: the temperature is fitted on them.
FLAGS = ["--preset", "quick", "--epochs", "2", "--batch-size", "40", "--mixed-precision", "off", "--logit-scale", "0.5",
         "--validation", "20"]


def tags(folder):
    events = EventAccumulator(os.fspath(folder), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    found = events.Tags()
    return set(found["tensors"]) | set(found["scalars"]) | set(found["images"])


@pytest.fixture(scope="module")
def finished_run(tiny_data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "r"
    result = run_module("trainers.fit", *FLAGS, "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir, result


def test_fit_writes_model_checkpoints_metrics_and_summary_line(finished_run):
    run_dir, result = finished_run
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert summary["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-4)
    assert 0 <= metrics["test"]["accuracy"] <= 1 and metrics["train_seconds"] > 0
    assert set(metrics["test"]["per_class"]) >= {"airplane", "truck"}
    assert set(metrics["test_tta"]) == {"flip", "flip_translate"} == set(summary["test_accuracy_tta"])
    assert all(0 <= value <= 1 for value in metrics["test_tta"].values())
    assert np.asarray(metrics["test"]["confusion_matrix"]).sum() == metrics["test"]["num_examples"] == 24
    for name in ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras", "confusion_matrix.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert not (run_dir / "backup").exists()  # removed once training completed
    model = load_model(run_dir / "model.keras")
    assert logit_scale(model) == 0.5 and json.loads((run_dir / "config.json").read_text())["logit_scale"] == 0.5
    probabilities = np.asarray(model(np.zeros((2, 32, 32, 3), "float32")))
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)


def test_fit_logs_loss_accuracy_learning_rate_and_confusion_matrix(finished_run):
    run_dir, _ = finished_run
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= tags(run_dir / "tensorboard" / "train")
    assert {"confusion_matrix", "accuracy"} <= tags(run_dir / "tensorboard" / "test")


def test_fit_shows_explanations_of_one_image_per_class_every_epoch(finished_run):
    run_dir, _ = finished_run
    events = EventAccumulator(os.fspath(run_dir / "tensorboard" / "explanations"), size_guidance={"tensors": 0})
    events.Reload()
    for method in ("cam", "gradcam", "saliency"):
        written = events.Tensors(f"explanations/{method}")
        assert [event.step for event in written] == [1, 2]
        # tf.summary.image stores [width, height, png...]: ten 32-px tiles, enlarged 4x.
        width, height = (int(v) for v in tf.make_ndarray(written[-1].tensor_proto)[:2])
        assert (width, height) == (10 * 32 * 4, 2 * 32 * 4)
    with open(run_dir / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[1]["learning_rate"]) < float(rows[0]["learning_rate"])  # decayed


def test_a_finished_run_asked_for_again_is_reported_and_never_overwritten(finished_run, tiny_data_dir):
    """`make fit` run twice: the second says the run is there and succeeds; with other settings it
    is refused in one line. Neither touches the run."""
    run_dir, _ = finished_run
    before = (run_dir / "metrics.json").read_text()
    result = run_module("trainers.fit", *FLAGS, "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(run_dir))
    assert result.returncode == 0, result.stderr
    accuracy = json.loads(before)["test"]["accuracy"]
    assert result.stdout.strip().startswith(f"already trained: {run_dir} holds this run (test accuracy {accuracy:.2%}")
    assert "pass --overwrite to train it again" in result.stdout
    other = run_module("trainers.fit", *FLAGS, "--seed", "7", "--data-dir", os.fspath(tiny_data_dir),
                       "--run-dir", os.fspath(run_dir))
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        f"error: {run_dir} already holds a finished run with other settings (seed); pass --run-dir NEW, "
        "or --overwrite to replace it"
    ]
    assert (run_dir / "metrics.json").read_text() == before


def test_overwrite_replaces_a_finished_run_with_a_fresh_one(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "again"
    flags = ["--preset", "quick", "--epochs", "1", "--batch-size", "40", "--mixed-precision", "off",
             "--validation", "0", "--explain-every", "0", "--data-dir", os.fspath(tiny_data_dir),
             "--run-dir", os.fspath(run_dir)]
    assert run_module("trainers.fit", *flags).returncode == 0
    (run_dir / "stale.txt").write_text("left by the first run")
    first = json.loads((run_dir / "metrics.json").read_text())
    result = run_module("trainers.fit", *flags, "--seed", "1", "--overwrite")
    assert result.returncode == 0, result.stderr[-2000:]
    second = json.loads((run_dir / "metrics.json").read_text())
    assert first["config"]["seed"] == 0 and second["config"]["seed"] == 1
    assert not (run_dir / "stale.txt").exists()   # the old run is gone, not mixed in
    # A run without a validation split has nothing to set OOD thresholds on: it ships without them.
    dest = tmp_path / "shipped"
    shipped = run_module("trainers.ship", "--run-dir", os.fspath(run_dir), "--dest", os.fspath(dest))
    assert shipped.returncode == 0, shipped.stderr[-2000:]
    assert "shipping without OOD statistics" in shipped.stdout
    assert not (dest / "interpretable_cnn.ood.npz").exists()
    assert "| out-of-distribution | no detector" in (dest / "interpretable_cnn.md").read_text()


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import keras
    from cifar_xai.config import PRESETS
    from cifar_xai.training import train

    class KillMidEpoch(keras.callbacks.Callback):
        # SIGKILL in the middle of the second epoch: no Python clean-up runs, as with kill -9.
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    config = PRESETS["quick"].replace(epochs=3, batch_size=40, mixed_precision="off", validation=0)
    train(config, sys.argv[1], sys.argv[2], verbose=0, callbacks=[KillMidEpoch()])
""")


def test_a_killed_run_resumes_from_the_last_completed_epoch(tiny_data_dir, tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.fspath(ROOT)}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, os.fspath(run_dir), os.fspath(tiny_data_dir)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (run_dir / "metrics.json").exists() and (run_dir / "backup").exists()

    result = run_module("trainers.fit", "--preset", "quick", "--epochs", "3", "--batch-size", "40",
                        "--mixed-precision", "off", "--validation", "0", "--data-dir", os.fspath(tiny_data_dir),
                        "--run-dir", os.fspath(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming the interrupted run" in result.stdout
    with open(run_dir / "history.csv") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [0, 1, 2]  # epoch 0 was not trained again
    assert json.loads((run_dir / "metrics.json").read_text())["resumed"] is True


def test_resuming_with_other_settings_is_refused(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"epochs": 99}))
    result = run_module("trainers.fit", *FLAGS, "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(run_dir))
    assert result.returncode == 2
    assert "holds an interrupted run with other settings" in result.stderr
    assert "Traceback" not in result.stderr


def test_averaging_more_epochs_than_the_run_has_is_refused_before_a_run_folder_exists(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "r"
    result = run_module("trainers.fit", *FLAGS, "--average-last-epochs", "3", "--data-dir", os.fspath(tiny_data_dir),
                        "--run-dir", os.fspath(run_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "error: --average-last-epochs 3 must be between 1 and the run's 2 epochs"
    assert not run_dir.exists()       # nothing left behind that a corrected rerun would call an interrupted run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet"],
         "invalid choice: 'resnet' (choose from 'interpretable_cnn', 'standard_cnn', 'prototype_cnn')"),
        (["--preset", "fast"], "invalid choice: 'fast' (choose from 'default', 'quick')"),
        (["--epochs", "0"], "--epochs: 0 must be at least 1"),
        (["--mixed-precision", "fp8"], "invalid choice: 'fp8'"),
        (["--dataset", "mnist"], "invalid choice: 'mnist' (choose from 'cifar10')"),
        (["--logit-scale", "0"], "--logit-scale: 0 must be a positive number"),
        (["--logit-scale", "nan"], "--logit-scale: nan must be a positive number"),
        (["--logit-scale", "big"], "--logit-scale: 'big' is not a number"),
        (["--corruption-augment", "2"], "--corruption-augment: 2 must be between 0 and 1"),
        (["--whitening-epsilon", "-1"], "--whitening-epsilon: -1 must be a positive number"),
    ],
)
def test_invalid_flags_get_one_line_listing_valid_values(args, message):
    result = run_module("trainers.fit", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_missing_data_fails_before_training_in_one_line(tmp_path):
    result = run_module("trainers.fit", "--data-dir", os.fspath(tmp_path / "tfds"), "--cifar-bin",
                        os.fspath(tmp_path / "nowhere"), "--run-dir", os.fspath(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere does not exist" in lines[0] and "--from-npm" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_the_data_is_a_clear_error(tiny_data_dir, tmp_path):
    result = run_module("trainers.fit", "--batch-size", "4096", "--validation", "0", "--data-dir",
                        os.fspath(tiny_data_dir), "--run-dir", os.fspath(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: batch size 4096 is larger than the 120")


def test_a_validation_split_as_large_as_the_data_is_a_clear_error(tiny_data_dir, tmp_path):
    # The default holds out 5,000 images; the tiny dataset has 120.
    result = run_module("trainers.fit", "--preset", "quick", "--data-dir", os.fspath(tiny_data_dir),
                        "--run-dir", os.fspath(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --validation 5000 holds out all 120 training images; pass a smaller --validation (0: none)")
    assert not (tmp_path / "run").exists()


def test_ship_writes_the_model_its_card_record_and_serving_export(finished_run, tiny_data_dir, tmp_path):
    run_dir, _ = finished_run
    result = run_module("trainers.ship", "--run-dir", os.fspath(run_dir), "--data-dir", os.fspath(tiny_data_dir),
                        "--dest", os.fspath(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    shipped = keras.models.load_model(tmp_path / "interpretable_cnn.keras")
    trained = keras.models.load_model(run_dir / "model.keras")
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(shipped(images)), np.asarray(trained(images)), atol=1e-6)
    assert getattr(shipped, "optimizer", None) is None  # no optimizer state in the shipped file
    assert (tmp_path / "interpretable_cnn.keras").stat().st_size < (run_dir / "model.keras").stat().st_size
    card = (tmp_path / "interpretable_cnn.md").read_text()
    accuracy = json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"]
    assert f"{accuracy:.2%} (plain)" in card and "(flip + 1-px translations)" in card and "seed | 0" in card
    # The temperature is in the model (and on the card) only when it lowered the held-out ECE.
    applied = json.loads((run_dir / "metrics.json").read_text())["calibration"]["applied"]
    assert f"Global Average Pooling, x0.5, Dense(10), {'temperature, ' if applied else ''}softmax" in card
    assert ("uncalibrated: the temperature" in card) is not applied
    # The card's command is generated from the run's settings, and is the one that made it.
    assert (f"`python -m trainers.fit --preset quick --logit-scale 0.5 --epochs 2 --batch-size 40 --validation 20 "
            f"--mixed-precision off --run-dir {run_dir}`") in card
    assert "the first 100 images (the last 20 held out" in card and "temperature " in card
    assert (tmp_path / "interpretable_cnn" / "1" / "saved_model.pb").exists()
    assert (tmp_path / "interpretable_cnn.run" / "history.csv").exists()
    # The OOD detector is fitted, shipped beside the model (and loads for it) and served.
    from cifar_xai.uncertainty.detector import load_detector

    assert load_detector(shipped, tmp_path / "interpretable_cnn.ood.npz").meta["train_images"] == 100
    served = tf.saved_model.load(os.fspath(tmp_path / "interpretable_cnn" / "1")).signatures["serving_default"]
    assert {"ood_score", "in_distribution"} <= set(served.structured_outputs)
    assert "| out-of-distribution | `in_distribution` by energy_blocks" in card
    # Shipping again never replaces the shipped model silently.
    again = run_module("trainers.ship", "--run-dir", os.fspath(run_dir), "--dest", os.fspath(tmp_path))
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'interpretable_cnn'}.keras already exists; pass --overwrite to replace the shipped model"]
    assert run_module("trainers.ship", "--run-dir", os.fspath(run_dir), "--dest", os.fspath(tmp_path),
                      "--overwrite").returncode == 0


def test_fit_with_a_validation_split_folds_a_fitted_temperature_into_the_model(finished_run):
    from cifar_xai.uncertainty import temperature_of

    run_dir, _ = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    calibration = metrics["calibration"]
    assert calibration["fitted_on"] == "train[-20:]"
    assert temperature_of(load_model(run_dir / "model.keras")) == pytest.approx(calibration["temperature"], rel=1e-6)
    # The fit never makes the held-out NLL worse, and the test split reports both sides.
    assert calibration["validation"]["nll"] <= calibration["validation_uncalibrated"]["nll"] + 1e-9
    assert {"ece", "nll", "ece_uncalibrated", "nll_uncalibrated", "temperature"} <= set(metrics["test"]["calibration"])
    # Folded in only when it lowers the held-out ECE (else T = 1, and confidences are not called calibrated).
    lowered = calibration["validation_if_applied"]["ece"] < calibration["validation_uncalibrated"]["ece"]
    assert calibration["applied"] is lowered
    assert calibration["temperature"] == (calibration["fitted_temperature"] if lowered else 1.0)


def test_ship_refuses_an_unfinished_run(tmp_path):
    result = run_module("trainers.ship", "--run-dir", os.fspath(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} holds no finished run (no metrics.json); train with python -m trainers.fit"]


def test_open_set_run_trains_on_known_classes_and_the_benchmark_scores_the_others(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "osr"
    result = run_module("trainers.fit", "--preset", "quick", "--epochs", "1", "--batch-size", "20", "--validation",
                        "30", "--mixed-precision", "off", "--known-classes", "9,0,1,4,6,7", "--explain-every", "0",
                        "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(run_dir / "model.keras")
    assert model.output.shape[-1] == 6
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics["test"]["per_class"]) == ["airplane", "automobile", "deer", "frog", "horse", "truck"]
    assert json.loads((run_dir / "config.json").read_text())["known_classes"] == "0,1,4,6,7,9"
    report = tmp_path / "ood.json"
    result = run_module("benchmarks.ood", "--model", os.fspath(run_dir / "model.keras"), "--data-dir",
                        os.fspath(tiny_data_dir), "--outliers", "uniform_noise", "--synthetic", "30", "--shifted", "5",
                        "--json", os.fspath(report))
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(report.read_text())
    assert measured["outliers"]["open_set_unknown"]["far"] is False
    assert measured["id"]["images"] + measured["outliers"]["open_set_unknown"]["images"] == 24  # the tiny test split
    assert set(measured["summary"]["msp"]) >= {"far_auroc", "near_auroc", "shifted_flagged"}
    assert (run_dir / "model.ood.npz").exists()  # fitted on the way, for the next run


def test_fit_learns_the_tiny_set_far_above_chance(tiny_data_dir, tmp_path):
    """End to end, as a user runs it: the tiny images' classes differ in mean colour, so a network
    that learns anything gets most of its 24 test images right (chance: 10 %)."""
    run_dir = tmp_path / "learns"
    result = run_module("trainers.fit", "--preset", "quick", "--epochs", "4", "--batch-size", "20",
                        "--mixed-precision", "off", "--validation", "0", "--explain-every", "0",
                        "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"] >= 0.5


def test_fit_writes_the_embedding_projectors_files(finished_run):
    """TensorBoard's Projector shows the run's test images by their pooled CAM features."""
    run_dir, _ = finished_run
    folder = run_dir / "tensorboard" / "projector"
    config = (folder / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "features.tsv"' in config and 'image_path: "sprite.png"' in config
    features = (folder / "features.tsv").read_text().splitlines()
    metadata = (folder / "metadata.tsv").read_text().splitlines()
    model = load_model(run_dir / "model.keras")
    assert len(features) == 24 and len(features[0].split("\t")) == model.get_layer("logits").kernel.shape[0]
    assert metadata[0] == "label\tprediction\tconfidence\tcorrect\tpoint" and len(metadata) == 25
    with Image.open(folder / "sprite.png") as sprite:
        assert sprite.size == (5 * 32, 5 * 32)


def test_fit_ood_adds_the_ood_score_to_the_runs_projector(finished_run, tiny_data_dir):
    run_dir, _ = finished_run
    result = run_module("trainers.fit_ood", "--model", os.fspath(run_dir / "model.keras"),
                        "--data-dir", os.fspath(tiny_data_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    metadata = (run_dir / "tensorboard" / "projector" / "metadata.tsv").read_text().splitlines()
    assert metadata[0].endswith("\tood_score\tflagged_ood") and len(metadata) == 25
    assert {row.split("\t")[-1] for row in metadata[1:]} <= {"True", "False"}
