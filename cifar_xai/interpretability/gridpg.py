"""Grid Pointing Game (Rao, Böhle & Schiele, CVPR 2022), as in the B-cos CIFAR-10 protocol.

n x n test images of distinct classes, each classified correctly and confidently, are tiled into
one canvas that the GAP network classifies as is. Each grid is explained for one cell's class;
the score is the share of the (positive) attribution that falls inside that cell. Uniform
attribution scores 1 / n^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
