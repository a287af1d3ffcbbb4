"""The recipe frontier: clean accuracy against mean corruption accuracy, one point per recipe,
its ECE on corrupted images and its worst far-OOD AUROC beside it, from the JSON files
`benchmarks.robustness --json` (and `benchmarks.ood --json`) wrote for each recipe (on the
validation split while choosing, on the test split for final figures).

    python -m benchmarks.frontier --result shipped=robustness-shipped.json --result e24=e24.json \
        [--ood e24=e24.ood.json] [--over-budget e24] [--out frontier.png] [--chosen e24 --json runs/e24/frontier.json]

Prints the table (Pareto-optimal points marked) and draws the figure: people would rather look
at a frontier than read a table. `--json` into the chosen run's folder puts the frontier in the
shipped model's record and its report.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def _pairs(items: list[str] | None, flag: str) -> dict[str, Path]:
    from cifar_xai.errors import UserError

    pairs = {}
    for item in items or []:
        name, _, path = item.partition("=")
        if not name or not path:
            raise UserError(f"{flag} {item!r} must be NAME=PATH")
        pairs[name] = Path(path)
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    from cifar_xai.cli import OneLineParser, output_file, write_json
    from cifar_xai.errors import UserError
    from cifar_xai.files import read_json_object, write_bytes
    from cifar_xai.report.frontier import TABLE_HEADER, formatted_rows, from_json, frontier_png, load_point, to_json

    parser = OneLineParser(prog="python -m benchmarks.frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--result", action="append", default=[], metavar="NAME=PATH",
                        help="a recipe's benchmarks.robustness --json file (repeat for each recipe)")
    parser.add_argument("--with", dest="earlier", metavar="FRONTIER.json",
                        help="start from an earlier frontier's points (e.g. saved_models/interpretable_cnn.run/"
                             "frontier.json): candidates measured before, whose runs are gone, stay in the figure")
    parser.add_argument("--ood", action="append", metavar="NAME=PATH",
                        help="the same recipe's benchmarks.ood --json file (optional, per recipe)")
    parser.add_argument("--chosen", metavar="NAME", help="the recipe that ships (ringed in the figure)")
    parser.add_argument("--over-budget", action="append", default=[], metavar="NAME",
                        help="a recipe whose run takes longer than a run may: drawn hollow, never Pareto-optimal")
    parser.add_argument("--rule", default="", help="how the chosen recipe was chosen, stated before choosing")
    parser.add_argument("--out", metavar="PNG", type=output_file, help="write the figure here")
    parser.add_argument("--json", metavar="PATH", type=output_file,
                        help="write the frontier here (frontier.json in the chosen run)")
    args = parser.parse_args(argv)
    results, oods = _pairs(args.result, "--result"), _pairs(args.ood, "--ood")
    for flag, names in (("--ood", set(oods)), ("--over-budget", set(args.over_budget))):
        if unknown := names - set(results):
            raise UserError(f"{flag} {', '.join(sorted(unknown))} has no --result of the same name")
    earlier, chosen, rule = ([], None, "") if not args.earlier else from_json(
        read_json_object(args.earlier, "recipe frontier"))
    if not results and not earlier:
        raise UserError("name at least one recipe: --result NAME=PATH, or --with an earlier frontier.json")
    if clash := {p.name for p in earlier} & set(results):
        raise UserError(f"--result {', '.join(sorted(clash))} is already a point of {args.earlier}; "
                        "choose another name")
    points = earlier + [load_point(name, path, oods.get(name), name in args.over_budget)
                        for name, path in results.items()]
    args.chosen, args.rule = args.chosen or chosen, args.rule or rule
    frontier = to_json(points, args.chosen, args.rule)
    print("| " + " | ".join(TABLE_HEADER) + " | split, images |")
    print("|" + "---|" * (len(TABLE_HEADER) + 1))
    for row, point in zip(formatted_rows(points, args.chosen), points, strict=True):
        print(f"| {' | '.join(row)} | {point.split}, {point.images} |")
    if args.out:
        write_bytes(args.out, frontier_png(points, args.chosen))
        print(f"wrote {args.out}")
    write_json(args.json, frontier)
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
