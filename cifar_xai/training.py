"""Training a model on CIFAR-10, from data to `metrics.json`, resumable after any interruption.

A run directory holds everything a run writes:

    config.json          the settings (a resumed run must use the same ones)
    backup/              Keras BackupAndRestore state, removed when training completes
    checkpoints/         best.keras (by validation, else training, accuracy) and last.keras;
                         trained.keras + trained.json once training has finished, so a run
                         interrupted later (calibration, saving, the test evaluation) resumes there
    tensorboard/         train/ and validation/ scalars (loss, accuracy, learning rate), test/ images,
                         explanations/ (CAM, Grad-CAM, saliency of a probe set, every N epochs)
    history.csv          one row per epoch
    model.keras          the final model
    confusion_matrix.png and metrics.json, written once the test set is evaluated
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from cifar_xai import IMAGE_SIZE, class_names, faults
from cifar_xai.callbacks import ExplanationSummaries, probe_set
from cifar_xai.compat import multi_worker_fit
from cifar_xai.config import WHITENING_IMAGES, TrainConfig
from cifar_xai.data.pipeline import Splits, evaluation_dataset, num_examples, split_arrays, training_dataset
from cifar_xai.distribute import is_chief, make_strategy, task
from cifar_xai.errors import UserError
from cifar_xai.evaluation import evaluate_classifier, predict_split
from cifar_xai.files import atomic_path, is_run_folder, read_json_object, remove_own_folder, write_json
from cifar_xai.metrics import probability_scores
from cifar_xai.model_io import SHIPPED_MODEL
from cifar_xai.models import STEM_LAYER, build_model, fit_whitening
from cifar_xai.optimization import Lookahead, TrainFirstEpochsOnly, WeightAverage, make_optimizer
from cifar_xai.plots import confusion_matrix_png
from cifar_xai.precision import apply_policy
from cifar_xai.projector import PROJECTED_IMAGES, write_projector
from cifar_xai.prototypes.training import stages, train_prototype_network
from cifar_xai.summaries import write_png
from cifar_xai.uncertainty import apply_temperature, fit_temperature, with_temperature


def one_hot_targets(num_classes: int):
    """A `Dataset.map` function: (images, class ids) -> (images, one-hot targets), which label
    smoothing needs."""
    return lambda images, labels: (images, tf.one_hot(labels, num_classes))


class EpochStats(keras.callbacks.Callback):
    """Adds `epoch_seconds` and `learning_rate` to the epoch logs, so history.csv has them too."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def _fit_context(model: keras.Model, distribution: tf.distribute.Strategy, batch_size: int, num_classes: int):
    """Keras 3.15's fit needs two workarounds under MultiWorkerMirroredStrategy (cifar_xai.compat)."""
    if not isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
        return contextlib.nullcontext()
    zeros = (tf.zeros([batch_size, IMAGE_SIZE, IMAGE_SIZE, 3]), tf.zeros([batch_size, num_classes]))
    return multi_worker_fit(model, distribution, zeros)


def _calibrate(model: keras.Model, data_dir, split: str, batch_size: int,
               classes: Sequence[int] | None = None) -> tuple[keras.Model, dict]:
    """Fold a temperature fitted on `split` (held out of training) into `model`; the figures before/after.

    The temperature minimises the held-out NLL; it is folded in only when it also lowers the
    held-out ECE, so that every confidence called "calibrated" is. Otherwise the model keeps
    T = 1 and its confidences are reported as uncalibrated (`applied` False)."""
    probabilities, labels = predict_split(model, data_dir, split, batch_size, classes=classes)
    fitted = fit_temperature(probabilities["plain"], labels)
    before = probability_scores(probabilities["plain"], labels)
    after = probability_scores(apply_temperature(probabilities["plain"], fitted), labels)
    applied = after["ece"] < before["ece"]
    print(f"temperature {fitted:.3f} (fitted on {split}): ECE {before['ece']:.2%} -> {after['ece']:.2%}, "
          f"NLL {before['nll']:.3f} -> {after['nll']:.3f}"
          + ("" if applied else "; not applied (it raises the ECE): the confidences stay uncalibrated"))
    return (with_temperature(model, fitted) if applied else model), {
        "temperature": fitted if applied else 1.0, "fitted_temperature": fitted, "applied": applied,
        "fitted_on": split, "validation_uncalibrated": before, "validation": after if applied else before,
        "validation_if_applied": after,
    }


