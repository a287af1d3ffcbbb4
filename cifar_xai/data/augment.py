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


# AugMix (Hendrycks et al., ICLR 2020): a share of the images is replaced by a mix of the clean
# image and MIX_WIDTH chains of 1 to MIX_DEPTH operations, so that the network sees many mild,
# compound changes instead of one strong one. AugMix's operations exclude those that resemble the
# test corruptions (noise, blur, contrast, brightness...), so what the mix teaches transfers to
# changes it never saw; the three corruption-like changes above stay a lever of their own.
MIX_WIDTH = 3
MIX_DEPTH = 3
MIX_OPERATIONS = 4   # autocontrast, posterize, solarize, affine (rotate / shear / translate)
MAX_ROTATION = 30.0  # degrees, AugMix's
MAX_SHEAR = 0.3      # AugMix's
MAX_TRANSLATE = 4.0  # px: AugMix's third of the image would push a 32x32 object out of view


def _autocontrast(images: tf.Tensor, strength: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    return (images - low) * (255.0 / tf.maximum(high - low, 1.0))


def _posterize(images: tf.Tensor, strength: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    step = 2.0 ** tf.round(4 * strength)  # keep 8 down to 4 bits
    return tf.floor(images / step) * step


def _solarize(images: tf.Tensor, strength: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    threshold = 256.0 - 128.0 * strength
    return tf.where(images >= threshold, 255.0 - images, images)


def _affine(images: tf.Tensor, strength: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Each image rotated, sheared along x or y, or translated (one of the four, at random),
    about its centre, with reflected borders."""
    batch, size = tf.shape(images)[0], float(images.shape[1])
    kind_seed, sign_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    kind = tf.random.stateless_uniform([batch], kind_seed, 0, 4, dtype=tf.int32)
    sign = tf.where(tf.random.stateless_uniform([batch], sign_seed) < 0.5, -1.0, 1.0)
    amount = sign * tf.reshape(strength, [-1])
    centre = (size - 1) / 2
    angle = amount * MAX_ROTATION * np.pi / 180
    cos, sin, zero, one = tf.cos(angle), tf.sin(angle), tf.zeros_like(amount), tf.ones_like(amount)
    # Output pixel (x, y) reads input ((a0 x + a1 y + a2), (b0 x + b1 y + b2)).
    rotate = tf.stack([cos, -sin, centre - cos * centre + sin * centre,
                       sin, cos, centre - sin * centre - cos * centre], axis=1)
    shear = amount * MAX_SHEAR
    shear_x = tf.stack([one, shear, -shear * centre, zero, one, zero], axis=1)
    shear_y = tf.stack([one, zero, zero, shear, one, -shear * centre], axis=1)
    shift = amount * MAX_TRANSLATE
    translate_x = tf.stack([one, zero, shift, zero, one, zero], axis=1)
    translate = tf.where(((tf.range(batch) % 2) == 0)[:, None], translate_x,
                         tf.stack([one, zero, zero, zero, one, shift], axis=1))
    matrices = tf.gather(tf.stack([rotate, shear_x, shear_y, translate], axis=1), kind, batch_dims=1)
    transforms = tf.concat([matrices, tf.zeros([batch, 2])], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")


_OPERATIONS = (_autocontrast, _posterize, _solarize, _affine)


def mix_augment(images: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """`images` (float32 [N, H, W, 3] in 0..255) with `probability` of them replaced by AugMix's
    mix: m * image + (1 - m) * sum_i w_i chain_i(image), w ~ Dirichlet(1), m ~ Beta(1, 1).

    To keep the cost a sliver of a step on a CPU, every slot of every chain applies one operation
    to the whole batch (chosen per batch), each image with its own strength; the images still
    differ by their strengths, their chains' depths and their mixing weights."""
    if probability <= 0:
        return images
    seeds = tf.random.experimental.stateless_split(seed, 4 + 3 * MIX_WIDTH * MIX_DEPTH)
    # Only the chosen images are transformed: the chains cost their share of the batch.
    chosen = tf.where(tf.random.stateless_uniform([tf.shape(images)[0]], seeds[0]) < probability)
    clean = tf.gather_nd(images, chosen)
    count = tf.shape(clean)[0]
    # Dirichlet(1) weights: normalised exponentials; Beta(1, 1): uniform.
    weights = -tf.math.log(tf.random.stateless_uniform([count, MIX_WIDTH], seeds[1], 1e-6, 1.0))
    weights /= tf.reduce_sum(weights, axis=1, keepdims=True)
    keep = tf.random.stateless_uniform([count, 1, 1, 1], seeds[2])
    depths = tf.random.stateless_uniform([count, MIX_WIDTH], seeds[3], 1, MIX_DEPTH + 1, dtype=tf.int32)
    mixed = tf.zeros_like(clean)
    slot = 4
    for chain in range(MIX_WIDTH):
        out = clean
        for depth in range(MIX_DEPTH):
            pick, strength_seed, op_seed = seeds[slot], seeds[slot + 1], seeds[slot + 2]
            slot += 3
            strength = tf.random.stateless_uniform([count, 1, 1, 1], strength_seed)
            which = tf.random.stateless_uniform([], pick, 0, MIX_OPERATIONS, dtype=tf.int32)
            branches = [lambda op=op, out=out, strength=strength, op_seed=op_seed: op(out, strength, op_seed)
                        for op in _OPERATIONS]
            changed = tf.switch_case(which, branches)
            out = tf.where((depths[:, chain] > depth)[:, None, None, None], changed, out)
        mixed += weights[:, chain, None, None, None] * out
    blended = tf.clip_by_value(keep * clean + (1 - keep) * mixed, 0, 255)
    return tf.tensor_scatter_nd_update(images, chosen, blended)
