"""The evaluation in TensorBoard, plugin by plugin: images, text (Markdown tables), HParams and
per-class precision-recall curves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.pr_curve import summary as pr_summary

from cifar_xai import CLASS_NAMES
from cifar_xai.explain.registry import OVERVIEW_METHODS
from cifar_xai.interpretability.attributions import BASELINES
from cifar_xai.interpretability.metrics import figures
from cifar_xai.interpretability.settings import Settings


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_summaries(log_dir: Path, metrics: dict, artifacts: dict, config: dict, report_dir: Path) -> None:
    """Everything under one run folder, step 0: the evaluation is a single point in time."""
    writer = tf.summary.create_file_writer(os.fspath(log_dir))
    classification = metrics["classification"]
    interpretability = metrics["interpretability"]
    with writer.as_default(step=0):
        # Images: every figure of the HTML report, under its alt text.
        for png in sorted((report_dir / "images").glob("*.png")):
            image = tf.image.decode_png(png.read_bytes(), channels=3)
            tf.summary.image(f"report/{png.stem}", image[None], step=0)
        # Text: the metric tables as Markdown.
        tf.summary.text("classification", markdown_table(
            ["class", "precision", "recall", "F1"],
            [[k, v["precision"], v["recall"], v["f1"]] for k, v in classification["per_class"].items()]
            + [["macro", *classification["macro"].values()]]), step=0)
        every = figures(Settings(**metrics["settings"]))
        keys = [figure.key for figure in every if figure.in_table]
        tf.summary.text("interpretability", markdown_table(
            ["method", *keys],
            [[name + (" (baseline)" if name in BASELINES else ""), *(values.get(k, "n/a") for k in keys)]
             for name, values in interpretability.items()]), step=0)
        # Scalars the HParams dashboard pairs with the run's settings.
        tf.summary.scalar("eval/accuracy", classification["accuracy"], step=0)
        tf.summary.scalar("eval/ece", classification["ece"], step=0)
        if metrics.get("robustness"):
            tf.summary.scalar("eval/mean_corruption_accuracy", metrics["robustness"]["mca"], step=0)
            tf.summary.scalar("eval/mean_corrupted_ece", metrics["robustness"]["mean_ece"], step=0)
        if metrics.get("uncertainty"):
            for name, values in metrics["uncertainty"]["selective"].items():
                tf.summary.scalar(f"eval/aurc_{name}", values["aurc"], step=0)
            tf.summary.scalar("eval/test_flagged_ood", metrics["uncertainty"]["flagged_share"], step=0)
        for name in OVERVIEW_METHODS[:2]:
            for key in (figure.key for figure in every if figure.headline):
                if key in interpretability.get(name, {}):
                    tf.summary.scalar(f"eval/{name}_{key}", interpretability[name][key], step=0)
        hparams_api.hparams({k: v for k, v in config.items() if isinstance(v, int | float | str | bool)}
                            or {"model": metrics["model"]["name"]})
        # Precision-recall curve per class, one-vs-rest on the predicted probabilities.
        probabilities = artifacts["probabilities"]
        labels = np.asarray(artifacts["labels"])[: len(probabilities)]
        for k, name in enumerate(CLASS_NAMES):
            summary = pr_summary.pb(f"pr_curves/{name}", labels == k, probabilities[:, k].astype(np.float32),
                                    num_thresholds=101)
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=0)
    writer.close()
