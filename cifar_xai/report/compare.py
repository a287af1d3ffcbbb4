"""A report that puts several models side by side: the same test images, grids and seeds for
every model, one column per model, "n/a" where a model cannot run a method (CAM on a dense
head), never a silently missing row.

    python -m reports.build --model saved_models/interpretable_cnn.keras --model runs/std/model.keras --out DIR
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.errors import UserError
from cifar_xai.explain.core import explain
from cifar_xai.explain.registry import OVERVIEW_METHODS, applicable_methods
from cifar_xai.files import write_json
from cifar_xai.interpretability import suite
from cifar_xai.interpretability.attributions import BASELINES
from cifar_xai.interpretability.stability import input_stability
from cifar_xai.plots import gallery_png
from cifar_xai.report.build import interpretability_columns
from cifar_xai.report.html import Report, paragraph, table

NOT_APPLICABLE = "n/a"


def check_comparable(models: dict[str, keras.Model]) -> None:
    """One line when two models cannot be compared on the same images: other classes, or another
    input handling (raw pixels normalised by different statistics)."""
    reference_name, reference = next(iter(models.items()))
    for name, model in models.items():
        if model.output.shape[-1] != reference.output.shape[-1]:
            raise UserError(f"{name} predicts {model.output.shape[-1]} classes and {reference_name} "
                            f"{reference.output.shape[-1]}: compare models trained on the same classes")
        mine, theirs = (_input_handling(m) for m in (model, reference))
        if mine != theirs:
            raise UserError(f"{name} and {reference_name} take their input differently ({mine} against {theirs}): "
                            "compare models that read the same raw pixels")


def _input_handling(model: keras.Model) -> str:
    try:
        layer = model.get_layer("normalize")
    except ValueError:
        return "no normalisation layer"
    mean, variance = (np.round(np.ravel(value), 2).tolist() for value in (layer.mean, layer.variance))
    return f"mean {mean}, variance {variance}"


def model_names(paths: list[Path]) -> list[str]:
    """Short, distinct column names: the file's stem, or its folder for a run's model.keras or when
    the stems repeat."""
    stems = [path.parent.name if path.stem == "model" and path.parent.name else path.stem for path in paths]
    names = [f"{path.parent.name}/{path.stem}" if stems.count(stem) > 1 else stem for stem, path in zip(stems, paths,
                                                                                                        strict=True)]
    return [name if names.count(name) == 1 else f"{name} ({i + 1})" for i, name in enumerate(names)]


def build_comparison(models: dict[str, tuple[keras.Model, Path]], out_dir: Path, images: np.ndarray,
                     labels: np.ndarray, settings: suite.Settings, command: str,
                     log: Callable[[str], None] = print) -> dict:
    """Evaluate every model with the same settings; write out_dir/index.html and metrics.json."""
    check_comparable({name: model for name, (model, _) in models.items()})
    out_dir.mkdir(parents=True, exist_ok=True)
    results, artifacts = {}, {}
    for name, (model, path) in models.items():
        log(f"== {name} ({path})")
        results[name], artifacts[name] = suite.run(model, images, labels, settings, log)
        results[name]["model"] = {"path": os.fspath(path), "name": model.name, "parameters": int(model.count_params())}
    start = time.perf_counter()
    names = list(models)
    report = Report(f"cifar-xai comparison: {', '.join(names)}", out_dir)
    report.section("Models", paragraph(f"Command: {command}. Every model is evaluated on the same "
                                       f"{len(artifacts[names[0]]['probabilities']):,} test images, grids and seeds."),
                   table(("", *names), [
                       ("file", *(results[n]["model"]["path"] for n in names)),
                       ("architecture", *(results[n]["model"]["name"] for n in names)),
                       ("parameters", *(f"{results[n]['model']['parameters']:,}" for n in names))]))
    report.section("Classification", table(("metric", *names), [
        ("accuracy", *(results[n]["classification"]["accuracy"] for n in names)),
        ("macro F1", *(results[n]["classification"]["macro"]["f1"] for n in names)),
        ("expected calibration error (15 bins)", *(results[n]["classification"]["ece"] for n in names))]))
    methods = list(dict.fromkeys(m for n in names for m in results[n]["interpretability"] if m not in BASELINES))
    parts = [paragraph("One table per measurement: a row per method (baselines in italic), a column per model; "
                       f"{NOT_APPLICABLE} where the model cannot run the method (CAM needs a GAP head, the prototype "
                       "map prototypes) or the measurement (the grid pointing game needs a model that takes larger "
                       "images). Definitions: the single-model report's Interpretability section and "
                       "docs/explanations.md.")]
    for key, title in interpretability_columns(dataclasses.asdict(settings)):
        rows, classes = [], []
        for method in (*methods, *BASELINES):
            cells = []
            for n in names:
                value = results[n]["interpretability"].get(method, {}).get(key, NOT_APPLICABLE)
                cells.append(f"{value[0]:.3f}-{value[1]:.3f}" if isinstance(value, list) else value)
            rows.append((method, *cells))
            classes.append("baseline" if method in BASELINES else "")
        parts.append(paragraph(title))
        parts.append(table(("method", *names), rows, classes))
    report.section("Interpretability, side by side", *parts)
    report.section("Stability under changes the prediction should ignore", *_stability(models, images, settings,
                                                                                      results, methods))
    report.section("The same test images, explained by each model",
                   *_galleries(report, models, images, labels, artifacts))
    report.write()
    summary = {"models": results, "verdict": verdict(results), "seconds": {"html": time.perf_counter() - start}}
    write_json(out_dir / "metrics.json", summary)
    log(f"comparison report assembled ({time.perf_counter() - start:.0f} s)")
    return summary


def _stability(models: dict, images: np.ndarray, settings: suite.Settings, results: dict,
               methods: list[str]) -> list[str]:
    """Per model and method, the map's agreement with the map of the image shifted by one pixel and
    of the mirrored image (each mapped back): Spearman / shared top-20 % pixels."""
    subset = images[: settings.faithfulness_images].astype(np.float32)
    for name, (model, _) in models.items():
        results[name]["stability"] = input_stability(model, subset, methods, settings.method_options)
    rows = []
    for method in methods:
        cells = []
        for name in models:
            found = results[name]["stability"]["methods"].get(method)
            cells.append(NOT_APPLICABLE if found is None else
                         f"{found['translate_1px']['spearman']:.2f} / {found['translate_1px']['top20_overlap']:.2f}; "
                         f"{found['mirror']['spearman']:.2f} / {found['mirror']['top20_overlap']:.2f}")
        rows.append((method, *cells))
    kept = [f"{name}: {results[name]['stability']['prediction_kept']['translate_1px']:.0%} / "
            f"{results[name]['stability']['prediction_kept']['mirror']:.0%}" for name in models]
    return [paragraph(f"On the first {len(subset)} test images, explaining each image's predicted class: the map's "
                      "agreement with the map of the image shifted right by one pixel (shifted back) and of the "
                      "mirrored image (mirrored back), as Spearman correlation / share of the top-20 % pixels "
                      "shared (identical: 1 / 1; unrelated: 0 / 0.2). Predictions kept under the shift / mirror: "
                      + "; ".join(kept) + ". Across retrained seeds: python -m benchmarks.stability."),
            table(("method: shift; mirror", *models), rows)]


def _galleries(report: Report, models: dict, images: np.ndarray, labels: np.ndarray, artifacts: dict) -> list[str]:
    # The first test image of each class among those the suite evaluated (and predicted).
    labels = np.asarray(labels)[: len(next(iter(artifacts.values()))["probabilities"])]
    picks = [int(np.flatnonzero(labels == k)[0]) for k in range(len(CLASS_NAMES)) if (labels == k).any()][:6]
    figures = []
    for name, (model, _) in models.items():
        methods = applicable_methods(model, OVERVIEW_METHODS)
        predicted = artifacts[name]["probabilities"][picks].argmax(1)
        maps = {m: explain(model, images[picks], m, classes=predicted.tolist()) for m in methods}
        rows = [(images[i], {m: maps[m][r] for m in methods},
                 f"true {CLASS_NAMES[labels[i]]}, said {CLASS_NAMES[predicted[r]]}") for r, i in enumerate(picks)]
        figures.append(report.image(gallery_png(rows, f"{name}: {', '.join(methods)}"), f"gallery of {name}",
                                    width=420))
    return figures


def verdict(results: dict) -> dict:
    """Per model, its best-localised CAM-family map beside its accuracy (`suite.cam_verdict`): the
    figures behind "is the GAP network more transparent, at what accuracy cost?"."""
    return {name: suite.cam_verdict(result) for name, result in results.items()}
