"""Correctness of the explanation methods: identities, references, finite differences, completeness."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_xai.explain import METHODS, ExplanationError, explain, probe_for
from cifar_xai.explain.gradients import input_gradients, integrated_gradients_attributions
from cifar_xai.explain.maps import normalize_maps
from cifar_xai.models import CAM_LAYER, build_model

FAST_OPTIONS = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 8}}


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return build_model("interpretable_cnn", "small")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(7).uniform(0, 255, size=(6, 32, 32, 3)).astype("float32")


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def prototype_model():
    keras.utils.set_random_seed(3)
    return build_model("prototype_cnn", "small", prototypes_per_class=2)


def model_for(method, model, prototype_model):
    """The GAP network for every method but the prototype map, which needs prototypes."""
    return prototype_model if METHODS[method].needs_prototypes else model


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_returns_float32_maps_in_unit_range(model, prototype_model, images, method):
    maps = explain(model_for(method, model, prototype_model), images[:3], method, **FAST_OPTIONS.get(method, {}))
    assert maps.shape == (3, 32, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert all(m.max() in (0.0, 1.0) for m in maps)  # normalised per image, or an all-zero map


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_batch_gives_the_same_maps_as_each_image_alone(model, prototype_model, images, method):
    options = FAST_OPTIONS.get(method, {})
    model = model_for(method, model, prototype_model)
    batch = explain(model, images[:3], method, classes=[1, 4, 7], **options)
    alone = np.concatenate([explain(model, images[i], method, classes=c, **options)
                            for i, c in enumerate([1, 4, 7])])
    np.testing.assert_allclose(batch, alone, atol=1e-4)


@pytest.mark.parametrize("method", ["cam", "gradcam", "saliency", "scorecam_fast"])
def test_different_classes_give_different_maps(model, images, method):
    maps = [explain(model, images[:2], method, classes=c) for c in range(10)]
    assert len({m.tobytes() for m in maps}) >= 8


def test_cam_equals_gradcam_at_the_gap_input_up_to_a_positive_scale(model, images):
    """For GAP -> Dense, d logit_k / d A_c(x, y) = W[c, k] / (h w): Grad-CAM is CAM scaled."""
    probe = probe_for(model, CAM_LAYER)
    classes = tf.constant([0, 3, 5, 9, 2, 8])
    cam = METHODS["cam"].compute(probe, tf.constant(images), classes).numpy()
    grad = METHODS["gradcam"].compute(probe, tf.constant(images), classes).numpy()
    informative = [i for i in range(len(images)) if cam[i].std() > 0]
    assert len(informative) >= 3
    for i in informative:
        assert correlation(cam[i], grad[i]) > 0.999
        ratio = grad[i][cam[i] > 0] / cam[i][cam[i] > 0]
        assert np.allclose(ratio, ratio[0], rtol=1e-3) and ratio[0] > 0


def test_saliency_matches_finite_differences(model, images):
    probe = probe_for(model, CAM_LAYER)
    image, target = tf.constant(images[:1]), tf.constant([2])
    gradient = input_gradients(probe, image, target).numpy()[0]
    step = 0.05
    # The pixels that matter most: there the logit change dwarfs float32 rounding.
    strongest = np.argsort(np.abs(gradient).ravel())[-8:]
    for row, col, channel in zip(*np.unravel_index(strongest, gradient.shape), strict=True):
        delta = np.zeros((1, 32, 32, 3), np.float32)
        delta[0, row, col, channel] = step
        up = probe.logits(image + delta).numpy()[0, 2]
        down = probe.logits(image - delta).numpy()[0, 2]
        numeric = (up - down) / (2 * step)
        tolerance = 2e-3 * float(np.abs(gradient).max())
        assert float(numeric) == pytest.approx(float(gradient[row, col, channel]), rel=0.05, abs=tolerance)


def test_integrated_gradients_completeness(model, images):
    probe = probe_for(model, CAM_LAYER)
    classes = tf.constant([0, 1, 2, 3])
    batch = tf.constant(images[:4])
    attributions = integrated_gradients_attributions(probe, batch, classes, steps=512)
    total = tf.reduce_sum(attributions, axis=[1, 2, 3]).numpy()
    logits = probe.logits(batch).numpy()[np.arange(4), classes.numpy()]
    baseline = probe.logits(tf.zeros_like(batch)).numpy()[np.arange(4), classes.numpy()]
    # Within 1 % of the largest score difference (an untrained network's can be near zero).
    np.testing.assert_allclose(total, logits - baseline, rtol=0.01, atol=0.01 * np.abs(logits - baseline).max())


def test_smoothgrad_without_noise_is_saliency(model, images):
    plain = explain(model, images[:2], "saliency", classes=3)
    smooth = explain(model, images[:2], "smoothgrad", classes=3, noise=0.0, samples=2)
    np.testing.assert_allclose(plain, smooth, atol=1e-6)


def test_constant_maps_become_zeros_not_nan():
    maps = tf.constant(np.stack([np.full((4, 4), 3.0), np.full((4, 4), -1.0)]), tf.float32)
    assert normalize_maps(maps).numpy().tolist() == np.zeros((2, 4, 4)).tolist()


def test_standard_cnn_supports_gradcam_and_saliency_but_refuses_cam(images):
    standard = build_model("standard_cnn", "small")
    assert explain(standard, images[:2], "gradcam").shape == (2, 32, 32)
    assert explain(standard, images[:2], "saliency").shape == (2, 32, 32)
    with pytest.raises(ExplanationError, match="CAM needs a Global-Average-Pooling head .* use gradcam"):
        explain(standard, images[:2], "cam")


def test_mixed_precision_models_are_explained_in_float32(images):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_model("interpretable_cnn", "small")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for method in ("cam", "gradcam", "saliency"):
        maps = explain(mixed, images[:2], method)
        assert maps.dtype == np.float32 and np.isfinite(maps).all() and maps.max() == 1.0


def test_gradcam_reads_any_conv_block(model, images):
    deep = explain(model, images[:1], "gradcam", layer=CAM_LAYER)
    shallow = explain(model, images[:1], "gradcam", layer="block1b_relu")
    assert deep.shape == shallow.shape == (1, 32, 32) and not np.allclose(deep, shallow)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "lime"}, "unknown method 'lime'; valid: cam, gradcam"),
        ({"method": "gradcam", "layer": "nope"}, "unknown conv layer 'nope'; valid: cam_features, block3a_relu"),
        ({"method": "gradcam", "layer": "gap"}, "unknown conv layer 'gap'"),
        ({"method": "cam", "layer": "block2b_relu"}, "CAM reads the map under the GAP layer"),
        ({"method": "gradcam", "classes": 10}, "class id 10 is out of range; valid: 0-9"),
        ({"method": "gradcam", "classes": "dragon"}, "unknown class 'dragon'; valid: 0-9 or airplane"),
        ({"method": "gradcam", "classes": [1, 2]}, "2 classes for 6 images"),
        ({"method": "gradcam", "steps": 3}, "gradcam takes no option steps; valid: none"),
    ],
)
def test_bad_requests_are_refused_with_the_valid_choices(model, images, kwargs, message):
    with pytest.raises(ExplanationError, match=message.replace("(", r"\(")):
        explain(model, images, **kwargs)


def test_class_names_work_like_ids(model, images):
    np.testing.assert_array_equal(explain(model, images[:2], "gradcam", classes="cat"),
                                  explain(model, images[:2], "gradcam", classes=3))


def test_not_our_model_is_refused(images):
    inputs = keras.Input((32, 32, 3))
    other = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(ExplanationError, match="not a cifar-xai model"):
        explain(other, images[:1], "gradcam")


def test_feature_maps_and_first_layer_filters(model, images):
    from cifar_xai.explain import feature_maps, first_layer_filters

    maps = feature_maps(model, images[0], "block1b_relu")
    assert maps.shape == (16, 16, 32) and maps.min() >= 0  # after a ReLU
    assert feature_maps(model, images[0]).shape == (4, 4, 128)
    filters = first_layer_filters(model)
    assert filters.shape == (24, 2, 2, 3) and filters.min() == 0 and filters.max() == 1
    with pytest.raises(ExplanationError, match="one image at a time"):
        feature_maps(model, images[:2])


def test_activation_maximization_raises_the_chosen_class_and_filter(model):
    from cifar_xai.explain import activation_maximization

    start = tf.random.stateless_uniform([2, 32, 32, 3], [0, 0], 96.0, 160.0)
    before = probe_for(model, CAM_LAYER).logits(start).numpy()[[0, 1], [2, 7]]
    # No smoothness or norm penalty: on an untrained network they would outweigh the tiny logits.
    dreams = activation_maximization(model, ["bird", 7], steps=64, total_variation=0.0, norm=0.0)
    assert dreams.shape == (2, 32, 32, 3) and dreams.dtype == np.uint8
    after = probe_for(model, CAM_LAYER).logits(tf.constant(dreams, tf.float32)).numpy()[[0, 1], [2, 7]]
    assert (after > before).all()
    filters = activation_maximization(model, layer="block2b_relu", filters=[0, 5], steps=16)
    assert filters.shape == (2, 32, 32, 3)
    with pytest.raises(ExplanationError, match="filter 99 is out of range for block2b_relu; valid: 0-63"):
        activation_maximization(model, layer="block2b_relu", filters=[99])


def test_gradcam_plus_plus_survives_logits_above_100(images):
    keras.utils.set_random_seed(5)
    model = build_model("interpretable_cnn", "small")
    kernel = model.get_layer("logits").kernel
    kernel.assign(kernel * 500.0)  # float32 exp() overflows above ~88
    logits = keras.Model(model.input, model.get_layer("logits").output)(images[:3])
    assert float(tf.reduce_max(logits)) > 100
    maps = explain(model, images[:3], "gradcam++")
    assert np.isfinite(maps).all() and all(m.max() == 1.0 for m in maps)


def test_a_nan_map_is_an_error_not_zeros(images):
    model = build_model("interpretable_cnn", "small")
    kernel = model.get_layer("logits").kernel
    kernel.assign(tf.fill(kernel.shape, float("nan")))
    with pytest.raises(ExplanationError, match="gave NaN or infinite values"):
        explain(model, images[:2], "cam", classes=0)


def test_an_explained_model_can_be_freed():
    import gc
    import weakref

    model = build_model("interpretable_cnn", "small")
    explain(model, np.zeros((1, 32, 32, 3), "float32"), "gradcam", classes=0)
    explain(model, np.zeros((1, 32, 32, 3), "float32"), "cam", classes=0)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_contrastive_cam_decomposes_the_logit_difference_exactly(model, images):
    from cifar_xai.explain import contrastive_cam
    from cifar_xai.models import LOGITS_LAYER, logit_scale

    maps = contrastive_cam(model, images, 3, 5, upsample=False)
    logits = probe_for(model, CAM_LAYER).logits(tf.constant(images)).numpy()
    bias = model.get_layer(LOGITS_LAYER).bias.numpy()
    # mean over the map x scale + bias difference = logit(cat) - logit(dog), for every image
    np.testing.assert_allclose(maps.mean(axis=(1, 2)) * logit_scale(model) + bias[3] - bias[5],
                               logits[:, 3] - logits[:, 5], rtol=1e-4, atol=1e-4)
    # swapping the classes flips the sign
    np.testing.assert_allclose(contrastive_cam(model, images, 5, 3, upsample=False), -maps, atol=1e-6)
    assert contrastive_cam(model, images[0], "cat", "dog").shape == (1, 32, 32)
    with pytest.raises(ExplanationError, match="no GAP head"):
        contrastive_cam(build_model("standard_cnn", "small"), images, 3, 5)
