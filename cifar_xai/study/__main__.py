"""A human-inspection study: `python -m cifar_xai.study create|results|export ...`.

    python -m cifar_xai.study create --model saved_models/interpretable_cnn.keras --out studies/NAME \\
        [--conditions cam,gradcam,saliency] [--per-class 4] [--raters 8] [--seed 0]
    python -m cifar_xai.study results studies/NAME [--json FILE]
    python -m cifar_xai.study export studies/NAME --csv FILE

`create` writes the design (docs/study.md); `results` prints every figure with its interval;
`export` writes one tidy CSV, a row per answer.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cifar_xai.cli import OneLineParser, add_data_flags, load_tensorflow, output_file, positive_int
from cifar_xai.errors import UserError, run_cli


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
    add_data_flags(create)
    results = commands.add_parser("results", help="the study's figures, with their intervals")
    results.add_argument("study")
    results.add_argument("--json", type=output_file, metavar="FILE")
    export = commands.add_parser("export", help="one row per answer, as CSV")
    export.add_argument("study")
    export.add_argument("--csv", type=output_file, required=True, metavar="FILE")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "create":
        load_tensorflow()
        from cifar_xai.data.pipeline import split_arrays
        from cifar_xai.data.tfds_cifar10 import ensure_prepared
        from cifar_xai.explain.methods import METHODS
        from cifar_xai.explain.registry import why_not
        from cifar_xai.model_io import SHIPPED_MODEL, load_model
        from cifar_xai.probes import predict
        from cifar_xai.study.design import create_study, make_design

        conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
        model = load_model(args.model)
        for condition in conditions:
            if condition != "none" and condition not in METHODS:
                raise UserError(f"unknown condition {condition!r}; valid: {', '.join(METHODS)}, none")
            if condition != "none" and (refusal := why_not(model, condition)):
                raise UserError(refusal)
        ensure_prepared(args.data_dir, args.cifar_bin)
        images, labels = (t.numpy() for t in split_arrays(args.data_dir, "test"))
        probabilities = predict(model, images.astype("float32"))
        design = make_design(str(args.model or SHIPPED_MODEL), labels, probabilities, conditions, args.per_class,
                             args.raters, args.seed)
        folder = create_study(args.out, design)
        print(f"study designed in {folder}: {len(design.trials)} images ({sum(t.correct for t in design.trials)} the "
              f"model gets right), conditions {', '.join(design.conditions)}, {design.raters} rater slots")
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
    from cifar_xai.study.statistics import results

    found = results(design, record.answers)
    print(f"{found['raters']} raters, {found['answers']} answers; chance in the simulation task {found['chance']:.0%}")
    print("| condition | simulation accuracy (Wilson 95 %) | p (above chance) | vs no explanation (bootstrap 95 %) "
          "| trust: balanced accuracy | localisation: covers |")
    print("|---|---|---|---|---|---|")
    for condition, entry in found["conditions"].items():
        s = entry["simulation"]
        low, high = s["wilson95"]
        accuracy = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.0%} ({low:.0%}-{high:.0%})"
        versus = s.get("vs_control")
        difference = "-"
        if versus:
            low, high = versus["bootstrap95"]
            difference = f"{versus['difference']:+.0%} ({low:+.0%} to {high:+.0%})"
        trust, covers = entry["trust"]["balanced_accuracy"], entry["localisation"]["covers"]
        print(f"| {condition} | {accuracy} | {s['p_above_chance']:.2g} | {difference} | "
              f"{'n/a' if trust != trust else f'{trust:.0%}'} | {'n/a' if covers is None else f'{covers:.0%}'} |")
    for task, alpha in found["agreement"].items():
        said = ("n/a (needs two raters on a trial)" if alpha is None
                else f"Krippendorff's alpha {alpha[0]:.2f} ({alpha[1]:.2f} to {alpha[2]:.2f})")
        print(f"agreement ({task}): {said}")
    if found["caution"]:
        print(found["caution"])
    if args.json:
        write_json(args.json, found)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
