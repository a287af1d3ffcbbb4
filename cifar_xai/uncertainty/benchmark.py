"""The out-of-distribution benchmark: every score of a detector on the same images, one table.

As OpenOOD runs it: in-distribution test images against each outlier set, AUROC / AUPR-In /
AUPR-Out / FPR@95 %TPR per (score, set); shifted but in-class images (corrupted CIFAR-10) apart,
as the share each score flags, since flagging them is not a detection; and selective prediction
on the in-distribution images with each score as the confidence (risk-coverage, AURC).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from cifar_xai.robustness.corruptions import CORRUPTIONS, corrupt
from cifar_xai.uncertainty.detector import OODDetector
from cifar_xai.uncertainty.metrics import risk_coverage, separation

# Outlier sets that are "far" (no CIFAR-10 content at all); any other name counts as near-OOD.
FAR_SETS = ("fashion_mnist", "uniform_noise", "noise_jpeg", "gaussian_noise", "smooth_blobs", "constant_colours")


def ood_benchmark(
    model: keras.Model, detector: OODDetector, id_images, id_labels,
    outliers: Mapping[str, np.ndarray], shifted: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """Every score of `detector` on in-distribution images against each outlier set.

    `shifted` maps a name to (images, labels) of in-class but altered images (corruptions).
    """
    outputs = detector.outputs(model, id_images)
    id_scores = detector.score_arrays(outputs)
    correct = outputs["class_logits"].argmax(1) == np.asarray(id_labels)
    result: dict = {
        "id": {"images": len(id_images), "accuracy": float(correct.mean())},
        "default": detector.default, "thresholds": detector.thresholds,
        "id_kept": {name: float(detector.in_distribution(id_scores, name).mean()) for name in id_scores},
        "outliers": {}, "shifted": {}, "selective": {},
    }
    for name, images in outliers.items():
        scores = detector.score_images(model, images)
        result["outliers"][name] = {
            "images": len(images), "far": name in FAR_SETS,
            "scores": {score: separation(id_scores[score], values) for score, values in scores.items()},
        }
    for name, (images, labels) in (shifted or {}).items():
        outputs = detector.outputs(model, images)
        scores = detector.score_arrays(outputs)
        result["shifted"][name] = {
            "images": len(images), "accuracy": float((outputs["class_logits"].argmax(1) == np.asarray(labels)).mean()),
            "flagged": {score: float(1 - detector.in_distribution(scores, score).mean()) for score in scores},
        }
    result["shifted_by_severity"] = _by_severity(result["shifted"])
    result["selective"] = {name: {k: v for k, v in entry.items() if k not in ("coverage", "risk")}
                           for name, entry in selective_prediction(id_scores, correct).items()}
    result["summary"] = summarise(result)
    return result


# Corrupted sets at these severities (of the CIFAR-10-C five): mild, middle, worst.
SHIFT_SEVERITIES = (1, 3, 5)


def corrupted_sets(images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`<corruption>-<severity>` -> (corrupted images, labels): every corruption at `SHIFT_SEVERITIES`."""
    return {f"{name}-{severity}": (corrupt(images, name, severity, seed), labels)
            for name in CORRUPTIONS for severity in SHIFT_SEVERITIES}


def _by_severity(shifted: dict) -> dict:
    """The shifted sets' figures averaged over the corruptions, one entry per severity."""
    out = {}
    for severity in SHIFT_SEVERITIES:
        rows = [v for k, v in shifted.items() if k.rsplit("-", 1)[-1] == str(severity)]
        if rows:
            out[f"corrupted, severity {severity}"] = {
                "images": sum(r["images"] for r in rows), "accuracy": float(np.mean([r["accuracy"] for r in rows])),
                "flagged": {s: float(np.mean([r["flagged"][s] for r in rows])) for s in rows[0]["flagged"]}}
    return out


