"""The private-API workarounds in cifar_xai.compat: scoped, guarded, and still needed.

The last two tests reproduce the upstream problems: when an upgrade fixes them, they fail, and
the workaround should go.
"""

import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from cifar_xai import compat
from cifar_xai.errors import UserError
from cifar_xai.models import build_model
from tests.conftest import ROOT


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
    from keras.src.backend.tensorflow import trainer

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


STILL_BROKEN = """
import tensorflow as tf
from keras.src.backend.tensorflow import trainer

strategy = tf.distribute.MultiWorkerMirroredStrategy()

@tf.function
def step():
    values = strategy.run(lambda: {"loss": tf.constant(1.0)})
    return trainer.reduce_per_replica(values, strategy, "auto")

try:
    step()
    print("FIXED")
except Exception as error:
    print("BROKEN", type(error).__name__, str(error).splitlines()[0])
"""


@pytest.mark.slow
def test_keras_still_cannot_reduce_scalars_under_multi_worker_mirrored_strategy():
    """tensorflow/tensorflow#72388: the reason for compat.multi_worker_fit's reduce patch."""
    result = subprocess.run([sys.executable, "-c", STILL_BROKEN], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    assert last.startswith("BROKEN") and "reduction dimension" in last, (
        f"Keras reduces scalars under MultiWorkerMirroredStrategy now ({last}): remove the patch in "
        f"cifar_xai.compat.multi_worker_fit; stderr: {result.stderr[-500:]}")
