"""The built-in explanation methods: importing this module registers every one of them.

Adding a method is one module that decorates its function with `@register` (see
`cifar_xai/explain/registry.py` and docs/explanations.md, "How to add a method") and its line here.
"""

from __future__ import annotations

from cifar_xai.explain import cam_family, gradients, prototypes  # noqa: F401  (each registers its methods)
from cifar_xai.explain.registry import METHODS

__all__ = ["METHODS"]
