"""Build the evaluation report of a trained model: metrics.json, index.html, TensorBoard summaries."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.concepts.study import discover_class
from cifar_xai.errors import UserError
from cifar_xai.explain.core import explain
from cifar_xai.explain.features import feature_maps, first_layer_filters
from cifar_xai.explain.maps import normalize_maps
from cifar_xai.explain.prototypes import explain_prototypes, source_patches
from cifar_xai.explain.registry import OVERVIEW_METHODS, applicable_methods
from cifar_xai.explain.visualise import visualise
from cifar_xai.files import write_json
from cifar_xai.interpretability import gridpg, road, suite
from cifar_xai.interpretability.attributions import BASELINES
from cifar_xai.interpretability.metrics import figures
from cifar_xai.interpretability.settings import Settings
from cifar_xai.interpretability.suite import cam_verdict
from cifar_xai.model_io import run_config, run_folder, run_metrics
from cifar_xai.models import CAM_LAYER, has_gap_head, is_prototype_model
from cifar_xai.plots import (
    confusion_matrix_png,
    curves_png,
    gallery_png,
    image_grid_png,
    prototype_gallery_png,
    prototype_panel_png,
    reliability_diagram_png,
    training_curves_png,
)
from cifar_xai.probes import spatial_layers
from cifar_xai.prototypes.diagnostics import duplicates, purity
from cifar_xai.report.frontier import TABLE_HEADER, formatted_rows, frontier_png, load_frontier
from cifar_xai.report.html import Report, paragraph, preformatted, table
from cifar_xai.report.tensorboard import write_summaries
from cifar_xai.uncertainty.benchmark import selective_prediction
from cifar_xai.uncertainty.calibration import confidences_calibrated
from cifar_xai.uncertainty.detector import detector_beside


def interpretability_columns(settings: dict) -> list[tuple[str, str]]:
    """(metric key, column title) of the interpretability tables: every registered metric's table
    figures, for the settings (grid sizes) the suite ran with."""
    return [(figure.key, figure.heading) for figure in figures(Settings(**settings)) if figure.in_table]


def run_record(model_path: Path) -> dict:
    """What is known about how the model was trained: its run dir's config, history and metrics.

    A model at runs/<run>/model.keras has them beside it; the shipped saved_models/<name>.keras
    keeps a copy in saved_models/<name>.run/.
    """
    folder = run_folder(model_path)
    if folder is None:
        return {}
    record = {"folder": os.fspath(folder), "config": run_config(model_path)}
    if (folder / "history.csv").exists():
        with open(folder / "history.csv") as handle:
            rows = list(csv.DictReader(handle))
        record["history"] = {key: [_number(row[key]) for row in rows] for key in (rows[0] if rows else {})}
    trained = run_metrics(model_path)
    if trained is not None:
        record["train_seconds"] = trained.get("train_seconds")
        record["prototypes"] = trained.get("prototypes")
    return record


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def build(
    model: keras.Model,
    model_path: Path,
    out_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    settings: suite.Settings,
    command: str,
    tensorboard_dir: Path | None = None,
    log: Callable[[str], None] = print,
    training_images: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Evaluate, then write out_dir/metrics.json and out_dir/index.html; return the metrics.

    `training_images` (images, labels from the model's training split) are where the concepts
    section discovers each class's concepts; without them the section says how to get it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics, artifacts = suite.run(model, images, labels, settings, log)
    record = run_record(model_path)
    metrics["model"] = {
        "path": os.fspath(model_path), "name": model.name, "parameters": int(model.count_params()),
        "dtype_policy": model.get_layer(CAM_LAYER).dtype_policy.name,
        "run": {k: v for k, v in record.items() if k != "history"},
    }
    start = time.perf_counter()
    write_json(out_dir / "metrics.json", metrics)
    report = Report(f"cifar-xai report: {model_path.name}", out_dir)
    _classification_section(report, metrics)
    _robustness_section(report, metrics)
    _uncertainty_section(report, model, model_path, images, labels, metrics, artifacts, record)
    _interpretability_section(report, metrics, artifacts)
    _galleries(report, model, images, labels, artifacts)
    _concepts_section(report, model, images, labels, training_images, metrics, log)
    _prototypes_section(report, model, images, labels, training_images, metrics, record,
                        artifacts["probabilities"])
    _inside_the_network(report, model, images, settings.visualisation_steps)
    _settings_section(report, metrics, record, command)   # hyper-parameters at the end
    _recipe_section(report, record.get("folder"))
    _summary_section(report, metrics, confidences_calibrated(model, run_metrics(model_path)))   # ...the answer first
    report.write()
    metrics["seconds"]["html_report"] = time.perf_counter() - start
    if tensorboard_dir is not None:
        write_summaries(tensorboard_dir, metrics, artifacts, record.get("config", {}), out_dir)
    write_json(out_dir / "metrics.json", metrics)
    log(f"report written ({metrics['seconds']['html_report']:.0f} s)")
    return metrics


def _summary_section(report: Report, metrics: dict, calibrated: bool) -> None:
    """One screen: the headline figures, each with what it means for a user."""
    classification, robustness = metrics["classification"], metrics.get("robustness")
    rows = [("test accuracy", f"{classification['accuracy']:.2%}", f"{classification['num_examples']:,} test images"),
            ("expected calibration error", f"{classification['ece']:.2%}",
             "calibrated: a temperature fitted on held-out images lowered it" if calibrated
             else "uncalibrated: no temperature lowered it on held-out images")]
    if robustness:
        rows.append(("mean accuracy under 15 corruptions x 5 severities", f"{robustness['mca']:.2%}",
                     f"clean {robustness['clean']['accuracy']:.2%} on the same {robustness['num_images']:,} images"))
    uncertainty = metrics.get("uncertainty")
    rows.append(("test images flagged out-of-distribution",
                 f"{uncertainty['flagged_share']:.1%}" if uncertainty else "n/a",
                 f"by {uncertainty['default_score']}; about 5 % is expected by design" if uncertainty
                 else "no OOD statistics beside the model (python -m trainers.fit_ood)"))
    best = cam_verdict(metrics)
    if best["method"]:
        scores, random = metrics["interpretability"][best["method"]], metrics["interpretability"].get("random", {})
        grid = scores.get(gridpg.key(2))
        rows.append((f"{best['method']}: grid pointing game 2x2", "n/a" if grid is None else f"{grid:.3f}",
                     "uniform 0.250; 1.000 = all attribution on the right image"))
        lerf_morf = scores.get("road_lerf_minus_morf")
        if lerf_morf is not None:
            rows.append((f"{best['method']}: ROAD LeRF - MoRF", f"{lerf_morf:.3f}",
                         f"random map {random.get('road_lerf_minus_morf', float('nan')):.3f}; higher = more faithful"))
    if metrics.get("notes"):
        rows.append(("notes", "; ".join(metrics["notes"]), ""))
    report.section("Summary", table(("", "figure", "what it means"), rows), first=True)


def _settings_section(report: Report, metrics: dict, record: dict, command: str) -> None:
    model = metrics["model"]
    rows = [("model file", model["path"]), ("model", model["name"]), ("parameters", f"{model['parameters']:,}"),
            ("dtype policy", model["dtype_policy"]), ("report command", command)]
    if record.get("train_seconds"):
        rows.append(("training time", f"{record['train_seconds']:.0f} s"))
    parts = [table(("setting", "value"), rows)]
    if record.get("config"):
        parts.append(paragraph(f"Training settings ({record['folder']}/config.json):"))
        parts.append(table(("hyper-parameter", "value"), sorted(record["config"].items())))
    parts.append(paragraph("Evaluation settings:"))
    parts.append(preformatted(metrics["settings"]))
    report.section("Run settings", *parts)
    if record.get("history"):
        report.section("Training curves", report.image(training_curves_png(record["history"]), "training curves"))


def _recipe_section(report: Report, folder: str | None) -> None:
    """How the recipe was chosen: the frontier of the candidates measured on the validation split
    (benchmarks.frontier --json), when the run's folder has one."""
    try:
        frontier = load_frontier(folder)
    except UserError as err:
        report.section("How this recipe was chosen", paragraph(str(err)))
        return
    if frontier is None:
        return
    points, chosen, rule = frontier
    images = sorted({f"{p.split}, {p.images:,} images" for p in points})
    report.section(
        "How this recipe was chosen",
        paragraph(f"Every candidate recipe measured on {'; '.join(images)} (benchmarks.robustness and "
                  "benchmarks.ood, docs/recipe.md)." + (f" Rule, stated before choosing: {rule}" if rule else "")),
        report.image(frontier_png(points, chosen), "recipe frontier", width=560),
        table(TABLE_HEADER, formatted_rows(points, chosen)),
    )


