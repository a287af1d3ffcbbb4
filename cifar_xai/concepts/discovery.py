"""Concepts discovered in the CAM map (CRAFT, Fel et al., CVPR 2023), exact through the GAP head.

The map under the GAP, A [H, W, C], is non-negative (a ReLU) and the head is linear, so a
non-negative factorisation A ~ U V over a class's training images (every position of every image
is a row; V [k, C] holds k concepts, U >= 0 says how much of each a position expresses) splits the
class logit exactly:

    logit_k = s * mean_xy(A) . W_k + b_k
            = sum_j s * mean_xy(U_j) * (V_j . W_k)  +  s * mean_xy(A - U V) . W_k  +  b_k
              (concept j's contribution)              (the residual)

For a new image U comes from a non-negative least-squares fit with V fixed; U_j(x, y) * (V_j . W_k)
is concept j's own CAM. Deleting concept j from the features (A - U_j V_j) lowers the logit by its
contribution exactly, which `delete_concept` lets a test check.

Only for a GAP head: without one there is no linear path from the map to the logit (refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import CLASS_NAMES
from cifar_xai.config import DISCOVERY_MAX_CONCEPTS, NMF_ELBOW, NMF_ITERATIONS
from cifar_xai.errors import UserError
from cifar_xai.explain.inputs import check_model, class_id
from cifar_xai.models import CAM_LAYER, LOGITS_LAYER, has_gap_head, logit_scale
from cifar_xai.probes import layer_activations, probe_for

EPS = 1e-9
SWEEP_IMAGES = 300


def nmf(data: np.ndarray, k: int, iterations: int = NMF_ITERATIONS, seed: int = 0,
        basis: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """data [M, C] >= 0 ~ U [M, k] @ V [k, C], by Lee & Seung's multiplicative updates (the
    Frobenius error never rises). With `basis` (V) given, only U is fitted: a non-negative least
    squares projection of new rows onto known concepts."""
    rng = np.random.default_rng(seed)
    # float32: the updates are ratios of sums of non-negative terms, stable at this precision, and
    # twice as fast as float64 on a CPU.
    data = np.asarray(data, np.float32)
    scale = np.sqrt(data.mean() / k) if data.mean() > 0 else 1.0
    u = (rng.uniform(0, 1, (len(data), k)) * scale).astype(np.float32)
    v = (rng.uniform(0, 1, (k, data.shape[1])) * scale if basis is None else np.asarray(basis)).astype(np.float32)
    for _ in range(iterations):
        u *= (data @ v.T) / (u @ (v @ v.T) + EPS)
        if basis is None:
            v *= (u.T @ data) / ((u.T @ u) @ v + EPS)
    return u.astype(np.float64), v.astype(np.float64)


def relative_error(data: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    return float(np.linalg.norm(data - u @ v) / max(np.linalg.norm(data), EPS))


def choose_k(errors: dict[int, float], elbow: float = NMF_ELBOW) -> int:
    """The smallest k after which one more concept lowers the relative error by less than `elbow`."""
    ks = sorted(errors)
    for k, following in zip(ks, ks[1:], strict=False):
        if errors[k] - errors[following] < elbow:
            return k
    return ks[-1]


@dataclass(frozen=True)
class ConceptBasis:
    """k concepts of one class in the channel space of the CAM map, with their measured weight."""

    class_index: int
    concepts: np.ndarray        # V, float64 [k, C]
    head_weights: np.ndarray    # V_j . W_k * s: a concept's logit per unit of its mean coefficient, [k]
    importance: np.ndarray      # mean contribution to the class logit over the class's images, [k]
    errors: dict                # relative reconstruction error per k tried

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.class_index]

    @property
    def order(self) -> np.ndarray:
        """Concept indices, most important first."""
        return np.argsort(-self.importance)


def cam_features(model: keras.Model, images) -> np.ndarray:
    """The map under the GAP for raw images: float32 [N, H, W, C] (non-negative)."""
    return layer_activations(model, images, CAM_LAYER)


def _require_gap(model: keras.Model) -> keras.Model:
    model = check_model(model)
    if not has_gap_head(model):
        raise UserError(f"{model.name} has no GAP head: concept discovery needs the linear path from the CAM map "
                        "to the logits (train interpretable_cnn)")
    return model


def discover_concepts(model: keras.Model, images, class_index: int | str, k: int | None = None,
                      seed: int = 0) -> ConceptBasis:
    """Concepts of `class_index` from `images` of that class (its training images): `k` of them, or
    as many as the reconstruction-error elbow asks for (2..DISCOVERY_MAX_CONCEPTS)."""
    return discover_and_explain(model, images, class_index, k, seed)[0]


def discover_and_explain(model: keras.Model, images, class_index: int | str, k: int | None = None,
                         seed: int = 0) -> tuple[ConceptBasis, ConceptExplanation]:
    """`discover_concepts` and `explain_concepts` on the same images, from one forward pass: the
    basis's importance is the mean of the explanation's contributions, so they add up exactly."""
    model = _require_gap(model)
    target = class_id(class_index)
    if k is not None and not 1 <= k <= 64:
        raise UserError(f"{k} concepts: ask for 1 to 64")
    features = cam_features(model, images)
    rows = features.reshape(-1, features.shape[-1])
    if not np.any(rows > 0):
        raise UserError(f"the CAM map is zero on all {len(images)} images: nothing to factorise")
    errors = {}
    if k is None:
        # The elbow is a property of the data's spectrum, not of its size: found on a sample of
        # the images (ten factorisations), then the chosen k is fitted on all of them.
        sample = rows[:SWEEP_IMAGES * features.shape[1] * features.shape[2]]
        errors = {count: relative_error(sample, *nmf(sample, count, seed=seed))
                  for count in range(1, DISCOVERY_MAX_CONCEPTS + 1)}
    chosen = k or choose_k(errors)
    u, v = nmf(rows, chosen, seed=seed)
    errors[chosen] = relative_error(rows, u, v)
    weights = np.asarray(model.get_layer(LOGITS_LAYER).kernel, np.float64)[:, target]
    head = logit_scale(model) * (v @ weights)
    # The importance comes from the projection `explain_concepts` makes (V fixed, U refitted).
    explanation = _explanation_from_features(model, features, v, head, target, seed)
    basis = ConceptBasis(target, v, head, explanation.contributions.mean(axis=0), errors)
    return basis, explanation


@dataclass(frozen=True)
class ConceptExplanation:
    """Concepts on given images: coefficients per position, contributions to the class logit."""

    coefficients: np.ndarray   # U per image, float64 [N, H, W, k]
    contributions: np.ndarray  # [N, k]: s * mean_xy U_j * (V_j . W_k), in logit units
    residual: np.ndarray       # [N]: the part of the logit the k concepts do not reconstruct
    bias: float                # b_k
    logits: np.ndarray         # [N]: the model's class logit, = bias + contributions + residual

    def maps(self, basis: ConceptBasis) -> np.ndarray:
        """Each concept's own CAM, U_j(x, y) * (V_j . W_k) * s: float64 [N, H, W, k], signed."""
        return self.coefficients * basis.head_weights


