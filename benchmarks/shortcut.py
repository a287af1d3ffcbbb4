"""The planted-shortcut benchmark: train with a mark on a share of one class, then ask TCAV, CAM
and Grad-CAM whether the model uses it (the controlled experiment of Kim et al. 2018, sec. 4.3).

    python -m benchmarks.shortcut                      # cat, shares 0 / 10 / 30 / 100 %, quick recipe
    python -m benchmarks.shortcut --model M.keras --class cat    # your own model: does it use the mark?

For each share a quick-recipe model is trained (`trainers.fit --preset quick --validation 5000
--plant-mark CLASS:SHARE`, 3 minutes on 2 cores; finished runs are reused, interrupted ones
resume) in `runs/shortcut-<class>-p<percent>`. Then, on the test split: the accuracy on the other
classes' images with and without the mark, the share the mark turns into the planted class, the
share of CAM's and Grad-CAM's mass on the mark (as a multiple of its area) and TCAV of the mark
concept for every class and layer. Expected on a model that learned the shortcut: TCAV
significant and high for the planted class; on the model trained without the mark: not.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cifar_xai.cli import OneLineParser, add_benchmark_flags, load_tensorflow, positive_int, write_json
from cifar_xai.config import TCAV_TARGETS


def shares(text: str) -> list[float]:
    import argparse

    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of shares") from None
    if not values or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every share must be between 0 and 1")
    return values


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m benchmarks.shortcut", description=__doc__.splitlines()[0])
    parser.add_argument("--class", dest="target", default="cat", help="the class the mark is planted on (default cat)")
    parser.add_argument("--shares", type=shares, default=[0.0, 0.1, 0.3, 1.0], metavar="P,P,...",
                        help="shares of the class's training images marked, one model each (default 0,0.1,0.3,1)")
    parser.add_argument("--model", action="append", metavar="PATH",
                        help="measure these models instead of training (repeat for several)")
    parser.add_argument("--runs-dir", default="runs", help="where the models are trained (default runs/)")
    parser.add_argument("--runs", type=positive_int, default=20, help="TCAV random sets (default 20)")
    parser.add_argument("--target", dest="tcav_target", choices=TCAV_TARGETS,
                        help="what TCAV differentiates (default: TCAV_TARGET in cifar_xai/config.py)")
    add_benchmark_flags(parser, "the random sets and the test images' marks")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_tensorflow()
    from cifar_xai.concepts.shortcut import shortcut_report
    from cifar_xai.config import PRESETS, TCAV_TARGET
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.errors import UserError
    from cifar_xai.explain.inputs import ExplanationError, class_id
    from cifar_xai.model_io import load_model, run_config
    from cifar_xai.shipping import machine_description
    from cifar_xai.training import train

    try:
        target = class_id(args.target)
    except ExplanationError as err:
        raise UserError(str(err)) from None
    ensure_prepared(args.data_dir, args.cifar_bin)
    if args.model:
        paths = [Path(path) for path in args.model]
    else:
        paths = []
        for share in args.shares:
            run_dir = Path(args.runs_dir) / f"shortcut-{args.target}-p{round(share * 100)}"
            config = PRESETS["quick"].replace(validation=5000, seed=args.seed,
                                              plant_mark=f"{target}:{share:g}" if share else "")
            if not (run_dir / "metrics.json").is_file():
                print(f"training {run_dir} ({config.plant_mark or 'no mark'})", file=sys.stderr)
                train(config, run_dir, args.data_dir, verbose=0, explain_every=0)
            paths.append(run_dir / "model.keras")
    start = time.perf_counter()
    rows = []
    for path in paths:
        settings = run_config(path) or {}
        report = shortcut_report(load_model(path), target, args.data_dir, settings, runs=args.runs, seed=args.seed,
                                 tcav_target=args.tcav_target or TCAV_TARGET)
        rows.append({"model": str(path), "plant_mark": settings.get("plant_mark", ""), **report})
        print_row(rows[-1])
    result = {"rows": rows, "machine": machine_description(), "seconds": time.perf_counter() - start,
              "date": time.strftime("%Y-%m-%d")}
    print(f"\n{result['machine']}; {result['seconds']:.0f} s")
    write_json(args.json, result)
    return 0


def print_row(row: dict) -> None:
    b, a = row["behaviour"], row["attribution"]
    target = row["target"]
    print(f"\n{row['model']} (mark: {row['plant_mark'] or 'none'}; TCAV of the {row['tcav'][0]['target']})")
    print(f"  other classes: accuracy {b['other_classes_accuracy_unmarked']:.1%} unmarked, "
          f"{b['other_classes_accuracy_marked']:.1%} marked; {b['other_classes_flipped_to_target']:.1%} "
          f"turned into {target}; {target}: {b['target_accuracy_unmarked']:.1%} unmarked, "
          f"{b['target_accuracy_marked']:.1%} marked")
    print("  mass on the mark (x its area), " + "; ".join(
        f"{method}: {a['target_images'][method]:.1f} on {target} images, {a['other_images'][method]:.1f} on others "
        "(for their predicted class)"
        for method in a["target_images"]))
    layers = list(dict.fromkeys(r["layer"] for r in row["tcav"]))
    for layer in layers:
        here = [r for r in row["tcav"] if r["layer"] == layer]
        own = next(r for r in here if r["class_name"] == target)
        up = [r["class_name"] for r in here if r["significant"] and r["positive"] and r["class_name"] != target]
        value = (f"projection p = {own['projection_p_value']:.2g}" if own["constant_gradient"]
                 else f"TCAV {own['score']:.2f} (random {sum(own['null_scores']) / len(own['null_scores']):.2f}), "
                      f"p = {own['p_value']:.2g}")
        print(f"  {layer:>13s}: {target} {value} {'significant' if own['significant'] else 'not significant'}; "
              f"other classes significantly raised: {', '.join(up) or 'none'}")


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
