"""What the network computes inside: feature maps, first-layer filters, activation maximisation."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.explain.core import ExplanationError, as_image_batch, check_model, class_id, resolve_layer

FIRST_CONV = "stem_conv"


def feature_maps(model: keras.Model, image, layer: str | None = None) -> np.ndarray:
    """Activations of a conv layer for one image, float32 [h, w, channels]."""
    check_model(model)
    layer = resolve_layer(model, layer)
    batch = as_image_batch(image)
    if batch.shape[0] != 1:
        raise ExplanationError(f"feature maps are shown for one image at a time, got {batch.shape[0]}")
    tap = keras.Model(model.inputs, model.get_layer(layer).output)
    return np.asarray(tf.cast(tap(batch, training=False), tf.float32))[0]


def first_layer_filters(model: keras.Model) -> np.ndarray:
    """The first conv layer's kernels as RGB patches [filters, k, k, 3], each scaled into [0, 1].

    They act on normalised pixels, so a patch shows the colour and edge pattern a filter responds to.
    """
    check_model(model)
    kernel = np.asarray(model.get_layer(FIRST_CONV).kernel, dtype=np.float32)  # [k, k, 3, filters]
    patches = np.transpose(kernel, (3, 0, 1, 2))
    low = patches.min(axis=(1, 2, 3), keepdims=True)
    span = patches.max(axis=(1, 2, 3), keepdims=True) - low
    return np.divide(patches - low, span, out=np.zeros_like(patches), where=span > 0)


def activation_maximization(
    model: keras.Model,
    target: int | str | None = None,
    layer: str | None = None,
    filter_index: int | None = None,
    steps: int = 256,
    size: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """An input (uint8 [size, size, 3]) that maximises a class logit or one filter of a conv layer.

    Uses tf-keras-vis' ActivationMaximization with its jitter and total-variation regularisers;
    the class variant optimises the logit (softmax removed), as the method intends.
    """
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.utils.scores import CategoricalScore

    check_model(model)
    if (target is None) == (filter_index is None):
        raise ExplanationError("activation maximisation takes a class or a filter (with its layer), not both")
    if filter_index is None:
        tap = keras.Model(model.inputs, model.get_layer("logits").output)
        score = CategoricalScore(class_id(target))
    else:
        layer = resolve_layer(model, layer)
        tap = keras.Model(model.inputs, model.get_layer(layer).output)
        channels = tap.output.shape[-1]
        if not 0 <= filter_index < channels:
            raise ExplanationError(f"filter {filter_index} is out of range for {layer}; valid: 0-{channels - 1}")

        def score(output):
            return tf.reduce_mean(tf.cast(output[..., filter_index], tf.float32), axis=[1, 2])

    seed_input = tf.random.stateless_uniform([1, size, size, 3], [seed, 0], 96, 160)
    visualizer = ActivationMaximization(tap, clone=False)
    result = visualizer(score, seed_input=seed_input, steps=steps, input_range=(0, 255))
    return np.clip(np.asarray(result)[0], 0, 255).astype(np.uint8)
