"""Out-of-distribution detection: every score against far, near and shifted inputs, side by side.

    python -m benchmarks.ood --model saved_models/interpretable_cnn.keras [--json out.json]
    python -m benchmarks.ood --model runs/osr-split0/model.keras     # a model trained with --known-classes

In-distribution: the test split (or `--split validation`, to choose settings). Outliers:
Fashion-MNIST's test images and four synthetic sets (far-OOD); for a model trained on some classes
only (the open-set protocol, `trainers.fit --known-classes`), the other classes' test images
(near-OOD). Shifted: the 15 corruptions at severities 1, 3 and 5 on the first 1,000 images,
reported as the share each score flags, since a corrupted cat is still a cat. Prints AUROC and
FPR@95 %TPR per score and set, the flag rates, selective prediction (AURC, accuracy at 80 / 90 /
95 % coverage) and the machine; `--json` writes every figure (AUPR-In / -Out too).

The detector's statistics come from `<model>.ood.npz` (`python -m trainers.fit_ood`); when it is
missing it is fitted first and saved there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cifar_xai.cli import (
    OneLineParser,
    add_benchmark_flags,
    load_tensorflow,
    non_negative_int,
    positive_int,
    write_json,
)

# The data module needs numpy only at import, so the flags can list the sets before TensorFlow starts.
from cifar_xai.data.ood_sets import SYNTHETIC_SETS

OUTLIER_SETS = ("fashion_mnist", *SYNTHETIC_SETS)


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m benchmarks.ood", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .keras model (default: the shipped one)")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="in-distribution images: test (final figures) or validation (choosing settings)")
    parser.add_argument("--fashion-mnist", metavar="DIR",
                        help="folder with Fashion-MNIST's t10k-images-idx3-ubyte[.gz] (default: "
                             "$CIFAR_XAI_FASHION_MNIST, ../shared/datasets/fashion-mnist, /usr/share/datasets/...)")
    parser.add_argument("--outliers", nargs="+", choices=OUTLIER_SETS, default=list(OUTLIER_SETS), metavar="SET",
                        help=f"far-OOD sets to use (default all): {', '.join(OUTLIER_SETS)}")
    parser.add_argument("--synthetic", type=non_negative_int, default=2000, metavar="N",
                        help="images per synthetic set (default 2,000; 0: none)")
    parser.add_argument("--shifted", type=non_negative_int, default=1000, metavar="N",
                        help="in-distribution images per corrupted set (default 1,000; 0: skip the corruptions)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="the first N images of every set only")
    add_benchmark_flags(parser, "the generated sets")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_tensorflow()
    from cifar_xai import NUM_CLASSES
    from cifar_xai.config import TrainConfig
    from cifar_xai.data.ood_sets import fashion_mnist, synthetic_set
    from cifar_xai.data.pipeline import Splits, split_arrays
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.model_io import SHIPPED_MODEL, load_model, run_config
    from cifar_xai.shipping import machine_description
    from cifar_xai.uncertainty.benchmark import corrupted_sets, format_table, ood_benchmark
    from cifar_xai.uncertainty.detector import fit_for_model_file, load_detector, ood_path

    # Every file is read before the slow part, so a missing or corrupt one fails in seconds.
    outliers = {}
    if "fashion_mnist" in args.outliers:
        outliers["fashion_mnist"] = fashion_mnist(args.fashion_mnist, args.limit)
    model_path = Path(args.model) if args.model else SHIPPED_MODEL
    model = load_model(model_path)
    ensure_prepared(args.data_dir, args.cifar_bin)
    settings = run_config(model_path) or {}
    if ood_path(model_path).is_file():
        detector = load_detector(model, ood_path(model_path))
    else:
        print(f"fitting the OOD statistics of {model_path} first (python -m trainers.fit_ood)", file=sys.stderr)
        detector = fit_for_model_file(model_path, args.data_dir)[0]
    start = time.perf_counter()
    split = ("test" if args.split == "test"
             else Splits.checked(settings.get("validation", 5000), args.data_dir).validation)
    known = TrainConfig(known_classes=settings.get("known_classes", "")).classes
    images, labels = (t.numpy() for t in split_arrays(args.data_dir, split, args.limit, known))
    if known:
        unknown = tuple(k for k in range(NUM_CLASSES) if k not in known)
        outliers["open_set_unknown"] = split_arrays(args.data_dir, split, args.limit, unknown)[0].numpy()
    for name in SYNTHETIC_SETS:
        if args.synthetic and name in args.outliers:
            outliers[name] = synthetic_set(name, min(args.synthetic, args.limit or args.synthetic), args.seed)
    count = min(args.shifted, len(images))
    shifted = corrupted_sets(images[:count], labels[:count], args.seed) if count else {}
    result = ood_benchmark(model, detector, images, labels, outliers, shifted)
    result.update(model=str(model_path), split=split, known_classes=settings.get("known_classes", ""),
                  machine=machine_description(), seconds=time.perf_counter() - start, date=time.strftime("%Y-%m-%d"))
    # The printout has one row per severity (the mean over the corruptions); the JSON has every set.
    printed = dict(result, shifted=result["shifted_by_severity"])
    print(f"{model_path} on {split}{' (known classes ' + result['known_classes'] + ')' if known else ''}; "
          f"{result['machine']}\n")
    print(format_table(printed))
    print(f"\n({result['seconds']:.0f} s)")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
