"""Out-of-distribution scores from one forward pass, each fitted once and able to run in a graph.

Every score follows OpenOOD's postprocessor pattern: `fit(train, labels, kernel, bias)` computes
its statistics from the training images' outputs (numpy, once), `score(outputs)` maps a batch to
one number per image with TensorFlow ops only, so the same code scores a numpy batch in the
benchmark and runs inside the SavedModel. Higher means *more like the training images* for
every score.

`outputs` holds what one forward pass gives (`cifar_xai.uncertainty.detector.model_outputs`):
"features", the input of the `logits` Dense layer (the scaled GAP of the CAM map for the
interpretable network, the hidden layer for the baseline); "logits", that layer's output before
the folded temperature; and "blocks", the channel means of conv blocks' ReLU outputs: the
stem's smoothest whitening direction, then every block from block2a on (`block_spec` in
cifar_xai/uncertainty/detector.py). A flip-averaged detector (the default, `OOD_FLIP_AVERAGE`)
gives the scores each of them as the mean over the image and its mirror. The scores:

- `msp`: the calibrated maximum softmax probability (Hendrycks & Gimpel 2017);
- `max_logit`: the largest logit (Hendrycks et al. 2022);
- `energy`: logsumexp of the logits, the negative free energy (Liu et al. 2020);
- `mahalanobis`: minus the smallest Mahalanobis distance to a class mean, class means and one
  shared covariance of the training features (Lee et al. 2018, without input preprocessing);
- `knn`: minus the distance from the L2-normalised feature to its k-th nearest normalised
  training feature, k = 50 (Sun et al. 2022);
- `vim`: energy minus the scaled norm of the feature's residual outside the training features'
  principal subspace, taken about the origin the classifier implies (Wang et al. 2022);
- `blocks`: minus the sum over the conv blocks of the Mahalanobis distance of the block's channel
  means to their training Gaussian, each standardised by its training mean and spread: a
  feature-ensemble in the spirit of Lee et al. 2018, with equal weights (theirs are fitted on
  outliers, which a user does not have). Intermediate blocks see what the classifier's last layer
  ignores: noise images, flat colour, grey images;
- `energy_blocks`: the standardised energy plus the standardised `blocks` score, equal weights:
  what the classifier knows and what the features' statistics know.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from cifar_xai.config import KNN_K
from cifar_xai.errors import UserError


class OODScore:
    """One score. Subclasses set `name`, may fit statistics, and score with TF ops.

    `fitted` declares the statistics `fit` sets and `state` saves: a detector file is checked
    against it on load, so a score added later (or a file written before it) is refused in one
    line that says to refit, instead of failing when first scored."""

    name = ""
    title = ""
    fitted: tuple[str, ...] = ()

    def missing_state(self, state: Mapping[str, np.ndarray]) -> list[str]:
        """The declared statistics absent from a saved `state`."""
        return [key for key in self.fitted if key not in state]

    def fit(self, outputs: Mapping, labels: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Fit statistics on the training split's outputs (features [N, D], logits [N, K], blocks),
        labels [N] and the classifier (kernel [D, K], bias [K]). Most scores need none of them."""

    def score(self, outputs: Mapping, temperature: float = 1.0) -> tf.Tensor:
        """[N] float32: higher = more like the training images."""
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """The fitted statistics, to be saved beside the model."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for key, value in state.items():
            setattr(self, key, np.asarray(value))


class MSP(OODScore):
    name, title = "msp", "MSP"

    def score(self, outputs, temperature=1.0):
        return tf.reduce_max(tf.nn.softmax(outputs["logits"] / temperature), axis=1)


class MaxLogit(OODScore):
    name, title = "max_logit", "MaxLogit"

    def score(self, outputs, temperature=1.0):
        return tf.reduce_max(outputs["logits"], axis=1)


class Energy(OODScore):
    name, title = "energy", "Energy"

    def score(self, outputs, temperature=1.0):
        # Liu et al. use T = 1 for the energy; the calibration temperature is for probabilities.
        return tf.reduce_logsumexp(outputs["logits"], axis=1)


class Mahalanobis(OODScore):
    name, title = "mahalanobis", "Mahalanobis"
    fitted = ("means", "precision")

    def fit(self, outputs, labels, kernel, bias):
        self.means, self.precision = gaussian_fit(outputs["features"], labels)
        self.whiten = whitening(self.precision)   # once, not per scored batch

    def load_state(self, state):
        super().load_state(state)
        self.whiten = whitening(self.precision)

    def score(self, outputs, temperature=1.0):
        return -tf.reduce_min(whitened_distances(outputs["features"], self.means, self.whiten), axis=1)

    def state(self):
        return {"means": self.means.astype(np.float32), "precision": self.precision.astype(np.float32)}


class KNN(OODScore):
    name, title = "knn", "KNN"
    fitted = ("bank", "k")

    def __init__(self, k: int = 50, bank_size: int | None = None, seed: int = 0):
        self.k, self.bank_size, self.seed = k, bank_size, seed

    def fit(self, outputs, labels, kernel, bias):
        bank = _normalised(np.asarray(outputs["features"], np.float32))
        if self.bank_size and len(bank) > self.bank_size:
            bank = bank[np.sort(np.random.default_rng(self.seed).choice(len(bank), self.bank_size, replace=False))]
        if len(bank) < self.k:
            raise UserError(f"KNN needs at least k = {self.k} training images, got {len(bank)}")
        self.bank = bank

    def score(self, outputs, temperature=1.0):
        features = outputs["features"]
        bank = tf.constant(self.bank, tf.float32)
        norms = tf.norm(features, axis=1, keepdims=True)
        similarity = tf.matmul(features / tf.maximum(norms, 1e-12), bank, transpose_b=True)
        kth = tf.math.top_k(similarity, k=int(self.k), sorted=True).values[:, -1]
        # For unit vectors |a - b| = sqrt(2 - 2 a.b).
        return -tf.sqrt(tf.maximum(2.0 - 2.0 * kth, 0.0))

    def state(self):
        return {"bank": self.bank.astype(np.float16), "k": np.int64(self.k)}

    def load_state(self, state):
        self.bank = np.asarray(state["bank"], np.float32)
        self.k = int(state["k"])


class ViM(OODScore):
    name, title = "vim", "ViM"
    fitted = ("origin", "residual_basis", "alpha")

    def __init__(self, dim: int | None = None):
        self.dim = dim

    def fit(self, outputs, labels, kernel, bias):
        features, logits = np.asarray(outputs["features"], np.float64), outputs["logits"]
        kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)
        # logits = f W + b = (f - u) W for u = -pinv(W') b: the origin the classifier measures from.
        self.origin = -np.linalg.pinv(kernel.T) @ bias
        centred = features - self.origin
        # The principal subspace keeps half the feature dimensions unless told (OpenOOD: 256 of 512).
        dim = self.dim or features.shape[1] // 2
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(centred))
        self.residual_basis = eigenvectors[:, np.argsort(-eigenvalues)[dim:]]
        residual = np.linalg.norm(centred @ self.residual_basis, axis=1)
        # alpha makes the residual's "virtual logit" as large as the real ones on training images.
        self.alpha = np.float64(np.asarray(logits).max(1).mean() / _at_least_tiny(residual.mean()))

    def score(self, outputs, temperature=1.0):
        residual = tf.matmul(outputs["features"] - tf.constant(self.origin, tf.float32),
                             tf.constant(self.residual_basis, tf.float32))
        return tf.reduce_logsumexp(outputs["logits"], axis=1) - float(self.alpha) * tf.norm(residual, axis=1)

    def state(self):
        return {"origin": self.origin.astype(np.float32), "residual_basis": self.residual_basis.astype(np.float32),
                "alpha": self.alpha}


class Blocks(OODScore):
    name, title = "blocks", "Blocks"
    fitted = ("centre", "spread")

    def missing_state(self, state):
        # One Gaussian per block: as many means and precisions as there are centres.
        count = len(state["centre"]) if "centre" in state else 0
        return super().missing_state(state) + [key for index in range(count) for key in (
            f"mean_{index}", f"precision_{index}") if key not in state]

    def fit(self, outputs, labels, kernel, bias):
        # One Gaussian per block, not per class: the early blocks know nothing of classes.
        self.means, self.precisions, self.whitens, self.centre, self.spread = [], [], [], [], []
        for block in outputs["blocks"]:
            mean, precision = gaussian_fit(block, np.zeros(len(block), np.int64))
            whiten = whitening(precision)
            centred = np.asarray(block, np.float64) - mean[0]   # the training distances in float64
            distances = np.sum((centred @ whiten) ** 2, axis=1)
            self.means.append(mean)
            self.precisions.append(precision)
            self.whitens.append(whiten)
            self.centre.append(distances.mean())
            self.spread.append(distances.std())

    def score(self, outputs, temperature=1.0):
        total = 0.0
        for block, mean, whiten, centre, spread in zip(
                outputs["blocks"], self.means, self.whitens, self.centre, self.spread, strict=True):
            distance = whitened_distances(block, mean, whiten)[:, 0]
            total += (distance - float(centre)) / _at_least_tiny(spread)
        return -total

    def state(self):
        state = {"centre": np.asarray(self.centre), "spread": np.asarray(self.spread)}
        for index, (mean, precision) in enumerate(zip(self.means, self.precisions, strict=True)):
            # float32: the scores compute in float32 anyway, and the file ships with the model.
            state[f"mean_{index}"], state[f"precision_{index}"] = mean.astype(np.float32), precision.astype(np.float32)
        return state

    def load_state(self, state):
        count = len(state["centre"])
        self.centre, self.spread = list(state["centre"]), list(state["spread"])
        self.means = [state[f"mean_{index}"] for index in range(count)]
        self.precisions = [state[f"precision_{index}"] for index in range(count)]
        self.whitens = [whitening(precision) for precision in self.precisions]


class EnergyBlocks(OODScore):
    name, title = "energy_blocks", "Energy+Blocks"
    fitted = ("stats",)

    def __init__(self, blocks: Blocks | None = None):
        # Given a `Blocks` score (make_scores shares the one it fits and saves), it is not fitted or
        # stored twice; alone, this score owns one.
        self.energy, self.blocks, self._owns_blocks = Energy(), blocks or Blocks(), blocks is None

    def fit(self, outputs, labels, kernel, bias):
        if self._owns_blocks:
            self.blocks.fit(outputs, labels, kernel, bias)
        # Both standardised on the training images, so neither dominates by its units.
        tensors = as_tensors(outputs)
        self.stats = np.array([[float(np.mean(v)), float(np.std(v))] for v in (
            self.energy.score(tensors).numpy(), self.blocks.score(tensors).numpy())])

    def score(self, outputs, temperature=1.0):
        (energy_mean, energy_std), (blocks_mean, blocks_std) = self.stats.tolist()
        return ((self.energy.score(outputs) - energy_mean) / _at_least_tiny(energy_std)
                + (self.blocks.score(outputs) - blocks_mean) / _at_least_tiny(blocks_std))

    def state(self):
        owned = {f"blocks_{k}": v for k, v in self.blocks.state().items()} if self._owns_blocks else {}
        return {"stats": self.stats, **owned}

    def load_state(self, state):
        self.stats = np.asarray(state["stats"])
        if self._owns_blocks:
            self.blocks.load_state({k[len("blocks_"):]: v for k, v in state.items() if k.startswith("blocks_")})


def gaussian_fit(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means [K, D] and the precision [D, D] of the covariance they share."""
    features = np.asarray(features, np.float64)
    classes = np.unique(labels)
    means = np.stack([features[labels == k].mean(0) for k in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    # The pseudo-inverse: ReLU features can have directions no training image varies in.
    return means, np.linalg.pinv(centred.T @ centred / len(features), hermitian=True)


def whitening(precision: np.ndarray) -> np.ndarray:
    """W [D, D] (float64) with W W' = `precision`, from its eigendecomposition (a pseudo-inverse's
    precision is only semi-definite, which rules out Cholesky): (f - m)' P (f - m) = |(f - m) W|^2."""
    precision = np.asarray(precision, np.float64)
    values, vectors = np.linalg.eigh((precision + precision.T) / 2)
    return vectors * np.sqrt(np.clip(values, 0, None))


def mahalanobis_distances(features: tf.Tensor, means: np.ndarray, precision: np.ndarray) -> tf.Tensor:
    """Squared Mahalanobis distance [N, K] of each feature to each mean, under `precision`."""
    return whitened_distances(features, means, whitening(precision))


def whitened_distances(features: tf.Tensor, means: np.ndarray, whiten: np.ndarray) -> tf.Tensor:
    """|(f - m) W|^2 [N, K] for W W' = the precision (`whitening`): the difference is taken before
    anything is squared. Expanded as f'Pf - 2 f'Pm + m'Pm, three large float32 terms cancel near a
    class mean, where a distance matters most (and could come out negative)."""
    features = tf.cast(features, tf.float32)
    centred = features[:, None, :] - tf.constant(np.asarray(means, np.float32))[None]      # [N, K, D]
    return tf.reduce_sum(tf.square(tf.tensordot(centred, tf.constant(whiten, tf.float32), axes=1)), axis=-1)


def _at_least_tiny(value: float) -> float:
    """A fitted spread or mean to divide by: a constant block or residual would otherwise make
    every score infinite or NaN, and NaN compares as out-of-distribution never."""
    return max(float(value), 1e-12)


def as_tensors(outputs: Mapping) -> dict:
    """`outputs` (numpy or TF) as the float32 tensors every `score` reads."""
    return {key: [tf.cast(v, tf.float32) for v in value] if key == "blocks" else tf.cast(value, tf.float32)
            for key, value in outputs.items()}


def _normalised(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def make_scores(knn_k: int = KNN_K, knn_bank: int | None = None, vim_dim: int | None = None) -> dict[str, OODScore]:
    """One instance of every score, in the order tables show them (fit them in this order:
    `energy_blocks` reuses the fitted `blocks`)."""
    blocks = Blocks()
    scores = [MSP(), MaxLogit(), Energy(), Mahalanobis(), KNN(knn_k, knn_bank), ViM(vim_dim), blocks,
              EnergyBlocks(blocks)]
    return {score.name: score for score in scores}


SCORE_NAMES = tuple(make_scores())
