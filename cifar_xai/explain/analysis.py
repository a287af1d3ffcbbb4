"""One call that answers "why, and should I believe it?" for a batch of images: predictions,
calibrated probabilities, the out-of-distribution score and verdict, the contrastive pair on close
calls and the requested explanation maps. The explain CLI and the TensorBoard dashboard read
every one of these from here; `cifar_xai.explain.explain` stays the call for maps alone.

    results = analyse(model, images, methods=("cam", "gradcam"), detector=detector)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import CLASS_NAMES
from cifar_xai.config import CLOSE_CALL_MARGIN
from cifar_xai.explain.cam_family import contrastive_cam
from cifar_xai.explain.core import explain
from cifar_xai.explain.inputs import as_image_batch, target_classes
from cifar_xai.explain.registry import applicable_methods
from cifar_xai.models import has_gap_head
from cifar_xai.probes import predict
from cifar_xai.uncertainty.detector import OODDetector

TRUSTED = "like the training images"
DISTRUSTED = "unlike the training images - the explanation below is not to be trusted"


@dataclass
class Analysis:
    """Everything said about one image."""

    probabilities: np.ndarray          # [C], the model's (calibrated when `calibrated`)
    predicted: int
    explained: int                     # the class the maps explain
    calibrated: bool
    ood: dict | None = None            # score name, value, percentile, in_distribution, verdict
    rival: int | None = None           # the runner-up on a close call
    contrastive: np.ndarray | None = None   # [H, W] signed: why `predicted` rather than `rival`
    maps: dict[str, np.ndarray] = field(default_factory=dict)   # method -> [H, W] in [0, 1]
    not_applicable: list[str] = field(default_factory=list)     # requested methods the model cannot run

    @property
    def runner_up(self) -> int:
        return int(np.argsort(-self.probabilities)[1])

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return [(CLASS_NAMES[i], float(self.probabilities[i])) for i in np.argsort(-self.probabilities)[:k]]

    def to_dict(self) -> dict:
        """Plain data (no maps): what the CLI's --json and the dashboard's detail route return."""
        return {"predicted": CLASS_NAMES[self.predicted], "predicted_id": self.predicted,
                "probability": float(self.probabilities[self.predicted]), "calibrated": self.calibrated,
                "probabilities": {CLASS_NAMES[k]: float(p) for k, p in enumerate(self.probabilities)},
                "explained": CLASS_NAMES[self.explained], "ood": self.ood,
                "contrastive": (f"{CLASS_NAMES[self.predicted]} rather than {CLASS_NAMES[self.rival]}"
                                if self.rival is not None else None),
                "methods": list(self.maps), "not_applicable": self.not_applicable}


def ood_verdicts(detector: OODDetector | None, model: keras.Model, images) -> list[dict | None]:
    """Per image: the detector's score, its percentile among held-out CIFAR-10 images and the verdict."""
    if detector is None:
        return [None] * len(images)
    scores = detector.score_images(model, images)
    inside, percentile = detector.in_distribution(scores), detector.percentile(scores)
    return [{"score": detector.default, "ood_score": float(scores[detector.default][i]),
             "in_distribution": bool(inside[i]), "percentile": round(float(percentile[i]), 1),
             "verdict": TRUSTED if inside[i] else DISTRUSTED} for i in range(len(images))]


def analyse(
    model: keras.Model,
    images,
    methods: Sequence[str] = (),
    classes: int | str | Sequence[int | str] | None = None,
    detector: OODDetector | None = None,
    calibrated: bool = True,
    layer: str | None = None,
    close_call: float = CLOSE_CALL_MARGIN,
) -> list[Analysis]:
    """One `Analysis` per image (raw pixels [N, H, W, 3] or one [H, W, 3]).

    `methods` the maps to compute (those the model cannot run are listed as not applicable, never
    an error); `classes` what they explain (default: each prediction); `detector` the model's OOD
    statistics (None: no verdict); `calibrated` whether the probabilities may be called so
    (`cifar_xai.uncertainty.confidences_calibrated`). A close call (the top two within
    `close_call` in probability) on a GAP network gets the contrastive map of the two."""
    batch = as_image_batch(images)
    probabilities = predict(model, batch)
    ranked = np.argsort(-probabilities, axis=1)
    first, second = ranked[:, 0], ranked[:, 1]
    # The predictions already made stand for `classes=None`; the rest is explain's own class check.
    explained = first if classes is None else target_classes(model, batch, classes).numpy()
    runnable = applicable_methods(model, list(methods))
    maps = {m: explain(model, batch, m, classes=explained.tolist(), layer=layer) for m in runnable}
    verdicts = ood_verdicts(detector, model, batch.numpy())
    rows = np.arange(len(probabilities))
    close = (probabilities[rows, first] - probabilities[rows, second] < close_call) & has_gap_head(model)
    contrastive = np.zeros(0)
    if close.any():   # one call for every close call in the batch
        contrastive = contrastive_cam(model, tf.gather(batch, np.flatnonzero(close)),
                                      first[close].tolist(), second[close].tolist())
    contrast_of = dict(zip(np.flatnonzero(close), contrastive, strict=True))
    return [Analysis(probabilities=p, predicted=int(first[i]), explained=int(explained[i]), calibrated=calibrated,
                     ood=verdicts[i], rival=int(second[i]) if close[i] else None, contrastive=contrast_of.get(i),
                     maps={m: maps[m][i] for m in runnable}, not_applicable=[m for m in methods if m not in runnable])
            for i, p in enumerate(probabilities)]
