"""Class-activation methods: maps at a conv layer's resolution, weighted sums of its channels.

All are our own `tf.GradientTape` code, compiled with `tf.function` once per model and layer, and
checked against tf-keras-vis in the tests (tests/test_explain_reference.py).
"""

from __future__ import annotations

import tensorflow as tf

from cifar_xai.explain.inputs import ExplanationError, check_model, target_classes
from cifar_xai.explain.maps import finish_maps
from cifar_xai.explain.registry import register
from cifar_xai.models import CAM_LAYER, LOGITS_LAYER, has_gap_head
from cifar_xai.probes import Probe, class_scores, probe_for


def features_and_gradients(probe: Probe, score: str = "logit") -> tf.types.experimental.GenericFunction:
    """(images, classes) -> the layer's activations, the gradients of each image's class score with
    respect to them (both float32) and those scores: what Grad-CAM and TCAV read. The score is the
    class logit, or with `score="log_probability"` its log-softmax. Compiled once per probe and score."""
    def build():
        # One trace for any batch and image size: without a signature every new batch size traced
        # again, and TCAV's loop over layers and classes drew TensorFlow's retracing warning.
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                      tf.TensorSpec([None], tf.int32)])
        def traced(images, classes):
            with tf.GradientTape() as tape:
                features, logits = probe.raw_outputs(images)
                tape.watch(features)
                logits = tf.cast(logits, tf.float32)
                scores = class_scores(tf.nn.log_softmax(logits) if score == "log_probability" else logits, classes)
            # Differentiate at the layer's own dtype, then cast: under mixed precision a float32
            # copy of the features would not be on the path to the logits.
            gradients = tape.gradient(scores, features)
            return tf.cast(features, tf.float32), tf.cast(gradients, tf.float32), scores

        return lambda images, classes: traced(tf.cast(images, tf.float32), tf.cast(classes, tf.int32))

    return probe.compiled(("features_and_gradients", score), build)


def class_weights(model, classes: tf.Tensor) -> tf.Tensor:
    """The GAP head's weights W[:, k] of each image's class k, float32 [N, C]."""
    return tf.gather(tf.transpose(tf.cast(model.get_layer(LOGITS_LAYER).kernel, tf.float32)), classes)


def class_activation_maps(probe: Probe, features: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """CAM from the float32 map under the GAP: ReLU(sum_c W[c, k] * A_c) for each image's class k."""
    return tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, class_weights(probe.model, classes)))


def contrastive_cam(model, images, classes, rivals, upsample: bool = True):
    """Why `classes` rather than `rivals`: sum_c (W[c, k] - W[c, r]) * A_c, signed, not normalised.

    The exact contrast of the GAP head (no ReLU): its mean over the map, times the model's logit
    scale, plus b_k - b_r, is logit_k - logit_r. Positive cells are evidence for the class,
    negative ones for the rival. `classes` and `rivals` are given as `explain` takes them (an id
    or name for all images, or one per image). float32 [N, H, W] at the image size (`upsample`)
    or the map's.
    """
    model = check_model(model)
    if not has_gap_head(model):
        raise ExplanationError(f"{model.name} has no GAP head, so no exact contrastive CAM; use Grad-CAM per class")
    images = tf.cast(images, tf.float32)
    images = images[None] if images.shape.rank == 3 else images
    weights = (class_weights(model, target_classes(model, images, classes))
               - class_weights(model, target_classes(model, images, rivals)))
    maps = tf.einsum("nhwc,nc->nhw", probe_for(model, CAM_LAYER).features_and_logits(images)[0], weights)
    return (finish_maps(maps, images.shape[1:3], normalize=False) if upsample else maps).numpy()


@register("cam", "CAM", needs_gap_head=True)
def cam(probe: Probe, images, classes):
    """Zhou et al. 2016: sum_c W[c, k] * A_c, exact for a GAP -> Dense head, no gradient needed."""
    def build():
        @tf.function(reduce_retracing=True)
        def run(images, classes):
            return class_activation_maps(probe, probe.features_and_logits(images)[0], classes)

        return run

    return probe.compiled("cam", build)(images, classes)


