"""The built-in explanation metrics: importing this module registers each, in the order the
suite runs them (ROAD and sparseness reuse the maps deletion / insertion made).

Adding a metric is one module with an `@register`ed `ExplanationMetric` (see
`cifar_xai/interpretability/registry.py` and docs/explanations.md, "How to add a metric"), its
line here, and its test.
"""

from __future__ import annotations

# The order below is the suite's (and each table's): kept by hand, so no sorting of imports.
# isort: off
from cifar_xai.interpretability import gridpg  # noqa: F401
from cifar_xai.interpretability import faithfulness  # noqa: F401
from cifar_xai.interpretability import road  # noqa: F401
from cifar_xai.interpretability import sanity  # noqa: F401
from cifar_xai.interpretability import sparseness  # noqa: F401
# isort: on
from cifar_xai.interpretability.registry import METRICS, figures

# Read the list (and its figures) from here: importing this module is what fills it.
__all__ = ["METRICS", "figures"]
