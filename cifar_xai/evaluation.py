"""Evaluating a trained classifier on a tfds split, with and without test-time augmentation."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import class_names
from cifar_xai.data.pipeline import evaluation_dataset
from cifar_xai.metrics import classification_metrics, probability_scores
from cifar_xai.models import compiled_forward
from cifar_xai.uncertainty.calibration import apply_temperature, temperature_of


def _shift(images: tf.Tensor, rows: int, cols: int) -> tf.Tensor:
    """Translate by one pixel (rows, cols in {-1, 1}) with reflect padding, keeping the size."""
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    size = images.shape[1]
    return padded[:, 1 + rows:1 + rows + size, 1 + cols:1 + cols + size]


def tta_probabilities(
    model: keras.Model | Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor
) -> dict[str, np.ndarray]:
    """Plain, flip-averaged and flip + translate-averaged class probabilities of one batch.

    flip_translate is airbench's level-2 TTA: half the weight on the image and its mirror, a
    quarter each on the mirrored pairs shifted one pixel up-left and down-right. The six views go
    through the network (a model or a `compiled_forward`) as one batch.
    """
    views = []
    for shifted in (images, _shift(images, -1, -1), _shift(images, 1, 1)):
        views += [shifted, tf.reverse(shifted, axis=[2])]
    n = images.shape[0]
    # A Keras model called without `training` runs in inference mode, like compiled_forward.
    outputs = np.asarray(model(tf.concat(views, axis=0)), dtype=np.float32).reshape(6, n, -1)
    mirrored = (outputs[0::2] + outputs[1::2]) / 2  # [3, n, classes]: centre, up-left, down-right
    return {
        "plain": outputs[0],
        "flip": mirrored[0],
        "flip_translate": mirrored[0] / 2 + (mirrored[1] + mirrored[2]) / 4,
    }


def predict_split(
    model: keras.Model, data_dir: str | os.PathLike | None, split: str = "test", batch_size: int = 1000,
    tta: bool = False, classes: Sequence[int] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Class probabilities [N, 10] (float32) of every image of `split` under "plain" and, with
    `tta`, under "flip" and "flip_translate", plus the true labels [N], in one pass over the data.

    Test-time augmentations are reported beside the plain accuracy, never instead of it. With
    `classes`, only those classes' images, labelled by position (`load_split`)."""
    probabilities: dict[str, list[np.ndarray]] = {}
    labels = []
    forward = compiled_forward(model)
    for images, batch_labels in evaluation_dataset(data_dir, split, batch_size, classes):
        if tta:
            batch = tta_probabilities(forward, images)
        else:
            batch = {"plain": np.asarray(forward(images), dtype=np.float32)}
        for name, values in batch.items():
            probabilities.setdefault(name, []).append(values)
        labels.append(batch_labels.numpy())
    return {name: np.concatenate(parts) for name, parts in probabilities.items()}, np.concatenate(labels)


def evaluate_classifier(
    model: keras.Model, data_dir: str | os.PathLike | None, split: str = "test", batch_size: int = 1000,
    tta: bool = False, classes: Sequence[int] | None = None,
) -> tuple[dict, dict[str, float]]:
    """Classification metrics of the plain predictions (with their ECE and NLL under "calibration"),
    and the accuracy under each test-time augmentation of `tta_probabilities` (empty without `tta`)."""
    probabilities, labels = predict_split(model, data_dir, split, batch_size, tta, classes)
    plain = probabilities.pop("plain")
    metrics = classification_metrics(labels, plain.argmax(axis=1), class_names(classes))
    scores = probability_scores(plain, labels)
    metrics["calibration"] = {"ece": scores["ece"], "nll": scores["nll"]}
    temperature = temperature_of(model)
    # The same predictions without the folded temperature: what calibration changed (nothing
    # when the temperature was kept at 1 because it did not lower the held-out ECE).
    raw = probability_scores(apply_temperature(plain, 1 / temperature), labels) if temperature != 1.0 else scores
    metrics["calibration"].update(temperature=temperature, ece_uncalibrated=raw["ece"], nll_uncalibrated=raw["nll"])
    return metrics, {name: float((p.argmax(axis=1) == labels).mean()) for name, p in probabilities.items()}
