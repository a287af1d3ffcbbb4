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
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [N, 10] (float32) and true labels [N] for every image of `split`.

    `flip_tta` averages the probabilities of each image and its mirror image (test-time
    augmentation); reported separately from the plain figure, never instead of it.
    """
    probabilities, labels = [], []
    for images, batch_labels in evaluation_dataset(data_dir, split, batch_size):
        batch = np.asarray(model(images, training=False), dtype=np.float32)
        if flip_tta:
            batch = (batch + np.asarray(model(images[:, :, ::-1], training=False), dtype=np.float32)) / 2
        probabilities.append(batch)
        labels.append(batch_labels.numpy())
    return np.concatenate(probabilities), np.concatenate(labels)


def evaluate_classifier(
    model: keras.Model, data_dir: str | os.PathLike | None, split: str = "test", batch_size: int = 1000,
    flip_tta: bool = False,
) -> dict:
    probabilities, labels = predict_split(model, data_dir, split, batch_size, flip_tta)
    return classification_metrics(labels, probabilities.argmax(axis=1), CLASS_NAMES)
