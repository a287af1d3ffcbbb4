"""An out-of-distribution detector for one trained model: every score's statistics, fitted once,
thresholds at 95 % in-distribution TPR, and the file that keeps them beside the model.

    detector = fit_detector(model, train_images, validation_images)   # or load_detector(model, path)
    result = detector.score_images(model, images)     # {score name: [N] float64}
    detector.in_distribution(result)                  # [N] bool, by the detector's default score

    runs/<run>/model.keras            ->  runs/<run>/model.ood.npz
    saved_models/interpretable_cnn.keras  ->  saved_models/interpretable_cnn.ood.npz

The file records a fingerprint of the model's weights: statistics of another model (a retrained
or re-shipped one) are refused, not silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.config import (
    KNN_BANK,
    OOD_FIRST_BLOCK,
    OOD_FLIP_AVERAGE,
    OOD_SCORE,
    OOD_STEM_DIRECTIONS,
    TrainConfig,
)
from cifar_xai.data.pipeline import Splits, split_arrays
from cifar_xai.errors import UserError
from cifar_xai.files import atomic_path
from cifar_xai.model_io import SHIPPED_MODEL, load_model, run_config
from cifar_xai.models import LOGITS_LAYER, STEM_RELU
from cifar_xai.probes import spatial_layers
from cifar_xai.uncertainty.calibration import temperature_of
from cifar_xai.uncertainty.metrics import threshold_at_tpr
from cifar_xai.uncertainty.ood import OODScore, as_tensors, make_scores

# The share of held-out in-distribution images each threshold keeps (OpenOOD's FPR@95 point).
TARGET_TPR = 0.95
FORMAT_VERSION = 1


def ood_path(model_path: str | os.PathLike) -> Path:
    """Where the detector of the model file `model_path` lives: beside it, `<stem>.ood.npz`."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.ood.npz")


