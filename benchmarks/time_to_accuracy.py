"""Validation accuracy against training time, recipe by recipe, from the runs' own history.csv.

    python -m benchmarks.time_to_accuracy --run sgd=runs/A --run muon=runs/B [--img-per-s sgd=386 ...]
        [--figure FILE.png] [--json FILE]

Each run's validation accuracy after every epoch (trainers.fit's history.csv) against the training
seconds to the end of that epoch: the epoch times the run recorded, or, with `--img-per-s NAME=R`,
each epoch's images divided by a throughput measured alone (benchmarks.training_speed, real
pipeline included), for runs that shared the cores with other work. Prints, per run, the first
epoch (and second) at which each accuracy in `--thresholds` is reached, and writes the figure.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    from cifar_xai.errors import UserError

    found = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise UserError(f"{what} {value!r} must be NAME=VALUE")
        found[name] = rest
    return found


def curve(run: Path, img_per_s: float | None) -> tuple[list[float], list[float]]:
    """(cumulative training seconds, validation accuracy) after each epoch of a run."""
    from cifar_xai.errors import UserError
    from cifar_xai.files import read_json_object

    history = run / "history.csv"
    if not history.is_file():
        raise UserError(f"no history.csv in {run}; pass a trainers.fit run folder")
    with history.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "val_accuracy" not in rows[0]:
        raise UserError(f"{history} has no validation accuracy; train with --validation N")
    if img_per_s:
        images = read_json_object(run / "metrics.json", "run record")["train_images"]
        epoch_seconds = [images / img_per_s] * len(rows)
    else:
        epoch_seconds = [float(row["epoch_seconds"]) for row in rows]
    seconds, total = [], 0.0
    for value in epoch_seconds:
        total += value
        seconds.append(total)
    return seconds, [float(row["val_accuracy"]) for row in rows]


def main(argv: Sequence[str] | None = None) -> int:
    from cifar_xai.cli import OneLineParser, output_file, write_json

    parser = OneLineParser(prog="python -m benchmarks.time_to_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--img-per-s", action="append", metavar="NAME=RATE",
                        help="training throughput measured alone, to time a run that shared the cores")
    parser.add_argument("--thresholds", default="0.85,0.86,0.87,0.88")
    parser.add_argument("--figure", type=output_file, metavar="PNG")
    parser.add_argument("--json", type=output_file, metavar="FILE")
    args = parser.parse_args(argv)
    from cifar_xai.errors import UserError
    from cifar_xai.plots import time_to_accuracy_png

    runs = {name: Path(folder) for name, folder in _pairs(args.run, "--run").items()}
    rates = {name: float(rate) for name, rate in _pairs(args.img_per_s, "--img-per-s").items()}
    unknown = sorted(set(rates) - set(runs))
    if unknown:
        raise UserError(f"--img-per-s names {unknown[0]!r}, which no --run names")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    curves = {name: curve(folder, rates.get(name)) for name, folder in runs.items()}
    print("| run | " + " | ".join(f"first reaches {t:.0%}" for t in thresholds) + " | last epoch |")
    print("|---|" + "---|" * (len(thresholds) + 1))
    result = {}
    for name, (seconds, accuracy) in curves.items():
        reached = [next(((i + 1, seconds[i]) for i, a in enumerate(accuracy) if a >= t), None) for t in thresholds]
        cells = [f"epoch {r[0]}, {r[1]:.0f} s" if r else "never" for r in reached]
        print(f"| {name} | " + " | ".join(cells) + f" | {accuracy[-1]:.2%} after {seconds[-1]:.0f} s |")
        result[name] = {"seconds": seconds, "val_accuracy": accuracy, "timed_by": "img_per_s" if name in rates
                        else "history", "img_per_s": rates.get(name)}
    if args.figure:
        timed = "throughput measured alone" if rates else "each run's recorded epoch times"
        title = f"Validation accuracy against training time ({timed})"
        Path(args.figure).write_bytes(time_to_accuracy_png(curves, title))
    write_json(args.json, {"runs": result, "thresholds": thresholds})
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
