"""The optimiser side of the recipe: Nesterov SGD (or Muon for the conv filters) on a triangular
schedule, lookahead, weight averaging over the last epochs, and the whitening stem's bias trained
only at the start."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.config import TrainConfig
from cifar_xai.errors import UserError
from cifar_xai.files import atomic_path


@keras.saving.register_keras_serializable(package="cifar_xai")
class Triangular(keras.optimizers.schedules.LearningRateSchedule):
    """Linear from `start` x `peak` up to `peak` at step `warmup`, then linear down to `end` x `peak`
    at step `total` (and flat after it)."""

    def __init__(self, peak: float, warmup: int, total: int, start: float = 0.2, end: float = 0.0):
        self.peak, self.warmup, self.total, self.start, self.end = peak, warmup, total, start, end

    def __call__(self, step):
        step = tf.minimum(tf.cast(step, tf.float32), self.total)
        rising = self.start + (1 - self.start) * step / max(self.warmup, 1)
        falling = self.end + (1 - self.end) * (self.total - step) / max(self.total - self.warmup, 1)
        return self.peak * tf.minimum(tf.minimum(rising, falling), 1.0)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total, "start": self.start, "end": self.end}


# The quintic Newton-Schulz coefficients of airbench94_muon / Keller Jordan's Muon: chosen for the
# steepest slope at zero, so 3 iterations take every singular value of the update to ~0.5-1.5.
_NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalise(update: tf.Tensor, steps: int = 3) -> tf.Tensor:
    """An approximately semi-orthogonal matrix with `update`'s singular vectors (Muon's "zeroth
    power"): [rows, columns] in, same shape out."""
    a, b, c = _NEWTON_SCHULZ
    x = update / (tf.norm(update) + 1e-7)  # the largest singular value is then at most 1
    wide = update.shape[0] <= update.shape[1]
    if not wide:   # iterate on the smaller Gram matrix
        x = tf.transpose(x)
    for _ in range(steps):
        gram = tf.matmul(x, x, transpose_b=True)
        x = a * x + tf.matmul(b * gram + c * tf.matmul(gram, gram), x)
    return x if wide else tf.transpose(x)


