"""Shipping a finished run as the project's default model, with its model card.

    saved_models/<name>.keras      the model without optimizer state (what users load)
    saved_models/<name>.run/       config.json, history.csv, metrics.json of the run that made it
                                   (and robustness.json / ood.json when the benchmarks wrote them)
    saved_models/<name>.ood.npz    the out-of-distribution detector's statistics (trainers.fit_ood)
    saved_models/<name>.md         the model card: data, recipe, command, seed, time, accuracy, machine
    saved_models/<name>/1/         the SavedModel export for TF Serving
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from cifar_xai import faults
from cifar_xai.config import fit_command
from cifar_xai.errors import UserError
from cifar_xai.evaluation import evaluate_classifier
from cifar_xai.export import export_saved_model
from cifar_xai.files import commit_staged, recover_commits, write_text
from cifar_xai.model_io import load_model
from cifar_xai.models import DISTANCES_LAYER, has_gap_head, logit_scale
from cifar_xai.prototypes.diagnostics import duplicates
from cifar_xai.report.frontier import FRONTIER_FILE
from cifar_xai.uncertainty import temperature_of
from cifar_xai.uncertainty.calibration import lowered_ece
from cifar_xai.uncertainty.detector import fingerprint, fit_for_model_file, load_detector, ood_path


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = len(tf.config.list_physical_devices("GPU"))
    return (f"{cpu}, {os.cpu_count()} cores, {gpus} GPUs, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}")


def ship(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
         dest: str | os.PathLike = "saved_models", name: str | None = None, overwrite: bool = False) -> Path:
    """Copy a finished run into `dest` as the project's model `name` (default: the run's model,
    interpretable_cnn or prototype_cnn), with its card and export.

    The run's `robustness.json` (`python -m benchmarks.robustness --model RUN/model.keras --json
    RUN/robustness.json`), when present, puts the corruption figures on the card."""
    run_dir, dest = Path(run_dir), Path(dest)
    finished = recover_commits(dest) if dest.is_dir() else []
    if finished:
        print(f"note: completed an interrupted ship in {dest} ({', '.join(finished)})")
    if not (run_dir / "metrics.json").exists():
        raise UserError(f"{run_dir} holds no finished run (no metrics.json); train with python -m trainers.fit")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    name = name or config["model"]
    model = load_model(run_dir / "model.keras")
    if (dest / f"{name}.keras").exists() and not overwrite:
        raise UserError(f"{dest / name}.keras already exists; pass --overwrite to replace the shipped model")
    dest.mkdir(parents=True, exist_ok=True)
    # Every artefact is written into a staging folder first and swapped in as one transaction
    # (files.commit_staged): after a crash the shipped model is the old one or, once the same
    # command has run again, entirely the new one; never a new model beside an old export.
    staging = dest / f".ship-{name}"
    shutil.rmtree(staging, ignore_errors=True)   # a staging folder no commit plan refers to: unfinished
    staging.mkdir()
    current, shipped = dest / f"{name}.keras", staging / f"{name}.keras"
    # Re-shipping the same weights (to add a figure or the OOD statistics) keeps the file as it is:
    # a re-saved .keras differs in its metadata, and every changed byte grows every clone.
    if current.is_file() and fingerprint(load_model(current)) == fingerprint(model):
        shutil.copy2(current, shipped)
    else:
        model.save(shipped)  # uncompiled: no optimizer state, half the size
    record = staging / f"{name}.run"   # rebuilt from scratch: nothing of the previous model's record stays
    record.mkdir()
    # push.json: where each prototype of a prototype_cnn came from (also inside the model itself).
    for file in ("config.json", "history.csv", "metrics.json", "robustness.json", "ood.json", "push.json",
                 "stages.json", FRONTIER_FILE):
        if (run_dir / file).exists():
            shutil.copy2(run_dir / file, record / file)
    plain = metrics["test"]["accuracy"]
    # Runs from before trainers.fit measured every TTA are measured here.
    tta = metrics.get("test_tta") or evaluate_classifier(model, data_dir, tta=True)[1]
    # The run's detector when it was fitted (python -m trainers.fit_ood), else fitted now; a run
    # without a validation split has nothing to set thresholds on, and ships without one.
    statistics = ood_path(run_dir / "model.keras")
    try:
        detector = (load_detector(model, statistics) if statistics.is_file()
                    else fit_for_model_file(run_dir / "model.keras", data_dir)[0])
        shutil.copy2(statistics, ood_path(shipped))
    except UserError as err:
        print(f"note: shipping without OOD statistics ({err})")   # the commit removes the old model's
        detector = None
    export = export_saved_model(model, staging, name, version=1, overwrite=True, detector=detector)
    faults.reached("ship:staged")
    preset = "quick" if config.get("width") == "small" else "default"
    total = metrics.get("total_seconds", metrics["train_seconds"])
    validation = config.get("validation", 0)
    cam = config.get("cam_map", 4)
    rows = [
        ("architecture", _architecture(model, config, cam)),
        ("input", "raw RGB pixels 0-255, any size (normalisation is inside the model)"),
        ("data", f"CIFAR-10 training split, the first {metrics.get('train_images', 50000 - validation):,} images"
                 + (f" (the last {validation:,} held out for choosing settings and fitting the temperature)"
                    if validation else "")
                 + " (tfds `cifar10` 3.0.2, prepared offline from the original binary batches verified against the "
                   "published MD5s); the 10,000 test images only for the final numbers"),
        ("recipe", ", ".join(f"{k}={v}" for k, v in sorted(_recipe(config).items()))),
        ("command", f"`{fit_command(config, os.fspath(run_dir))}`, then "
                    f"`python -m trainers.ship --run-dir {run_dir} --overwrite`"),
        ("seed", str(config["seed"])),
        ("precision", metrics.get("precision_policy", "unknown")),
        ("training time", f"{metrics['train_seconds']:.0f} s of training, {total:.0f} s to the end of the test "
                          "evaluation"),
        ("test accuracy", f"{plain:.2%} (plain); with test-time augmentation {tta['flip']:.2%} (flip), "
                          f"{tta['flip_translate']:.2%} (flip + 1-px translations)"),
        ("macro F1", f"{metrics['test']['macro']['f1']:.4f}"),
        ("calibration", _calibration_row(metrics)),
        ("robustness", _robustness_row(run_dir)),
        ("out-of-distribution", _ood_row(run_dir, detector.default) if detector else
                                "no detector: the run held out no validation split to set its thresholds on"),
        *_prototype_rows(metrics, model),
        ("machine", machine_description()),
        ("files", f"`{name}.keras` (Keras), `{name}/1/` (SavedModel for TF Serving), `{name}.ood.npz` "
                  f"(OOD statistics), `{name}.run/` (config, history, metrics, robustness, OOD"
                  + (", the frontier of recipes it was chosen from" if (run_dir / FRONTIER_FILE).is_file() else "")
                  + ")"),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    card = f"""# Model card: {name}

{_DESCRIPTIONS.get(config["model"], "A cifar-xai model")}, trained with the project's `{preset}` recipe.

| | |
|---|---|
{table}

Per-class precision / recall / F1 and the confusion matrix are in `{name}.run/metrics.json`;
`python -m reports.build --model saved_models/{name}.keras --out DIR` measures the explanations.

Limitations: trained on 32x32 CIFAR-10 only; images of other sizes are resized. Pictures of
anything else still get one of the ten classes, with `in_distribution: false` when they score
below the threshold that keeps 95 % of held-out CIFAR-10 images (so 5 % of real CIFAR-10 images
are flagged too, and corrupted ones 5-8 %); pure noise shrunk to the strength the model was
trained to see through (a 64-128 px noise JPEG) is the hardest case: see its AUROC above (docs/ood.md).
Corruption figures are on locally generated CIFAR-10-C-style sets (docs/robustness.md).
Explanations are approximate, not causal (see the report's sanity checks and baselines).
"""
    write_text(staging / f"{name}.md", card)
    commit_staged(staging, dest, [f"{name}.keras", f"{name}.run", ood_path(shipped).name, f"{name}.md",
                                  f"{name}/{export.name}"])
    print(f"shipped {dest / f'{name}.keras'} (test accuracy {plain:.2%}, flip + translate TTA "
          f"{tta['flip_translate']:.2%}) and {dest / name / export.name}")
    return dest / f"{name}.keras"


# Settings that only a prototype network reads: the card of any other model leaves them out.
PROTOTYPE_SETTINGS = ("init_from", "prototypes_per_class", "prototype_epochs")


def _recipe(config: dict) -> dict:
    """The settings that made this model: empty ones (no classes left out, no planted mark) and
    another model's settings say nothing about it."""
    return {k: v for k, v in config.items() if v != "" and
            (config.get("model") == "prototype_cnn" or k not in PROTOTYPE_SETTINGS)}


_DESCRIPTIONS = {
    "interpretable_cnn": "The CAM-native interpretable CNN of cifar-xai",
    "standard_cnn": "The baseline CNN of cifar-xai (fully-connected head, no CAM)",
    "prototype_cnn": "The prototype network of cifar-xai (ProtoPNet: \"this looks like that\")",
}


def _architecture(model, config: dict, cam: int) -> str:
    if config["model"] == "prototype_cnn":
        count = model.get_layer(DISTANCES_LAYER).prototypes
        head = (f"1x1 add-on (ReLU, sigmoid), {count} prototypes ({count // 10} per class) compared with every "
                f"latent patch, log-similarity, max over positions, Dense(10) without bias")
    elif has_gap_head(model):
        head = f"Global Average Pooling, x{logit_scale(model):.4g}, Dense(10)"
    else:
        head = "Flatten, Dense(256), Dense(10)"
    return (f"`{config['model']}`, width `{config['width']}`: 2x2 whitening stem, 3x3 conv / BatchNorm / ReLU, "
            f"{head}, {'temperature, ' if temperature_of(model) != 1 else ''}softmax; {model.count_params():,} "
            f"parameters; {cam}x{cam} map on 32x32 input")


def _prototype_rows(metrics: dict, model) -> list[tuple[str, str]]:
    measured = metrics.get("prototypes")
    if not measured:
        return []
    found = duplicates(model)
    return [
        ("prototypes", f"started from `{measured.get('init_from')}`; validation accuracy "
                       + ", ".join(f"{measured[key]:.2%} {when}" for key, when in (
                           ("accuracy_before_push", "before push"), ("accuracy_after_push", "after push"),
                           ("accuracy_after_last_layer", "after last-layer tuning")) if key in measured)),
        ("push provenance", f"every prototype is a latent patch of a `{measured.get('push_split')}` image of its "
                            f"class; {found['distinct']} distinct patches for {found['prototypes']} prototypes; the "
                            "source images, patch positions and boxes are inside the model "
                            "(`prototype_distances` layer) and in `.run/push.json`"),
    ]


def _calibration_row(metrics: dict) -> str:
    calibration = metrics.get("calibration")
    test = metrics["test"].get("calibration", {})
    if not calibration:
        return "not calibrated (trained without a validation split to fit a temperature on)"
    fitted = calibration.get("validation_if_applied", calibration["validation"])
    if not lowered_ece(calibration):
        temperature = calibration.get("fitted_temperature", calibration["temperature"])
        before = calibration["validation_uncalibrated"]["ece"]
        return (f"uncalibrated: the temperature {temperature:.3f} fitted on the validation split (NLL) raised its "
                f"ECE ({before:.2%} -> {fitted['ece']:.2%}), so printed confidences are not called calibrated; "
                f"test ECE {test.get('ece', float('nan')):.2%}")
    return (f"temperature {calibration['temperature']:.3f} fitted on the validation split (NLL) and folded into "
            f"the model: test ECE (15 bins) {test['ece_uncalibrated']:.2%} -> {test['ece']:.2%}, "
            f"NLL {test['nll_uncalibrated']:.3f} -> {test['nll']:.3f}")


def _robustness_row(run_dir: Path) -> str:
    path = run_dir / "robustness.json"
    command = f"python -m benchmarks.robustness --model {run_dir}/model.keras --json {path}"
    if not path.exists():
        return f"not measured; `{command}`"
    result = json.loads(path.read_text())
    noise = [v["accuracy"] for v in result["corruptions"].get("gaussian_noise", {}).values()]
    return (f"mean corruption accuracy (15 corruptions x 5 severities, {result['split']} split, "
            f"{result['num_images']:,} images) {result['mca']:.2%}"
            + (f"; Gaussian noise {' / '.join(f'{v:.1%}' for v in noise)} (severities 1-5)" if noise else "")
            + f"; mean ECE under corruption {result['mean_ece']:.2%}; `{command}`")


def _ood_row(run_dir: Path, score: str) -> str:
    path = run_dir / "ood.json"
    command = f"python -m benchmarks.ood --model {run_dir}/model.keras --json {path}"
    if not path.exists():
        return f"`in_distribution` by {score}, threshold at 95 % TPR on the validation split; not measured; `{command}`"
    result = json.loads(path.read_text())
    summary = result["summary"][score]
    sets = ", ".join(f"{name.replace('_', ' ')} {entry['scores'][score]['auroc']:.1%}"
                     for name, entry in result["outliers"].items())
    return (f"`in_distribution` by {score} (threshold at 95 % TPR on the validation split): AUROC {sets}; "
            f"mean far-OOD FPR@95 {summary['far_fpr95']:.1%}; flags {summary.get('shifted_flagged', 0):.1%} "
            f"of corrupted test images ({result['split']} split); `{command}`")
