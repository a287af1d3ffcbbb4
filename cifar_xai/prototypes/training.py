"""Training a prototype network: ProtoPNet's schedule on our trunk.

1. warm-up: only the add-on and the prototypes learn, on a trunk initialised from a trained
   interpretable_cnn (ProtoPNet starts from an ImageNet backbone for the same reason: prototypes
   need a feature space that already separates the classes);
2. joint: the trunk's convolutions learn too, slowly (BatchNorm statistics frozen);
3. push: every prototype becomes its nearest own-class training patch (`push.py`);
4. last layer: only the prototype-to-class weights learn, with the L1 penalty on other classes.

Each stage is one `fit`; a finished stage is recorded in `stages.json` with the weights after it,
and an interrupted stage resumes from its last epoch (BackupAndRestore), so rerunning the same
command continues where it stopped. The validation accuracy before and after push is recorded.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import class_names
from cifar_xai.config import CLUSTER_COST, LAST_LAYER_L1, SEPARATION_COST, TrainConfig
from cifar_xai.data.pipeline import Splits, split_arrays, training_dataset
from cifar_xai.errors import UserError
from cifar_xai.evaluation import predict_split
from cifar_xai.files import atomic_path
from cifar_xai.model_io import load_model
from cifar_xai.models import ADDON_LAYER, CAM_LAYER, DISTANCES_LAYER, LOGITS_LAYER, build_model
from cifar_xai.prototype_layers import MinOverPositions, OffClassL1, prototype_identity
from cifar_xai.prototypes.push import push


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    learning_rate: float
    trains: str      # "addon" (add-on + prototypes), "joint" (+ trunk convolutions), "last" (last layer)


# Adam throughout, as ProtoPNet; the epochs (of 45,000 images) come from the run's
# `prototype_epochs`. The joint stage's rate is ProtoPNet's feature rate scaled up for a short run.
STAGES = (
    Stage("warmup", 2, 3e-3, "addon"),
    Stage("joint", 4, 3e-4, "joint"),
    Stage("last_layer", 2, 1e-3, "last"),
)


def stages(config: TrainConfig) -> tuple[Stage, ...]:
    """STAGES with the run's epochs ("warm-up,joint,last-layer"); a stage of 0 epochs is skipped."""
    epochs = [int(part) for part in config.prototype_epochs.split(",")]
    return tuple(Stage(stage.name, count, stage.learning_rate, stage.trains)
                 for stage, count in zip(STAGES, epochs, strict=True) if count > 0)


def prototype_loss(identity: np.ndarray):
    """CLUSTER_COST * own-class nearest distance + SEPARATION_COST * other-class nearest distance,
    from the per-prototype minimum distances [N, M] and one-hot labels [N, C]."""
    own = tf.constant(identity.T)   # [C, M]

    def loss(labels, min_distances):
        mine = tf.matmul(tf.cast(labels, tf.float32), own) > 0.5          # [N, M] own-class prototypes
        big = tf.reduce_max(min_distances) + 1.0
        cluster = tf.reduce_min(tf.where(mine, min_distances, big), axis=1)
        separation = tf.reduce_min(tf.where(mine, big, min_distances), axis=1)
        return CLUSTER_COST * cluster + SEPARATION_COST * separation

    return loss


def initialise_trunk(model: keras.Model, source: keras.Model) -> None:
    """Copy every trunk layer (input normalisation to the CAM map) from a trained interpretable_cnn."""
    names = [layer.name for layer in model.layers]
    trunk = names[1:names.index(CAM_LAYER) + 1]
    for name in trunk:
        try:
            theirs = source.get_layer(name)
        except ValueError:
            raise UserError(f"the model to start from has no layer {name!r}; give an interpretable_cnn") from None
        mine = model.get_layer(name)
        if [w.shape for w in mine.weights] != [w.shape for w in theirs.weights]:
            raise UserError(f"the model to start from differs at {name} ({[tuple(w.shape) for w in theirs.weights]});"
                            " train it with the same --width and --cam-map")
        mine.set_weights(theirs.get_weights())


def _set_trainable(model: keras.Model, trains: str) -> None:
    addon = {"addon_conv1", ADDON_LAYER, DISTANCES_LAYER}
    for layer in model.layers:
        if trains == "last":
            layer.trainable = layer.name == LOGITS_LAYER
        elif trains == "addon":
            layer.trainable = layer.name in addon
        else:   # joint: convolutions of the trunk too; BatchNorm keeps its statistics (inference mode)
            layer.trainable = layer.name in addon or (isinstance(layer, keras.layers.Conv2D) and
                                                      not layer.name.startswith("stem"))


def training_model(model: keras.Model, config: TrainConfig, learning_rate: float) -> keras.Model:
    """`model` with a second output (each prototype's smallest distance), compiled with the
    ProtoPNet loss; shares every layer and weight with `model`."""
    num_classes = model.output.shape[-1]
    per_class = model.get_layer(DISTANCES_LAYER).prototypes // num_classes
    identity = prototype_identity(per_class, num_classes)
    minimum = MinOverPositions(name="min_distances")(model.get_layer(DISTANCES_LAYER).output)
    trainer = keras.Model(model.input, {"probabilities": model.output, "min_distances": minimum})
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={"probabilities": keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
              "min_distances": prototype_loss(identity)},
        metrics={"probabilities": [keras.metrics.CategoricalAccuracy(name="accuracy")]},
    )
    return trainer


