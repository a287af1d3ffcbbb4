"""From a method's raw map to what users see: upsampled to the image, normalised into [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

NON_FINITE = "explanation map has NaN or infinite values"


def normalize_maps(maps: tf.Tensor) -> tf.Tensor:
    """Min-max per map into [0, 1]; a constant map becomes zeros, never NaN."""
    low = tf.reduce_min(maps, axis=[1, 2], keepdims=True)
    span = tf.reduce_max(maps, axis=[1, 2], keepdims=True) - low
    return tf.math.divide_no_nan(maps - low, span)


def upsample(maps: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


def finish_maps(raw: tf.Tensor, size: Sequence[int], normalize: bool = True) -> tf.Tensor:
    """Raw maps at any resolution -> float32 maps at `size`, normalised into [0, 1] unless asked not to.

    A NaN or infinite value is an error (InvalidArgumentError, in a graph too), never a map of zeros."""
    maps = upsample(tf.debugging.assert_all_finite(tf.cast(raw, tf.float32), NON_FINITE), size)
    return normalize_maps(maps) if normalize else maps
