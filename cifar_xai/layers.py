"""The layers of the network that Keras does not offer as such: airbench's BatchNorm and the
patch-whitening stem, with their initialisations.

Both are registered with Keras, so a saved `.keras` file loads once `cifar_xai.models` is imported
(`cifar_xai.model_io.load_model` does that).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="cifar_xai")
class BatchNorm(layers.BatchNormalization):
    """BatchNorm without a scale, with a faster-learning offset, on TensorFlow's fused kernel.

    - No scale (gamma = 1), as in airbench: after a ReLU the next conv rescales freely, and a
      learned scale only adds a direction in which weight decay and the learning rate fight.
    - The offset learns `offset_lr_scale` times faster than the other weights (airbench's
      `bias_scaler` 64). Keras optimizers have one learning rate, so the offset is stored divided
      by sqrt(scale) and multiplied back here: under SGD that multiplies its step by exactly `scale`.
    - Training uses `FusedBatchNormV3`, one oneDNN kernel in bfloat16, instead of Keras' float32
      moments plus a separate normalisation: 1.13x the whole training step of the default network
      on this project's CPU (benchmarks/training_speed.py).
    """

    def __init__(self, offset_lr_scale: float = 64.0, **kwargs):
        kwargs["scale"] = False
        # The offset and statistics stay float32 even when the layer computes in bfloat16.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.offset_lr_scale = offset_lr_scale

    def _offset(self) -> tf.Tensor:
        return self.beta * np.sqrt(self.offset_lr_scale).astype("float32")

    def call(self, inputs, training=None, mask=None):
        if len(inputs.shape) == 2:  # the fused kernel wants images: treat features as 1x1 maps
            return self.call(inputs[:, None, None, :], training)[:, 0, 0, :]
        channels = inputs.shape[-1]
        ones = tf.ones([channels], tf.float32)
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, ones, self._offset(), epsilon=self.epsilon, is_training=True
            )[:3]
            self.moving_mean.assign(self.momentum * self.moving_mean + (1 - self.momentum) * mean)
            self.moving_variance.assign(self.momentum * self.moving_variance + (1 - self.momentum) * variance)
            return outputs
        return tf.compat.v1.nn.fused_batch_norm(
            inputs, ones, self._offset(), self.moving_mean, self.moving_variance,
            epsilon=self.epsilon, is_training=False,
        )[0]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(offset_lr_scale=self.offset_lr_scale)
        config.pop("scale", None)
        return config


@keras.saving.register_keras_serializable(package="cifar_xai")
class Whitening(layers.Conv2D):
    """A conv layer whose kernel is fixed (`cifar_xai.models.fit_whitening` sets it); its bias trains."""

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel.trainable = False


def whitening_kernel(patches: np.ndarray, epsilon: float) -> np.ndarray:
    """Conv kernel [k, k, c, 2 * k * k * c] that whitens k x k patches [N, k, k, c] (airbench's stem).

    The kernels are the patch covariance's eigenvectors scaled by 1 / sqrt(eigenvalue), and their
    negatives: after a ReLU, each direction keeps both signs.
    """
    count, size, _, channels = patches.shape
    flat = patches.reshape(count, -1).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(flat.T @ flat / count)
    # Largest first, so the filters read from the most to the least energetic direction.
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    kernels = eigenvectors / np.sqrt(eigenvalues + epsilon)
    kernels = kernels.reshape(size, size, channels, -1)
    return np.concatenate([kernels, -kernels], axis=-1).astype(np.float32)


def dirac_(kernel: keras.Variable) -> None:
    """Make the first min(in, out) filters of a conv kernel [k, k, in, out] identities (airbench):
    a freshly built deep network then starts close to passing its input through."""
    value = np.array(kernel.numpy())
    size, _, inputs, outputs = value.shape
    identities = min(inputs, outputs)
    value[:, :, :, :identities] = 0
    value[size // 2, size // 2, np.arange(identities), np.arange(identities)] = 1
    kernel.assign(value)


@keras.saving.register_keras_serializable(package="cifar_xai")
class Temperature(layers.Layer):
    """Divides the logits by a fitted temperature (Guo et al. 2017): calibrated probabilities.

    A non-trainable float32 weight, so the value travels with the saved model and the export.
    Dividing every logit by one positive number keeps the class ranking, the argmax, and the
    logits layer itself (whose kernel makes CAM exact) unchanged.
    """

    def __init__(self, temperature: float = 1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initial_temperature = float(temperature)

    def build(self, input_shape):
        self.temperature = self.add_weight(
            name="temperature", shape=(), initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False, dtype="float32",
        )

    def call(self, inputs):
        return tf.cast(inputs, tf.float32) / self.temperature

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(temperature=float(self.temperature.numpy()) if self.built else self.initial_temperature)
        return config