def fingerprint(model: keras.Model) -> str:
    """A short hash of every weight: equal only for the same trained model."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()[:16]


_TAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def block_spec(model: keras.Model, first: str = OOD_FIRST_BLOCK,
               stem_directions: int = OOD_STEM_DIRECTIONS) -> list[tuple[str, list[int] | None]]:
    """(layer, channels or None for all) the `blocks` score reads, shallowest first: the stem's
    `stem_directions` strongest whitening directions (both signs), then every block from `first` on."""
    layers = spatial_layers(model)[::-1]
    spec: list[tuple[str, list[int] | None]] = []
    if stem_directions and STEM_RELU in layers:
        # The stem's filters are its directions, strongest first, then their negatives (layers.whitening_kernel).
        half = model.get_layer(STEM_RELU).output.shape[-1] // 2
        spec.append((STEM_RELU, [*range(stem_directions), *range(half, half + stem_directions)]))
    deep = layers[layers.index(first):] if first in layers else layers
    return spec + [(name, None) for name in deep if name != STEM_RELU]


def block_layers(model: keras.Model) -> list[str]:
    """`block_spec` as text, kept in the statistics file: `stem_relu[0,12]`, `block2a_relu`, ..."""
    return [f"{name}[{','.join(map(str, channels))}]" if channels else name for name, channels in block_spec(model)]


def output_tap(model: keras.Model, flip_average: bool = False) -> Callable[[tf.Tensor], dict]:
    """A traced function: raw images -> the `outputs` every score reads, in one forward pass (float32).

    With `flip_average` the batch runs with its mirror images beside it, and "features", "logits"
    and "blocks" are the mean of each image's and its mirror's: a photo and its mirror are equally
    CIFAR-like, so the average keeps what the two share and halves what is accidental (validation,
    docs/ood.md). "class_logits" are always the image's own logits: what the model predicts.
    Cached per model and setting (weakly: the cache must not keep the model alive)."""
    cache = _TAPS.setdefault(model, {})
    if flip_average not in cache:
        dense = model.get_layer(LOGITS_LAYER)
        spec = block_spec(model)
        # The classifier's input features: the scaled GAP of the CAM map, or prototype_cnn's similarities.
        taps = keras.Model(model.input, [dense.input, dense.output,
                                         *(model.get_layer(name).output for name, _ in spec)])

        def channel_means(blocks):
            # Channel means of each block: a few hundred numbers per image, whatever its size.
            means = [tf.reduce_mean(tf.cast(block, tf.float32), axis=[1, 2]) for block in blocks]
            return [m if channels is None else tf.gather(m, channels, axis=1)
                    for m, (_, channels) in zip(means, spec, strict=True)]

        def run(images):
            count = tf.shape(images)[0]
            batch = tf.concat([images, tf.reverse(images, axis=[2])], axis=0) if flip_average else images
            features, logits, *blocks = taps(batch, training=False)
            features, logits, blocks = tf.cast(features, tf.float32), tf.cast(logits, tf.float32), channel_means(blocks)

            def scored(value):
                # What the scores read: the mean of the image's and its mirror's, or the image's own.
                return (value[:count] + value[count:]) / 2 if flip_average else value

            return {"features": scored(features), "logits": scored(logits), "class_logits": logits[:count],
                    "blocks": [scored(block) for block in blocks]}

        def empty():
            # TensorFlow's CPU convolution fails on an empty batch: answer it without the model.
            features, logits, *blocks = (tf.zeros([0, t.shape[-1]]) for t in taps.outputs)
            blocks = [b if channels is None else tf.zeros([0, len(channels)]) for b, (_, channels) in zip(
                blocks, spec, strict=True)]
            return {"features": features, "logits": logits, "class_logits": logits, "blocks": blocks}

        def outputs(images):
            return tf.cond(tf.shape(images)[0] > 0, lambda: run(images), empty)

        cache[flip_average] = tf.function(outputs, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    return cache[flip_average]


OUTPUT_KEYS = ("features", "logits", "class_logits")


def model_outputs(model: keras.Model, images, batch_size: int = 500, flip_average: bool = False) -> dict:
    """features [N, D], logits [N, K] (before any temperature; flip-averaged with `flip_average`),
    class_logits [N, K] (the images' own) and blocks (a list of [N, C_j]), numpy."""
    forward = output_tap(model, flip_average)
    images = np.asarray(images) if not isinstance(images, tf.Tensor) else images
    parts = [forward(tf.cast(images[start:start + batch_size], tf.float32))
             for start in range(0, max(len(images), 1), batch_size)]
    return {**{key: np.concatenate([p[key].numpy() for p in parts]) for key in OUTPUT_KEYS},
            "blocks": [np.concatenate([p["blocks"][j].numpy() for p in parts]) for j in range(len(parts[0]["blocks"]))]}


def _batch(outputs: dict, start: int, stop: int) -> dict:
    return {**{key: outputs[key][start:stop] for key in OUTPUT_KEYS},
            "blocks": [block[start:stop] for block in outputs["blocks"]]}


@dataclass
class OODDetector:
    """Every fitted score of one model, their thresholds and held-out reference values."""

    scores: dict[str, OODScore]
    thresholds: dict[str, float]
    # Each score's values on the held-out images, sorted: the reference for percentiles.
    reference: dict[str, np.ndarray]
    default: str
    temperature: float
    fingerprint: str
    meta: dict = field(default_factory=dict)
    # Whether the scores read the mean of each image's and its mirror's outputs (`output_tap`);
    # files written before it existed were fitted on the images alone, and load so.
    flip_average: bool = False

    def outputs(self, model: keras.Model, images, batch_size: int = 500) -> dict:
        """The `model_outputs` this detector's scores read (flip-averaged when it was fitted so)."""
        return model_outputs(model, images, batch_size, self.flip_average)

    def score_outputs(self, outputs: Mapping, names: Sequence[str] | None = None) -> dict[str, tf.Tensor]:
        """Each score (or those in `names`) of one batch of `model_outputs`, as TF tensors (graph-safe)."""
        tensors = as_tensors(outputs)
        return {name: self.scores[name].score(tensors, self.temperature) for name in (names or self.scores)}

    def score_images(self, model: keras.Model, images, names: Sequence[str] | None = None,
                     batch_size: int = 500) -> dict[str, np.ndarray]:
        """Each score of raw-pixel images [N, H, W, 3], as float64 arrays [N]."""
        return self.score_arrays(self.outputs(model, images, batch_size), names, batch_size)

    def score_arrays(self, outputs: Mapping, names: Sequence[str] | None = None,
                     batch_size: int = 500) -> dict[str, np.ndarray]:
        """Each score of precomputed `model_outputs`, as float64 arrays [N]."""
        out: dict[str, list] = {name: [] for name in (names or self.scores)}
        for start in range(0, len(outputs["logits"]), batch_size):
            batch = self.score_outputs(_batch(outputs, start, start + batch_size), names)
            for name, values in batch.items():
                out[name].append(values.numpy().astype(np.float64))
        return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in out.items()}

    def in_distribution(self, scores: Mapping[str, np.ndarray], name: str | None = None) -> np.ndarray:
        """True where the score (default: the detector's own) reaches its 95 %-TPR threshold."""
        name = name or self.default
        return np.asarray(scores[name]) >= self.thresholds[name]

    def percentile(self, scores: Mapping[str, np.ndarray], name: str | None = None) -> np.ndarray:
        """The share (0-100) of held-out training-distribution images that score lower: 50 is a
        typical image, 5 is the threshold, 0 is less typical than every one of them."""
        name = name or self.default
        reference = self.reference[name]
        return 100.0 * np.searchsorted(reference, np.asarray(scores[name]), side="left") / len(reference)

    def save(self, path: str | os.PathLike) -> Path:
        """Write every statistic to one .npz, atomically."""
        path = Path(path)
        arrays = {f"{name}/{key}": value for name, score in self.scores.items() for key, value in score.state().items()}
        arrays.update({f"reference/{name}": values for name, values in self.reference.items()})
        meta = {"format": FORMAT_VERSION, "thresholds": self.thresholds, "default": self.default,
                "temperature": self.temperature, "fingerprint": self.fingerprint, "target_tpr": TARGET_TPR,
                "flip_average": self.flip_average, **self.meta}
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        return path


