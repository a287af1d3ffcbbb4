"""The recipe frontier: clean accuracy against mean corruption accuracy, one point per recipe,
its ECE on corrupted images beside it, from the JSON files `benchmarks.robustness --json` wrote
(on the validation split while choosing, on the test split for final figures).

    python -m benchmarks.frontier --result shipped=robustness-shipped.json --result e24=e24.json --out frontier.png

Prints the table (Pareto-optimal points marked) and draws the figure: people would rather look
at a frontier than read a table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path


def pareto(points: dict[str, tuple[float, float]]) -> set[str]:
    """The names no other point beats on both clean accuracy and mCA."""
    return {name for name, (clean, mca) in points.items()
            if not any(c >= clean and m >= mca and (c, m) != (clean, mca) for c, m in points.values())}


def main(argv: Sequence[str] | None = None) -> int:
    from cifar_xai.cli import OneLineParser
    from cifar_xai.errors import UserError

    parser = OneLineParser(prog="python -m benchmarks.frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--result", action="append", required=True, metavar="NAME=PATH",
                        help="a recipe's benchmarks.robustness --json file (repeat for each recipe)")
    parser.add_argument("--out", metavar="PNG", help="write the figure here")
    args = parser.parse_args(argv)
    results = {}
    for item in args.result:
        name, _, path = item.partition("=")
        if not path:
            raise UserError(f"--result {item!r} must be NAME=PATH")
        try:
            results[name] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{path} is not a benchmarks.robustness --json file ({err})") from None
    points = {name: (r["clean"]["accuracy"], r["mca"]) for name, r in results.items()}
    best = pareto(points)
    print("| recipe | clean | mCA | ECE clean | ECE corrupted | split, images | Pareto |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['clean']['accuracy']:.2%} | {r['mca']:.2%} | {r['clean']['ece']:.2%} | "
              f"{r['mean_ece']:.2%} | {r.get('split', '?')}, {r.get('num_images', '?')} | "
              f"{'yes' if name in best else ''} |")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
        for name, (clean, mca) in points.items():
            ax.scatter([100 * clean], [100 * mca], color="tab:red" if name in best else "tab:grey", zorder=3)
            ax.annotate(f"{name}\nECE corrupted {results[name]['mean_ece']:.1%}", (100 * clean, 100 * mca),
                        textcoords="offset points", xytext=(6, 4), fontsize=7)
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel("mean corruption accuracy, mCA (%)")
        ax.set_title("Recipes: red = Pareto-optimal", fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        from cifar_xai.files import atomic_path

        with atomic_path(args.out) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