def _classification_section(report: Report, metrics: dict) -> None:
    result = metrics["classification"]
    summary = table(("metric", "value"), [
        ("test images", str(result["num_examples"])), ("accuracy", result["accuracy"]),
        ("macro precision", result["macro"]["precision"]), ("macro recall", result["macro"]["recall"]),
        ("macro F1", result["macro"]["f1"]), ("expected calibration error (15 bins)", result["ece"])])
    per_class = table(("class", "precision", "recall", "F1", "support"), [
        (name, v["precision"], v["recall"], v["f1"], str(v["support"])) for name, v in result["per_class"].items()])
    confusion = report.image(confusion_matrix_png(result["confusion_matrix"], CLASS_NAMES,
                                                  f"Test accuracy {result['accuracy']:.2%}"),
                             "confusion matrix", "counts; colour = share of the true class (row-normalised)",
                             width=520)
    reliability = report.image(reliability_diagram_png(result["calibration"]), "reliability diagram", width=380)
    report.section("Classification", summary, per_class, confusion, reliability)


def _robustness_section(report: Report, metrics: dict) -> None:
    result = metrics.get("robustness")
    if not result:
        return
    severities = list(next(iter(result["corruptions"].values())))
    rows = [(name, *(by_severity[s]["accuracy"] for s in severities), result["per_corruption"][name])
            for name, by_severity in result["corruptions"].items()]
    rows.append(("mean corruption accuracy (mCA)", *("" for _ in severities), result["mca"]))
    rows.append(("clean", *("" for _ in severities), result["clean"]["accuracy"]))
    diagrams = [report.image(reliability_diagram_png(result["calibration"][key]), f"reliability, {key}", caption,
                             width=380)
                for key, caption in (("clean", "clean images"), ("corrupted", "every corrupted set pooled"))
                if key in result["calibration"]]
    report.section(
        "Robustness to common corruptions",
        paragraph(f"Accuracy on the first {result['num_images']:,} test images under the 15 corruptions of "
                  "CIFAR-10-C at severities 1-5, generated locally (cifar_xai/robustness; motion blur, snow and "
                  "frost are approximations, see docs/robustness.md). The full benchmark: "
                  "python -m benchmarks.robustness. Mean ECE over the corrupted sets: "
                  f"{result['mean_ece']:.3f} (clean {result['clean']['ece']:.3f})."),
        table(("corruption", *(f"severity {s}" for s in severities), "mean"), rows),
        *diagrams,
    )


