"""Temperature scaling (Guo et al., ICML 2017): one scalar T, fitted on held-out images by NLL,
divides the logits, so the printed confidence matches how often the model is right.

Fitted on the validation split (never the training images, on which the network is over-sure,
nor the test split, which gives the final figures only) and folded into the model as a
`Temperature` layer between the `logits` Dense layer and the softmax: every consumer of the
model's `probabilities` (the explain CLI, the report, TensorBoard, the SavedModel's
`serving_default`) then shows calibrated confidences, while the logits, their ranking and CAM
stay exactly what they were.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from cifar_xai.errors import UserError
from cifar_xai.layers import Temperature
from cifar_xai.models import LOGITS_LAYER, PROBABILITIES_LAYER, layer_names

TEMPERATURE_LAYER = "temperature"
# T outside this range means the held-out predictions are degenerate (all right with certainty,
# or chance), not that the model needs it.
TEMPERATURE_RANGE = (0.05, 20.0)


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _scores(probabilities: np.ndarray) -> np.ndarray:
    """log(p): the logits up to a per-image constant, which softmax ignores. Probabilities of
    exactly 0 are clipped to the smallest float32."""
    return np.log(np.maximum(np.asarray(probabilities, np.float64), np.finfo(np.float32).tiny))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): the same as dividing the logits by T."""
    return np.exp(_log_softmax(_scores(probabilities) / temperature))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the mean negative log-likelihood of `labels` under softmax(log p / T).

    `probabilities` [N, classes] are the uncalibrated model's (logits work too: log-softmax of
    logits is their log-probabilities). NLL is convex in 1 / T, so a bounded 1-D search on log T
    finds the optimum.
    """
    from scipy.optimize import minimize_scalar

    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels) or len(labels) == 0:
        raise UserError(f"fit_temperature needs [N, classes] probabilities and N labels, not "
                        f"{list(probabilities.shape)} and {len(labels)}")
    scores = _scores(probabilities)
    rows = np.arange(len(labels))

    def nll(log_t):
        return -_log_softmax(scores / np.exp(log_t))[rows, labels].mean()

    low, high = np.log(TEMPERATURE_RANGE)
    best = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(best.x))


def temperature_of(model: keras.Model) -> float:
    """The temperature folded into `model`, 1.0 for a model that has none."""
    names = layer_names(model)
    if TEMPERATURE_LAYER not in names:
        return 1.0
    return float(model.get_layer(TEMPERATURE_LAYER).temperature.numpy())


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """`model` with its probabilities computed as softmax(logits / temperature).

    A model that already has a temperature gets the new value (in place, returned); otherwise a
    new functional model shares every layer and weight of `model` up to the logits and adds the
    `Temperature` layer before a new softmax with the same name, so code that looks layers up
    by name (CAM, Grad-CAM, the export) works unchanged.
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise UserError(f"temperature {temperature} must be a positive number")
    names = layer_names(model)
    if TEMPERATURE_LAYER in names:
        model.get_layer(TEMPERATURE_LAYER).temperature.assign(float(temperature))
        return model
    if LOGITS_LAYER not in names:
        raise UserError(f"{model.name} has no {LOGITS_LAYER!r} layer to calibrate")
    scaled = Temperature(temperature, name=TEMPERATURE_LAYER)(model.get_layer(LOGITS_LAYER).output)
    probabilities = layers.Activation("softmax", name=PROBABILITIES_LAYER, dtype="float32")(scaled)
    return keras.Model(model.input, probabilities, name=model.name)


def confidences_calibrated(model: keras.Model, run_metrics: dict | None) -> bool:
    """Whether `model`'s probabilities may be called calibrated: it carries a temperature, and the
    run that fitted it (its metrics.json, when known) saw the held-out ECE go down with it."""
    if temperature_of(model) == 1.0:
        return False
    calibration = (run_metrics or {}).get("calibration")
    if not calibration or "validation_uncalibrated" not in calibration:
        return True
    return lowered_ece(calibration)


def lowered_ece(calibration: dict) -> bool:
    """Whether a run's fitted temperature (its metrics.json `calibration`) lowered the held-out ECE:
    recorded as `applied` since session 9, read off the validation figures for runs from before."""
    fitted = calibration.get("validation_if_applied", calibration["validation"])
    return calibration.get("applied", fitted["ece"] < calibration["validation_uncalibrated"]["ece"])
