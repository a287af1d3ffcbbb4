"""The private-API workarounds in cifar_xai.compat: scoped, guarded, and still needed.

The last two tests reproduce the upstream problems: when an upgrade fixes them, they fail, and
the workaround should go.
"""

import keras
import pytest
import tensorflow as tf

from cifar_xai import compat
from cifar_xai.errors import UserError
from cifar_xai.models import build_model


def test_multi_worker_fit_patches_only_inside_the_block():
    trainer = compat.keras_trainer_module()
    original = trainer.reduce_per_replica
    model = build_model("interpretable_cnn", "small")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    batch = (tf.zeros([4, 32, 32, 3]), tf.zeros([4, 10]))
    with compat.multi_worker_fit(model, tf.distribute.get_strategy(), batch):
        assert trainer.reduce_per_replica is not original
        assert "_maybe_symbolic_build" in model.__dict__
        assert model.optimizer.built  # built from the symbolic batch, before fit
    assert trainer.reduce_per_replica is original
    assert "_maybe_symbolic_build" not in model.__dict__


def test_a_keras_without_the_patched_function_is_a_one_line_error(monkeypatch):
    trainer = compat.keras_trainer_module()
    monkeypatch.delattr(trainer, "reduce_per_replica")
    with pytest.raises(UserError, match=f"verified with in Keras {keras.__version__}; install the versions"):
        compat.keras_trainer_module()


def test_local_download_manager_is_undone_after_the_block():
    import tensorflow_datasets as tfds

    builder = tfds.builder("cifar10")
    manager = object()
    with compat.local_download_manager(builder, manager):
        assert builder._make_download_manager() is manager
    assert "_make_download_manager" not in builder.__dict__


def test_tfds_cifar10_still_has_no_manual_download_path():
    """If tfds gives cifar10 a manual-download path, use it and drop compat.local_download_manager."""
    import tensorflow_datasets as tfds

    assert tfds.builder("cifar10").MANUAL_DOWNLOAD_INSTRUCTIONS is None


def test_keras_still_reduces_scalars_with_axis_0_under_multi_worker_strategies():
    """tensorflow/tensorflow#72388, the reason for compat.multi_worker_fit's reduce patch, in its two
    halves: Keras 3 still averages every log value over replicas with axis=0 in multi-worker mode,
    and TensorFlow still rejects axis=0 for a scalar. (The whole failure needs two worker processes:
    tests/test_distributed.py trains with them.) When either half changes, revisit the patch."""
    import inspect

    trainer = compat.keras_trainer_module()
    assert 'strategy.reduce("MEAN", v, axis=0)' in inspect.getsource(trainer.reduce_per_replica)
    with pytest.raises(ValueError, match="Invalid reduction dimension 0 for input with 0 dimensions"):
        tf.distribute.MirroredStrategy().reduce("MEAN", tf.constant(1.0), axis=0)
