"""tf.distribute strategies for `trainers.fit --strategy`, and who writes what in a cluster.

- default: one device, no strategy.
- mirrored: MirroredStrategy, synchronous data parallelism over the GPUs of one host.
- multi_worker: MultiWorkerMirroredStrategy across hosts, configured by the TF_CONFIG
  environment variable each worker is started with.

`--batch-size` is per replica: the global batch, and with it the learning rate (linear scaling),
grow with the number of replicas, so a recipe keeps its per-example behaviour on any cluster.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from cifar_xai.config import STRATEGIES
from cifar_xai.errors import UserError


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserError("--strategy multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and task of this worker); see docs/training.md, 'Training on a cluster'")
        tf_config()  # a malformed TF_CONFIG gets our one-line error, not TF's traceback
        # RING all-reduce works on CPUs and GPUs alike; NCCL is picked automatically only where it helps.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")


def tf_config() -> dict:
    """The parsed TF_CONFIG ({} outside a cluster); malformed JSON is a one-line error."""
    try:
        return json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError as err:
        raise UserError(f"TF_CONFIG is not valid JSON ({err}); see docs/training.md, 'Training on a cluster'") from None


def task() -> tuple[str | None, int]:
    """(task type, index) of this process from TF_CONFIG; (None, 0) outside a cluster."""
    current = tf_config().get("task", {})
    return current.get("type"), int(current.get("index", 0))


def is_chief() -> bool:
    """The chief writes checkpoints, summaries and the model: a 'chief' task if the cluster has
    one, else worker 0 (the TF convention)."""
    task_type, index = task()
    if task_type is None:
        return True
    cluster = tf_config().get("cluster", {})
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and index == 0