@keras.saving.register_keras_serializable(package="cifar_xai")
class MuonSGD(keras.optimizers.SGD):
    """airbench94_muon's optimiser: Muon for every trainable conv filter, Nesterov SGD (this class's
    base) for everything else, on one learning-rate schedule.

    `keras.optimizers.Muon` is not used because it orthogonalises only 2-D weights and hands every
    4-D conv kernel to its AdamW, which is the opposite of what airbench does. Per conv kernel,
    each step: momentum buffer m = mu m + g; Nesterov update g + mu m; the kernel rescaled to norm
    sqrt(output channels) (it feeds a BatchNorm, so only its direction matters, and a fixed norm
    keeps the orthogonalised step's relative size fixed; weight decay is skipped for it); then
    kernel -= lr_muon * orthogonalise(update as [output channels, kh * kw * input channels]).
    lr_muon follows the schedule: `muon_lr` at the schedule's peak `peak_lr`.
    """

    def __init__(self, *args, muon_lr: float = 0.12, muon_momentum: float = 0.6, peak_lr: float = 1.0,
                 newton_schulz_steps: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        self.muon_lr, self.muon_momentum, self.peak_lr = muon_lr, muon_momentum, peak_lr
        self.newton_schulz_steps = newton_schulz_steps

    @staticmethod
    def _is_filter(variable) -> bool:
        return len(variable.shape) == 4

    def _use_weight_decay(self, variable) -> bool:
        return not self._is_filter(variable) and super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        if not self._is_filter(variable) or self.momentum == 0:
            return super().update_step(gradient, variable, learning_rate)
        gradient = tf.cast(gradient, variable.dtype)
        buffer = self.momentums[self._get_variable_index(variable)]
        self.assign(buffer, self.muon_momentum * buffer + gradient)
        update = gradient + self.muon_momentum * buffer if self.nesterov else buffer
        kh, kw, inputs, outputs = variable.shape
        self.assign(variable, variable * (outputs**0.5 / (tf.norm(variable) + 1e-12)))
        # Keras keeps kernels as [kh, kw, in, out]: rows are output channels, as in PyTorch's layout.
        matrix = tf.transpose(tf.reshape(update, [kh * kw * inputs, outputs]))
        step = tf.reshape(tf.transpose(orthogonalise(matrix, self.newton_schulz_steps)), variable.shape)
        lr = tf.cast(learning_rate, variable.dtype) * (self.muon_lr / self.peak_lr)
        self.assign_sub(variable, lr * step)

    def get_config(self) -> dict:
        return {**super().get_config(), "muon_lr": self.muon_lr, "muon_momentum": self.muon_momentum,
                "peak_lr": self.peak_lr, "newton_schulz_steps": self.newton_schulz_steps}


def make_optimizer(config: TrainConfig, steps_per_epoch: int, replicas: int = 1) -> keras.optimizers.Optimizer:
    total = config.epochs * steps_per_epoch
    schedule = Triangular(
        peak=config.peak_lr * replicas,  # linear scaling with the global batch
        warmup=int(config.warmup_fraction * total),
        total=total,
        start=config.warmup_start,
        end=config.final_lr,
    )
    # Every weight is decayed, BatchNorm offsets included, as in airbench: the convolutions feed
    # BatchNorms, so decay only sets their effective learning rate.
    sgd = {"learning_rate": schedule, "momentum": config.momentum, "nesterov": True,
           "weight_decay": config.weight_decay}
    if config.optimizer == "muon":
        return MuonSGD(**sgd, muon_lr=config.muon_lr, muon_momentum=config.muon_momentum,
                       peak_lr=config.peak_lr * replicas)
    return keras.optimizers.SGD(**sgd)


class Lookahead(keras.callbacks.Callback):
    """airbench's lookahead: every `every` steps, average = d * average + (1 - d) * weights, then
    weights = average, with d = decay ** every * progress ** 3 (no averaging early, strong late).

    BatchNorm statistics are averaged with the weights. The weights are synchronised at the end of
    every epoch too, so they equal the average whenever BackupAndRestore saves them: a resumed run
    continues exactly. Put this callback before BackupAndRestore.
    """

    def __init__(self, total_steps: int, every: int = 5, decay: float = 0.95):
        super().__init__()
        self.total_steps, self.every, self.decay = total_steps, every, decay

    def on_train_begin(self, logs=None):
        self._weights = [w for w in self.model.weights if w.dtype == "float32"]
        with self.model.distribute_strategy.scope():  # mirrored like the weights under a strategy
            self._average = [tf.Variable(w.value, trainable=False) for w in self._weights]

        @tf.function
        def restart():
            for average, weight in zip(self._average, self._weights, strict=True):
                average.assign(weight.value)

        @tf.function
        def synchronise(decay):
            for average, weight in zip(self._average, self._weights, strict=True):
                average.assign(decay * average + (1 - decay) * weight.value)
                weight.assign(average)

        self._synchronise, self._restart = synchronise, restart

    def on_epoch_begin(self, epoch, logs=None):
        # Weights and average are equal at every epoch boundary; restarting from the weights also
        # picks up what BackupAndRestore restored after on_train_begin.
        self._restart()

    def _synchronise_at(self, step: int) -> None:
        progress = min(step / self.total_steps, 1.0)
        self._synchronise(tf.constant(self.decay**self.every * progress**3, tf.float32))

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every == 0:
            self._synchronise_at(step)

    def on_epoch_end(self, epoch, logs=None):
        self._synchronise_at(int(self.model.optimizer.iterations.numpy()))


class WeightAverage(keras.callbacks.Callback):
    """Stochastic weight averaging over the last `last` of `epochs` epochs: when training ends, every
    float32 weight (BatchNorm statistics included) becomes its mean over those epochs' ends.

    The running sum is written to `path` at each averaged epoch's end, after the weights it read,
    so a run resumed by BackupAndRestore continues the same average; it is removed once applied.
    Put this callback after Lookahead, so it reads the lookahead-synchronised weights.
    """

    def __init__(self, epochs: int, last: int, path: str | os.PathLike):
        super().__init__()
        self.check(epochs, last)
        self.first, self.path = epochs - last, Path(path)

    @staticmethod
    def check(epochs: int, last: int) -> None:
        """Refuse an average over more epochs than the run has (trainers.fit asks before the run
        folder is created, so a mistyped flag leaves nothing behind to resume)."""
        if not 0 < last <= epochs:
            raise UserError(f"--average-last-epochs {last} must be between 1 and the run's {epochs} epochs")

    def on_train_begin(self, logs=None):
        self._weights = [w for w in self.model.weights if w.dtype == "float32"]
        self._sum, self._count = [np.zeros(w.shape, np.float64) for w in self._weights], 0
        if self.path.is_file():
            with np.load(self.path) as saved:
                self._count = int(saved["count"])
                self._sum = [saved[f"w{i}"] for i in range(len(self._weights))]

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.first or epoch - self.first < self._count:  # not yet, or already summed before a resume
            return
        for total, weight in zip(self._sum, self._weights, strict=True):
            total += keras.ops.convert_to_numpy(weight.value)
        self._count += 1
        with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, count=self._count, **{f"w{i}": total for i, total in enumerate(self._sum)})

    def on_train_end(self, logs=None):
        if self._count:
            for total, weight in zip(self._sum, self._weights, strict=True):
                weight.assign((total / self._count).astype(np.float32))
        self.path.unlink(missing_ok=True)


class TrainFirstEpochsOnly(keras.callbacks.Callback):
    """Train `layer`'s bias for the first `epochs` epochs, then freeze it (airbench's progressive
    freezing of the whitening stem's bias).

    Once the stem has no trainable weight, the backward pass stops at the first learned conv: the
    later steps are ~3 % cheaper on the default network, at no cost in accuracy in airbench's
    ablations. Decided from the epoch number at every epoch's start, so a resumed run freezes at
    the same point; the bias is trainable again when training ends.
    """

    def __init__(self, layer: str, epochs: int):
        super().__init__()
        self.layer, self.epochs = layer, epochs

    def _set(self, trainable: bool) -> None:
        bias = self.model.get_layer(self.layer).bias
        if bias.trainable != trainable:
            bias.trainable = trainable
            # fit() calls model.train_function each step: a new trace sees the new trainable set.
            self.model.make_train_function(force=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._set(epoch < self.epochs)

    def on_train_end(self, logs=None):
        self.model.get_layer(self.layer).bias.trainable = True
