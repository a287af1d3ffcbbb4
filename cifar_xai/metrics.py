"""Classification metrics computed from labels and predictions (numpy only, no hidden state)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [num_classes, num_classes]: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # A class never predicted (or never present) scores 0 rather than NaN, as scikit-learn's
    # zero_division=0 does, so macro averages stay defined.
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, per-class precision / recall / F1 / support, their macro averages, the confusion matrix."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    true_positives = np.diag(cm).astype(np.float64)
    precision = _safe_divide(true_positives, cm.sum(axis=0))
    recall = _safe_divide(true_positives, cm.sum(axis=1))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {
        "accuracy": float(true_positives.sum() / max(cm.sum(), 1)),
        "num_examples": int(cm.sum()),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(cm[k].sum()),
            }
            for k, name in enumerate(class_names)
        },
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "confusion_matrix": cm.tolist(),
    }


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error (Guo et al. 2017) over equal-width confidence bins, and the bins.

    ECE = sum over bins of (bin size / N) * |accuracy in bin - mean confidence in bin|.
    """
    probabilities = np.asarray(probabilities, np.float64)
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    # Right-closed bins, (lo, hi], with confidence 0 in the first.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    accuracy = _safe_divide(np.bincount(index, weights=correct, minlength=bins), counts)
    mean_confidence = _safe_divide(np.bincount(index, weights=confidence, minlength=bins), counts)
    ece = float(np.sum(counts / max(len(confidence), 1) * np.abs(accuracy - mean_confidence)))
    return {
        "ece": ece,
        "bins": bins,
        "bin_edges": edges.tolist(),
        "bin_counts": counts.tolist(),
        "bin_accuracy": accuracy.tolist(),
        "bin_confidence": mean_confidence.tolist(),
    }


def probability_scores(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, ECE (15 bins) and mean negative log-likelihood of one set's class probabilities."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "accuracy": float((probabilities.argmax(1) == labels).mean()) if len(labels) else float("nan"),
        "ece": calibration(probabilities, labels)["ece"],
        # Clipped like Keras' cross-entropy, so one certain mistake cannot make the mean infinite.
        "nll": float(-np.log(np.maximum(picked, 1e-7)).mean()) if len(labels) else float("nan"),
    }


def row_normalized(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total: the share of each true class predicted as each class."""
    cm = np.asarray(cm, np.float64)
    return _safe_divide(cm, np.broadcast_to(cm.sum(1, keepdims=True), cm.shape))
