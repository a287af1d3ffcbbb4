"""ROAD: Remove And Debias (Rong et al., ICML 2022), the faithfulness game that survives 32x32.

Deletion to black rewards scattered removals: black dots on a 32x32 image are out of distribution
and break the prediction whatever the map says (the random baseline "wins" deletion). ROAD
removes the same pixels but fills them by *noisy linear imputation*: each removed pixel becomes
the weighted mean of its 8 neighbours (1/6 for the 4 direct ones, 1/12 for the diagonals; removed
neighbours are unknowns too, so one sparse linear system per image is solved), plus a little
noise. The filled image carries no trace of *where* pixels were removed, so a drop in the class
probability measures the information removed, not the shape of the mask.

Two orders, at several shares of the pixels:
- MoRF (most relevant first): a faithful map makes the probability fall fast (lower is better);
- LeRF (least relevant first): removing what the map calls unimportant should keep it (higher).
The score of each order is the mean probability over the shares; LeRF - MoRF summarises both.
"""

from __future__ import annotations

import keras
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from cifar_xai.interpretability.faithfulness import ranks
from cifar_xai.interpretability.registry import Evaluation, ExplanationMetric, Figure, register
from cifar_xai.interpretability.settings import Settings
from cifar_xai.probes import predict

# ROAD's neighbour weights.
NEIGHBOURS = (((-1, 0), 1 / 6), ((1, 0), 1 / 6), ((0, -1), 1 / 6), ((0, 1), 1 / 6),
              ((-1, -1), 1 / 12), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((1, 1), 1 / 12))
SHARES = (0.1, 0.3, 0.5, 0.7, 0.9)
ORDERS = ("morf", "lerf")
NOISE = 0.01 * 255   # ROAD's noise (0.01 on images in 0..1), in pixel units


def noisy_linear_impute(images: np.ndarray, removed: np.ndarray, noise: float = NOISE,
                        seed: int = 0) -> np.ndarray:
    """`images` [N, H, W, C] with the pixels where `removed` [N, H, W] is true filled in.

    Every removed pixel equals the weighted mean of its in-image neighbours (known or filled),
    solved exactly as one sparse system for the whole batch, then `noise` (standard deviation,
    pixel units) is added to the filled pixels only.
    """
    images = np.asarray(images, np.float64)
    removed = np.asarray(removed, bool)
    count, height, width, channels = images.shape
    out = images.copy()
    index = -np.ones(removed.shape, np.int64)
    unknown = np.flatnonzero(removed)
    if len(unknown) == 0:
        return out.astype(np.float32)
    index.ravel()[unknown] = np.arange(len(unknown))
    n, r, c = np.unravel_index(unknown, removed.shape)
    rows, cols, values = [], [], []
    total = np.zeros(len(unknown))
    rhs = np.zeros((len(unknown), channels))
    for (dr, dc), weight in NEIGHBOURS:
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        i = np.flatnonzero(inside)
        total[i] += weight
        neighbour = index[n[i], rr[i], cc[i]]
        unknown_neighbour = neighbour >= 0
        rows.append(i[unknown_neighbour])
        cols.append(neighbour[unknown_neighbour])
        values.append(np.full(unknown_neighbour.sum(), -weight))
        known = i[~unknown_neighbour]
        rhs[known] += weight * images[n[known], rr[known], cc[known]]
    rows.append(np.arange(len(unknown)))
    cols.append(np.arange(len(unknown)))
    values.append(total)
    system = sparse.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(len(unknown), len(unknown)))
    filled = spsolve(system, rhs).reshape(len(unknown), channels)
    filled += np.random.default_rng(seed).normal(0, noise, filled.shape)
    out[n, r, c] = filled
    return np.clip(out, 0, 255).astype(np.float32)


def road_curves(model: keras.Model, images: np.ndarray, maps: np.ndarray, classes: np.ndarray,
                shares: tuple[float, ...] = SHARES, seed: int = 0, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Probability of `classes` after removing each share of the pixels, most (morf) and least
    (lerf) relevant first: {"morf": [N, len(shares)], "lerf": [N, len(shares)]}."""
    images = np.asarray(images, np.float32)
    order = ranks(maps, seed)
    pixels = order.shape[1] * order.shape[2]
    rows = np.arange(len(images))
    curves = {}
    for name in ORDERS:
        probabilities = np.zeros((len(images), len(shares)), np.float32)
        for k, share in enumerate(shares):
            cut = round(share * pixels)
            removed = order < cut if name == "morf" else order >= pixels - cut
            imputed = noisy_linear_impute(images, removed, seed=seed + k)
            probabilities[:, k] = predict(model, imputed, batch_size)[rows, classes]
        curves[name] = probabilities
    return curves


def road_scores(curves: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean probability over the shares per order, and LeRF - MoRF (higher is more faithful)."""
    morf, lerf = float(curves["morf"].mean()), float(curves["lerf"].mean())
    return {"road_morf": morf, "road_lerf": lerf, "road_lerf_minus_morf": lerf - morf}


@register
class Road(ExplanationMetric):
    """The same question as deletion, with removed pixels filled in by noisy linear imputation,
    so the shape of the mask cannot be what moves the prediction."""

    name, title, group = "road", "ROAD", "faithfulness"

    def figures(self, settings: Settings) -> tuple[Figure, ...]:
        return (Figure("road_morf", "ROAD MoRF", "lower", summary=True),
                Figure("road_lerf", "ROAD LeRF", "higher", summary=True),
                Figure("road_lerf_minus_morf", "ROAD LeRF - MoRF", "higher", in_table=False, headline=True))

    def evaluate(self, evaluation: Evaluation) -> dict[str, dict]:
        images, predicted = evaluation.first(evaluation.settings.road_images)
        results, mean_curves = {}, {}
        for name in evaluation.methods:
            curves = road_curves(evaluation.model, images, evaluation.first_maps(name, len(images)), predicted,
                                 seed=evaluation.settings.seed)
            results[name] = road_scores(curves)
            mean_curves[name] = {order: values.mean(0) for order, values in curves.items()}
        evaluation.artifacts["road_curves"] = mean_curves
        return results

    def describe(self, evaluation: Evaluation) -> str:
        count = evaluation.count(evaluation.settings.road_images)
        return f"ROAD: {count} images, shares {', '.join(f'{s:.0%}' for s in SHARES)}"
