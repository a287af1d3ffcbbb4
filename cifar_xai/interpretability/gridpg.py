"""Grid Pointing Game (Rao, Böhle & Schiele, CVPR 2022), as in the B-cos CIFAR-10 protocol.

n x n test images of distinct classes, each classified correctly and confidently, are tiled into
one canvas that the GAP network classifies as is. Each grid is explained for one cell's class;
the score is the share of the (positive) attribution that falls inside that cell. Uniform
attribution scores 1 / n^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cifar_xai.interpretability.registry import Evaluation, ExplanationMetric, Figure, register
from cifar_xai.interpretability.settings import Settings


@dataclass(frozen=True)
class Grids:
    canvases: np.ndarray   # uint8 [G, 32n, 32n, 3]
    target_cell: np.ndarray  # int [G], row-major cell index
    target_class: np.ndarray  # int [G]
    cell_classes: np.ndarray  # int [G, n * n]
    size: int


def confident_pool(probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.9) -> dict[int, np.ndarray]:
    """Per class, the indices of test images predicted correctly with probability >= threshold."""
    predicted = probabilities.argmax(1)
    confidence = probabilities.max(1)
    good = (predicted == labels) & (confidence >= threshold)
    return {k: np.flatnonzero(good & (labels == k)) for k in np.unique(labels)}


def make_grids(images: np.ndarray, pool: dict[int, np.ndarray], size: int, count: int, seed: int = 0) -> Grids:
    rng = np.random.default_rng(seed)
    usable = [k for k, indices in pool.items() if len(indices)]
    if len(usable) < size * size:
        raise ValueError(f"a {size}x{size} grid needs {size * size} classes with confident correct images, "
                         f"only {len(usable)} have any")
    side = images.shape[1]
    canvases = np.zeros((count, side * size, side * size, 3), np.uint8)
    cell_classes = np.zeros((count, size * size), np.int64)
    for g in range(count):
        classes = rng.choice(usable, size=size * size, replace=False)
        cell_classes[g] = classes
        for cell, k in enumerate(classes):
            row, col = divmod(cell, size)
            canvases[g, row * side:(row + 1) * side, col * side:(col + 1) * side] = images[rng.choice(pool[k])]
    target_cell = rng.integers(0, size * size, size=count)
    return Grids(canvases, target_cell, cell_classes[np.arange(count), target_cell], cell_classes, size)


def cell_shares(maps: np.ndarray, size: int, target_cell: np.ndarray) -> np.ndarray:
    """Share of each map's positive mass inside its target cell; an all-zero map scores 1 / size^2."""
    positive = np.clip(maps, 0, None)
    height, width = positive.shape[1:3]
    per_cell = positive.reshape(len(maps), size, height // size, size, width // size).sum(axis=(2, 4))
    per_cell = per_cell.reshape(len(maps), size * size)
    total = per_cell.sum(1)
    inside = per_cell[np.arange(len(maps)), target_cell]
    return np.where(total > 0, inside / np.where(total > 0, total, 1), 1.0 / (size * size))


def summarize(scores: np.ndarray) -> dict:
    q1, median, q3 = np.percentile(scores, [25, 50, 75])
    return {"median": float(median), "iqr": [float(q1), float(q3)], "mean": float(scores.mean()), "grids": len(scores)}


def key(size: int, statistic: str = "median") -> str:
    """The metrics.json key of a grid size's statistic ("median" or "iqr")."""
    return f"gridpg_{size}x{size}_{statistic}"


@register
class GridPointingGame(ExplanationMetric):
    name, title, group = "gridpg", "Grid pointing game", "localisation"
    # The GAP network (and prototype_cnn's max over positions) classify the larger canvas as it is.
    needs = frozenset({"any_input_size"})

    def figures(self, settings: Settings) -> tuple[Figure, ...]:
        out = []
        for size in settings.grid_sizes:
            first = size == settings.grid_sizes[0]
            out.append(Figure(key(size), f"GridPG {size}x{size} median", "higher", summary=True, headline=first))
            if first:
                out.append(Figure(key(size, "iqr"), f"{size}x{size} IQR"))
        return tuple(out)

    def evaluate(self, evaluation: Evaluation) -> dict[str, dict]:
        settings, results = evaluation.settings, {name: {} for name in evaluation.methods}
        pool = confident_pool(evaluation.probabilities, evaluation.labels, settings.confidence)
        evaluation.artifacts["grid_examples"] = {}
        for size in settings.grid_sizes:
            try:
                grids = make_grids(evaluation.images, pool, size, settings.grids, settings.seed + size)
            except ValueError as err:  # a weak model: too few classes it gets right confidently
                evaluation.notes.append(f"grid pointing game {size}x{size} skipped: {err}")
                continue
            examples = {}
            for name in evaluation.methods:
                maps = evaluation.maps(evaluation.model, grids.canvases, name, grids.target_class)
                summary = summarize(cell_shares(maps, size, grids.target_cell))
                results[name][key(size)] = summary["median"]
                results[name][key(size, "iqr")] = summary["iqr"]
                examples[name] = maps[:4]
            evaluation.artifacts["grid_examples"][size] = (grids, examples)
        return results

    def describe(self, evaluation: Evaluation) -> str:
        return f"grid pointing game: {evaluation.settings.grids} grids per size"
