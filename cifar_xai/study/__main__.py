"""A human-inspection study: `python -m cifar_xai.study create|results|export|bundle|import ...`.

    python -m cifar_xai.study create --model saved_models/interpretable_cnn.keras --out studies/NAME \\
        [--conditions cam,gradcam,saliency] [--per-class 4] [--raters 8] [--seed 0] [--stamp-marks]
    python -m cifar_xai.study results studies/NAME [--json FILE] [--figure FILE.png]
    python -m cifar_xai.study export studies/NAME --csv FILE
    python -m cifar_xai.study bundle studies/NAME --out DIR       # a static page any web host serves
    python -m cifar_xai.study import studies/NAME RATER.jsonl ...  # the answers a bundle collected

`create` writes the design and renders what raters are shown (docs/study.md); `results` prints
every figure with its interval; `export` writes one tidy CSV, a row per answer.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from cifar_xai.cli import OneLineParser, add_data_flags, load_tensorflow, output_file, positive_int
from cifar_xai.errors import run_cli


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m cifar_xai.study", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="design a study on a model's test-split predictions")
    create.add_argument("--model", help="a .keras model (default: the shipped one)")
    create.add_argument("--out", required=True, help="the new study folder (never overwritten)")
    create.add_argument("--conditions", default="cam,gradcam,saliency",
                        help="explanation methods compared with the no-explanation control (added always)")
    create.add_argument("--per-class", type=positive_int, default=4, help="images per class, half right, half wrong")
    create.add_argument("--raters", type=positive_int, default=8, help="rater slots (a Latin square's rows)")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--no-recognition", dest="recognition", action="store_false",
                        help="leave out the task of naming the class visualisations")
    create.add_argument("--stamp-marks", action="store_true",
                        help="the known-answer study: stamp the planted mark on a random half of the test images "
                             "(for a model trained with trainers.fit --plant-mark, as benchmarks.shortcut trains)")
    add_data_flags(create)
    results = commands.add_parser("results", help="the study's figures, with their intervals")
    results.add_argument("study")
    results.add_argument("--json", type=output_file, metavar="FILE")
    results.add_argument("--figure", type=output_file, metavar="FILE.png", help="the results drawn")
    export = commands.add_parser("export", help="one row per answer, as CSV")
    export.add_argument("study")
    export.add_argument("--csv", type=output_file, required=True, metavar="FILE")
    bundle = commands.add_parser("bundle", help="the study as a static page and its images, for any web host")
    bundle.add_argument("study")
    bundle.add_argument("--out", required=True, help="the new bundle folder (never overwritten)")
    imported = commands.add_parser("import", help="add the answer files a bundle's raters downloaded")
    imported.add_argument("study")
    imported.add_argument("files", nargs="+", metavar="RATER.jsonl")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "create":
        return create(args)
    if args.command == "bundle":
        from cifar_xai.study.bundle import write_bundle

        folder = write_bundle(args.study, args.out)
        print(f"bundle written to {folder}: open {folder / 'index.html'} in a browser, or serve the folder "
              "from any web host")
        return 0
    if args.command == "import":
        from cifar_xai.study.bundle import import_answers

        for path in args.files:
            added, known = import_answers(args.study, path)
            kept = f", {known} already recorded (kept as they were)" if known else ""
            print(f"{path}: {added} answers added{kept}")
        return 0
    from cifar_xai.study.answers import all_answers
    from cifar_xai.study.design import load_design

    design = load_design(args.study)
    record = all_answers(args.study)
    for note in record.skipped:
        print(f"note: {note}", file=sys.stderr)
    if args.command == "export":
        import csv

        fields = sorted({key for answer in record.answers for key in answer})
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(record.answers)
        print(f"{len(record.answers)} answers -> {args.csv}")
        return 0
    from cifar_xai.files import write_json
    from cifar_xai.study.materials import load_maps
    from cifar_xai.study.statistics import results, summary_lines

    found = results(design, record.answers, load_maps(args.study))
    print("\n".join(summary_lines(found)))
    if args.json:
        write_json(args.json, found)
    if args.figure:
        from cifar_xai.study.figures import results_png

        Path(args.figure).write_bytes(results_png(found))
        print(f"figure -> {args.figure}")
    return 0


def create(args) -> int:
    load_tensorflow()
    from cifar_xai.data.pipeline import split_arrays
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.model_io import SHIPPED_MODEL, load_model
    from cifar_xai.study.materials import KNOWN_ANSWER_NOTE, known_answer_marks, prepare_study

    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    model = load_model(args.model)
    ensure_prepared(args.data_dir, args.cifar_bin)
    images, labels = (t.numpy() for t in split_arrays(args.data_dir, "test"))
    marks = known_answer_marks(len(images), args.seed) if args.stamp_marks else None
    design = prepare_study(args.out, model, str(args.model or SHIPPED_MODEL), images, labels, conditions,
                           args.per_class, args.raters, args.seed, args.recognition, marks,
                           KNOWN_ANSWER_NOTE if args.stamp_marks else "")
    print(f"study designed in {args.out}: {len(design.trials)} images ({sum(t.correct for t in design.trials)} the "
          f"model gets right), conditions {', '.join(design.conditions)}, {design.raters} rater slots"
          + (f", {len(design.recognition)} class visualisations to name" if design.recognition else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