def _uncertainty_section(report: Report, model: keras.Model, model_path: Path, images: np.ndarray,
                         labels: np.ndarray, metrics: dict, artifacts: dict, record: dict) -> None:
    """Selective prediction with MSP and every OOD score, the benchmark's OOD table, and galleries
    of the least certain and the flagged test images."""
    detector, reason = detector_beside(model, model_path)
    if detector is None:
        report.section("Knowing when not to trust it", paragraph(
            f"No out-of-distribution detector: {reason}. With one, this section shows selective prediction and "
            "OOD galleries."))
        return
    probabilities = artifacts["probabilities"]
    images, labels = images[: len(probabilities)], np.asarray(labels)[: len(probabilities)]
    scores = detector.score_images(model, images)
    correct = probabilities.argmax(1) == labels
    curves = selective_prediction(scores, correct)
    flagged = ~detector.in_distribution(scores)
    metrics["uncertainty"] = {
        "default_score": detector.default, "flagged_share": float(flagged.mean()),
        "selective": {name: {"aurc": v["aurc"], "accuracy_at": v["accuracy_at"]} for name, v in curves.items()},
    }
    rows = [(name + (" (in_distribution)" if name == detector.default else ""), 1000 * v["aurc"],
             *(v["accuracy_at"][share] for share in ("80%", "90%", "95%", "100%")),
             float((~detector.in_distribution(scores, name)).mean()))
            for name, v in curves.items()]
    parts = [
        paragraph(f"Selective prediction (Geifman & El-Yaniv 2017) on the {len(images):,} test images: keep the "
                  "predictions a score trusts most and measure the error among those kept. AURC is the mean error "
                  "over all coverages (lower is better). Every score is fitted on the training split, its threshold "
                  f"on the validation split at 95 % TPR; in_distribution uses {detector.default} (docs/ood.md)."),
        table(("score", "AURC x1000", "acc. at 80 %", "90 %", "95 %", "100 %", "test images flagged"), rows),
        report.image(curves_png({name: v["risk"] for name, v in curves.items()},
                                "Risk-coverage (test split)", x=curves["msp"]["coverage"], xlabel="coverage",
                                ylabel="error among kept"), "risk-coverage curves", width=420),
    ]
    benchmark = Path(record.get("folder", model_path.parent)) / "ood.json"
    if benchmark.is_file():
        result = json.loads(benchmark.read_text())
        names = list(result["selective"])
        parts.append(paragraph(f"Out-of-distribution benchmark ({benchmark}; python -m benchmarks.ood): AUROC per "
                               "outlier set and score, in-distribution = the test split."))
        parts.append(table(("outlier set", *names), [
            (name, *(entry["scores"][n]["auroc"] for n in names)) for name, entry in result["outliers"].items()]))
    methods = applicable_methods(model)
    predicted = probabilities.argmax(1)
    unsure = np.argsort(probabilities.max(1))[:8]
    rows = _rows(model, images[unsure], predicted[unsure], methods,
                 [f"said {CLASS_NAMES[predicted[i]]} {probabilities[i].max():.0%}, true {CLASS_NAMES[labels[i]]}"
                  for i in unsure])
    parts.append(report.image(gallery_png(rows, "Most uncertain test images (lowest calibrated confidence)"),
                              "most uncertain"))
    odd = np.flatnonzero(flagged)
    odd = odd[np.argsort(scores[detector.default][odd])][:8]
    if len(odd):
        percentile = detector.percentile(scores)
        rows = _rows(model, images[odd], predicted[odd], methods,
                     [f"said {CLASS_NAMES[predicted[i]]}, true {CLASS_NAMES[labels[i]]}; percentile "
                      f"{percentile[i]:.1f}" for i in odd])
        parts.append(report.image(gallery_png(rows, f"Test images flagged as out-of-distribution ({detector.default}),"
                                                    " least typical first"), "flagged OOD"))
    report.section("Knowing when not to trust it", *parts)


