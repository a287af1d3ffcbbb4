"""Temperature scaling: the fit recovers a known temperature, and folding it into the model
changes the confidences only: argmax, class ranking and CAMs stay exactly the same."""

import numpy as np
import pytest

from cifar_xai.errors import UserError
from cifar_xai.explain import explain
from cifar_xai.metrics import probability_scores
from cifar_xai.models import build_model
from cifar_xai.uncertainty import apply_temperature, fit_temperature, temperature_of, with_temperature


def softmax(scores):
    scores = scores - scores.max(1, keepdims=True)
    return np.exp(scores) / np.exp(scores).sum(1, keepdims=True)


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_recovers_a_known_temperature(true_temperature):
    # Labels drawn from softmax(logits / T): the NLL-optimal temperature is T.
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(20000, 10))
    labels = np.array([rng.choice(10, p=p) for p in softmax(logits / true_temperature)])
    assert fit_temperature(softmax(logits), labels) == pytest.approx(true_temperature, rel=0.05)


def test_calibration_lowers_nll_and_ece_of_underconfident_predictions():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 5, size=(5000, 10))
    labels = np.array([rng.choice(10, p=p) for p in softmax(logits)])
    timid = softmax(logits / 3)  # a model that says 40 % where it is right 80 % of the time
    temperature = fit_temperature(timid, labels)
    before, after = probability_scores(timid, labels), probability_scores(apply_temperature(timid, temperature), labels)
    assert temperature == pytest.approx(1 / 3, rel=0.05)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 3
    assert after["accuracy"] == before["accuracy"]


def test_fit_refuses_mismatched_inputs():
    with pytest.raises(UserError, match="N labels"):
        fit_temperature(np.full((4, 10), 0.1), np.zeros(3, int))


@pytest.fixture(scope="module")
def model_pair():
    import keras

    keras.utils.set_random_seed(0)  # unseeded, some initialisations saturated the softmax (p = 0.9998)
    model = build_model("interpretable_cnn", "small")
    # Sharper logits than a fresh model's, so a temperature visibly changes the probabilities, but
    # not so sharp that every image is certain (then no temperature can change anything).
    logits = model.get_layer("logits")
    logits.kernel.assign(np.random.default_rng(0).normal(0, 0.3, logits.kernel.shape))
    return model, with_temperature(model, 0.4)


def test_folded_temperature_changes_probabilities_only(model_pair):
    model, calibrated = model_pair
    images = np.random.default_rng(2).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    raw, scaled = np.asarray(model(images)), np.asarray(calibrated(images))
    assert temperature_of(model) == 1.0 and temperature_of(calibrated) == pytest.approx(0.4)
    np.testing.assert_allclose(scaled, apply_temperature(raw, 0.4), atol=2e-5)
    assert np.abs(scaled - raw).max() > 1e-3
    np.testing.assert_array_equal(np.argsort(raw, 1)[:, ::-1][:, :3], np.argsort(scaled, 1)[:, ::-1][:, :3])
    for method in ("cam", "gradcam"):
        np.testing.assert_allclose(explain(model, images, method), explain(calibrated, images, method), atol=1e-5)


def test_calibrated_model_saves_and_loads_with_its_temperature(model_pair, tmp_path):
    from cifar_xai.model_io import load_model

    _, calibrated = model_pair
    calibrated.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert temperature_of(loaded) == pytest.approx(0.4)
    images = np.full((2, 32, 32, 3), 100, "float32")
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(calibrated(images)), atol=1e-6)
    # Setting a new temperature on a calibrated model replaces it rather than stacking a second one.
    again = with_temperature(loaded, 0.8)
    assert temperature_of(again) == pytest.approx(0.8)
    assert [layer.name for layer in again.layers].count("temperature") == 1


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_temperature_is_refused(model_pair, bad):
    with pytest.raises(UserError, match="must be a positive number"):
        with_temperature(model_pair[0], bad)
