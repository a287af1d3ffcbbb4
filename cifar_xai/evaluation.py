"""Evaluating a trained classifier on a tfds split."""

from __future__ import annotations

import os

import keras
import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.data.pipeline import evaluation_dataset
from cifar_xai.metrics import classification_metrics


def predict_split(
    model: keras.Model, data_dir: str | os.PathLike | None, split: str = "test", batch_size: int = 1000,
    flip_tta: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Class probabilities [N, 10] (float32), the flip-TTA probabilities (or None) and the true
    labels [N] for every image of `split`, in one pass over the data.

    Flip TTA averages the probabilities of each image and its mirror image; it is reported
    separately from the plain figure, never instead of it.
    """
    probabilities, averaged, labels = [], [], []
    for images, batch_labels in evaluation_dataset(data_dir, split, batch_size):
        plain = np.asarray(model(images, training=False), dtype=np.float32)
        probabilities.append(plain)
        if flip_tta:
            averaged.append((plain + np.asarray(model(images[:, :, ::-1], training=False), dtype=np.float32)) / 2)
        labels.append(batch_labels.numpy())
    return np.concatenate(probabilities), np.concatenate(averaged) if flip_tta else None, np.concatenate(labels)


def evaluate_classifier(
    model: keras.Model, data_dir: str | os.PathLike | None, split: str = "test", batch_size: int = 1000,
    flip_tta: bool = False,
) -> dict:
    """Classification metrics of the plain predictions; with `flip_tta`, also `flip_tta_accuracy`."""
    probabilities, averaged, labels = predict_split(model, data_dir, split, batch_size, flip_tta)
    metrics = classification_metrics(labels, probabilities.argmax(axis=1), CLASS_NAMES)
    if flip_tta:
        metrics["flip_tta_accuracy"] = float((averaged.argmax(axis=1) == labels).mean())
    return metrics
