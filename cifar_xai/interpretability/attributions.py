"""Methods and negative-control baselines behind one function, so every metric treats them alike.

Baselines ignore the model on purpose: a metric that scores them as well as a method does not
measure the model's reasoning.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.explain.core import explain

BASELINES = ("random", "gaussian", "sobel")


def _random(images: np.ndarray, seed: int) -> np.ndarray:
    # Seeded by the image content, so a map is a fixed function of its image (as a method is).
    maps = []
    for image in images:
        digest = int(np.asarray(image, np.float64).sum() * 1000) % (2**31)
        maps.append(np.random.default_rng([seed, digest]).uniform(size=image.shape[:2]))
    return np.stack(maps).astype(np.float32)


def _gaussian(images: np.ndarray) -> np.ndarray:
    height, width = images.shape[1:3]
    rows = (np.arange(height) - (height - 1) / 2) / (height / 4)
    cols = (np.arange(width) - (width - 1) / 2) / (width / 4)
    centred = np.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2)).astype(np.float32)
    return np.broadcast_to(centred, images.shape[:3]).copy()


def _sobel(images: np.ndarray) -> np.ndarray:
    gray = tf.reduce_mean(tf.constant(images, tf.float32), axis=-1, keepdims=True)
    edges = tf.image.sobel_edges(gray)  # [N, H, W, 1, 2]
    return tf.norm(edges[..., 0, :], axis=-1).numpy()


def attribution_maps(
    model: keras.Model,
    images: np.ndarray,
    name: str,
    classes: Sequence[int] | np.ndarray,
    seed: int = 0,
    **options,
) -> np.ndarray:
    """Non-negative maps [N, H, W] at the images' size, on each method's own scale (not normalised)."""
    images = np.asarray(images, np.float32)
    if name == "random":
        return _random(images, seed)
    if name == "gaussian":
        return _gaussian(images)
    if name == "sobel":
        return _sobel(images)
    return explain(model, images, name, classes=list(np.asarray(classes).tolist()), normalize=False, **options)
