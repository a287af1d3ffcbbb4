"""Every use of a private Keras / TensorFlow / tfds API, in one place.

Each workaround is scoped (a context manager, undone on exit, or an attribute of one object,
never a process-wide rebinding left behind), guarded (the private thing must exist with the shape
it was verified on, else a one-line error naming the installed version), and tested: the tests
also reproduce the upstream problem, so they fail the day a patch is no longer needed.
Verified on Keras 3.15 and tensorflow-datasets 4.9.10 (setup.cfg pins those ranges).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator

from cifar_xai.errors import UserError

# tensorflow/tensorflow#72388: Keras 3's fit reduces every scalar log with
# strategy.reduce("MEAN", value, axis=0), which MultiWorkerMirroredStrategy rejects ("Invalid
# reduction dimension 0 for input with 0 dimensions"); Keras also builds the model from the first
# batch after a reduce that cannot run eagerly under that strategy.
KERAS_MULTI_WORKER_ISSUE = "https://github.com/tensorflow/tensorflow/issues/72388"


def _unsupported(what: str, package: str, version: str) -> UserError:
    return UserError(f"{what} is not what cifar-xai was verified with in {package} {version}; install the "
                     f"versions setup.cfg pins (pip install -e .) or report it")


def _has_parameters(function: Callable, names: tuple[str, ...]) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return all(name in parameters for name in names)


def keras_trainer_module():
    """Keras' TensorFlow trainer module, checked to hold the two functions the patch relies on."""
    import keras  # here: only the path needing the workaround pays for it

    try:
        from keras.src.backend.tensorflow import trainer
    except ImportError:
        raise _unsupported("keras.src.backend.tensorflow.trainer", "Keras", keras.__version__) from None
    reduce = getattr(trainer, "reduce_per_replica", None)
    if not (callable(reduce) and _has_parameters(reduce, ("values", "strategy", "reduction"))
            and callable(getattr(trainer, "_collective_all_reduce_multi_worker", None))):
        raise _unsupported("Keras' reduce_per_replica(values, strategy, reduction)", "Keras", keras.__version__)
    return trainer


@contextlib.contextmanager
def multi_worker_fit(model, strategy, data_batch: tuple) -> Iterator[None]:
    """Make `model.fit` work under MultiWorkerMirroredStrategy for the duration of the block.

    - Scalars are averaged over replicas with axis=None instead of axis=0 (Keras'
      `reduce_per_replica`, swapped in for the block and put back after it).
    - The model, its loss, metrics and optimizer are built from symbolic shapes (`data_batch`:
      one batch of zeros) before fit, and fit's own build-from-the-first-batch is switched off
      for this model only.
    """
    import keras  # here: only the path needing the workaround pays for it

    trainer = keras_trainer_module()
    if not (callable(getattr(model, "_symbolic_build", None))
            and _has_parameters(model._symbolic_build, ("data_batch",))  # noqa: SLF001
            and callable(getattr(model, "_maybe_symbolic_build", None))):
        raise _unsupported("keras.Model._symbolic_build(data_batch=...)", "Keras", keras.__version__)
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):  # noqa: SLF001
            import tensorflow as tf  # here: only the path needing the workaround pays for it

            def mean(value):
                rank = strategy.experimental_local_results(value)[0].shape.rank
                return strategy.reduce("MEAN", value, axis=0 if rank else None)

            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica
    try:
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)  # noqa: SLF001
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None  # noqa: SLF001
        yield
    finally:
        trainer.reduce_per_replica = original
        model.__dict__.pop("_maybe_symbolic_build", None)


@contextlib.contextmanager
def local_download_manager(builder, manager) -> Iterator[None]:
    """Have a tfds builder take its files from `manager` (an object with the DownloadManager members
    the builder uses) instead of downloading, for the duration of the block.

    tfds 4.9's `cifar10` builder has no manual-download path (`MANUAL_DOWNLOAD_INSTRUCTIONS` is
    None) and no public way to hand it local files; its `_make_download_manager` is the seam.
    """
    import tensorflow_datasets as tfds  # here: only the path needing the workaround pays for it

    if not callable(getattr(builder, "_make_download_manager", None)):
        raise _unsupported("tfds' DatasetBuilder._make_download_manager", "tensorflow-datasets", tfds.__version__)
    builder._make_download_manager = lambda **_: manager  # noqa: SLF001
    try:
        yield
    finally:
        builder.__dict__.pop("_make_download_manager", None)
