"""Keras callbacks that show the explanations sharpen while the model trains."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import CLASS_NAMES
from cifar_xai.data.pipeline import split_arrays
from cifar_xai.explain.core import explain
from cifar_xai.explain.registry import OVERVIEW_METHODS, applicable_methods
from cifar_xai.plots import overlay

DISPLAY_SCALE = 4  # 32-px images are too small to read in TensorBoard at 1:1


def probe_set(data_dir: str | os.PathLike | None, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The first image of each class in `split` (uint8 [k, 32, 32, 3], labels [k]), in class order."""
    images, labels = (t.numpy() for t in split_arrays(data_dir, split))
    firsts = [int(np.flatnonzero(labels == k)[0]) for k in range(len(CLASS_NAMES)) if (labels == k).any()]
    return images[firsts], labels[firsts]


def overlay_strip(images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Overlays side by side, above the plain images, enlarged: uint8 [2 * 4h, k * 4w, 3]."""
    top = np.concatenate([overlay(image, heatmap) for image, heatmap in zip(images, maps, strict=True)], axis=1)
    bottom = np.concatenate(list(images), axis=1)
    strip = np.concatenate([top, bottom], axis=0)
    return strip.repeat(DISPLAY_SCALE, axis=0).repeat(DISPLAY_SCALE, axis=1)


class ExplanationSummaries(keras.callbacks.Callback):
    """Every `every` epochs, writes CAM, Grad-CAM and saliency overlays of a fixed probe set.

    The true class is explained, so the images show where the network looks for the right answer.
    """

    def __init__(self, log_dir: str | os.PathLike, images: np.ndarray, labels: np.ndarray, every: int = 1,
                 methods: tuple[str, ...] | None = None):
        super().__init__()
        self.images, self.labels, self.every, self.methods = images, labels, every, methods
        self.writer = tf.summary.create_file_writer(os.fspath(log_dir))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        names = ", ".join(CLASS_NAMES[k] for k in self.labels)
        with self.writer.as_default():
            for method in applicable_methods(self.model, self.methods or OVERVIEW_METHODS):
                maps = explain(self.model, self.images, method, classes=self.labels.tolist())
                tf.summary.image(f"explanations/{method}", overlay_strip(self.images, maps)[None], step=epoch + 1,
                                 description=f"{method} of the true class, left to right: {names}")
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()
