import keras
import numpy as np
import pytest

from cifar_xai.models import (
    CAM_LAYER,
    CIFAR_MEAN,
    GAP_LAYER,
    LOGIT_SCALE,
    LOGITS_LAYER,
    build_model,
    has_gap_head,
    logit_scale,
)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model("interpretable_cnn", "small")


def test_takes_raw_pixels_and_returns_probabilities(model):
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 32, 32, 3)).astype("float32")
    probabilities = np.asarray(model(images))
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(model.get_layer("normalize").mean.numpy().ravel(), CIFAR_MEAN, rtol=1e-6)


def test_gap_head_makes_cam_exact(model):
    """logits == mean over (x, y) of the CAM map, i.e. GAP then Dense; softmax of that is the output."""
    images = np.random.default_rng(1).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    features_model = keras.Model(model.input, [model.get_layer(CAM_LAYER).output, model.output])
    features, probabilities = (np.asarray(t) for t in features_model(images))
    assert features.shape[1:3] == (4, 4)
    kernel, bias = (np.asarray(w) for w in model.get_layer(LOGITS_LAYER).get_weights())
    assert kernel.shape == (features.shape[-1], 10)
    cam = np.einsum("nhwc,ck->nhwk", features, kernel)
    logits = LOGIT_SCALE * cam.mean(axis=(1, 2)) + bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(expected / expected.sum(1, keepdims=True), probabilities, atol=1e-5)
    assert has_gap_head(model) and model.get_layer(GAP_LAYER)


def test_the_logit_scale_multiplies_the_mean_cam_and_must_be_positive():
    scaled = build_model("interpretable_cnn", "small", logit_scale=0.5)
    assert logit_scale(scaled) == 0.5
    images = np.random.default_rng(2).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    probe = keras.Model(scaled.input, [scaled.get_layer(CAM_LAYER).output, scaled.get_layer(LOGITS_LAYER).output])
    features, logits = (np.asarray(t) for t in probe(images))
    kernel, bias = (np.asarray(w) for w in scaled.get_layer(LOGITS_LAYER).get_weights())
    cam = np.einsum("nhwc,ck->nhwk", features, kernel)
    np.testing.assert_allclose(logits, 0.5 * cam.mean(axis=(1, 2)) + bias, rtol=1e-4, atol=1e-5)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="must be a positive number"):
            build_model("interpretable_cnn", "small", logit_scale=bad)


def test_runs_on_larger_canvases_with_a_proportionally_larger_map(model):
    features_model = keras.Model(model.input, model.get_layer(CAM_LAYER).output)
    assert features_model(np.zeros((1, 64, 64, 3), "float32")).shape[1:3] == (8, 8)
    assert model(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 10)


def test_standard_cnn_is_the_same_trunk_with_a_dense_head():
    standard = build_model("standard_cnn", "small")
    assert not has_gap_head(standard)
    assert standard.get_layer(CAM_LAYER).output.shape[1:3] == (4, 4)
    assert "flatten" in [layer.name for layer in standard.layers]
    assert standard(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)


def test_default_width_is_wider_than_small():
    small = build_model("interpretable_cnn", "small").count_params()
    assert build_model("interpretable_cnn").count_params() > 2 * small


def test_unknown_names_are_refused_listing_the_valid_ones():
    with pytest.raises(ValueError, match="valid: interpretable_cnn, standard_cnn"):
        build_model("resnet")
    with pytest.raises(ValueError, match="valid: small, default"):
        build_model("interpretable_cnn", "huge")


def test_an_8x8_cam_map_keeps_the_last_block_unpooled():
    model = build_model("interpretable_cnn", "small", cam_map=8)
    features = keras.Model(model.input, model.get_layer(CAM_LAYER).output)
    assert features(np.zeros((1, 32, 32, 3), "float32")).shape[1:3] == (8, 8)
    assert model.count_params() == build_model("interpretable_cnn", "small").count_params()
    with pytest.raises(ValueError, match="valid: 4, 8"):
        build_model("interpretable_cnn", "small", cam_map=2)


def test_a_long_loading_error_is_cut_at_a_word_and_says_so(tmp_path, monkeypatch):
    from cifar_xai.errors import UserError
    from cifar_xai.model_io import load_model

    path = tmp_path / "m.keras"
    path.write_bytes(b"not a model")
    long_message = "the file holds a layer named " + "verylongname " * 40

    def refuse(*args, **kwargs):
        raise ValueError(long_message)

    monkeypatch.setattr(keras.models, "load_model", refuse)
    with pytest.raises(UserError) as error:
        load_model(path)
    detail = str(error.value).split("(", 1)[1]
    assert detail.endswith(" …)") and "verylongnam …" not in detail
    assert all(word in ("verylongname", "…)") for word in detail.split()[6:])
