"""A run's measurements: its own figures (metrics.json), what the shipped benchmarks measured for it
(robustness.json, ood.json in its run folder: trainers.ship carries them), explanation metrics
from a report built into its folder, and the recipe frontier it was chosen from. "n/a" only where
nothing was measured, and then with the command that measures it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cifar_xai.dashboard.context import Context
from cifar_xai.dashboard.render import data_url
from cifar_xai.errors import UserError
from cifar_xai.files import read_json_object
from cifar_xai.interpretability.metrics import figures
from cifar_xai.interpretability.settings import Settings
from cifar_xai.model_io import run_folder, run_metrics
from cifar_xai.report.frontier import TABLE_HEADER, frontier_png, load_frontier, table_rows


def _benchmark(folder: Path | None, name: str, what: str) -> dict | None:
    path = folder / name if folder else None
    return read_json_object(path, what) if path and path.is_file() else None


class Measurements:
    def __init__(self, context: Context):
        self.context = context

    def measurements(self, names: Sequence[str]) -> dict:
        rows, interpretability, missing = [], {}, {}
        for name in names:
            run = self.context.run(name)
            trained = run_metrics(run.path) or {}
            folder = run_folder(run.path)
            test = trained.get("test") or {}
            row = {"run": name, "kind": run.kind, "accuracy": test.get("accuracy"),
                   "accuracy_tta": (trained.get("test_tta") or {}).get("flip_translate"),
                   "ece": (test.get("calibration") or {}).get("ece"), "calibrated": run.calibrated,
                   "train_seconds": trained.get("train_seconds"), "mca": None, "corrupted_ece": None,
                   "far_ood_auroc": None, "far_ood_worst": None}
            robustness = _benchmark(folder, "robustness.json", "benchmarks.robustness --json")
            if robustness:
                row["mca"] = robustness.get("mca")
                row["corrupted_ece"] = ((robustness.get("calibration") or {}).get("corrupted") or {}).get("ece")
            ood = _benchmark(folder, "ood.json", "benchmarks.ood --json")
            if ood:
                summary = (ood.get("summary") or {}).get(ood.get("default"), {})
                row["far_ood_auroc"], row["far_ood_worst"] = summary.get("far_auroc"), summary.get("far_auroc_min")
            report = run.path.parent / "report" / "metrics.json"
            if report.is_file():
                found = read_json_object(report, "reports.build metrics")
                interpretability[name] = found.get("interpretability", {})
                if row["mca"] is None:
                    row["mca"] = (found.get("robustness") or {}).get("mca")
            model = self._public_path(run.path)
            missing[name] = {key: command.format(model=model) for key, command in MEASURED_BY.items()
                             if row.get(key) is None}
            rows.append(row)
        columns = [{"key": f.key, "title": f.heading} for f in figures(Settings()) if f.in_table]
        frontiers = {name: frontier for name in names if (frontier := self._frontier(name))}
        return {"runs": rows, "columns": columns, "interpretability": interpretability, "frontiers": frontiers,
                "measure": missing}

    def _public_path(self, path: Path) -> str:
        """The model file as a user would type it: relative to the logdir or the project, never absolute."""
        for root in (self.context.logdir, self.context.shipped.parent):
            try:
                return str(Path(path).resolve().relative_to(Path(root).resolve()))
            except ValueError:
                continue
        return Path(path).name

    def _frontier(self, name: str) -> dict | None:
        """The recipe frontier the run was chosen from (benchmarks.frontier --json into its folder,
        carried to saved_models/<name>.run/ by trainers.ship), drawn once while the cache keeps it."""
        run = self.context.run(name)
        return self.context.cached(("frontier", name), lambda: _frontier_view(run.path) or {})


# What measures a figure a run has not got, for the table's "n/a".
MEASURED_BY = {
    "accuracy_tta": "python -m trainers.fit evaluates it at the end of training",
    "mca": "python -m benchmarks.robustness --model {model} --json RUN/robustness.json",
    "corrupted_ece": "python -m benchmarks.robustness --model {model} --json RUN/robustness.json",
    "far_ood_auroc": "python -m trainers.fit_ood --model {model}, then python -m benchmarks.ood --model {model} "
                     "--json RUN/ood.json",
    "far_ood_worst": "python -m benchmarks.ood --model {model} --json RUN/ood.json",
}


def _frontier_view(model_path: Path) -> dict | None:
    try:
        frontier = load_frontier(run_folder(model_path))
    except UserError as err:
        return {"error": str(err)}
    if frontier is None:
        return None
    points, chosen, rule = frontier
    return {"png": data_url(frontier_png(points, chosen)), "rule": rule, "header": TABLE_HEADER,
            "rows": [[v if isinstance(v, str) else round(v, 4) for v in row] for row in table_rows(points, chosen)]}
