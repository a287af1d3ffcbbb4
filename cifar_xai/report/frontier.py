"""The recipe frontier: each training recipe a point of clean accuracy against mean corruption
accuracy (mCA), its calibration under corruption and its worst far-OOD AUROC beside it.

Built from the JSON files `benchmarks.robustness --json` and `benchmarks.ood --json` wrote for each
candidate (on the validation split while choosing), saved as one `frontier.json` in the chosen
run's folder; `trainers.ship` carries it to `saved_models/<name>.run/` and the report draws it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from cifar_xai.errors import UserError
from cifar_xai.files import read_json_object

FRONTIER_FILE = "frontier.json"


@dataclass(frozen=True)
class Point:
    name: str
    clean: float                        # accuracy on the clean images of the split
    mca: float                          # mean accuracy over 15 corruptions x 5 severities
    ece_corrupted: float                # mean ECE over the corrupted sets
    split: str
    images: int
    far_ood_worst: float | None = None  # the served score's lowest AUROC over the far-OOD sets
    over_budget: bool = False           # its run takes longer than the time a run may take: not a choice


def load_point(name: str, robustness: Path, ood: Path | None = None, over_budget: bool = False) -> Point:
    """One recipe's point from its benchmark files; a file that is not one says so in one line."""
    result = read_json_object(robustness, "benchmarks.robustness --json")
    try:
        point = dict(name=name, clean=float(result["clean"]["accuracy"]), mca=float(result["mca"]),
                     ece_corrupted=float(result["mean_ece"]), split=str(result.get("split", "?")),
                     images=int(result.get("num_images", 0)), over_budget=over_budget)
    except (KeyError, TypeError, ValueError):
        missing = "no clean accuracy, mca or mean_ece"
        raise UserError(f"{robustness} is not a benchmarks.robustness --json file ({missing})") from None
    if ood is not None:
        result = read_json_object(ood, "benchmarks.ood --json")
        try:
            point["far_ood_worst"] = float(result["summary"][result["default"]]["far_auroc_min"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{ood} is not a benchmarks.ood --json file (no summary of its default score)") from None
    return Point(**point)


def pareto(points: list[Point]) -> set[str]:
    """The names of the recipes within budget that no other such recipe beats on both clean
    accuracy and mCA (a recipe over budget is shown, but is not a choice)."""
    feasible = [p for p in points if not p.over_budget]
    return {p.name for p in feasible
            if not any(q.clean >= p.clean and q.mca >= p.mca and (q.clean, q.mca) != (p.clean, p.mca)
                       for q in feasible)}


def to_json(points: list[Point], chosen: str | None, rule: str) -> dict:
    if chosen is not None and chosen not in {p.name for p in points}:
        raise UserError(f"--chosen {chosen!r} names no --result; give one of {', '.join(p.name for p in points)}")
    return {"rule": rule, "chosen": chosen, "pareto": sorted(pareto(points)), "points": [asdict(p) for p in points]}


def from_json(data: dict) -> tuple[list[Point], str | None, str]:
    """(points, chosen, rule) of a saved frontier.json; anything else is refused in one line."""
    try:
        return [Point(**p) for p in data["points"]], data.get("chosen"), data.get("rule", "")
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"not a {FRONTIER_FILE} that benchmarks.frontier --json wrote") from None


def load_frontier(folder: Path | None) -> tuple[list[Point], str | None, str] | None:
    """(points, chosen, rule) of the frontier.json in a run's folder, None when it has none; a
    damaged file is refused in one line that names it."""
    path = Path(folder) / FRONTIER_FILE if folder else None
    if path is None or not path.is_file():
        return None
    try:
        return from_json(json.loads(path.read_text()))
    except (ValueError, UserError):
        raise UserError(f"{path}: not a {FRONTIER_FILE} that benchmarks.frontier --json wrote") from None


def formatted_rows(points: list[Point], chosen: str | None = None) -> list[tuple[str, ...]]:
    """`table_rows` as text, percentages with two decimals: the report's and the benchmark's table."""
    return [tuple(v if isinstance(v, str) else f"{v:.2%}" for v in row) for row in table_rows(points, chosen)]


def table_rows(points: list[Point], chosen: str | None = None) -> list[tuple]:
    best = pareto(points)
    return [(p.name + (" (shipped)" if p.name == chosen else "") + (" (over the time budget)" if p.over_budget else ""),
             p.clean, p.mca, p.ece_corrupted,
             "-" if p.far_ood_worst is None else p.far_ood_worst, "yes" if p.name in best else "")
            for p in points]


TABLE_HEADER = ("recipe", "clean", "mCA", "ECE corrupted", "far-OOD AUROC, worst set", "Pareto")


def frontier_png(points: list[Point], chosen: str | None = None, title: str = "") -> bytes:
    """Clean accuracy (x) against mCA (y): the Pareto points red and joined, the chosen one ringed,
    each labelled with its corrupted ECE and worst far-OOD AUROC."""
    from cifar_xai.plots import figure_png, plt

    best = pareto(points)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    front = sorted((p for p in points if p.name in best), key=lambda p: p.clean)
    ax.plot([100 * p.clean for p in front], [100 * p.mca for p in front], color="tab:red", alpha=0.4, zorder=2)
    # Neighbours along the x axis get their labels on alternate sides, so close points stay legible;
    # labels at either end of the axis lean inwards, so none runs past the plot's edge.
    low, high = min(p.clean for p in points), max(p.clean for p in points)
    span = (high - low) or 1.0
    for rank, p in enumerate(sorted(points, key=lambda p: p.clean)):
        colour = "tab:red" if p.name in best else "tab:grey"
        ax.scatter([100 * p.clean], [100 * p.mca], zorder=3, color="white" if p.over_budget else colour,
                   edgecolors=colour)
        if p.name == chosen:
            ax.scatter([100 * p.clean], [100 * p.mca], s=180, facecolors="none", edgecolors="black", zorder=4)
        label = f"{p.name}{' (over budget)' if p.over_budget else ''}\nECE corrupted {p.ece_corrupted:.1%}"
        if p.far_ood_worst is not None:
            label += f"\nfar-OOD worst {p.far_ood_worst:.1%}"
        above = rank % 2 == 0
        where = (p.clean - low) / span
        align = "left" if where < 0.2 else "right" if where > 0.8 else "center"
        ax.annotate(label, (100 * p.clean, 100 * p.mca), textcoords="offset points", xytext=(0, 9 if above else -9),
                    ha=align, va="bottom" if above else "top", fontsize=7)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("mean corruption accuracy, mCA (%)")
    splits = sorted({"validation split" if p.split.startswith("train[") else p.split for p in points})
    ax.set_title(title or f"Recipes, {', '.join(splits)}: red = Pareto-optimal"
                 + (", ringed = shipped" if chosen else "")
                 + (", hollow = over the time budget" if any(p.over_budget for p in points) else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.3)
    return figure_png(fig)
