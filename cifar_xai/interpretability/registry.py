"""One convention for every explanation metric, in the spirit of Xplique's `BaseAttributionMetric`
and Quantus: a metric is one object that declares

- `name` (its key in timings and logs) and `title`, the `group` of properties it measures
  (localisation, faithfulness, randomisation, complexity: Quantus' grouping);
- `figures(settings)`: the numbers it writes per method into metrics.json, each with its key,
  title and which direction is better: the suite, the HTML report, TensorBoard, the comparison
  report and the dashboard read keys, titles and directions from here and write none again;
- `needs`: what a model must offer for the metric to apply (`NEEDS` says what each means); a
  metric whose needs are unmet is skipped with a note, never an error;
- `evaluate(evaluation) -> {method: {key: value}}`, for every method and baseline of one
  `Evaluation` (a model, its test images, predictions and shared, cached maps).

Every metric is compared against the same model-free baselines (`BASELINES`: a metric that scores
them as well as a method does not measure the model's reasoning). This module imports no metric;
importing `cifar_xai.interpretability.metrics` registers the built-in ones, in the order the suite
runs them. Adding a metric: docs/explanations.md, "How to add a metric".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from cifar_xai.interpretability.attributions import BASELINES, attribution_maps
from cifar_xai.interpretability.settings import Settings
from cifar_xai.models import has_gap_head

GROUPS = ("localisation", "faithfulness", "randomisation", "complexity", "robustness")

# What a metric may need of a model, and how a skipped metric says why.
NEEDS: dict[str, tuple[Callable[[keras.Model], bool], str]] = {
    "any_input_size": (lambda model: model.input.shape[1] is None,
                       "the model's dense head only takes 32x32 inputs"),
    "gap_head": (has_gap_head, "the model has no GAP head"),
}


@dataclass(frozen=True)
class Figure:
    """One number a metric reports per method."""

    key: str                     # its key under interpretability[method] in metrics.json
    title: str                   # a table's column title
    better: str | None = None    # "higher", "lower", or None (a spread, a profile)
    in_table: bool = True        # a column of the report's tables (False: a profile or a spread)
    summary: bool = False        # among the figures that sum a method up (the comparison verdict)
    headline: bool = False       # a TensorBoard scalar for the overview methods

    @property
    def heading(self) -> str:
        return f"{self.title} ({self.better} better)" if self.better else self.title


class ExplanationMetric:
    """The base every metric derives from; see the module doc."""

    name: str = ""
    title: str = ""
    group: str = ""
    needs: frozenset[str] = frozenset()
    baselines: tuple[str, ...] = BASELINES

    def figures(self, settings: Settings) -> tuple[Figure, ...]:
        raise NotImplementedError

    def evaluate(self, evaluation: Evaluation) -> dict[str, dict]:
        raise NotImplementedError

    def describe(self, evaluation: Evaluation) -> str:
        """One line of progress: what was measured (the suite adds the time it took)."""
        return self.title

    def unmet(self, model: keras.Model) -> str | None:
        """Why the metric cannot measure `model`, or None when it can."""
        for need in sorted(self.needs):
            check, reason = NEEDS[need]
            if not check(model):
                return reason
        return None


METRICS: dict[str, ExplanationMetric] = {}


def register(metric_class: type[ExplanationMetric]) -> type[ExplanationMetric]:
    """Class decorator: add one instance to `METRICS`; a name registered twice is an error."""
    metric = metric_class()
    if not metric.name or metric.group not in GROUPS:
        raise ValueError(f"{metric_class.__name__} needs a name and a group among {', '.join(GROUPS)}")
    if metric.name in METRICS:
        raise ValueError(f"an explanation metric named {metric.name!r} is already registered "
                         f"({type(METRICS[metric.name]).__module__}); choose another name")
    unknown = set(metric.needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"{metric.name} needs {', '.join(sorted(unknown))}, unknown; valid: {', '.join(NEEDS)}")
    METRICS[metric.name] = metric
    return metric_class


def figures(settings: Settings, metrics: Sequence[ExplanationMetric] | None = None) -> list[Figure]:
    """Every figure of every registered metric, in the suite's order."""
    return [figure for metric in (metrics or METRICS.values()) for figure in metric.figures(settings)]


@dataclass
class Evaluation:
    """What every metric of one suite run reads: the model, the test images and labels, the
    predicted probabilities, the settings, the methods and baselines to measure; and what they
    share: maps of the first test images (each explaining its predicted class), computed once per
    method and reused by every metric that reads them, notes, and arrays for the report."""

    model: keras.Model
    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    settings: Settings
    methods: list[str]
    log: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)
    artifacts: dict = field(default_factory=dict)
    _first_maps: dict[str, np.ndarray] = field(default_factory=dict)

    def maps(self, model: keras.Model, images: np.ndarray, name: str, classes) -> np.ndarray:
        """A method's (or baseline's) maps on its own scale, with the suite's method options."""
        return attribution_maps(model, images, name, classes, seed=self.settings.seed,
                                **self.settings.method_options.get(name, {}))

    def count(self, wanted: int) -> int:
        """How many of the first `wanted` test images there are."""
        return min(wanted, len(self.images))

    def first(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `count` test images (float32) and their predicted classes."""
        return self.images[:count].astype(np.float32), self.probabilities[:count].argmax(1)

    def first_maps(self, name: str, count: int) -> np.ndarray:
        """Maps of the first `count` test images for their predicted classes, computed once: a
        later request for fewer images reads the same maps."""
        known = self._first_maps.get(name)
        if known is None or len(known) < count:
            images, classes = self.first(count)
            known = self._first_maps[name] = self.maps(self.model, images, name, classes)
        return known[:count]