def accuracy(model: keras.Model, data_dir, split: str, classes=None) -> float:
    probabilities, labels = predict_split(model, data_dir, split, classes=classes)
    return float(np.mean(probabilities["plain"].argmax(axis=1) == labels))


def _save_weights(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def train_prototype_network(config: TrainConfig, run_dir: Path, data_dir, init_from: Path, resumed: bool,
                            verbose: int | str = "auto") -> tuple[keras.Model, dict]:
    """Run the stages into `run_dir` (prepared by the caller); return the model and what was measured
    along the way (validation accuracy after each stage, before and after push, push provenance)."""
    splits = Splits.checked(config.validation, data_dir)
    names = class_names(config.classes)
    one_hot = lambda images, labels: (images, {"probabilities": tf.one_hot(labels, len(names)),  # noqa: E731
                                               "min_distances": tf.one_hot(labels, len(names))})
    train_ds, steps = training_dataset(data_dir, splits.train, config.batch_size, config.seed, pad=config.translate,
                                       corruption_augment=config.corruption_augment, noise_max=config.noise_max,
                                       classes=config.classes, plant=config.planted,
                                       mix_augment=config.mix_augment)
    model = build_model("prototype_cnn", config.width, num_classes=len(names), cam_map=config.cam_map,
                        prototypes_per_class=config.prototypes_per_class)
    state_path, weights_path = run_dir / "stages.json", run_dir / "stages.weights.h5"
    state = json.loads(state_path.read_text()) if resumed and state_path.is_file() else {"done": [], "measured": {}}
    if state["done"]:
        model.load_weights(weights_path)
        print(f"resuming after stage {state['done'][-1]}")
    else:
        initialise_trunk(model, load_model(init_from))
        # Relative to the project when inside it: the record travels with the shipped model.
        root = Path(__file__).resolve().parents[2]
        resolved = Path(init_from).resolve()
        state["measured"]["init_from"] = os.fspath(resolved.relative_to(root) if resolved.is_relative_to(root)
                                                   else init_from)
    measure_on = splits.validation or splits.test

    def finish(stage: str, **measured) -> None:
        _save_weights(model, weights_path)
        state["done"].append(stage)
        state["measured"].update(measured)
        state_path.write_text(json.dumps(state, indent=2) + "\n")

    start = time.perf_counter()
    planned = stages(config)
    for stage in (*(s for s in planned if s.trains != "last"), Stage("push", 0, 0.0, ""),
                  *(s for s in planned if s.trains == "last")):
        if stage.name in state["done"]:
            continue
        stage_start = time.perf_counter()
        if stage.name == "push":
            before = accuracy(model, data_dir, measure_on, config.classes)
            images, labels = (t.numpy() for t in split_arrays(data_dir, splits.train, classes=config.classes))
            provenance = push(model, images, labels)
            after = accuracy(model, data_dir, measure_on, config.classes)
            print(f"push: {measure_on} accuracy {before:.2%} before, {after:.2%} after")
            (run_dir / "push.json").write_text(json.dumps({"split": splits.train, "prototypes": provenance}, indent=2))
            finish("push", accuracy_before_push=before, accuracy_after_push=after, push_seconds=time.perf_counter()
                   - stage_start, push_split=splits.train)
            continue
        _set_trainable(model, stage.trains)
        last = model.get_layer(LOGITS_LAYER).kernel
        if stage.trains == "last":   # Keras reads a weight's penalty from the variable itself
            per_class = model.get_layer(DISTANCES_LAYER).prototypes // len(names)
            last.regularizer = OffClassL1(LAST_LAYER_L1, per_class, len(names))
        trainer = training_model(model, config, stage.learning_rate)
        trainer.fit(
            train_ds.map(one_hot), epochs=stage.epochs, steps_per_epoch=steps, verbose=verbose, shuffle=False,
            callbacks=[keras.callbacks.BackupAndRestore(os.fspath(run_dir / f"backup-{stage.name}")),
                       keras.callbacks.TensorBoard(os.fspath(run_dir / "tensorboard" / stage.name)),
                       keras.callbacks.CSVLogger(os.fspath(run_dir / "history.csv"), append=True)],
        )
        last.regularizer = None
        for layer in model.layers:
            layer.trainable = True
        finish(stage.name, **{f"accuracy_after_{stage.name}": accuracy(model, data_dir, measure_on, config.classes),
                              f"{stage.name}_seconds": time.perf_counter() - stage_start})
        print(f"{stage.name}: {measure_on} accuracy {state['measured'][f'accuracy_after_{stage.name}']:.2%}")
    state["measured"]["stages_seconds"] = time.perf_counter() - start
    state["measured"]["measured_on"] = measure_on
    return model, state["measured"]
