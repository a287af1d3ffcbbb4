"""The corruption benchmark: a model's accuracy and calibration on every corruption x severity.

Reported like CIFAR-10-C results are: accuracy per corruption and severity, the mean corruption
accuracy (mCA: the mean over the 15 corruptions x 5 severities), and the clean accuracy beside it;
plus the expected calibration error (ECE, 15 bins) and NLL of each set, because a model that is
wrong under a corruption should at least not be sure of itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from cifar_xai.metrics import calibration
from cifar_xai.metrics import probability_scores as set_scores
from cifar_xai.probes import predict
from cifar_xai.robustness.corruptions import CORRUPTIONS, SEVERITIES, corrupt


def corruption_benchmark(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 500,
    progress: Callable[[str, int, dict], None] | None = None,
) -> dict:
    """Scores of `model` on the clean `images` (uint8 [N, 32, 32, 3]) and on each corrupted copy.

    Returns {"clean": scores, "corruptions": {name: {severity: scores}}, "per_corruption":
    {name: mean accuracy}, "mca", "mean_ece", "num_images", "calibration": {"clean", "corrupted"}}
    where the last two hold reliability bins (`cifar_xai.metrics.calibration`) of the clean set and
    of every corrupted set pooled. The sets are generated from `seed`, so two models (or two runs)
    are compared on exactly the same images.
    """
    labels = np.asarray(labels)
    clean = predict(model, images, batch_size)
    result: dict = {"num_images": int(len(labels)), "seed": seed, "clean": set_scores(clean, labels),
                    "corruptions": {}}
    # Pooled over every set for one reliability diagram; confidences and hits are all it needs.
    pooled: list[np.ndarray] = []
    for name in corruptions:
        result["corruptions"][name] = {}
        for severity in severities:
            probabilities = predict(model, corrupt(images, name, severity, seed), batch_size)
            scores = set_scores(probabilities, labels)
            pooled.append(probabilities)
            result["corruptions"][name][str(severity)] = scores
            if progress is not None:
                progress(name, severity, scores)
    per_set = [s for by_severity in result["corruptions"].values() for s in by_severity.values()]
    result["per_corruption"] = {
        name: float(np.mean([s["accuracy"] for s in by_severity.values()]))
        for name, by_severity in result["corruptions"].items()
    }
    result["mca"] = float(np.mean([s["accuracy"] for s in per_set])) if per_set else float("nan")
    result["mean_ece"] = float(np.mean([s["ece"] for s in per_set])) if per_set else float("nan")
    result["calibration"] = {"clean": calibration(clean, labels)}
    if pooled:
        result["calibration"]["corrupted"] = calibration(np.concatenate(pooled), np.tile(labels, len(pooled)))
    return result


def format_table(result: dict, key: str = "accuracy") -> list[str]:
    """Markdown rows: one per corruption (severities 1-5 and their mean), then the clean set."""
    severities = next(iter(result["corruptions"].values()), {}).keys()
    lines = [f"| corruption | {' | '.join(severities)} | mean |", "|---" * (len(severities) + 2) + "|"]
    for name, by_severity in result["corruptions"].items():
        values = [by_severity[s][key] for s in severities]
        lines.append(f"| {name} | {' | '.join(f'{v:.2%}' for v in values)} | {np.mean(values):.2%} |")
    mean_key = "mca" if key == "accuracy" else f"mean_{key}"
    if mean_key in result:
        lines.append(f"| **mean of all** | {' | '.join('' for _ in severities)} | **{result[mean_key]:.2%}** |")
    lines.append(f"| clean | {' | '.join('' for _ in severities)} | {result['clean'][key]:.2%} |")
    return lines
