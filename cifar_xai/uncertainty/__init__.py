"""Knowing when not to trust a prediction: calibrated probabilities (temperature scaling)."""

from cifar_xai.uncertainty.calibration import (
    TEMPERATURE_LAYER,
    apply_temperature,
    confidences_calibrated,
    fit_temperature,
    temperature_of,
    with_temperature,
)

__all__ = ["TEMPERATURE_LAYER", "apply_temperature", "confidences_calibrated", "fit_temperature", "temperature_of",
           "with_temperature"]
