"""Deletion and insertion curves (Petsiuk et al., RISE, 2018).

Pixels are ranked by attribution, most important first. Deletion replaces them, a block at a time,
with black and tracks the explained class's probability: a faithful map makes it fall fast (low
AUC). Insertion starts from a blurred copy and puts the original pixels back in the same order:
the probability should rise fast (high AUC). A random ranking is the reference.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.interpretability.registry import Evaluation, ExplanationMetric, Figure, register
from cifar_xai.interpretability.settings import Settings
from cifar_xai.probes import predict


def blur(images: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Gaussian blur per channel (reflect-padded), the insertion game's starting canvas."""
    radius = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    x = tf.constant(images, tf.float32)
    x = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    channels = x.shape[-1]
    row_kernel = tf.constant(np.tile(taps[:, None, None, None], (1, 1, channels, 1)))
    col_kernel = tf.constant(np.tile(taps[None, :, None, None], (1, 1, channels, 1)))
    x = tf.nn.depthwise_conv2d(x, row_kernel, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(x, col_kernel, [1, 1, 1, 1], "VALID").numpy()


def ranks(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per map, each pixel's position in the importance order (0 = most important) [N, H, W].

    Ties (e.g. the zeros of a ReLU-ed map) are broken at random, not by pixel position, so a flat
    region is not removed top-left first.
    """
    count, height, width = maps.shape
    jitter = np.random.default_rng(seed).uniform(size=(count, height * width))
    order = np.lexsort((jitter, -maps.reshape(count, -1)), axis=-1)
    positions = np.empty_like(order)
    np.put_along_axis(positions, order, np.arange(height * width)[None].repeat(count, 0), axis=1)
    return positions.reshape(count, height, width)


GAMES = ("deletion", "insertion")


def _canvases(images: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(start, end) per game: deletion goes from the image to black, insertion from a blur to the image."""
    return {"deletion": (images, np.zeros_like(images)), "insertion": (blur(images), images)}


def _class_probability(model, canvas: np.ndarray, classes: np.ndarray, batch_size: int) -> np.ndarray:
    return predict(model, canvas, batch_size)[np.arange(len(canvas)), classes]


def endpoints(model: keras.Model, images: np.ndarray, classes: np.ndarray,
              batch_size: int = 1024) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first and last point of each game's curves: independent of the map, so computed once."""
    images = np.asarray(images, np.float32)
    return {game: (_class_probability(model, start, classes, batch_size),
                   _class_probability(model, end, classes, batch_size))
            for game, (start, end) in _canvases(images).items()}


def curves(model: keras.Model, images: np.ndarray, maps: np.ndarray, classes: np.ndarray, steps: int = 8,
           batch_size: int = 1024, seed: int = 0,
           known_endpoints: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Probability of `classes` after each step of deletion and of insertion: [N, steps + 1] each."""
    images = np.asarray(images, np.float32)
    order = ranks(maps, seed)
    pixels = order.shape[1] * order.shape[2]
    known = known_endpoints or endpoints(model, images, classes, batch_size)
    results = {}
    for game, (start, end) in _canvases(images).items():
        probabilities = np.zeros((len(images), steps + 1), np.float32)
        probabilities[:, 0], probabilities[:, steps] = known[game]
        for step in range(1, steps):
            changed = (order < round(step / steps * pixels))[..., None]
            probabilities[:, step] = _class_probability(model, np.where(changed, end, start), classes, batch_size)
        results[game] = probabilities
    return results


def area_under(curve: np.ndarray) -> np.ndarray:
    """Trapezoid area of each curve over an x-axis from 0 to 1."""
    return np.trapezoid(curve, dx=1.0 / (curve.shape[-1] - 1), axis=-1)


@register
class DeletionInsertion(ExplanationMetric):
    # "faithfulness": the name its timing and log have always had.
    name, title, group = "faithfulness", "Deletion / insertion", "faithfulness"

    def figures(self, settings: Settings) -> tuple[Figure, ...]:
        return (Figure("deletion_auc", "deletion AUC", "lower"),
                Figure("insertion_auc", "insertion AUC", "higher", headline=True))

    def evaluate(self, evaluation: Evaluation) -> dict[str, dict]:
        settings, results = evaluation.settings, {}
        images, predicted = evaluation.first(settings.faithfulness_images)
        mean_curves: dict[str, dict[str, np.ndarray]] = {"deletion": {}, "insertion": {}}
        known = endpoints(evaluation.model, images, predicted)  # the same for every method
        for name in evaluation.methods:
            maps = evaluation.first_maps(name, len(images))
            found = curves(evaluation.model, images, maps, predicted, settings.faithfulness_steps,
                           seed=settings.seed, known_endpoints=known)
            results[name] = {f"{game}_auc": float(area_under(values).mean()) for game, values in found.items()}
            for game, values in found.items():
                mean_curves[game][name] = values.mean(0)
        evaluation.artifacts["curves"] = mean_curves
        return results

    def describe(self, evaluation: Evaluation) -> str:
        return f"deletion / insertion: {evaluation.count(evaluation.settings.faithfulness_images)} images"
