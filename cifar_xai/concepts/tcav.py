"""Testing with CAVs (Kim et al., ICML 2018), with the statistics that make a score mean something.

    results = tcav(model, concepts={"stripes": images, ...}, class_images={"zebra": images},
                   randoms=[random_set_0, random_set_1, ...], layers=None)

The TCAV score of (concept, class, layer) is the share of the class's images whose class logit
rises along the concept's CAV (a positive directional derivative). One CAV proves nothing: a CAV
of one random set against another also gives some score. So each concept gets one CAV per random
set, the same number of random-vs-random CAVs give the null scores, and a two-sided Welch t-test
compares the two. One call tests every concept x class x layer: the family-wise error over all of
them is held at `alpha` by Holm's step-down (Holm 1979; uniformly more powerful than Bonferroni),
so a "significant" result is not the multiple-comparison rate. A CAV that separates its concept
from random images no better than chance on held-out images (`TCAV_MIN_CAV_ACCURACY`) means the
layer does not represent the concept: that result is "not learnable at this layer", not a score,
and is left out of the family. A result is reported with its adjusted p-value, and as "not
significant" when it is not.

At the map under a GAP -> Dense head (`cam_features` of interpretable_cnn) the logit is linear
in the activations, so its derivative is the same for every image: logit_k = s * mean_xy A . W_k
+ b_k has gradient s * W_k / (H * W) at every position. The TCAV score there is 0 or 1 for all
images at once. The exact quantity in its place is the projection of that gradient, the class
weight tiled over the map, on the CAV; it gets the same random-set test (`projection_*`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import CLASS_NAMES
from cifar_xai.concepts.cav import activations, fit_cav
from cifar_xai.config import (
    MIN_CONCEPT_IMAGES,
    TCAV_ALPHA,
    TCAV_MIN_CAV_ACCURACY,
    TCAV_SET_SIZE,
    TCAV_TARGET,
    TCAV_TARGETS,
)
from cifar_xai.errors import UserError
from cifar_xai.explain.cam_family import features_and_gradients
from cifar_xai.explain.inputs import check_model, class_id, resolve_layer
from cifar_xai.models import CAM_LAYER, LOGITS_LAYER, has_gap_head, logit_scale
from cifar_xai.probes import layer_activations, probe_for, spatial_layers

# What the directional derivative is taken of (TCAV_TARGETS): Kim et al.'s paper writes the class
# logit; tensorflow/tcav differentiates the cross-entropy loss, i.e. the class's log-probability,
# which ignores a shift of all logits together (as softmax does) and is not linear in a GAP map.


@dataclass(frozen=True)
class TCAVResult:
    concept: str
    class_name: str
    layer: str
    target: str                        # "logit" or "log_probability"
    scores: tuple[float, ...]          # one per random set
    null_scores: tuple[float, ...]     # random-vs-random CAVs, one per random set
    p_value: float                     # the test's own (unadjusted) p-value
    alpha: float                       # the family-wise level the adjusted p-value is held to
    cav_accuracies: tuple[float, ...]  # held-out accuracy of each concept CAV
    # At a GAP head's map: the derivative is the same for every image (scores all 0 or 1), and the
    # class weight's projection on each CAV is the measure instead.
    constant_gradient: bool = False
    projections: tuple[float, ...] = ()
    null_projections: tuple[float, ...] = ()
    projection_p_value: float | None = None
    # Holm-adjusted over the `tests` learnable results of the call (None: not learnable, not tested).
    adjusted_p_value: float | None = None
    tests: int = 1

    @property
    def score(self) -> float:
        return float(np.mean(self.scores))

    @property
    def raw_p_value(self) -> float:
        """The p-value of the test this result stands for (the projection's at a GAP head's map)."""
        return float(self.projection_p_value if self.constant_gradient else self.p_value)

    @property
    def learnable(self) -> bool:
        """The layer tells the concept from random images on held-out ones better than chance."""
        return self.cav_accuracy >= TCAV_MIN_CAV_ACCURACY

    @property
    def significant(self) -> bool:
        return bool(self.learnable and self.adjusted_p_value is not None and self.adjusted_p_value < self.alpha)

    @property
    def positive(self) -> bool:
        """The concept raises the class score more than random directions do (the projection at a
        GAP head's map, the score elsewhere); read it together with `significant`."""
        if self.constant_gradient:
            return bool(np.mean(self.projections) > np.mean(self.null_projections))
        return bool(self.score > np.mean(self.null_scores))

    @property
    def cav_accuracy(self) -> float:
        return float(np.mean(self.cav_accuracies))

    def summary(self) -> str:
        """One line: the score with its spread and adjusted p-value, "not significant", or "not
        learnable at this layer"."""
        if not self.learnable:
            return (f"concept not learnable at this layer (CAV accuracy {self.cav_accuracy:.0%} on held-out images, "
                    f"chance 50 %, needs {TCAV_MIN_CAV_ACCURACY:.0%}): no TCAV score")
        if self.constant_gradient:
            value = f"projection {np.mean(self.projections):+.3g} (random {np.mean(self.null_projections):+.3g})"
        else:
            value = f"TCAV {self.score:.2f} ± {np.std(self.scores):.2f} (random {np.mean(self.null_scores):.2f})"
        verdict = f"significant at {self.alpha:.2g}" if self.significant else f"not significant at {self.alpha:.2g}"
        if self.significant:
            # A significant score below the random CAVs' is as real as one above: the concept
            # lowers the class's score. Said in words, since "TCAV 0.01, significant" reads as support.
            verdict += (", the concept raises the class's score" if self.positive
                        else ", the concept LOWERS the class's score (it pushes against the class)")
        return (f"{value}, p = {self.raw_p_value:.2g}, Holm-adjusted over {self.tests} tests "
                f"{self.adjusted_p_value:.2g}: {verdict}; CAV accuracy {self.cav_accuracy:.0%}")

    def to_dict(self) -> dict:
        return {**asdict(self), "score": self.score, "significant": self.significant, "positive": self.positive,
                "cav_accuracy": self.cav_accuracy, "learnable": self.learnable}


def holm_adjusted(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: the smallest family-wise level at which each test is
    rejected. Sorted ascending, p_adj(i) = max over j <= i of min(1, (m - j) p(j))."""
    p_values = np.asarray(p_values, np.float64)
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p_values[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test that `a` and `b` have the same mean (no scipy needed:
    the t distribution's tail is a regularised incomplete beta function)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a t-test needs at least two values on each side")
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    spread = var_a + var_b
    if spread == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    t = (a.mean() - b.mean()) / np.sqrt(spread)
    dof = spread**2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    return float(tf.math.betainc(dof / 2, 0.5, dof / (dof + t * t)).numpy())


def random_sets(pool: np.ndarray, runs: int, size: int = TCAV_SET_SIZE, seed: int = 0) -> list[np.ndarray]:
    """`runs` random sets of `size` images from `pool` (random CIFAR-10 training images): disjoint
    when the pool holds enough, else each drawn independently (they then share some images)."""
    rng = np.random.default_rng(seed)
    if len(pool) < size:
        raise UserError(f"{len(pool)} random images cannot fill a random set of {size}")
    if len(pool) >= runs * size:
        order = rng.permutation(len(pool))[:runs * size]
        return [pool[order[i * size:(i + 1) * size]] for i in range(runs)]
    return [pool[rng.choice(len(pool), size, replace=False)] for _ in range(runs)]


def exact_gradient(model: keras.Model, class_index: int, map_shape: Sequence[int]) -> np.ndarray:
    """d logit_k / d A at the GAP head's map [H, W, C], flattened: s * W[:, k] / (H * W) everywhere."""
    height, width, channels = map_shape
    weights = np.asarray(model.get_layer(LOGITS_LAYER).kernel, np.float64)[:, class_index]
    per_position = logit_scale(model) * weights / (height * width)
    return np.broadcast_to(per_position, (height, width, channels)).reshape(-1)


def class_gradients(model: keras.Model, images, class_index: int, layer: str, target: str = "logit",
                    batch_size: int = 250) -> np.ndarray:
    """Gradients of the class's `target` (see TCAV_TARGETS) with respect to the layer's activations,
    flattened: [N, D]."""
    run = features_and_gradients(probe_for(model, layer), target)
    images = np.asarray(images)
    out = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
        out.append(run(batch, tf.fill([batch.shape[0]], class_index))[1].numpy())
    return np.concatenate(out).reshape(len(images), -1)


def _check_sets(concepts: Mapping[str, np.ndarray], class_images: Mapping, randoms: Sequence) -> None:
    for name, images in concepts.items():
        if len(images) < MIN_CONCEPT_IMAGES:
            raise UserError(f"concept {name!r} has {len(images)} images; a CAV needs at least {MIN_CONCEPT_IMAGES}")
    if len(randoms) < 2:
        raise UserError(f"TCAV needs at least 2 random sets to test against (20 or more recommended), "
                        f"got {len(randoms)}")
    for name, images in class_images.items():
        if len(images) == 0:
            raise UserError(f"no images of class {name!r} to test")


class _OneTracePerLayer(logging.Filter):
    """Each layer's probe compiles its own gradient function, traced once (a fixed signature);
    TensorFlow's detector counts those traces together, as if one function were retraced, and
    warned twice per layer. Dropped while `tcav` runs, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def tcav(
    model: keras.Model,
    concepts: Mapping[str, np.ndarray],
    class_images: Mapping[int | str, np.ndarray],
    randoms: Sequence[np.ndarray],
    layers: Sequence[str] | None = None,
    alpha: float = TCAV_ALPHA,
    seed: int = 0,
    target: str = TCAV_TARGET,
    progress: Callable[[str], None] | None = None,
) -> list[TCAVResult]:
    """Every (concept, class, layer) result, in that nesting order (see the module doc).

    `concepts`: name -> raw images; `class_images`: class id or name -> images of that class;
    `randoms`: the random sets (CIFAR-10 training images), one concept CAV and one null CAV each;
    `layers`: conv layer names, default every block output from the stem to the CAM map;
    `target`: what the directional derivative is taken of, "logit" or "log_probability" (TCAV_TARGETS);
    `progress`: called with one line after each layer (the CLI prints it: a call takes minutes).
    """
    quiet = _OneTracePerLayer()
    logging.getLogger("tensorflow").addFilter(quiet)
    try:
        return _tcav(model, concepts, class_images, randoms, layers, alpha, seed, target, progress)
    finally:
        logging.getLogger("tensorflow").removeFilter(quiet)


def _tcav(model, concepts, class_images, randoms, layers, alpha, seed, target, progress) -> list[TCAVResult]:
    model = check_model(model)
    if target not in TCAV_TARGETS:
        raise UserError(f"unknown TCAV target {target!r}; valid: {', '.join(TCAV_TARGETS)}")
    layers = [resolve_layer(model, layer) for layer in layers] if layers else spatial_layers(model)[::-1]
    _check_sets(concepts, class_images, randoms)
    targets = {class_id(key): np.asarray(images) for key, images in class_images.items()}
    results = []
    started = time.perf_counter()
    for number, layer in enumerate(layers, 1):
        if progress and number > 1:
            progress(f"TCAV: {number - 1} of {len(layers)} layers done ({time.perf_counter() - started:.0f} s)")
        random_maps = [layer_activations(model, images, layer) for images in randoms]
        map_shape = random_maps[0].shape[1:]
        random_acts = [maps.reshape(len(maps), -1) for maps in random_maps]
        null_directions = np.stack([fit_cav(random_acts[i], random_acts[(i + 1) % len(randoms)], seed + i).direction
                                    for i in range(len(randoms))])
        gradients = {k: class_gradients(model, images, k, layer, target) for k, images in targets.items()}
        # Only the logit is linear in the GAP head's map; its log-probability is not.
        constant = target == "logit" and has_gap_head(model) and layer == CAM_LAYER
        for concept, images in concepts.items():
            concept_acts = activations(model, images, layer)
            cavs = [fit_cav(concept_acts, acts, seed + i) for i, acts in enumerate(random_acts)]
            directions = np.stack([cav.direction for cav in cavs])
            for k, grads in gradients.items():
                scores = np.mean(grads @ directions.T > 0, axis=0)
                null_scores = np.mean(grads @ null_directions.T > 0, axis=0)
                extra = {}
                if constant:
                    exact = exact_gradient(model, k, map_shape)
                    projections, null_projections = directions @ exact, null_directions @ exact
                    extra = dict(constant_gradient=True, projections=tuple(projections.tolist()),
                                 null_projections=tuple(null_projections.tolist()),
                                 projection_p_value=welch_t_test(projections, null_projections))
                results.append(TCAVResult(
                    concept=concept, class_name=CLASS_NAMES[k], layer=layer, target=target,
                    scores=tuple(scores.tolist()), null_scores=tuple(null_scores.tolist()),
                    p_value=welch_t_test(scores, null_scores),
                    alpha=alpha, cav_accuracies=tuple(cav.accuracy for cav in cavs), **extra,
                ))
    return family_wise(results)


def family_wise(results: Sequence[TCAVResult]) -> list[TCAVResult]:
    """`results` with Holm-adjusted p-values over every learnable one: the family one call tests."""
    family = [i for i, result in enumerate(results) if result.learnable]
    adjusted = dict(zip(family, holm_adjusted([results[i].raw_p_value for i in family]), strict=True))
    return [replace(result, adjusted_p_value=float(adjusted[i]) if i in adjusted else None, tests=len(family))
            for i, result in enumerate(results)]
