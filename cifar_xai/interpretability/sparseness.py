"""Sparseness (Chalasani et al., ICML 2020; Quantus' complexity metric): how concentrated a map
is, as the Gini index of its absolute values. 0: the attribution is spread evenly over every
pixel; 1 - 1/n: all of it sits on one pixel. A map a user can read points at few places, so
higher is better, as long as the faithfulness metrics agree that those places matter (a map
that is sparse and unfaithful is confidently wrong).

It reads the maps the deletion / insertion game already made (the first test images, each
explaining its predicted class), so it costs no model call.
"""

from __future__ import annotations

import numpy as np

from cifar_xai.interpretability.registry import Evaluation, ExplanationMetric, Figure, register
from cifar_xai.interpretability.settings import Settings


def gini(maps: np.ndarray) -> np.ndarray:
    """The Gini index of each map's absolute values, [N]; an all-zero map scores 0.

    Sorted ascending, G = sum_k (2k - n - 1) a_k / (n sum_k a_k) for k = 1..n (Quantus' form)."""
    flat = np.sort(np.abs(np.asarray(maps, np.float64)).reshape(len(maps), -1), axis=1)
    n = flat.shape[1]
    weights = 2 * np.arange(1, n + 1) - n - 1
    total = flat.sum(1)
    return np.divide(flat @ weights, n * total, out=np.zeros(len(flat)), where=total > 0)


@register
class Sparseness(ExplanationMetric):
    name, title, group = "sparseness", "Sparseness", "complexity"

    def figures(self, settings: Settings) -> tuple[Figure, ...]:
        return (Figure("sparseness_gini", "Sparseness (Gini)", "higher"),)

    def evaluate(self, evaluation: Evaluation) -> dict[str, dict]:
        count = evaluation.settings.faithfulness_images
        return {name: {"sparseness_gini": float(gini(evaluation.first_maps(name, count)).mean())}
                for name in evaluation.methods}

    def describe(self, evaluation: Evaluation) -> str:
        return f"sparseness: {evaluation.count(evaluation.settings.faithfulness_images)} images"