def fit_detector(
    model: keras.Model, train_images, validation_images, train_labels=None, default: str = OOD_SCORE,
    knn_bank: int | None = KNN_BANK, meta: dict | None = None, flip_average: bool = OOD_FLIP_AVERAGE,
) -> OODDetector:
    """Fit every score on the training images and every threshold on the held-out ones.

    `train_labels` are needed by Mahalanobis (class means); without them the model's predictions
    stand in. The validation images must not have been trained on: their scores set the
    thresholds, at `TARGET_TPR` of them kept.
    """
    scores = make_scores(knn_bank=knn_bank)
    if default not in scores:
        raise UserError(f"unknown OOD score {default!r}; valid: {', '.join(scores)}")
    if len(validation_images) < 10:
        raise UserError(f"{len(validation_images)} held-out images cannot set a threshold; train with "
                        "--validation 5000 (the default)")
    outputs = model_outputs(model, train_images, flip_average=flip_average)
    labels = outputs["class_logits"].argmax(1) if train_labels is None else np.asarray(train_labels)
    dense = model.get_layer(LOGITS_LAYER)
    kernel = keras.ops.convert_to_numpy(dense.kernel).astype(np.float64)
    # prototype_cnn's last layer has no bias (its logits are sums of similarities): a zero one.
    bias = (keras.ops.convert_to_numpy(dense.bias).astype(np.float64) if dense.bias is not None
            else np.zeros(kernel.shape[1]))
    for score in scores.values():
        score.fit(outputs, labels, kernel, bias)
    detector = OODDetector(scores, {}, {}, default, temperature_of(model), fingerprint(model), dict(meta or {}),
                           flip_average)
    held_out = detector.score_images(model, validation_images)
    for name, values in held_out.items():
        detector.thresholds[name] = threshold_at_tpr(values, TARGET_TPR)
        detector.reference[name] = np.sort(values)
    detector.meta.update(train_images=len(train_images), validation_images=len(validation_images),
                         block_layers=block_layers(model))
    return detector