def _interpretability_section(report: Report, metrics: dict, artifacts: dict) -> None:
    results = metrics["interpretability"]
    columns = interpretability_columns(metrics["settings"])
    rows, classes = [], []
    for name, values in results.items():
        row = [name + (" (baseline)" if name in BASELINES else "")]
        for key, _ in columns:
            value = values.get(key, "n/a")
            row.append(f"{value[0]:.3f}-{value[1]:.3f}" if isinstance(value, list) else value)
        rows.append(row)
        classes.append("baseline" if name in BASELINES else "")
    uniform = ", ".join(f"{k}: {v:.3f}" for k, v in metrics["uniform_gridpg"].items())
    parts = [
        paragraph("Localisation: grid pointing game (share of positive attribution inside the explained cell; "
                  f"uniform = {uniform}). Faithfulness: deletion and insertion AUC of the explained class's "
                  "probability, and ROAD (Rong et al. 2022): the mean probability after removing 10-90 % of the "
                  "pixels, most (MoRF) or least (LeRF) relevant first, filled in by noisy linear imputation. "
                  "Read ROAD for faithfulness: deletion to black rewards scattered removals on 32x32 images "
                  "(the random baseline wins it), ROAD's imputation does not. Sanity: Spearman correlation of "
                  "|maps| between the trained model and the fully randomised one. Baselines (italic) ignore the "
                  "model: random, centred Gaussian, Sobel edges."),
        table(("method", *(title for _, title in columns)), rows, classes),
    ]
    for game in ("deletion", "insertion"):
        parts.append(report.image(curves_png(artifacts["curves"][game], f"{game} (mean over images)"),
                                  f"{game} curves", width=420))
    for order, title in (("morf", "ROAD, most relevant first"), ("lerf", "ROAD, least relevant first")):
        road_curves = {name: curves[order] for name, curves in artifacts.get("road_curves", {}).items()}
        if road_curves:
            parts.append(report.image(curves_png(road_curves, f"{title} (mean over images)", x=road.SHARES),
                                      f"{title} curves", width=420))
    layers = next(iter(results.values()))["sanity_spearman_by_layer"]
    parts.append(paragraph("Cascading randomisation, top layer first: Spearman correlation after each step."))
    parts.append(table(("method", *layers), [
        (name, *values["sanity_spearman_by_layer"].values()) for name, values in results.items()], classes))
    report.section("Interpretability", *parts)


