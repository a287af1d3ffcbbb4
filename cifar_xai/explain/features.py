"""What the network computes inside: feature maps, first-layer filters, activation maximisation."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import IMAGE_SIZE
from cifar_xai.explain.inputs import ExplanationError, as_image_batch, check_model, class_id, resolve_layer
from cifar_xai.models import STEM_LAYER


def feature_maps(model: keras.Model, image, layer: str | None = None) -> np.ndarray:
    """Activations of a conv layer for one image, float32 [h, w, channels]."""
    check_model(model)
    layer = resolve_layer(model, layer)
    batch = as_image_batch(image)
    if batch.shape[0] != 1:
        raise ExplanationError(f"feature maps are shown for one image at a time, got {batch.shape[0]}")
    tap = keras.Model(model.input, model.get_layer(layer).output)
    return np.asarray(tf.cast(tap(batch, training=False), tf.float32))[0]


def first_layer_filters(model: keras.Model) -> np.ndarray:
    """The first conv layer's kernels as RGB patches [filters, k, k, 3], each scaled into [0, 1].

    They act on normalised pixels, so a patch shows the colour and edge pattern a filter responds to.
    """
    check_model(model)
    kernel = np.asarray(model.get_layer(STEM_LAYER).kernel, dtype=np.float32)  # [k, k, 3, filters]
    patches = np.transpose(kernel, (3, 0, 1, 2))
    low = patches.min(axis=(1, 2, 3), keepdims=True)
    span = patches.max(axis=(1, 2, 3), keepdims=True) - low
    return np.divide(patches - low, span, out=np.zeros_like(patches), where=span > 0)


def activation_maximization(
    model: keras.Model,
    targets: Sequence[int | str] | None = None,
    layer: str | None = None,
    filters: Sequence[int] | None = None,
    steps: int = 256,
    size: int = IMAGE_SIZE,
    seed: int = 0,
    learning_rate: float = 4.0,
    total_variation: float = 0.02,
) -> np.ndarray:
    """Inputs (uint8 [K, size, size, 3]) that maximise class logits or filters of a conv layer.

    Gradient ascent in pixel space with Adam, random jitter (up to 2 px) and a total-variation
    penalty for smooth images, all K targets optimised together in one compiled step. Our own
    loop rather than tf-keras-vis' ActivationMaximization, which takes one image per call and
    was about 20x slower here for the ten classes of the report.
    """
    check_model(model)
    if (targets is None) == (filters is None):
        raise ExplanationError("activation maximisation takes classes or filters (with their layer), not both")
    if filters is None:
        indices = [class_id(t) for t in targets]
        tap = keras.Model(model.input, model.get_layer("logits").output)
    else:
        layer = resolve_layer(model, layer)
        tap = keras.Model(model.input, model.get_layer(layer).output)
        channels = tap.output.shape[-1]
        indices = [int(f) for f in filters]
        bad = [f for f in indices if not 0 <= f < channels]
        if bad:
            raise ExplanationError(f"filter {bad[0]} is out of range for {layer}; valid: 0-{channels - 1}")
    index = tf.constant(indices, tf.int32)
    count = len(indices)
    pixels = tf.Variable(tf.random.stateless_uniform([count, size, size, 3], [seed, 0], 96.0, 160.0))
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def ascend(step):
        shift = tf.random.stateless_uniform([2], [seed, step], -2, 3, dtype=tf.int32)
        with tf.GradientTape() as tape:
            jittered = tf.roll(pixels, shift=shift, axis=[1, 2])
            output = tf.cast(tap(jittered, training=False), tf.float32)
            if len(output.shape) == 4:  # a conv layer: mean activation of each image's filter
                output = tf.reduce_mean(output, axis=[1, 2])
            score = tf.gather(output, index, axis=1, batch_dims=1)
            smoothness = tf.image.total_variation(pixels) / (size * size)
            loss = -tf.reduce_sum(score - total_variation * smoothness)
        optimizer.apply_gradients([(tape.gradient(loss, pixels), pixels)])
        pixels.assign(tf.clip_by_value(pixels, 0.0, 255.0))

    for step in range(steps):
        ascend(tf.constant(step))
    return np.round(pixels.numpy()).astype(np.uint8)
