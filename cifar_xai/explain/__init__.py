"""Explanations of a trained model: `explain(model, images, method=...)` for every method.

Imported lazily, so `python -m cifar_xai.explain --help` answers without loading TensorFlow.
The package's layout: `registry` (the list of methods, importing none), `methods` (importing the
built-in ones registers them), one module per family (`cam_family`, `gradients`, `prototypes`),
`inputs` and `maps` (what every method shares), `core` (`explain` itself), `features`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "METHODS": "cifar_xai.explain.methods", "Method": "cifar_xai.explain.registry",
    "register": "cifar_xai.explain.registry", "ExplanationError": "cifar_xai.explain.inputs",
    "explain": "cifar_xai.explain.core",
    "predict": "cifar_xai.probes", "probe_for": "cifar_xai.probes", "spatial_layers": "cifar_xai.probes",
    "contrastive_cam": "cifar_xai.explain.cam_family",
    "feature_maps": "cifar_xai.explain.features", "first_layer_filters": "cifar_xai.explain.features",
    "activation_maximization": "cifar_xai.explain.features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
