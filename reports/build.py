"""Evaluate a trained model and write its report: `python -m reports.build --model PATH --out DIR`.

DIR/index.html (opens from disk, no network) and DIR/metrics.json hold classification metrics,
calibration, and for every explanation method and baseline the grid pointing game,
deletion / insertion AUCs and sanity checks. --quick runs a small subset for a fast look.
Several --model flags write one comparison report instead: the same images, grids and seeds for
every model, a column per model, "n/a" where a model cannot run a method.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from cifar_xai import faults
from cifar_xai.cli import OneLineParser, add_data_flags, load_tensorflow
from cifar_xai.errors import UserError, run_cli
from cifar_xai.files import is_report_folder, replace_folder


def check_out(out: Path, overwrite: bool) -> None:
    """A report never silently replaces another one, or lands among a user's files: --out must be
    new or empty, or (with --overwrite) hold a report this project wrote."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; pass a folder as --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not is_report_folder(out):
        raise UserError(f"{out} holds files that are not a report; pass an empty or new folder as --out")
    if not overwrite:
        raise UserError(f"{out} already holds a report; pass --overwrite to replace it, or another --out")


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m reports.build", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", metavar="PATH",
                        help="a .keras model (default: saved_models/interpretable_cnn.keras); repeat to compare "
                             "several side by side")
    parser.add_argument("--out", required=True, help="output folder for index.html and metrics.json")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 test images, 50 grids, 100 images for deletion/insertion and ROAD, 20 for sanity, "
                             "200 for the corruptions")
    parser.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard summaries to DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    add_data_flags(parser)
    args = parser.parse_args(argv)
    out = Path(args.out)
    # Built beside --out and swapped in whole: an interrupted build leaves the old report intact.
    staging = out.with_name(f".{out.name}.building")
    load_tensorflow()
    from cifar_xai.concepts.study import training_split
    from cifar_xai.data.pipeline import split_arrays
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.interpretability import suite
    from cifar_xai.model_io import SHIPPED_MODEL, load_model, run_config
    from cifar_xai.report.build import build

    command = "python -m reports.build " + shlex.join(argv if argv is not None else sys.argv[1:])
    settings = suite.QUICK if args.quick else suite.Settings()
    if args.model and len(args.model) > 1:
        from cifar_xai.report.compare import build_comparison, check_comparable, model_names

        paths = [Path(path) for path in args.model]
        models = {name: (load_model(path), path) for name, path in zip(model_names(paths), paths, strict=True)}
        check_comparable({name: model for name, (model, _) in models.items()})   # before the data is read
        check_out(out, args.overwrite)   # before the minutes of evaluation, not after
        ensure_prepared(args.data_dir, args.cifar_bin)
        images, labels = suite.load_test_set(args.data_dir)
        shutil.rmtree(staging, ignore_errors=True)   # an interrupted build's leftovers, ours by name
        build_comparison(models, staging, images, labels, settings, command)
        replace_folder(staging, out)
        print(f"comparison report: {out / 'index.html'}")
        return 0
    model_path = Path(args.model[0]) if args.model else SHIPPED_MODEL
    model = load_model(model_path)
    check_out(out, args.overwrite)
    ensure_prepared(args.data_dir, args.cifar_bin)
    images, labels = suite.load_test_set(args.data_dir)
    # Concepts are discovered in the training images the model learned from (500 per class).
    training = split_arrays(args.data_dir, training_split(run_config(model_path)), limit=1000 if args.quick else 5000)
    shutil.rmtree(staging, ignore_errors=True)   # an interrupted build's leftovers, ours by name
    build(model, model_path, staging, images, labels, settings,
          command, Path(args.tensorboard) if args.tensorboard else None,
          training_images=tuple(t.numpy() for t in training))
    faults.reached("report:built")
    replace_folder(staging, out)
    print(f"report: {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
