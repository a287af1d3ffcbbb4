"""The whole evaluation of a trained model: classification, calibration, and every
interpretability metric for every method and baseline. Returns plain data for metrics.json,
the HTML report and TensorBoard.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.explain import predict
from cifar_xai.explain.core import applicable_methods
from cifar_xai.interpretability import faithfulness, gridpg, road, sanity
from cifar_xai.interpretability.attributions import BASELINES, attribution_maps
from cifar_xai.metrics import calibration, classification_metrics, row_normalized

DEFAULT_METHODS = ("cam", "gradcam", "gradcam++", "layercam", "scorecam_fast", "saliency", "smoothgrad",
                   "integrated_gradients", "prototypes")


@dataclass(frozen=True)
class Settings:
    test_images: int = 10000
    grids: int = 500              # per grid size
    grid_sizes: tuple[int, ...] = (2, 3)
    confidence: float = 0.9       # grid cells: correct and at least this confident
    faithfulness_images: int = 1000
    faithfulness_steps: int = 8   # 1024 pixels / 8 = 128 pixels per step
    road_images: int = 500        # ROAD: 5 shares x 2 orders of sparse solves per method
    sanity_images: int = 100
    # The corruption benchmark on the first N test images (0: skipped): 75 sets of N images.
    corruption_images: int = 1000
    methods: tuple[str, ...] = DEFAULT_METHODS
    # Cheaper than the interactive defaults (20 samples, 64 steps), so the whole suite fits in
    # 10 minutes on 2 CPU cores: the gradient-path methods dominate its cost.
    method_options: dict = field(default_factory=lambda: {"smoothgrad": {"samples": 4},
                                                          "integrated_gradients": {"steps": 8}})
    seed: int = 0


QUICK = Settings(test_images=1000, grids=50, faithfulness_images=100, road_images=100, sanity_images=20,
                 corruption_images=200)


def _maps(model, images, name, classes, settings: Settings) -> np.ndarray:
    return attribution_maps(model, images, name, classes, seed=settings.seed,
                            **settings.method_options.get(name, {}))


def run(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    settings: Settings = Settings(),
    log: Callable[[str], None] = print,
) -> tuple[dict, dict]:
    """(metrics, artifacts): metrics for metrics.json; arrays the report draws from."""
    timings: dict[str, float] = {}
    images, labels = images[: settings.test_images], labels[: settings.test_images]
    names = applicable_methods(model, settings.methods) + list(BASELINES)

    start = time.perf_counter()
    probabilities = predict(model, images.astype(np.float32))
    classification = classification_metrics(labels, probabilities.argmax(1), CLASS_NAMES)
    classification["confusion_matrix_normalized"] = row_normalized(classification["confusion_matrix"]).tolist()
    classification["calibration"] = calibration(probabilities, labels)
    classification["ece"] = classification["calibration"]["ece"]
    timings["classification"] = time.perf_counter() - start
    log(f"classification: accuracy {classification['accuracy']:.4f}, ECE {classification['ece']:.4f} "
        f"({timings['classification']:.0f} s)")

    interpretability: dict[str, dict] = {name: {} for name in names}
    artifacts: dict = {"probabilities": probabilities, "labels": labels, "grid_examples": {}}

    # Localisation: the GAP network classifies the larger canvas as it is.
    start = time.perf_counter()
    pool = gridpg.confident_pool(probabilities, labels, settings.confidence)
    notes = []
    any_size = model.input.shape[1] is None   # a GAP head, or prototype_cnn's max over positions
    if not any_size:
        notes.append("grid pointing game skipped: the model's dense head only takes 32x32 inputs")
    for size in settings.grid_sizes if any_size else ():
        try:
            grids = gridpg.make_grids(images, pool, size, settings.grids, settings.seed + size)
        except ValueError as err:  # a weak model: too few classes it gets right confidently
            notes.append(f"grid pointing game {size}x{size} skipped: {err}")
            continue
        examples = {}
        for name in names:
            maps = _maps(model, grids.canvases, name, grids.target_class, settings)
            shares = gridpg.cell_shares(maps, size, grids.target_cell)
            summary = gridpg.summarize(shares)
            interpretability[name][f"gridpg_{size}x{size}_median"] = summary["median"]
            interpretability[name][f"gridpg_{size}x{size}_iqr"] = summary["iqr"]
            examples[name] = maps[:4]
        artifacts["grid_examples"][size] = (grids, examples)
    timings["gridpg"] = time.perf_counter() - start
    log(f"grid pointing game: {settings.grids} grids per size ({timings['gridpg']:.0f} s)")

    # Faithfulness on the first images, explaining the predicted class.
    start = time.perf_counter()
    subset = images[: settings.faithfulness_images].astype(np.float32)
    predicted = probabilities[: settings.faithfulness_images].argmax(1)
    mean_curves: dict[str, dict[str, np.ndarray]] = {"deletion": {}, "insertion": {}}
    endpoints = faithfulness.endpoints(model, subset, predicted)  # the same for every method
    subset_maps: dict[str, np.ndarray] = {}   # reused by ROAD, which explains the same first images
    for name in names:
        maps = subset_maps[name] = _maps(model, subset, name, predicted, settings)
        curves = faithfulness.curves(model, subset, maps, predicted, settings.faithfulness_steps, seed=settings.seed,
                                     known_endpoints=endpoints)
        for game, values in curves.items():
            interpretability[name][f"{game}_auc"] = float(faithfulness.area_under(values).mean())
            mean_curves[game][name] = values.mean(0)
    artifacts["curves"] = mean_curves
    timings["faithfulness"] = time.perf_counter() - start
    log(f"deletion / insertion: {len(subset)} images ({timings['faithfulness']:.0f} s)")

    # ROAD: the same question as deletion, with removed pixels filled in by noisy linear
    # imputation, so the shape of the mask cannot be what moves the prediction.
    start = time.perf_counter()
    reuse = settings.road_images <= len(subset)
    subset = subset[: settings.road_images] if reuse else images[: settings.road_images].astype(np.float32)
    predicted = probabilities[: len(subset)].argmax(1)
    artifacts["road_curves"] = {}
    for name in names:
        maps = subset_maps[name][: len(subset)] if reuse else _maps(model, subset, name, predicted, settings)
        road_curves = road.road_curves(model, subset, maps, predicted, seed=settings.seed)
        interpretability[name].update(road.road_scores(road_curves))
        artifacts["road_curves"][name] = {order: values.mean(0) for order, values in road_curves.items()}
    timings["road"] = time.perf_counter() - start
    log(f"ROAD: {len(subset)} images, shares {', '.join(f'{s:.0%}' for s in road.SHARES)} ({timings['road']:.0f} s)")

    # Sanity: cascading randomisation of the weights, top layer first.
    start = time.perf_counter()
    probe_images = images[: settings.sanity_images].astype(np.float32)
    probe_classes = probabilities[: settings.sanity_images].argmax(1)
    cascade = sanity.cascading_randomization(
        model, lambda m: {n: _maps(m, probe_images, n, probe_classes, settings) for n in names}, settings.seed)
    layers = cascade.pop("_layers")
    for name, values in cascade.items():
        interpretability[name]["sanity_spearman_by_layer"] = dict(zip(layers, values, strict=True))
        interpretability[name]["sanity_spearman_full_random"] = values[-1]
    timings["sanity"] = time.perf_counter() - start
    log(f"sanity checks: {len(layers)} layers randomised in turn ({timings['sanity']:.0f} s)")

    robustness = None
    if settings.corruption_images:
        from cifar_xai.robustness.benchmark import corruption_benchmark

        start = time.perf_counter()
        count = min(settings.corruption_images, len(images))
        robustness = corruption_benchmark(model, images[:count], labels[:count], seed=settings.seed)
        timings["robustness"] = time.perf_counter() - start
        log(f"corruptions: mCA {robustness['mca']:.4f} on {count} images x 75 sets ({timings['robustness']:.0f} s)")

    metrics = {
        "classification": classification,
        "robustness": robustness,
        "interpretability": interpretability,
        "baselines": list(BASELINES),
        "uniform_gridpg": {f"{s}x{s}": 1 / (s * s) for s in settings.grid_sizes},
        "notes": notes,
        "settings": dataclasses.asdict(settings),
        "seconds": timings,
    }
    return metrics, artifacts


def load_test_set(data_dir: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    from cifar_xai.data.pipeline import split_arrays

    images, labels = split_arrays(data_dir, "test")
    return images.numpy(), labels.numpy()
