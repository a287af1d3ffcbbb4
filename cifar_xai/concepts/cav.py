"""Concept Activation Vectors (Kim et al., ICML 2018): the normal of a linear classifier that
separates a concept's images from random images in one layer's activations.

The classifier is a ridge classifier, solved in closed form through the images' Gram matrix (a
few dozen images against thousands of dimensions), so a CAV is deterministic given its images
and costs milliseconds. A third of each set is held out and the CAV's accuracy on it is kept:
a CAV that cannot tell the concept from random images on unseen ones measures nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from cifar_xai.config import CAV_RIDGE
from cifar_xai.probes import layer_activations

HELD_OUT = 1 / 3   # tcav's test_size


@dataclass(frozen=True)
class CAV:
    direction: np.ndarray      # float64 [D], unit norm, pointing towards the concept
    accuracy: float            # on the held-out concept and random images


def activations(model: keras.Model, images, layer: str) -> np.ndarray:
    """The layer's activations for `images` (raw pixels), flattened: float32 [N, H * W * C]."""
    return layer_activations(model, images, layer).reshape(len(images), -1)


def _held_out_split(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(count)
    cut = count - max(1, int(round(count * HELD_OUT)))
    return order[:cut], order[cut:]


def fit_cav(concept: np.ndarray, random: np.ndarray, seed: int = 0, ridge: float = CAV_RIDGE) -> CAV:
    """The CAV of `concept` against `random` activations ([N, D] each, at least 3 images each)."""
    rng = np.random.default_rng(seed)
    (c_fit, c_test), (r_fit, r_test) = _held_out_split(len(concept), rng), _held_out_split(len(random), rng)
    x = np.concatenate([concept[c_fit], random[r_fit]]).astype(np.float64)
    y = np.concatenate([np.ones(len(c_fit)), -np.ones(len(r_fit))])
    mean, y_mean = x.mean(axis=0), y.mean()
    centred = x - mean
    gram = centred @ centred.T
    penalty = ridge * np.trace(gram) / len(x) + 1e-12
    # Ridge in its dual form: w = X^T (X X^T + penalty I)^-1 y, an [n, n] solve instead of [D, D].
    weights = centred.T @ np.linalg.solve(gram + penalty * np.eye(len(x)), y - y_mean)
    bias = y_mean - mean @ weights
    held_x = np.concatenate([concept[c_test], random[r_test]]).astype(np.float64)
    held_y = np.concatenate([np.ones(len(c_test)), -np.ones(len(r_test))])
    accuracy = float(np.mean(np.sign(held_x @ weights + bias) == held_y))
    norm = np.linalg.norm(weights)
    return CAV(weights / norm if norm > 0 else weights, accuracy)
