"""Explanations of a trained model: `explain(model, images, method=...)` for every method.

Imported lazily, so `python -m cifar_xai.explain --help` answers without loading TensorFlow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "METHODS": "core", "ExplanationError": "core", "Method": "core", "explain": "core", "predict": "core",
    "probe_for": "core", "spatial_layers": "core", "register": "core",
    "contrastive_cam": "cam_family",
    "feature_maps": "features", "first_layer_filters": "features", "activation_maximization": "features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