def explain_concepts(model: keras.Model, images, basis: ConceptBasis, seed: int = 0) -> ConceptExplanation:
    """Project `images`' CAM maps onto `basis` and split their class logit among its concepts."""
    model = _require_gap(model)
    return _explanation_from_features(model, cam_features(model, images), basis.concepts, basis.head_weights,
                                      basis.class_index, seed)


def _explanation_from_features(model: keras.Model, features: np.ndarray, concepts: np.ndarray, head: np.ndarray,
                               class_index: int, seed: int = 0) -> ConceptExplanation:
    features = np.asarray(features, np.float64)
    n, height, width, channels = features.shape
    u, _ = nmf(features.reshape(-1, channels), len(concepts), basis=concepts, seed=seed)
    coefficients = u.reshape(n, height, width, -1)
    weights = np.asarray(model.get_layer(LOGITS_LAYER).kernel, np.float64)[:, class_index]
    bias = float(np.asarray(model.get_layer(LOGITS_LAYER).bias, np.float64)[class_index])
    scale = logit_scale(model)
    contributions = coefficients.mean(axis=(1, 2)) * head
    residual = scale * (features - coefficients @ concepts).mean(axis=(1, 2)) @ weights
    logits = scale * features.mean(axis=(1, 2)) @ weights + bias
    return ConceptExplanation(coefficients, contributions, residual, bias, logits)


def delete_concept(model: keras.Model, images, basis: ConceptBasis, concept: int) -> tuple[np.ndarray, np.ndarray]:
    """(class logit with concept `concept` removed from the features, its computed contribution).

    The logit is recomputed by the model's own Dense layer on the pooled A - U_j V_j (pooled in
    float64: under mixed precision the GAP layer itself would round to bfloat16), so a test can
    check the contribution against it."""
    model = _require_gap(model)
    features = cam_features(model, images).astype(np.float64)
    explanation = _explanation_from_features(model, features, basis.concepts, basis.head_weights,
                                             basis.class_index)
    removed = features - explanation.coefficients[..., concept:concept + 1] * basis.concepts[concept]
    pooled = logit_scale(model) * removed.mean(axis=(1, 2))
    logits = np.asarray(model.get_layer(LOGITS_LAYER)(tf.constant(pooled, tf.float32)), np.float64)
    return logits[:, basis.class_index], explanation.contributions[:, concept]


def region_deletion(model: keras.Model, images, basis: ConceptBasis, top: int = 3, share: float = 0.25,
                    seed: int = 0) -> dict[str, float]:
    """Do the concepts' regions matter to the model? The mean drop of the class logit when the map
    cells where the `top` concepts contribute most (a `share` of the cells) are painted over with
    the image's mean colour, against painting over as many random cells."""
    model = _require_gap(model)
    images = np.asarray(images, np.float32)
    explanation = explain_concepts(model, images, basis)
    maps = explanation.maps(basis)[..., basis.order[:top]].clip(min=0).sum(axis=-1)   # [N, H, W]
    n, height, width = maps.shape
    cells = max(1, int(round(share * height * width)))
    rng = np.random.default_rng(seed)
    chosen = np.argsort(-maps.reshape(n, -1), axis=1)[:, :cells]
    random = np.stack([rng.choice(height * width, cells, replace=False) for _ in range(n)])
    probe = probe_for(model, CAM_LAYER)

    def logit_after(picked: np.ndarray) -> np.ndarray:
        mask = np.zeros((n, height * width), np.float32)
        np.put_along_axis(mask, picked, 1, axis=1)
        size = images.shape[1] // height
        mask = np.repeat(np.repeat(mask.reshape(n, height, width), size, axis=1), size, axis=2)[..., None]
        painted = images * (1 - mask) + images.mean(axis=(1, 2), keepdims=True) * mask
        return np.asarray(probe.logits(tf.constant(painted)))[:, basis.class_index]

    before = explanation.logits
    return {"concept_regions_drop": float(np.mean(before - logit_after(chosen))),
            "random_regions_drop": float(np.mean(before - logit_after(random))),
            "share_of_image": cells / (height * width), "images": n}
