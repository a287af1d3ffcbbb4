"""The layers of a prototype network (ProtoPNet, Chen et al., NeurIPS 2019), in Keras 3.

- `PrototypeDistances`: squared L2 distance of every latent patch (1x1 position of the add-on's
  map) to every prototype, [N, H, W, M]; float32 whatever the policy, since a distance is a
  difference of large, close numbers.
- `log_similarity`: ProtoPNet's log((d + 1) / (d + eps)), large when d is small.
- `MinOverPositions`: the smallest distance per prototype, what the cluster and separation costs
  read (and what max-pooling the similarity picks, since the similarity falls with d).
- `OffClassL1`: the L1 penalty on the last layer's weights from a prototype to the classes it
  does not belong to, which makes the final decision rest on own-class evidence.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

LOG_SIMILARITY_EPSILON = 1e-4   # ProtoPNet's epsilon: bounds the similarity at log(1 / 1e-4) ~ 9.2
SOURCE_SHAPE = (32, 32, 3)      # the training images prototypes are pushed onto


def prototype_identity(prototypes_per_class: int, num_classes: int) -> np.ndarray:
    """[M, C] one-hot: prototype j belongs to class j // prototypes_per_class."""
    return np.repeat(np.eye(num_classes, dtype=np.float32), prototypes_per_class, axis=0)


def log_similarity(distances: tf.Tensor) -> tf.Tensor:
    return tf.math.log((distances + 1) / (distances + LOG_SIMILARITY_EPSILON))


@keras.saving.register_keras_serializable(package="cifar_xai")
class PrototypeDistances(layers.Layer):
    """Squared distances [N, H, W, M] from each position's latent vector to the M prototypes."""

    def __init__(self, prototypes: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.prototypes = prototypes

    def build(self, input_shape):
        # ProtoPNet initialises prototypes uniformly in [0, 1], the range of the sigmoid add-on.
        self.vectors = self.add_weight(name="prototypes", shape=(self.prototypes, input_shape[-1]),
                                       initializer=keras.initializers.RandomUniform(0.0, 1.0), dtype="float32")
        # Where push found each prototype, carried inside the model file (and the SavedModel), so
        # "which training image does this look like?" needs no dataset: the image, the position
        # of its latent patch [image index in the split, row, column] and the box of its most
        # similar pixels [top, left, bottom, right]. Index -1 until the prototypes are pushed.
        self.source_images = self.add_weight(name="source_images", shape=(self.prototypes, *SOURCE_SHAPE),
                                             initializer="zeros", trainable=False, dtype="float32")
        self.source_positions = self.add_weight(name="source_positions", shape=(self.prototypes, 3),
                                                initializer=keras.initializers.Constant(-1), trainable=False,
                                                dtype="int32")
        self.source_boxes = self.add_weight(name="source_boxes", shape=(self.prototypes, 4), initializer="zeros",
                                            trainable=False, dtype="int32")

    def call(self, inputs):
        z = tf.cast(inputs, tf.float32)
        # ||z - p||^2 = ||z||^2 - 2 z.p + ||p||^2, clipped at 0 against round-off.
        cross = tf.einsum("nhwd,md->nhwm", z, self.vectors)
        squared = tf.reduce_sum(z * z, axis=-1, keepdims=True) + tf.reduce_sum(self.vectors**2, axis=-1)
        return tf.nn.relu(squared - 2 * cross)

    def get_config(self) -> dict:
        return {**super().get_config(), "prototypes": self.prototypes}


@keras.saving.register_keras_serializable(package="cifar_xai")
class LogSimilarity(layers.Layer):
    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, distances):
        return log_similarity(tf.cast(distances, tf.float32))


@keras.saving.register_keras_serializable(package="cifar_xai")
class MinOverPositions(layers.Layer):
    """[N, H, W, M] -> [N, M]: each prototype's smallest distance over the map."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, distances):
        return tf.reduce_min(tf.cast(distances, tf.float32), axis=[1, 2])


@keras.saving.register_keras_serializable(package="cifar_xai")
class OffClassL1(keras.regularizers.Regularizer):
    """strength * sum |W[j, k]| over the classes k that prototype j does not belong to."""

    def __init__(self, strength: float, prototypes_per_class: int, num_classes: int):
        self.strength = float(strength)
        self.prototypes_per_class = int(prototypes_per_class)
        self.num_classes = int(num_classes)
        self._off = tf.constant(1 - prototype_identity(prototypes_per_class, num_classes))

    def __call__(self, kernel):
        return self.strength * tf.reduce_sum(tf.abs(kernel) * self._off)

    def get_config(self) -> dict:
        return {"strength": self.strength, "prototypes_per_class": self.prototypes_per_class,
                "num_classes": self.num_classes}