def _galleries(report: Report, model: keras.Model, images: np.ndarray, labels: np.ndarray, artifacts: dict) -> None:
    probabilities = artifacts["probabilities"]
    labels = labels[: len(probabilities)]
    predicted = probabilities.argmax(1)
    methods = applicable_methods(model)
    picks = [int(np.flatnonzero((labels == k) & (predicted == k))[0]) for k in range(len(CLASS_NAMES))
             if ((labels == k) & (predicted == k)).any()]
    rows = _rows(model, images[picks], predicted[picks], methods,
                 [f"{CLASS_NAMES[labels[i]]} ({probabilities[i, labels[i]]:.0%})" for i in picks])
    correct = report.image(gallery_png(rows, "Correct predictions, one per class"), "gallery of correct predictions")
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:8]
    parts = [correct]
    if len(worst):
        rows = _rows(model, images[worst], predicted[worst], methods,
                     [f"true {CLASS_NAMES[labels[i]]}, said {CLASS_NAMES[predicted[i]]} "
                      f"{probabilities[i, predicted[i]]:.0%}" for i in worst])
        parts.append(report.image(gallery_png(rows, "Most confident mistakes (explaining the predicted class)"),
                                  "most confident mistakes"))
    for size, (grids, maps) in artifacts["grid_examples"].items():
        shown = [m for m in (*OVERVIEW_METHODS, "sobel") if m in maps]
        rows = [(grids.canvases[g], {m: normalize_maps(maps[m][g:g + 1]).numpy()[0] for m in shown},
                 f"cell {grids.target_cell[g]}: {CLASS_NAMES[grids.target_class[g]]}")
                for g in range(min(4, len(grids.canvases)))]
        parts.append(report.image(gallery_png(rows, f"Grid pointing game, {size}x{size}"), f"{size}x{size} grids"))
    report.section("Galleries", *parts)


def _concepts_section(report: Report, model: keras.Model, images: np.ndarray, labels: np.ndarray,
                      training_images: tuple[np.ndarray, np.ndarray] | None, metrics: dict,
                      log: Callable[[str], None]) -> None:
    """Per class: concepts discovered in the CAM map over its training images (NMF), their exact
    share of the class logit, the regions that express them, and the region-deletion check."""
    title = "Concepts"
    if not has_gap_head(model):
        report.section(title, paragraph(f"n/a: {model.name} has no GAP head, so its class scores do not split "
                                        "linearly over the CAM map's concepts (discovery needs interpretable_cnn)."))
        return
    if training_images is None:
        report.section(title, paragraph("No training images were given to discover concepts in "
                                        "(python -m reports.build reads them from the model's training split)."))
        return
    start = time.perf_counter()
    train, train_labels = training_images
    labels = np.asarray(labels)
    rows, figures, records = [], [], {}
    for k, name in enumerate(CLASS_NAMES):
        own, held_out = train[np.asarray(train_labels) == k], images[labels == k][:100]
        if len(own) < 2 or not len(held_out):
            continue
        found = discover_class(model, own, held_out, k)
        record, test = found.record, found.record["region_deletion_test"]
        records[name] = {key: value for key, value in record.items() if key != "concepts"} | {
            "concepts": [{key: c[key] for key in ("rank", "contribution", "share")} for c in record["concepts"]]}
        concepts_part = sum(c["contribution"] for c in record["concepts"])
        rows.append((name, str(record["k"]), str(record["images"]), record["mean_logit"], record["bias"],
                     concepts_part, record["mean_residual"], record["concepts"][0]["share"],
                     test["concept_regions_drop"], test["random_regions_drop"]))
        figures.append(report.image(found.png(examples=4), f"concepts of {name}", width=380))
    metrics["concepts"] = records
    metrics.setdefault("seconds", {})["concepts"] = time.perf_counter() - start
    log(f"concepts: {len(records)} classes ({metrics['seconds']['concepts']:.0f} s)")
    report.section(
        title,
        paragraph("What the network responds to, per class: the CAM map over the class's training images, factorised "
                  "into k non-negative concepts (NMF, CRAFT-style; k by the reconstruction error's elbow). The GAP "
                  "head is linear, so every class logit splits exactly into bias + each concept's contribution + the "
                  "residual the k concepts do not reconstruct (the columns add up to the mean logit). Faithfulness: "
                  "painting over the quarter of the image where the top 3 concepts contribute most, on the class's "
                  "test images, against painting over random quarters; the first must lower the logit more. "
                  "Per class, any number of concepts: python -m cifar_xai.concepts discover --class NAME; concept "
                  "tests (TCAV): python -m cifar_xai.concepts tcav (docs/concepts.md)."),
        table(("class", "k", "images", "mean logit", "bias", "concepts", "residual", "top concept's share",
               "logit drop: concept regions", "random regions"), rows),
        *figures,
    )