def selective_prediction(scores: Mapping[str, np.ndarray], correct: np.ndarray, points: int = 101) -> dict:
    """Per score: AURC, accuracy at 80 / 90 / 95 / 100 % coverage and the risk-coverage curve
    sampled at `points` coverages (for plots)."""
    out = {}
    for name, values in scores.items():
        curve = risk_coverage(values, correct)
        at = np.clip(np.round(np.linspace(0.01, 1, points) * len(correct)).astype(int) - 1, 0, len(correct) - 1)
        out[name] = {"aurc": curve["aurc"], "accuracy_at": curve["accuracy_at"],
                     "coverage": curve["coverage"][at], "risk": curve["risk"][at]}
    return out


def summarise(result: dict) -> dict:
    """Per score: mean AUROC and FPR@95 over the far and the near outlier sets, the worst far AUROC."""
    summary = {}
    for score in result["selective"]:
        entry = {}
        for kind, far in (("far", True), ("near", False)):
            sets = [v["scores"][score] for v in result["outliers"].values() if v["far"] == far]
            if sets:
                entry[f"{kind}_auroc"] = float(np.mean([s["auroc"] for s in sets]))
                entry[f"{kind}_fpr95"] = float(np.mean([s["fpr95"] for s in sets]))
                if far:
                    entry["far_auroc_min"] = float(min(s["auroc"] for s in sets))
        if result["shifted"]:
            entry["shifted_flagged"] = float(np.mean([v["flagged"][score] for v in result["shifted"].values()]))
        summary[score] = entry
    return summary


def format_table(result: dict) -> str:
    """AUROC / FPR@95 and AUPR-In / AUPR-Out (%) per outlier set and score, then the shifted sets
    and selective prediction."""
    scores = list(result["selective"])
    width = max(len(name) for name in [*result["outliers"], *result["shifted"], "selective: AURC (x1000)"]) + 2
    header = "".join(f"{s:>16}" for s in scores)
    lines = [f"in-distribution: {result['id']['images']:,} images, accuracy {result['id']['accuracy']:.2%}; "
             f"in_distribution by {result['default']}", "",
             f"{'AUROC / FPR@95 (%)':<{width}}{header}"]
    for name, entry in result["outliers"].items():
        cells = "".join(f"{100 * entry['scores'][s]['auroc']:>9.1f} / {100 * entry['scores'][s]['fpr95']:<4.1f}"
                        for s in scores)
        lines.append(f"{name + (' (near)' if not entry['far'] else ''):<{width}}{cells}")
    for kind in ("far", "near"):
        key = f"{kind}_auroc"
        if any(key in result["summary"][s] for s in scores):
            cells = "".join(f"{100 * result['summary'][s][key]:>9.1f} / "
                            f"{100 * result['summary'][s][f'{kind}_fpr95']:<4.1f}" for s in scores)
            lines.append(f"{'mean ' + kind:<{width}}{cells}")
    if all(entry["far"] for entry in result["outliers"].values()):
        lines.append("near-OOD: no set for a model of all ten classes (near-OOD is CIFAR-10 classes it never saw: "
                     "train with python -m trainers.fit --known-classes, docs/ood.md)")
    lines += ["", f"{'AUPR-In / AUPR-Out (%)':<{width}}{header}"]
    for name, entry in result["outliers"].items():
        cells = "".join(f"{100 * entry['scores'][s]['aupr_in']:>9.1f} / {100 * entry['scores'][s]['aupr_out']:<4.1f}"
                        for s in scores)
        lines.append(f"{name:<{width}}{cells}")
    if result["shifted"]:
        lines += ["", f"{'flagged as OOD (%)':<{width}}{header}"]
        kept = "".join(f"{100 * (1 - result['id_kept'][s]):>16.1f}" for s in scores)
        lines.append(f"{'clean (in-distribution)':<{width}}{kept}")
        for name, entry in result["shifted"].items():
            lines.append(f"{name:<{width}}" + "".join(f"{100 * entry['flagged'][s]:>16.1f}" for s in scores))
    lines += ["", f"{'selective: AURC (x1000)':<{width}}"
              + "".join(f"{1000 * result['selective'][s]['aurc']:>16.2f}" for s in scores)]
    for share in ("80%", "90%", "95%"):
        lines.append(f"{'accuracy at ' + share + ' coverage':<{width}}"
                     + "".join(f"{100 * result['selective'][s]['accuracy_at'][share]:>16.2f}" for s in scores))
    return "\n".join(lines)
