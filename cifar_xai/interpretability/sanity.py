"""Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

Cascading randomisation: re-initialise the weights layer by layer from the logits down to the
first convolution, and after each step compare the explanation with the trained model's by the
Spearman rank correlation of the absolute maps. An explanation that depends on what the model
learned decorrelates; one that only reflects the image (an edge detector) does not.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from cifar_xai.interpretability.registry import Evaluation, ExplanationMetric, Figure, register
from cifar_xai.interpretability.settings import Settings


def rankdata(values: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank), as scipy.stats.rankdata."""
    flat = values.reshape(-1, values.shape[-1])
    out = np.empty(flat.shape, np.float64)
    for row, (data, result) in enumerate(zip(flat, out, strict=True)):
        order = np.argsort(data, kind="mergesort")
        sorted_data = data[order]
        boundaries = np.flatnonzero(np.diff(sorted_data)) + 1
        starts = np.concatenate([[0], boundaries])
        ends = np.concatenate([boundaries, [len(data)]])
        ranks = np.repeat((starts + ends - 1) / 2.0 + 1, ends - starts)
        result[order] = ranks
        out[row] = result
    return out.reshape(values.shape)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation per pair of maps [N, H, W] -> [N]; 0 where a map is constant."""
    ra = rankdata(np.abs(a).reshape(len(a), -1))
    rb = rankdata(np.abs(b).reshape(len(b), -1))
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return np.divide((ra * rb).sum(1), denominator, out=np.zeros(len(a)), where=denominator > 0)


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Conv and Dense layers, output side first: the order of cascading randomisation."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)][::-1]


def reinitialize(layer: keras.layers.Layer, seed: int) -> None:
    """Draw the layer's weights afresh from its own initialiser (biases from N(0, 0.1))."""
    config = layer.kernel_initializer.get_config()
    if "seed" in config:
        config["seed"] = seed
    initializer = layer.kernel_initializer.__class__.from_config(config)
    layer.kernel.assign(initializer(layer.kernel.shape, dtype=layer.kernel.dtype))
    if getattr(layer, "bias", None) is not None:
        layer.bias.assign(np.random.default_rng(seed).normal(0, 0.1, layer.bias.shape).astype("float32"))


def cascading_randomization(
    model: keras.Model,
    explain_fn: Callable[[keras.Model], dict[str, np.ndarray]],
    seed: int = 0,
) -> dict[str, list]:
    """Spearman correlations after each cumulative randomisation step, per method.

    `explain_fn(model)` returns {method: maps}; it is called on the trained model, then on a
    copy whose layers are re-initialised one more at a time. The original model is not touched.
    """
    reference = explain_fn(model)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    results: dict[str, list] = {name: [] for name in reference}
    layers = weighted_layers(copy)
    for step, layer in enumerate(layers):
        reinitialize(layer, seed + step)
        maps = explain_fn(copy)
        for name, original in reference.items():
            results[name].append(float(np.mean(spearman(original, maps[name]))))
    results["_layers"] = [layer.name for layer in layers]
    return results


@register
class CascadingRandomization(ExplanationMetric):
    name, title, group = "sanity", "Cascading randomisation", "randomisation"

    def figures(self, settings: Settings) -> tuple[Figure, ...]:
        return (Figure("sanity_spearman_full_random", "Spearman after full randomisation", "lower", summary=True),
                Figure("sanity_spearman_by_layer", "Spearman after each layer", in_table=False))

    def evaluate(self, evaluation: Evaluation) -> dict[str, dict]:
        images, predicted = evaluation.first(evaluation.settings.sanity_images)
        cascade = cascading_randomization(
            evaluation.model, lambda m: {n: evaluation.maps(m, images, n, predicted) for n in evaluation.methods},
            evaluation.settings.seed)
        layers = cascade.pop("_layers")
        return {name: {"sanity_spearman_by_layer": dict(zip(layers, values, strict=True)),
                       "sanity_spearman_full_random": values[-1]} for name, values in cascade.items()}

    def describe(self, evaluation: Evaluation) -> str:
        return f"sanity checks: {len(weighted_layers(evaluation.model))} layers randomised in turn"
