"""Corruption-like training augmentation: what keeps the network working on noisy, blurred or
washed-out photos, done on whole batches on the graph so it costs a sliver of a training step.

Each image independently gets, with probability `probability`, one of three changes in equal
parts, with a random strength:

- Gaussian pixel noise, standard deviation uniform in [0, noise_max] (pixels in 0..1);
- blur: a mix of the image and its Gaussian blur (sigma 1 px), the blurred share uniform in [0, 1];
- lowered contrast: pulled towards the image's mean colour by a factor uniform in [0.2, 1].

Noise is one of the 15 test corruptions (Rusak et al., ECCV 2020, train on it for the same reason:
it teaches the network to ignore high-frequency energy); the other 14 are never trained on.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

BLUR_SIGMA = 1.0
MIN_CONTRAST = 0.2


def _gaussian_kernel(sigma: float) -> tf.Tensor:
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    taps /= taps.sum()
    kernel = np.outer(taps, taps)[:, :, None, None] * np.ones((1, 1, 3, 1))
    return tf.constant(kernel, tf.float32)


def corruption_augment(images: tf.Tensor, seed: tf.Tensor, probability: float, noise_max: float) -> tf.Tensor:
    """`images` (float32 [N, H, W, 3] in 0..255) with the changes above; `seed` a stateless seed [2]."""
    if probability <= 0:
        return images
    choice_seed, strength_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    batch = tf.shape(images)[0]
    # 0: unchanged, 1: noise, 2: blur, 3: contrast.
    pick = tf.random.stateless_uniform([batch], choice_seed)
    kind = tf.where(pick < probability, 1 + tf.cast(pick / probability * 3, tf.int32) % 3, 0)
    strength = tf.random.stateless_uniform([batch, 1, 1, 1], strength_seed)

    sigma = strength * noise_max * 255.0
    noisy = tf.clip_by_value(images + sigma * tf.random.stateless_normal(tf.shape(images), noise_seed), 0, 255)
    padded = tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, _gaussian_kernel(BLUR_SIGMA), [1, 1, 1, 1], "VALID")
    blurred = images + strength * (blurred - images)
    factor = MIN_CONTRAST + (1 - MIN_CONTRAST) * strength
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    washed = mean + factor * (images - mean)

    kind = kind[:, None, None, None]
    out = tf.where(kind == 1, noisy, images)
    out = tf.where(kind == 2, blurred, out)
    return tf.where(kind == 3, washed, out)