def load_detector(model: keras.Model, path: str | os.PathLike) -> OODDetector:
    """The detector saved at `path`, checked to belong to `model`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no OOD statistics at {path}; fit them with python -m trainers.fit_ood --model MODEL")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{path} is not an OOD statistics file ({err}); refit with python -m "
                        "trainers.fit_ood") from None
    if meta.get("format") != FORMAT_VERSION:
        raise UserError(f"{path} has format {meta.get('format')}, this version reads {FORMAT_VERSION}; refit with "
                        "python -m trainers.fit_ood")
    if meta.get("block_layers") != block_layers(model):
        raise UserError(f"{path} was fitted on the blocks {meta.get('block_layers')}, this version reads "
                        f"{block_layers(model)}; refit with python -m trainers.fit_ood --model MODEL")
    if meta["fingerprint"] != fingerprint(model):
        raise UserError(f"{path} was fitted for another model (weights differ); refit with python -m "
                        "trainers.fit_ood --model MODEL")
    scores = make_scores()
    reference = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith("reference/")}
    for name, score in scores.items():
        state = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith(f"{name}/")}
        missing = score.missing_state(state) + [
            what for what, known in (("threshold", meta["thresholds"]), ("reference values", reference))
            if name not in known]
        if missing:
            raise UserError(f"{path} has no fitted {name} score ({', '.join(missing)} missing: it was written before "
                            "this score existed); refit with python -m trainers.fit_ood --model MODEL")
        score.load_state(state)
    known = ("format", "thresholds", "default", "temperature", "fingerprint", "target_tpr", "flip_average")
    return OODDetector(scores, meta["thresholds"], reference, meta["default"], meta["temperature"],
                       meta["fingerprint"], {k: v for k, v in meta.items() if k not in known},
                       bool(meta.get("flip_average", False)))


def detector_beside(model: keras.Model, model_path: str | os.PathLike) -> tuple[OODDetector | None, str | None]:
    """The detector saved beside the model file, or None and the one-line reason there is none
    (no file, another model's or a damaged one): callers explain and serve without a verdict."""
    path = ood_path(model_path)
    if not path.is_file():
        return None, f"no OOD statistics at {path}; python -m trainers.fit_ood --model {model_path} fits them"
    try:
        return load_detector(model, path), None
    except UserError as err:
        return None, str(err)


def fit_for_model_file(
    model_path: str | os.PathLike | None, data_dir: str | os.PathLike | None = None,
    validation: int | None = None, default: str | None = None, knn_bank: int | None = KNN_BANK,
    flip_average: bool = OOD_FLIP_AVERAGE,
) -> tuple[OODDetector, Path]:
    """Fit the detector of a model file on the split it was trained on, and save it beside it.

    The training images (Mahalanobis, KNN, ViM) and the held-out validation images (thresholds)
    are those of the run's config.json; `validation` overrides it for models without one."""
    model_path = Path(model_path) if model_path else SHIPPED_MODEL
    model = load_model(model_path)
    settings = run_config(model_path) or {}
    validation = settings.get("validation", 0) if validation is None else validation
    if not validation:
        raise UserError(f"{model_path} was trained without a held-out split (or its config.json is missing); "
                        "pass --validation N, the number of last training images it did not train on")
    classes = TrainConfig(known_classes=settings.get("known_classes", "")).classes
    splits = Splits.checked(validation, data_dir)
    train_images, train_labels = split_arrays(data_dir, splits.train, classes=classes)
    validation_images = split_arrays(data_dir, splits.validation, classes=classes)[0]
    detector = fit_detector(
        model, train_images, validation_images, train_labels.numpy(), default or OOD_SCORE, knn_bank,
        meta={"model": os.fspath(model_path), "train_split": splits.train, "validation_split": splits.validation,
              "known_classes": settings.get("known_classes", "")},
        flip_average=flip_average,
    )
    return detector, detector.save(ood_path(model_path))
