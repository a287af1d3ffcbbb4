"""The whole evaluation of a trained model: classification, calibration, and every
interpretability metric for every method and baseline. Returns plain data for metrics.json,
the HTML report and TensorBoard.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import keras
import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.data.pipeline import split_arrays
from cifar_xai.explain.registry import applicable_methods
from cifar_xai.interpretability import gridpg
from cifar_xai.interpretability.attributions import BASELINES
from cifar_xai.interpretability.metrics import METRICS, figures
from cifar_xai.interpretability.registry import Evaluation
from cifar_xai.interpretability.settings import FULL, QUICK, Settings
from cifar_xai.metrics import calibration, classification_metrics, row_normalized
from cifar_xai.probes import predict
from cifar_xai.robustness.benchmark import corruption_benchmark

__all__ = ["FULL", "QUICK", "Settings", "load_test_set", "run"]


def run(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    settings: Settings = FULL,
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

    # Every registered explanation metric, for every method and baseline, in the registry's order.
    evaluation = Evaluation(model, images, labels, probabilities, settings, names, log,
                            artifacts={"probabilities": probabilities, "labels": labels, "grid_examples": {}})
    interpretability: dict[str, dict] = {name: {} for name in names}
    for metric in METRICS.values():
        reason = metric.unmet(model)
        if reason:
            evaluation.notes.append(f"{metric.title.lower()} skipped: {reason}")
            continue
        start = time.perf_counter()
        for name, values in metric.evaluate(evaluation).items():
            interpretability[name].update(values)
        timings[metric.name] = time.perf_counter() - start
        log(f"{metric.describe(evaluation)} ({timings[metric.name]:.0f} s)")

    robustness = None
    if settings.corruption_images:
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
        "notes": evaluation.notes,
        "settings": dataclasses.asdict(settings),
        "seconds": timings,
    }
    return metrics, evaluation.artifacts


def load_test_set(data_dir: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    images, labels = split_arrays(data_dir, "test")
    return images.numpy(), labels.numpy()


def cam_verdict(result: dict) -> dict:
    """A model's best-localised CAM-family map (CAM or Grad-CAM, by the grid pointing game) with
    its summary figures (the registry's `summary=True`) beside the model's accuracy: what the
    comparison report's verdict and the report's summary show."""
    scores = result["interpretability"]
    best = max((m for m in ("cam", "gradcam") if m in scores),
               key=lambda m: scores[m].get(gridpg.key(2), -1), default=None)
    entry = {"accuracy": result["classification"]["accuracy"], "method": best}
    if best:
        settings = Settings(**result["settings"])
        entry.update({figure.key: scores[best].get(figure.key) for figure in figures(settings) if figure.summary})
    return entry
