"""Reading a model from the inside: a layer's activations with the logits, predictions in batches.

What every part above the models needs (explanation methods, concepts, prototype push, OOD
scores, the corruption benchmark) and nothing of theirs: sub-models and their traced functions
are built once per (model, layer) and cached without keeping the model alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.models import LOGITS_LAYER, compiled_forward, has_gap_head


class Probe:
    """A model opened at one layer: returns that layer's activations and the logits, in float32.

    Sub-models and their compiled functions are built once per (model, layer) and reused.
    """

    def __init__(self, model: keras.Model, layer: str):
        # A weak reference: probes are cached per model, and must not keep their model alive.
        self._model = weakref.ref(model)
        self.layer = layer
        self.has_gap_head = has_gap_head(model)
        self._taps = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer(LOGITS_LAYER).output])
        self._compiled: dict = {}

    @property
    def model(self) -> keras.Model:
        model = self._model()
        if model is None:
            raise ValueError("the model of this probe has been deleted")
        return model

    def raw_outputs(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The layer's activations in the model's compute dtype (bfloat16 under mixed precision)."""
        return self._taps(images, training=False)

    def features_and_logits(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features, logits = self.raw_outputs(images)
        return tf.cast(features, tf.float32), tf.cast(logits, tf.float32)

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        return self.features_and_logits(images)[1]

    def compiled(self, key, build: Callable[[], Callable]) -> Callable:
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def probe_for(model: keras.Model, layer: str) -> Probe:
    per_model = _PROBES.setdefault(model, {})
    if layer not in per_model:
        per_model[layer] = Probe(model, layer)
    return per_model[layer]


def layer_activations(model: keras.Model, images, layer: str, batch_size: int = 250) -> np.ndarray:
    """A layer's activations for raw images, in batches, float32 [N, H, W, C]: what CAVs, concept
    discovery and prototype push read."""
    probe = probe_for(model, layer)
    images = np.asarray(images)
    return np.concatenate([
        probe.features_and_logits(tf.convert_to_tensor(images[i:i + batch_size], tf.float32))[0].numpy()
        for i in range(0, len(images), batch_size)
    ])


def spatial_layers(model: keras.Model) -> list[str]:
    """Names of the layers the CAM family can read: every conv block's output, deepest first."""
    names = [layer.name for layer in model.layers if isinstance(layer, keras.layers.ReLU)
             and len(layer.output.shape) == 4]
    return names[::-1]


def predict(model: keras.Model, images: tf.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities, float32, in batches, through the model's one traced forward pass."""
    forward = compiled_forward(model)
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape[0] == 0:  # TensorFlow's CPU convolution mishandles an empty batch: skip the model
        return np.zeros((0, *model.output.shape[1:]), np.float32)
    return np.concatenate([
        np.asarray(tf.cast(forward(images[i:i + batch_size]), tf.float32))
        for i in range(0, images.shape[0], batch_size)
    ])


def class_scores(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """logits[i, classes[i]] for each image: the score every gradient method differentiates."""
    return tf.gather(logits, classes, axis=1, batch_dims=1)
