"""How stable are explanations? Two questions the project description raises ("heatmaps may vary
with architecture and hyperparameters") and nobody had measured:

- across retraining: the same recipe trained with other seeds (or another setting), explaining
  the same images: how alike are the maps, beside how alike are the predictions?
- under changes the prediction should ignore: the image shifted by one pixel, or mirrored; the
  map of the changed image, mapped back, should be the map of the original.

Agreement of two maps, per image: the Spearman rank correlation of their pixels, and the share of
the top 20 % pixels of one that are also in the top 20 % of the other (chance: 0.2). Both are 1
for identical maps; for unrelated maps the correlation is near 0 and the overlap near 0.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import keras
import numpy as np

from cifar_xai.explain.core import explain
from cifar_xai.explain.registry import applicable_methods

# The sanity checks' Spearman (average ranks for ties, 0 for a constant map), on |maps|: every
# explanation map here is non-negative, so that is the maps themselves.
from cifar_xai.interpretability.sanity import spearman
from cifar_xai.probes import predict

TOP_SHARE = 0.2


def top_overlap(a: np.ndarray, b: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """Per image, the share of `a`'s top `share` pixels that are among `b`'s top `share` pixels."""
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    count = max(1, int(round(share * a.shape[1])))
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :count]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :count]
    mask = np.zeros(a.shape, bool)
    np.put_along_axis(mask, top_b, True, axis=1)
    return np.take_along_axis(mask, top_a, axis=1).mean(axis=1)


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"spearman": float(spearman(a, b).mean()), "top20_overlap": float(top_overlap(a, b).mean())}


def retraining_stability(models: Sequence[keras.Model], images: np.ndarray, methods: Sequence[str],
                         options: dict | None = None) -> dict:
    """Agreement of every pair of `models` on the same images: per method the mean map agreement
    (each model explaining its own prediction), and the share of images they predict alike."""
    if len(models) < 2:
        raise ValueError("stability across retraining needs at least two models")
    options = options or {}
    methods = [m for m in methods if all(m in applicable_methods(model, [m]) for model in models)]
    predictions = [predict(model, images).argmax(axis=1) for model in models]
    maps = {m: [explain(model, images, m, classes=p.tolist(), **options.get(m, {}))
                for model, p in zip(models, predictions, strict=True)] for m in methods}
    pairs = list(combinations(range(len(models)), 2))
    result = {"pairs": len(pairs), "images": len(images),
              "prediction_agreement": float(np.mean([np.mean(predictions[i] == predictions[j]) for i, j in pairs])),
              "methods": {}}
    for m in methods:
        scores = [agreement(maps[m][i], maps[m][j]) for i, j in pairs]
        result["methods"][m] = {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
    return result


def shifted(images: np.ndarray) -> np.ndarray:
    """Each image moved one pixel to the right; the first column repeats (no new content)."""
    out = np.array(images, copy=True)
    out[:, :, 1:] = images[:, :, :-1]
    return out


def input_stability(model: keras.Model, images: np.ndarray, methods: Sequence[str],
                    options: dict | None = None) -> dict:
    """Per method, the agreement of the map of the original with the map of the image shifted by
    one pixel (shifted back; compared where both see the image) and of the mirrored image
    (mirrored back), all explaining the original's predicted class; the share of images whose
    prediction the change keeps, beside it."""
    options = options or {}
    methods = applicable_methods(model, methods)
    predicted = predict(model, images).argmax(axis=1)
    result = {"images": len(images), "prediction_kept": {
        "translate_1px": float(np.mean(predict(model, shifted(images)).argmax(axis=1) == predicted)),
        "mirror": float(np.mean(predict(model, np.asarray(images)[:, :, ::-1]).argmax(axis=1) == predicted))},
        "methods": {}}
    for m in methods:
        settings = options.get(m, {})
        result["methods"][m] = change_agreement(
            lambda batch, m=m, settings=settings: explain(model, batch, m, classes=predicted.tolist(), **settings),
            images)
    return result


def change_agreement(maps_of, images: np.ndarray) -> dict[str, dict[str, float]]:
    """The agreement of `maps_of(images)` with the maps of the images shifted right by one pixel
    (shifted back: compared where both see the image) and of the mirrored images (mirrored back).
    A map that moves exactly with the image agrees perfectly under both."""
    original = maps_of(images)
    after_move = maps_of(shifted(images))
    after_mirror = maps_of(np.asarray(images)[:, :, ::-1])[:, :, ::-1]
    return {"translate_1px": agreement(original[:, :, :-1], after_move[:, :, 1:]),
            "mirror": agreement(original, after_mirror)}
