"""The optimiser side of the recipe: Nesterov SGD on a triangular schedule, lookahead, and the
whitening stem's bias trained only at the start."""

from __future__ import annotations

import keras
import tensorflow as tf

from cifar_xai.config import TrainConfig


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
    return keras.optimizers.SGD(
        learning_rate=schedule, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
    )


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
