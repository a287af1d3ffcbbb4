"""SavedModel export: signatures, equality with the Keras model and library CAM, warm-up requests."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from cifar_xai.explain import explain
from cifar_xai.export import WARMUP_FILE, export_saved_model
from cifar_xai.models import build_model
from tests.conftest import run_module

SIGNATURES = {"serving_default", "explain_cam", "explain_cam_class"}


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(2)
    return build_model("interpretable_cnn", "small")


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export_saved_model(model, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(4).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)


def saved_model_cli(*args):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)


def test_layout_is_name_then_integer_version(exported, model):
    assert exported.name == "1" and exported.parent.name == model.name == "interpretable_cnn"
    assert (exported / "saved_model.pb").exists() and (exported / WARMUP_FILE).exists()
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.slow
def test_saved_model_cli_lists_every_signature_with_dtypes_and_shapes(exported):
    shown = saved_model_cli("show", "--dir", os.fspath(exported), "--all")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in text
    block = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['images']" in block and "DT_UINT8" in block and "(-1, 32, 32, 3)" in block
    assert "outputs['probabilities']" in block and "DT_FLOAT" in block and "(-1, 10)" in block
    assert "outputs['class_name']" in block and "DT_STRING" in block
    cam_block = text.split("signature_def['explain_cam']")[1].split("signature_def[")[0]
    assert "outputs['heatmaps']" in cam_block and "(-1, 32, 32)" in cam_block


@pytest.mark.slow
def test_saved_model_cli_runs_on_a_sample(exported, images, tmp_path):
    np.save(tmp_path / "x.npy", images[:2])
    ran = saved_model_cli("run", "--dir", os.fspath(exported), "--tag_set", "serve", "--signature_def",
                          "serving_default", "--inputs", f"images={tmp_path / 'x.npy'}")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "probabilities" in ran.stdout and "class_name" in ran.stdout


def test_loaded_model_matches_keras_and_library_cam(exported, model, images):
    loaded = tf.saved_model.load(os.fspath(exported))
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    expected = np.asarray(model(images.astype("float32")))
    assert np.abs(served["probabilities"].numpy() - expected).max() < 1e-5
    np.testing.assert_array_equal(served["class_id"].numpy(), expected.argmax(1))
    assert served["probabilities"].dtype == tf.float32

    cams = loaded.signatures["explain_cam"](images=tf.constant(images))
    np.testing.assert_allclose(cams["heatmaps"].numpy(), explain(model, images, "cam"), atol=1e-5)
    chosen = np.array([0, 3, -1, 9, 5], np.int32)
    per_class = loaded.signatures["explain_cam_class"](images=tf.constant(images), class_id=tf.constant(chosen))
    resolved = np.where(chosen < 0, expected.argmax(1), chosen)
    np.testing.assert_array_equal(per_class["class_id"].numpy(), resolved)
    np.testing.assert_allclose(per_class["heatmaps"].numpy(), explain(model, images, "cam", classes=resolved.tolist()),
                               atol=1e-5)


def test_signatures_reject_wrong_dtype_shape_and_class(exported, images):
    serve = tf.saved_model.load(os.fspath(exported)).signatures["serving_default"]
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        serve(images=tf.constant(images, tf.float32))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        serve(images=tf.zeros([1, 64, 64, 3], tf.uint8))
    per_class = tf.saved_model.load(os.fspath(exported)).signatures["explain_cam_class"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="class_id must be -1 or 0-9"):
        per_class(images=tf.constant(images[:1]), class_id=tf.constant([10]))


def test_warmup_requests_match_the_signature_defs(exported):
    """Requests built with tensorflow-serving-api: one per signature, inputs as the defs declare."""
    loaded = tf.saved_model.load(os.fspath(exported))
    seen = set()
    for record in tf.data.TFRecordDataset(os.fspath(exported / WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        signature = loaded.signatures[request.model_spec.signature_name]
        specs = signature.structured_input_signature[1]
        assert set(request.inputs) == set(specs)
        for key, proto in request.inputs.items():
            value = tf.make_ndarray(proto)
            assert tf.as_dtype(value.dtype) == specs[key].dtype
            assert specs[key].shape.is_compatible_with(value.shape)
        assert set(signature(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}))
        seen.add(request.model_spec.signature_name)
    assert seen == SIGNATURES


def test_mixed_precision_model_exports_float32_outputs(images, tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_model("interpretable_cnn", "small")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    loaded = tf.saved_model.load(os.fspath(export_saved_model(mixed, tmp_path)))
    assert loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].dtype == tf.float32
    assert loaded.signatures["explain_cam"](images=tf.constant(images))["heatmaps"].dtype == tf.float32


def test_standard_cnn_exports_without_cam_signatures(images, tmp_path):
    loaded = tf.saved_model.load(os.fspath(export_saved_model(build_model("standard_cnn", "small"), tmp_path)))
    assert set(loaded.signatures) == {"serving_default"}


@pytest.mark.slow
def test_cli_numbers_versions_and_never_overwrites_silently(model, tmp_path):
    model.save(tmp_path / "m.keras")
    base = os.fspath(tmp_path / "serving")
    first = run_module("trainers.export", "--model", os.fspath(tmp_path / "m.keras"), "--export-base", base)
    second = run_module("trainers.export", "--model", os.fspath(tmp_path / "m.keras"), "--export-base", base)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.splitlines()[0].endswith("interpretable_cnn/1")
    assert second.stdout.splitlines()[0].endswith("interpretable_cnn/2")
    assert "no ood_score" in first.stdout  # no statistics beside m.keras: said, not silently dropped
    again = run_module("trainers.export", "--model", os.fspath(tmp_path / "m.keras"), "--export-base", base,
                       "--version", "1")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: {base}/interpretable_cnn/1 already exists; pass --overwrite to replace it, or omit --version"]


def test_calibrated_model_serves_its_calibrated_probabilities_and_the_same_cams(model, images, tmp_path):
    from cifar_xai.uncertainty import temperature_of, with_temperature

    calibrated = with_temperature(model, 0.5)
    loaded = tf.saved_model.load(os.fspath(export_saved_model(calibrated, tmp_path)))
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    assert temperature_of(calibrated) == 0.5
    np.testing.assert_allclose(served["probabilities"].numpy(), np.asarray(calibrated(images.astype("float32"))),
                               atol=1e-5)
    # Calibration sharpens the probabilities, but the explained maps and classes are the uncalibrated model's.
    assert not np.allclose(served["probabilities"].numpy(), np.asarray(model(images.astype("float32"))), atol=1e-4)
    cams = loaded.signatures["explain_cam"](images=tf.constant(images))
    np.testing.assert_allclose(cams["heatmaps"].numpy(), explain(model, images, "cam"), atol=1e-4)


def test_an_empty_batch_gets_empty_outputs_from_every_signature(exported, model):
    from cifar_xai.explain import predict

    loaded = tf.saved_model.load(os.fspath(exported))
    none = tf.zeros([0, 32, 32, 3], tf.uint8)
    served = loaded.signatures["serving_default"](images=none)
    assert served["probabilities"].shape == (0, 10) and served["class_id"].shape == (0,)
    assert served["class_name"].shape == (0,)
    assert loaded.signatures["explain_cam"](images=none)["heatmaps"].shape == (0, 32, 32)
    cams = loaded.signatures["explain_cam_class"](images=none, class_id=tf.zeros([0], tf.int32))
    assert cams["heatmaps"].shape == (0, 32, 32) and cams["class_id"].shape == (0,)
    assert predict(model, np.zeros((0, 32, 32, 3), "float32")).shape == (0, 10)


def test_every_variable_is_stored_once(exported, model):
    data = exported / "variables" / "variables.data-00000-of-00001"
    # float32 weights: 4 bytes each, plus a little checkpoint overhead, never twice over.
    assert data.stat().st_size < 1.1 * 4 * model.count_params()


def test_served_ood_score_matches_the_detector_and_keeps_its_threshold(model, images, tmp_path):
    from cifar_xai.uncertainty.detector import fit_detector

    rng = np.random.default_rng(5)
    train = rng.integers(30, 220, (80, 32, 32, 3)).astype(np.uint8)
    held_out = rng.integers(30, 220, (40, 32, 32, 3)).astype(np.uint8)
    detector = fit_detector(model, train, held_out, default="energy_blocks", knn_bank=None)
    export = export_saved_model(model, tmp_path, detector=detector)
    shown = saved_model_cli("show", "--dir", os.fspath(export), "--tag_set", "serve", "--signature_def",
                            "serving_default")
    assert "outputs['ood_score']" in shown.stdout and "outputs['in_distribution']" in shown.stdout
    assert "DT_BOOL" in shown.stdout
    loaded = tf.saved_model.load(os.fspath(export))
    flat = np.full((3, 32, 32, 3), 90, np.uint8)
    batch = np.concatenate([images, flat])
    served = loaded.signatures["serving_default"](images=tf.constant(batch))
    expected = detector.score_images(model, batch)["energy_blocks"]
    np.testing.assert_allclose(served["ood_score"].numpy(), expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(served["in_distribution"].numpy(),
                                  expected >= detector.thresholds["energy_blocks"])
    assert not served["in_distribution"].numpy()[-3:].any()  # flat grey is nothing like textured noise
    np.testing.assert_allclose(served["probabilities"].numpy(), np.asarray(model(batch.astype("float32"))),
                               atol=1e-5)
    empty = loaded.signatures["serving_default"](images=tf.zeros([0, 32, 32, 3], tf.uint8))
    assert empty["ood_score"].shape == (0,) and empty["in_distribution"].dtype == tf.bool
