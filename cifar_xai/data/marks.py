"""A planted shortcut: a small coloured mark stamped in a corner of some images of one class.

The controlled experiment of the TCAV paper (Kim et al., ICML 2018, section 4.3): when a share of
one class's training images carries a mark no other class has, the network may learn "mark means
this class". Because we planted it, we know the answer every concept and attribution method
should give, which makes it a test of those methods (`benchmarks/shortcut.py`) and, with a
user's own mark, a "Clever Hans" detector.

Which images get the mark, and in which corner, is a hash of the image's index in its split and
the run's seed: the same images carry it in every epoch, as a real watermark would.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_xai.config import MARK_COLOUR, MARK_MARGIN, MARK_SIZE

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def mark_box(corner: int, size: int = 32) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), bottom and right exclusive, of the mark in `corner` (0-3)."""
    far = size - MARK_MARGIN - MARK_SIZE
    top = MARK_MARGIN if corner in (0, 1) else far
    left = MARK_MARGIN if corner in (0, 2) else far
    return top, left, top + MARK_SIZE, left + MARK_SIZE


def mark_masks(size: int = 32) -> np.ndarray:
    """float32 [4, size, size, 1]: 1 on the mark of each corner, 0 elsewhere."""
    masks = np.zeros((len(CORNERS), size, size, 1), np.float32)
    for corner in range(len(CORNERS)):
        top, left, bottom, right = mark_box(corner, size)
        masks[corner, top:bottom, left:right] = 1
    return masks


def stamp(images, corners) -> tf.Tensor:
    """float32 images (0..255, [N, H, W, 3], H == W) with the mark in corner `corners[i]`; -1 leaves
    an image as it was. Graph-safe: the training pipeline stamps whole batches with it."""
    images = tf.cast(images, tf.float32)
    corners = tf.cast(corners, tf.int32)
    masks = tf.gather(tf.constant(mark_masks(images.shape[1])), tf.maximum(corners, 0))
    masks *= tf.cast(corners >= 0, tf.float32)[:, None, None, None]
    return images * (1 - masks) + tf.constant(MARK_COLOUR, tf.float32) * masks


def _hash(indices: tf.Tensor, seed: int, salt: int) -> tf.Tensor:
    # Knuth's multiplicative hash of (index, seed, salt), as `alternating_flips` uses, in [0, 2**32).
    return (tf.cast(indices, tf.int64) * 2654435761 + seed * 40503 + salt * 97) % (1 << 32)


def planted_corners(indices, labels, target: int, share: float, seed: int) -> tf.Tensor:
    """int32 [N]: the corner of the mark each image gets, -1 for none. `share` of the images labelled
    `target` (chosen by index, not by batch, so the same ones every epoch) get one."""
    chosen = tf.cast(_hash(indices, seed, 1), tf.float64) / float(1 << 32) < share
    corner = tf.cast(_hash(indices, seed, 2) // (1 << 16) % len(CORNERS), tf.int32)
    marked = tf.logical_and(chosen, tf.equal(tf.cast(labels, tf.int64), target))
    return tf.where(marked, corner, -1)


def random_corners(count: int, seed: int = 0) -> np.ndarray:
    """A random corner for each of `count` images: how test images are stamped."""
    return np.random.default_rng(seed).integers(0, len(CORNERS), count).astype(np.int32)
