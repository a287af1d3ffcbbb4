"""Our own implementations against tf-keras-vis on the same model, layer and classes.

Compared at the layer's resolution (tf-keras-vis upsamples with scipy, we with tf.image), both
min-max normalised by the same function (tf-keras-vis adds 1e-7 to the range, which is not
negligible for the tiny gradients of an untrained network), within 1e-4.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.scores import CategoricalScore

from cifar_xai.explain import METHODS, explain, probe_for
from cifar_xai.explain.maps import normalize_maps
from cifar_xai.models import CAM_LAYER, LOGITS_LAYER, build_model

CLASSES = [3, 0, 7]


@pytest.fixture(scope="module")
def setup():
    """A briefly trained model and images of the classes it explains: an untrained network's
    class evidence is mostly negative, and all-zero maps would agree with anything."""
    from tests.conftest import make_images

    keras.utils.set_random_seed(11)
    model = build_model("interpretable_cnn", "small")
    rng = np.random.default_rng(5)
    labels = np.arange(300) % 10
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
    model.fit(make_images(rng, labels).astype("float32"), np.eye(10)[labels], batch_size=50, epochs=3, verbose=0)
    images = make_images(rng, np.array(CLASSES)).astype("float32")
    # tf-keras-vis differentiates the model's output: give it the logits, as our methods use.
    logits_model = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output)
    return model, images, logits_model


def reference_cam(method, logits_model, classes, images, **options):
    """tf-keras-vis' map at our CAM layer itself (not the conv before it), unscaled, not upsampled."""
    return method(logits_model, clone=True)(CategoricalScore(classes), images, penultimate_layer=CAM_LAYER,
                                            seek_penultimate_conv_layer=False, expand_cam=False,
                                            normalize_cam=False, **options)


def same_scale(theirs) -> np.ndarray:
    return normalize_maps(tf.constant(np.asarray(theirs), tf.float32)).numpy()


def ours_at_layer(model, images, method, **options):
    probe = probe_for(model, CAM_LAYER)
    raw = METHODS[method].compute(probe, tf.constant(images), tf.constant(CLASSES), **options)
    return normalize_maps(raw).numpy()


@pytest.mark.parametrize(
    ("method", "reference"), [("gradcam", Gradcam), ("gradcam++", GradcamPlusPlus), ("layercam", Layercam)]
)
def test_gradient_cams_match_tf_keras_vis(setup, method, reference):
    model, images, logits_model = setup
    theirs = reference_cam(reference, logits_model, CLASSES, images)
    ours = ours_at_layer(model, images, method)
    assert all(np.ptp(one) > 0 for one in ours), "a compared map is all zeros"
    np.testing.assert_allclose(ours, same_scale(theirs), atol=1e-4)


def test_scorecam_matches_tf_keras_vis(setup):
    model, images, logits_model = setup
    theirs = reference_cam(Scorecam, logits_model, CLASSES, images)
    ours = ours_at_layer(model, images, "scorecam")
    assert all(np.ptp(one) > 0 for one in ours), "a compared map is all zeros"
    np.testing.assert_allclose(ours, same_scale(theirs), atol=1e-4)


def test_faster_scorecam_matches_tf_keras_vis_max_n(setup):
    model, images, logits_model = setup
    # tf-keras-vis picks the union of the batch's top channels; per image, that is the image's own.
    for index in range(len(images)):
        theirs = reference_cam(Scorecam, logits_model, CLASSES[index], images[index : index + 1], max_N=16)
        probe = probe_for(model, CAM_LAYER)
        raw = METHODS["scorecam_fast"].compute(
            probe, tf.constant(images[index : index + 1]), tf.constant(CLASSES[index : index + 1]), max_channels=16
        )
        np.testing.assert_allclose(normalize_maps(raw).numpy(), same_scale(theirs), atol=1e-4)


def test_saliency_matches_tf_keras_vis(setup):
    model, images, logits_model = setup
    theirs = Saliency(logits_model, clone=True)(CategoricalScore(CLASSES), images, normalize_map=False)
    np.testing.assert_allclose(explain(model, images, "saliency", classes=CLASSES), same_scale(theirs), atol=1e-4)
