"""Accuracy and calibration of a model under the 15 CIFAR-10-C corruptions at 5 severities.

    python -m benchmarks.robustness --model saved_models/interpretable_cnn.keras [--quick] [--json out.json]
    python -m benchmarks.robustness --model runs/x/model.keras --split validation --validation 5000

The corrupted sets are generated on the fly from the real images (cifar_xai/robustness), with a
fixed seed, so every model is measured on the same images. Prints accuracy and ECE per corruption
x severity, the mean corruption accuracy (mCA) and the clean figures, the split that produced them
and the machine; `--json` writes everything. `--split validation` measures on the last N training
images (`--validation N`, as `trainers.fit --validation N` holds them out): choose settings there,
and keep the test split for the final figures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cifar_xai.cli import OneLineParser, add_benchmark_flags, load_tensorflow, positive_int, write_json

# The corruptions module needs numpy and scipy only (TensorFlow is imported where it is used), so
# the flags can list the names before TensorFlow starts.
from cifar_xai.robustness.corruptions import CORRUPTIONS

CORRUPTION_NAMES = tuple(CORRUPTIONS)


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m benchmarks.robustness", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .keras model (default: the shipped one)")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="test (final figures) or validation (the last --validation training images)")
    parser.add_argument("--validation", type=positive_int, default=5000, metavar="N",
                        help="size of the held-out validation split (default 5000, as trainers.fit --validation)")
    parser.add_argument("--quick", action="store_true", help="the first 1,000 images only")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="the first N images only")
    parser.add_argument("--corruptions", nargs="+", choices=CORRUPTION_NAMES, metavar="NAME",
                        help=f"a subset (default: all 15): {', '.join(CORRUPTION_NAMES)}")
    add_benchmark_flags(parser, "the corrupted sets")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_tensorflow()
    from cifar_xai.data.pipeline import Splits, split_arrays
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.model_io import SHIPPED_MODEL, load_model
    from cifar_xai.robustness.benchmark import corruption_benchmark, format_table
    from cifar_xai.shipping import machine_description

    model_path = Path(args.model) if args.model else SHIPPED_MODEL
    model = load_model(model_path)
    ensure_prepared(args.data_dir, args.cifar_bin)
    split = "test" if args.split == "test" else Splits.checked(args.validation, args.data_dir).validation
    limit = args.limit or (1000 if args.quick else None)
    images, labels = split_arrays(args.data_dir, split, limit=limit)
    start = time.perf_counter()

    def progress(name, severity, scores):
        print(f"  {name} {severity}: {scores['accuracy']:.2%}", file=sys.stderr, flush=True)

    result = corruption_benchmark(model, images.numpy(), labels.numpy(), args.corruptions or CORRUPTION_NAMES,
                                  seed=args.seed, progress=progress)
    result.update(model=str(model_path), split=split, machine=machine_description(),
                  seconds=time.perf_counter() - start, date=time.strftime("%Y-%m-%d"))
    print(f"{model_path} on {split} ({result['num_images']:,} images, corruption seed {args.seed}); "
          f"{result['machine']}")
    print("\nAccuracy\n\n" + "\n".join(format_table(result, "accuracy")))
    print("\nExpected calibration error (15 bins)\n\n" + "\n".join(format_table(result, "ece")))
    print(f"\nclean accuracy {result['clean']['accuracy']:.2%}, ECE {result['clean']['ece']:.2%}, "
          f"NLL {result['clean']['nll']:.3f}; mCA {result['mca']:.2%}, mean corrupted ECE "
          f"{result['mean_ece']:.2%} ({result['seconds']:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
