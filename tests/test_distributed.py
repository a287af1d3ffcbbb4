"""tf.distribute: two workers on localhost train one model together; only the chief writes."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import cifar_xai.models  # noqa: F401  (registers our layers and schedule for keras.models.load_model)
from tests.conftest import ROOT, run_module

# Trains models or starts TensorFlow in subprocesses: the full lane only (make test-fast skips it).
pytestmark = pytest.mark.slow

FLAGS = ["--preset", "quick", "--epochs", "2", "--batch-size", "16", "--mixed-precision", "off", "--validation", "0"]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_one_model_and_only_the_chief_writes(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": os.fspath(ROOT),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "trainers.fit", "--strategy", "multi_worker", *FLAGS,
             "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(run_dir)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
    assert json.loads(outputs[1][0].strip().splitlines()[-1]) == {"worker_done": True}

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["global_batch_size"] == 32 and metrics["strategy"] == "multi_worker"
    # 120 tiny training images / global batch 32 = 3 steps per epoch, on both workers.
    assert "3/3" in outputs[0][0] and "3/3" in outputs[1][0]
    assert not list(run_dir.glob(".worker-*"))  # the other worker left nothing behind
    model = keras.models.load_model(run_dir / "model.keras")
    np.testing.assert_allclose(np.asarray(model(np.zeros((2, 32, 32, 3), "float32"))).sum(1), 1, rtol=1e-5)


def test_mirrored_strategy_on_one_host(tiny_data_dir, tmp_path):
    """On a CPU-only machine MirroredStrategy has one replica (the CPU): this checks the code path,
    the per-replica batch and the learning-rate scaling by the replica count. The all-reduce across
    several GPUs is exercised only on a machine that has them."""
    import tensorflow as tf

    result = run_module("trainers.fit", "--strategy", "mirrored", *FLAGS, "--data-dir", os.fspath(tiny_data_dir),
                        "--run-dir", os.fspath(tmp_path / "run"), "--explain-every", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    replicas = max(1, len(tf.config.list_physical_devices("GPU")))
    assert metrics["strategy"] == "mirrored" and metrics["replicas"] == replicas
    assert metrics["global_batch_size"] == 16 * replicas


def test_multi_worker_without_tf_config_is_a_one_line_error(tiny_data_dir, tmp_path):
    env_free = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "trainers.fit", "--strategy", "multi_worker", *FLAGS,
                             "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(tmp_path / "run")],
                            cwd=ROOT, env={**env_free, "PYTHONPATH": os.fspath(ROOT)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --strategy multi_worker needs the TF_CONFIG environment variable (cluster and task of this "
        "worker); see docs/training.md, 'Training on a cluster'"]


def test_malformed_tf_config_is_a_one_line_error(tiny_data_dir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "trainers.fit", "--strategy", "multi_worker", *FLAGS,
                             "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(tmp_path / "run")],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": os.fspath(ROOT), "TF_CONFIG": "{cluster:"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: TF_CONFIG is not valid JSON"), result.stderr
    assert not (tmp_path / "run").exists()