def _prototypes_section(report: Report, model: keras.Model, images: np.ndarray, labels: np.ndarray,
                        training_images: tuple[np.ndarray, np.ndarray] | None, metrics: dict, record: dict,
                        probabilities: np.ndarray) -> None:
    """A prototype network's own account: every prototype with its source patch, the diagnostics
    (duplicates, purity, accuracy around push) and "this looks like that" for test images."""
    if not is_prototype_model(model):
        return
    sources, boxes = source_patches(model)
    found = duplicates(model)
    diagnostics = {"duplicates": found}
    rows = [("prototypes", str(found["prototypes"])), ("distinct source patches", str(found["distinct"])),
            ("groups of duplicates", ", ".join(map(str, found["duplicate_groups"])) or "none")]
    if training_images is not None:
        pure = purity(model, *training_images)
        diagnostics["purity"] = {k: v for k, v in pure.items() if k != "per_prototype"}
        shares = np.asarray(pure["per_prototype"])
        least = np.argsort(shares)[:5]
        rows += [(f"purity: own-class share of the {pure['neighbours']} nearest training patches, mean",
                  pure["mean"]), ("purity, least pure prototype", pure["min"]),
                 ("the five least pure (prototype: share)", ", ".join(f"{j}: {shares[j]:.1f}" for j in least))]
    measured = record.get("prototypes") or {}
    for key, title in (("accuracy_before_push", "validation accuracy before push"),
                       ("accuracy_after_push", "after push"), ("accuracy_after_last_layer", "after last-layer tuning")):
        if key in measured:
            rows.append((title, measured[key]))
    metrics["prototypes"] = diagnostics
    predicted = probabilities.argmax(1)
    picks = [int(np.flatnonzero(predicted == k)[0]) for k in range(len(CLASS_NAMES)) if (predicted == k).any()][:3]
    panels = []
    for i in picks:
        explanation = explain_prototypes(model, images[i], top_k=3)[0]
        caption = (f"test image {i}: predicted {CLASS_NAMES[predicted[i]]}, true {CLASS_NAMES[labels[i]]}; "
                   f"logit {explanation.logit:.2f} = sum of {len(explanation.contributions)} contributions")
        panels.append(report.image(prototype_panel_png(images[i], explanation, sources, caption),
                                   f"this looks like that, test image {i}", width=420))
    report.section(
        "Prototypes",
        paragraph("A prototype network decides by similarity to training patches: each logit is exactly the sum of "
                  "last-layer weight x best similarity over the prototypes. Every prototype was pushed onto the "
                  "nearest latent patch of a training image of its class (boxed below). Duplicates are prototypes "
                  "pushed onto the same patch; purity is the share of a prototype's nearest training patches that "
                  "come from its own class. Localisation of the prototype map is in the Interpretability table "
                  "(method 'prototypes'). python -m cifar_xai.explain --method prototypes explains any image."),
        table(("diagnostic", "value"), rows),
        report.image(prototype_gallery_png(sources, boxes, CLASS_NAMES, "Every prototype: the training image it "
                                           "was pushed onto, its patch boxed"), "prototype gallery"),
        *panels,
    )


def _rows(model, images, classes, methods, captions):
    maps = {m: explain(model, images, m, classes=classes.tolist()) for m in methods}
    return [(images[i], {m: maps[m][i] for m in methods}, captions[i]) for i in range(len(images))]


def _inside_the_network(report: Report, model: keras.Model, images: np.ndarray, steps: int) -> None:
    parts = [report.image(image_grid_png(first_layer_filters(model), "First-layer filters (RGB)", columns=12),
                          "first-layer filters", pixelated=True)]
    sample = images[0]
    for layer in (spatial_layers(model)[-2], CAM_LAYER):
        maps = np.moveaxis(feature_maps(model, sample, layer), -1, 0)[:64]
        parts.append(report.image(image_grid_png(maps, f"{layer}: first {len(maps)} feature maps of test image 0"),
                                  f"feature maps of {layer}"))
    # Optimised in a decorrelated parameterisation with transformation robustness (docs/explanations.md):
    # pixel-space activation maximisation at 32x32 showed grey noise.
    dreams = visualise(model, range(len(CLASS_NAMES)), steps=steps)
    parts.append(report.image(image_grid_png(dreams.astype(np.float32) / 255, "What each class looks like to the model "
                                             "(feature visualisation): " + ", ".join(CLASS_NAMES), columns=10),
                              "class visualisations", pixelated=True))
    report.section("Inside the network", *parts)