def _changed_settings(saved: dict, config: TrainConfig) -> list[str]:
    """The settings `config` sets otherwise than a run's config.json (a setting added since that
    run was trained counts as its default)."""
    defaults = TrainConfig().to_dict()
    wanted = config.to_dict()
    return sorted(k for k in wanted if saved.get(k, defaults[k]) != wanted[k])


def finished_run(run_dir: str | os.PathLike, config: TrainConfig) -> dict | None:
    """The metrics of the finished run in `run_dir` when it was trained with `config` (asking for
    it again is then no error: it is there); None when there is none. A finished run with other
    settings is refused in one line, since training would have to replace it."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").is_file():
        return None
    saved = read_json_object(run_dir / "config.json", "run settings") if (run_dir / "config.json").is_file() else {}
    changed = _changed_settings(saved, config)
    if changed:
        raise UserError(f"{run_dir} already holds a finished run with other settings ({', '.join(changed)}); "
                        "pass --run-dir NEW, or --overwrite to replace it")
    return read_json_object(run_dir / "metrics.json", "run record")


def prepare_run_dir(run_dir: Path, config: TrainConfig, overwrite: bool = False) -> bool:
    """Create or reopen `run_dir`; return True when it resumes an interrupted run.

    Never silently throws work away: a finished run is kept unless `overwrite`, and an
    interrupted one only resumes with the settings it was started with.
    """
    config_path = run_dir / "config.json"
    finished = (run_dir / "metrics.json").exists()
    if finished and not overwrite:
        raise UserError(f"{run_dir} already holds a finished run; pass --run-dir NEW or --overwrite")
    if config_path.exists() and not finished and not overwrite:
        changed = _changed_settings(read_json_object(config_path, "run settings"), config)
        if changed:
            raise UserError(
                f"{run_dir} holds an interrupted run with other settings ({', '.join(changed)}); "
                "rerun with the same flags to resume, or pass --run-dir NEW or --overwrite"
            )
        return (run_dir / "backup").exists() or (run_dir / TRAINED).exists()
    if overwrite:
        remove_own_folder(run_dir, is_run_folder, "a training run")
    elif run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file; pass a folder as --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_path, config.to_dict())
    return False


TRAINED = Path("checkpoints") / "trained.keras"


def _save_trained(model: keras.Model, run_dir: Path, train_seconds: float) -> None:
    """The weights as training left them, before calibration: what a resumed run continues from
    (Keras removes backup/ when fit ends, so without this a crash after fit would train again)."""
    with atomic_path(run_dir / TRAINED) as tmp:
        model.save(tmp)
    write_json((run_dir / TRAINED).with_suffix(".json"), {"train_seconds": train_seconds})


def _load_trained(run_dir: Path) -> tuple[keras.Model, float] | None:
    """(the trained model, its training seconds) when an earlier attempt finished training."""
    seconds = (run_dir / TRAINED).with_suffix(".json")
    if not ((run_dir / TRAINED).is_file() and seconds.is_file()):
        return None
    return keras.models.load_model(run_dir / TRAINED), json.loads(seconds.read_text())["train_seconds"]


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
    explain_every: int = 1,
    strategy: str = "default",
) -> dict | None:
    """Train `config.model`, calibrate it on the validation split, evaluate it on the test split,
    and write the run directory.

    Every `explain_every` epochs (0: never) CAM, Grad-CAM and saliency overlays of one test image
    per class go to TensorBoard's `explanations/` images.

    Returns the metrics written to `run_dir/metrics.json`. Under `--strategy multi_worker` only
    the chief writes the run directory (and returns the metrics); the other workers keep their
    backups in `run_dir/.worker-<index>` for resuming and remove the rest when done.
    """
    if config.model == "prototype_cnn":
        if strategy != "default":
            raise UserError("prototype_cnn trains on one device only; drop --strategy")
        return _train_prototypes(config, Path(run_dir), data_dir, overwrite, verbose)
    # First: a multi-worker strategy must configure TF's collectives before any other TF work.
    distribution = make_strategy(strategy)
    keras.utils.set_random_seed(config.seed)
    policy = apply_policy(config.mixed_precision)
    replicas = distribution.num_replicas_in_sync
    chief = is_chief()
    splits = Splits.checked(config.validation, data_dir)
    classes = config.classes
    names = class_names(classes)
    one_hot = one_hot_targets(len(names))
    # Built before the run dir is touched, so settings the data cannot honour leave nothing behind.
    train_ds, steps_per_epoch = training_dataset(
        data_dir, splits.train, config.batch_size * replicas, config.seed, pad=config.translate,
        corruption_augment=config.corruption_augment, noise_max=config.noise_max, classes=classes,
        plant=config.planted, mix_augment=config.mix_augment,
    )
    shared_dir = Path(run_dir)   # the chief's folder: where a finished training is recorded
    run_dir = shared_dir if chief else shared_dir / f".worker-{task()[1]}"
    resumed = prepare_run_dir(run_dir, config, overwrite)
    validation_ds = (evaluation_dataset(data_dir, splits.validation, config.eval_batch_size, classes).map(one_hot)
                     if splits.validation else None)
    if resumed:
        print(f"resuming the interrupted run in {run_dir}")
    if not chief and (shared_dir / TRAINED).is_file():
        # The chief resumes after training and runs no collective step: nothing for a worker to do.
        shutil.rmtree(run_dir, ignore_errors=True)
        return None
    trained = _load_trained(run_dir) if chief else None
    if trained:
        model, train_seconds = trained
        print(f"training had finished ({train_seconds:.0f} s): continuing with calibration and evaluation")
        start = time.perf_counter() - train_seconds
    else:
        model = _compiled_model(config, distribution, data_dir, splits.train, steps_per_epoch)
        fit_callbacks = _fit_callbacks(config, run_dir, steps_per_epoch * config.epochs, replicas,
                                       "val_accuracy" if splits.validation else "accuracy")
        if explain_every and chief and classes is None:  # the probe set has one image of each of the ten
            fit_callbacks.append(ExplanationSummaries(run_dir / "tensorboard" / "explanations",
                                                      *probe_set(data_dir), every=explain_every))
        start = time.perf_counter()
        with _fit_context(model, distribution, config.batch_size, len(names)):
            model.fit(
                train_ds.map(one_hot),
                epochs=config.epochs,
                steps_per_epoch=steps_per_epoch,
                validation_data=validation_ds,
                callbacks=[*fit_callbacks, *callbacks],
                verbose=verbose,
                shuffle=False,  # the pipeline shuffles; Keras cannot shuffle a tf.data stream anyway
            )
        train_seconds = time.perf_counter() - start
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)
            return None
        _save_trained(model, run_dir, train_seconds)
    faults.reached("fit:trained")

    return _finish_run(model, config, run_dir, data_dir, splits, start, train_seconds, {
        "resumed": resumed, "precision_policy": policy, "strategy": strategy, "replicas": replicas,
        "global_batch_size": config.batch_size * replicas})


def _finish_run(model: keras.Model, config: TrainConfig, run_dir: Path, data_dir, splits: Splits, start: float,
                train_seconds: float, extra: dict) -> dict:
    """Calibrate on the validation split, save model.keras, evaluate on the test split and write
    metrics.json (last, atomically: its presence marks the run as finished)."""
    classes = config.classes
    calibration = None
    if splits.validation:
        model, calibration = _calibrate(model, data_dir, splits.validation, config.eval_batch_size, classes)
    faults.reached("fit:calibrated")
    with atomic_path(run_dir / "model.keras") as tmp:
        model.save(tmp)
    faults.reached("fit:saved")
    test, tta = evaluate_classifier(model, data_dir, splits.test, config.eval_batch_size, tta=True, classes=classes)
    faults.reached("fit:evaluated")
    total_seconds = time.perf_counter() - start
    _write_test_summaries(run_dir, test, config.epochs, class_names(classes))
    if classes is None:   # the Projector's labels are CIFAR-10's ten
        write_projector(model, *(t.numpy() for t in split_arrays(data_dir, splits.test, limit=PROJECTED_IMAGES)),
                        run_dir / "tensorboard" / "projector")
    metrics = {
        "test": test,
        # Accuracy with flip and flip + translate test-time augmentation, beside the plain one.
        "test_tta": tta,
        # Temperature scaling fitted on the validation split (None without one); its effect on the
        # test split is in test.calibration: ece / nll (calibrated) beside *_uncalibrated.
        "calibration": calibration,
        "train_seconds": train_seconds,
        # Wall time from the first training step to the end of the test evaluation.
        "total_seconds": total_seconds,
        "epochs": config.epochs,
        **extra,
        "train_images": num_examples(splits.train, data_dir, classes),
        "config": config.to_dict(),
    }
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def _train_prototypes(config: TrainConfig, run_dir: Path, data_dir, overwrite: bool, verbose) -> dict:
    """prototype_cnn: ProtoPNet's stages (cifar_xai/prototypes/training.py) from a trained
    interpretable_cnn's trunk, then the same calibration, evaluation and metrics.json as any run."""
    keras.utils.set_random_seed(config.seed)
    policy = apply_policy(config.mixed_precision)
    splits = Splits.checked(config.validation, data_dir)
    init_from = Path(config.init_from) if config.init_from else SHIPPED_MODEL
    if not init_from.is_file():
        raise UserError(f"no model to start the prototype network from at {init_from}; train an interpretable_cnn "
                        "with the same --width and --cam-map and pass --init-from runs/<run>/model.keras")
    resumed = prepare_run_dir(run_dir, config, overwrite)
    start = time.perf_counter()
    model, measured = train_prototype_network(config, run_dir, data_dir, init_from, resumed, verbose)
    return _finish_run(model, config, run_dir, data_dir, splits, start, time.perf_counter() - start, {
        "epochs": sum(stage.epochs for stage in stages(config)), "resumed": resumed, "precision_policy": policy,
        "strategy": "default", "replicas": 1, "global_batch_size": config.batch_size, "prototypes": measured})


