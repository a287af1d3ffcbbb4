"""Evaluating a trained classifier on a tfds split."""

from __future__ import annotations

import os

import keras
import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.data.pipeline import evaluation_dataset
from cifar_xai.metrics import classification_metrics


def predict_split(
    model: keras.Model, data_dir: str | os.PathLike | None, split: str = "test", batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [N, 10] (float32) and true labels [N] for every image of `split`."""
    probabilities, labels = [], []
    for images, batch_labels in evaluation_dataset(data_dir, split, batch_size):
        probabilities.append(np.asarray(model(images, training=False), dtype=np.float32))
        labels.append(batch_labels.numpy())
    return np.concatenate(probabilities), np.concatenate(labels)


def evaluate_classifier(
    model: keras.Model, data_dir: str | os.PathLike | None, split: str = "test", batch_size: int = 1000
) -> dict:
    probabilities, labels = predict_split(model, data_dir, split, batch_size)
    return classification_metrics(labels, probabilities.argmax(axis=1), CLASS_NAMES)
