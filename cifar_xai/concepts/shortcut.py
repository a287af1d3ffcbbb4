"""The planted-shortcut test: does a model use a mark, and do our explanations say so?

Given a model and the class a mark may have been planted on (`trainers.fit --plant-mark`), measure

- behaviour: accuracy on test images of the other classes with and without the mark, and how
  many of them the mark turns into the planted class (the "Clever Hans" rate);
- TCAV of the `mark` concept for every class at every layer (significance as in `tcav`);
- attribution: the share of CAM's and Grad-CAM's positive mass inside the mark's box on marked
  test images, against the box's share of the image (a ratio of 1 is "no more than chance").

On a model trained without the mark the same measurements are the control.
"""

from __future__ import annotations

import keras
import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.concepts.sets import MARK_CONCEPT
from cifar_xai.concepts.study import run_tcav
from cifar_xai.config import MARK_SIZE, TCAV_RUNS, TCAV_TARGET
from cifar_xai.data.marks import mark_box, random_corners, stamp
from cifar_xai.data.pipeline import split_arrays
from cifar_xai.explain.core import explain
from cifar_xai.explain.registry import applicable_methods
from cifar_xai.probes import predict


def mark_attribution(model: keras.Model, images: np.ndarray, corners: np.ndarray, target: int | None = None,
                     methods=("cam", "gradcam")) -> dict[str, float]:
    """Per method: share of the positive attribution for `target` (None: each image's predicted
    class) inside each image's mark box, divided by the box's share of the image (1: as much as
    anywhere else; > 1: drawn to the mark)."""
    size = images.shape[1]
    inside = np.zeros(images.shape[:3], bool)
    for index, corner in enumerate(corners):
        top, left, bottom, right = mark_box(int(corner), size)
        inside[index, top:bottom, left:right] = True
    area = inside[0].mean()
    out = {}
    for method in applicable_methods(model, methods):
        maps = explain(model, images, method, classes=target, normalize=False).clip(min=0)
        total = maps.sum(axis=(1, 2))
        share = np.where(total > 0, (maps * inside).sum(axis=(1, 2)) / np.maximum(total, 1e-12), area)
        out[method] = float(share.mean() / area)
    return out


def shortcut_report(model: keras.Model, target: int, data_dir, settings: dict | None = None,
                    runs: int = TCAV_RUNS, tcav_images: int = 100, seed: int = 0,
                    tcav_target: str = TCAV_TARGET) -> dict:
    """Every measurement above for `model` and the planted class `target`, as a JSON-ready dict."""
    images, labels = (t.numpy() for t in split_arrays(data_dir, "test"))
    corners = random_corners(len(images), seed)
    marked = stamp(images, corners).numpy()
    clean_pred = predict(model, images).argmax(axis=1)
    marked_pred = predict(model, marked).argmax(axis=1)
    others, own = labels != target, labels == target
    behaviour = {
        "accuracy_clean": float(np.mean(clean_pred == labels)),
        "other_classes_accuracy_unmarked": float(np.mean(clean_pred[others] == labels[others])),
        "other_classes_accuracy_marked": float(np.mean(marked_pred[others] == labels[others])),
        # Of the other classes' images, the share the mark turns into the planted class.
        "other_classes_flipped_to_target": float(np.mean((marked_pred[others] == target)
                                                          & (clean_pred[others] != target))),
        "target_accuracy_unmarked": float(np.mean(clean_pred[own] == target)),
        "target_accuracy_marked": float(np.mean(marked_pred[own] == target)),
    }
    own_picks, other_picks = np.flatnonzero(own)[:200], np.flatnonzero(others)[:200]
    attribution = {
        "target_images": mark_attribution(model, marked[own_picks], corners[own_picks], target),
        # Explained for what the model predicts on them: the planted class where the mark flipped them.
        "other_images": mark_attribution(model, marked[other_picks], corners[other_picks]),
        "box_share_of_image": MARK_SIZE**2 / images.shape[1] ** 2,
    }
    results = run_tcav(model, [MARK_CONCEPT], list(range(len(CLASS_NAMES))), data_dir, settings, runs=runs,
                       images=tcav_images, seed=seed, target=tcav_target)
    return {"target": CLASS_NAMES[target], "behaviour": behaviour, "attribution": attribution,
            "tcav": [r.to_dict() for r in results]}