@register("gradcam", "Grad-CAM")
def gradcam(probe: Probe, images, classes):
    """Selvaraju et al. 2017: channel weights are the spatial mean of d score / d A."""
    features, gradients, _ = features_and_gradients(probe)(images, classes)
    weights = tf.reduce_mean(gradients, axis=[1, 2])
    return tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, weights))


@register("gradcam++", "Grad-CAM++")
def gradcam_plus_plus(probe: Probe, images, classes):
    """Chattopadhay et al. 2018. The paper's exponential score, exp(S), multiplies every derivative
    by the same exp(S): it cancels in the alphas and only scales the map, which is normalised, so
    it is left out (exp overflows float32 above a logit of ~88)."""
    features, gradients, _ = features_and_gradients(probe)(images, classes)
    second = gradients * gradients
    third = second * gradients
    denominator = 2.0 * second + third * tf.reduce_sum(features, axis=[1, 2], keepdims=True)
    alphas = second / (denominator + tf.cast(second == 0.0, second.dtype))
    norm = tf.reduce_sum(alphas, axis=[1, 2], keepdims=True)
    alphas = alphas / (norm + tf.cast(norm == 0.0, norm.dtype))
    weights = tf.reduce_sum(tf.nn.relu(gradients) * alphas, axis=[1, 2])
    return tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, weights))


@register("layercam", "Layer-CAM")
def layercam(probe: Probe, images, classes):
    """Jiang et al. 2021: each location weighted by its own positive gradient."""
    features, gradients, _ = features_and_gradients(probe)(images, classes)
    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * features, axis=-1))


def _align_corners_resize(maps: tf.Tensor, size) -> tf.Tensor:
    # Score-CAM's masks use corner-aligned linear interpolation (scipy's zoom, as tf-keras-vis).
    return tf.raw_ops.ResizeBilinear(images=maps, size=tf.constant(size, tf.int32), align_corners=True,
                                     half_pixel_centers=False)


@register("scorecam", "Score-CAM", batch_size=16, max_channels=0, channel_chunk=32)
def scorecam(probe: Probe, images, classes, max_channels: int = 0, channel_chunk: int = 32):
    """Wang et al. 2020: weight each channel by the class probability of the image masked by it.

    Gradient-free, one forward pass per channel and image. `max_channels` > 0 keeps only the
    channels with the largest spatial standard deviation per image (Faster Score-CAM).
    """
    features, _ = probe.features_and_logits(images)
    if 0 < max_channels < features.shape[-1]:
        _, top = tf.math.top_k(tf.math.reduce_std(features, axis=[1, 2]), k=max_channels)
        features = tf.gather(features, top, axis=-1, batch_dims=1)
    masks = _align_corners_resize(features, images.shape[1:3])
    low = tf.reduce_min(masks, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(masks, axis=[1, 2], keepdims=True)
    masks = (masks - low) / (high - low + 1e-7)                            # [N, H, W, K]
    weights = []
    for start in range(0, masks.shape[-1], channel_chunk):
        chunk = tf.transpose(masks[..., start:start + channel_chunk], [0, 3, 1, 2])  # [N, k, H, W]
        masked = images[:, None] * chunk[..., None]                                  # [N, k, H, W, 3]
        flat = tf.reshape(masked, [-1, *images.shape[1:]])
        probabilities = tf.nn.softmax(probe.logits(flat))
        repeated = tf.repeat(classes, chunk.shape[1])
        weights.append(tf.reshape(class_scores(probabilities, repeated), [-1, chunk.shape[1]]))
    weights = tf.concat(weights, axis=1)
    return tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, weights))


@register("scorecam_fast", "Faster Score-CAM", batch_size=32, max_channels=16, channel_chunk=16)
def scorecam_fast(probe: Probe, images, classes, max_channels: int = 16, channel_chunk: int = 16):
    return scorecam(probe, images, classes, max_channels=max_channels, channel_chunk=channel_chunk)