def _compiled_model(config: TrainConfig, distribution: tf.distribute.Strategy, data_dir, train_split: str,
                    steps_per_epoch: int) -> keras.Model:
    """The network with its stem fitted to the training images, compiled with the recipe's optimizer."""
    with distribution.scope():
        model = build_model(config.model, config.width, num_classes=len(class_names(config.classes)),
                            cam_map=config.cam_map, logit_scale=config.logit_scale)
        whitening_images = split_arrays(data_dir, train_split, limit=WHITENING_IMAGES, classes=config.classes)[0]
        fit_whitening(model, whitening_images, config.whitening_epsilon)
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch, distribution.num_replicas_in_sync),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
    return model


def _fit_callbacks(config: TrainConfig, run_dir: Path, total_steps: int, replicas: int,
                   monitor: str) -> list[keras.callbacks.Callback]:
    """The recipe's callbacks (lookahead, stem-bias freeze) and the run directory's writers."""
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    return [
        # Before BackupAndRestore: the weights it saves at an epoch's end are the lookahead average.
        Lookahead(total_steps, config.lookahead_every, config.lookahead_decay ** (config.batch_size * replicas / 1024)),
        TrainFirstEpochsOnly(STEM_LAYER, config.whitening_bias_epochs),
        *([WeightAverage(config.epochs, config.average_last_epochs, run_dir / "weight_average.npz")]
          if config.average_last_epochs else []),
        keras.callbacks.BackupAndRestore(os.fspath(run_dir / "backup")),
        EpochStats(),
        keras.callbacks.TensorBoard(os.fspath(run_dir / "tensorboard")),
        keras.callbacks.ModelCheckpoint(
            os.fspath(run_dir / "checkpoints" / "best.keras"), monitor=monitor, mode="max", save_best_only=True
        ),
        keras.callbacks.ModelCheckpoint(os.fspath(run_dir / "checkpoints" / "last.keras")),
        keras.callbacks.CSVLogger(os.fspath(run_dir / "history.csv"), append=True),
    ]


def _write_test_summaries(run_dir: Path, test: dict, step: int, class_names: Sequence[str]) -> None:
    """The test confusion matrix as confusion_matrix.png and, with the accuracy, in TensorBoard."""
    png = confusion_matrix_png(test["confusion_matrix"], class_names, f"Test set, accuracy {test['accuracy']:.2%}")
    (run_dir / "confusion_matrix.png").write_bytes(png)
    writer = tf.summary.create_file_writer(os.fspath(run_dir / "tensorboard" / "test"))
    write_png(writer, "confusion_matrix", png, step=step)
    with writer.as_default():
        tf.summary.scalar("accuracy", test["accuracy"], step=step)
    writer.close()
