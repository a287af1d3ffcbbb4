"""How well a score separates, and how well it ranks, predictions (numpy only, ties handled).

Convention everywhere: a higher score means "in-distribution" (or "trust this prediction"), the
in-distribution images are the positives, and a threshold keeps images scoring at or above it.

- `auroc`: the probability that a random in-distribution image outscores a random outlier,
  ties counted half (the Mann-Whitney statistic, equal to the area under the ROC curve);
- `aupr`: average precision with the in-distribution images as positives (AUPR-In) or, with
  `positive="ood"`, the outliers as positives ranked by the negated score (AUPR-Out);
- `fpr_at_tpr`: the share of outliers kept by the highest threshold that keeps `tpr` of the
  in-distribution images (FPR@95 %TPR);
- `risk_coverage`: selective prediction (Geifman & El-Yaniv 2017): keep the most confident
  predictions, and the error among those kept as coverage grows; AURC is its mean.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _pair(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    id_scores, ood_scores = np.asarray(id_scores, np.float64).ravel(), np.asarray(ood_scores, np.float64).ravel()
    if not (len(id_scores) and len(ood_scores)):
        raise ValueError("AUROC / AUPR / FPR need at least one in-distribution and one outlier score")
    if not (np.isfinite(id_scores).all() and np.isfinite(ood_scores).all()):
        raise ValueError("scores must be finite")
    return id_scores, ood_scores


def auroc(id_scores, ood_scores) -> float:
    id_scores, ood_scores = _pair(id_scores, ood_scores)
    ranks = rankdata(np.concatenate([id_scores, ood_scores]))  # ties get their average rank
    n, m = len(id_scores), len(ood_scores)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * m))


def aupr(id_scores, ood_scores, positive: str = "id") -> float:
    id_scores, ood_scores = _pair(id_scores, ood_scores)
    if positive == "ood":
        id_scores, ood_scores = -ood_scores, -id_scores
    scores = np.concatenate([id_scores, ood_scores])
    is_positive = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    order = np.argsort(-scores, kind="stable")
    scores, is_positive = scores[order], is_positive[order]
    # One point per distinct threshold: tied scores enter together (as scikit-learn does).
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(is_positive)[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / len(id_scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_at_tpr(id_scores, tpr: float = 0.95) -> float:
    """The highest threshold that keeps at least `tpr` of `id_scores` (score >= threshold)."""
    ordered = np.sort(np.asarray(id_scores, np.float64))
    return float(ordered[int(np.floor((1 - tpr) * len(ordered) + 1e-9))] if tpr < 1 else ordered[0])


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95) -> float:
    id_scores, ood_scores = _pair(id_scores, ood_scores)
    return float((ood_scores >= threshold_at_tpr(id_scores, tpr)).mean())


def separation(id_scores, ood_scores) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out and FPR@95 %TPR of one score on one outlier set."""
    return {"auroc": auroc(id_scores, ood_scores), "aupr_in": aupr(id_scores, ood_scores),
            "aupr_out": aupr(id_scores, ood_scores, positive="ood"), "fpr95": fpr_at_tpr(id_scores, ood_scores)}


def risk_coverage(confidence, correct) -> dict:
    """Error rate among the `i` most confident predictions, for every i, and its summaries.

    Ties in confidence are broken pessimistically (wrong predictions first), so a constant
    score earns no credit for an arbitrary order.
    """
    confidence, correct = np.asarray(confidence, np.float64).ravel(), np.asarray(correct, bool).ravel()
    if len(confidence) != len(correct) or not len(correct):
        raise ValueError("risk_coverage needs one confidence per prediction, and at least one")
    order = np.lexsort((correct, -confidence))  # by confidence, then wrong (False) before right
    errors = np.cumsum(~correct[order])
    kept = np.arange(1, len(correct) + 1)
    risk = errors / kept
    coverage = kept / len(correct)

    def accuracy_at(share: float) -> float:
        return float(1 - risk[max(int(np.ceil(share * len(correct))) - 1, 0)])

    return {
        "coverage": coverage, "risk": risk, "aurc": float(risk.mean()),
        "accuracy_at": {f"{share:.0%}": accuracy_at(share) for share in (0.8, 0.9, 0.95, 1.0)},
    }
