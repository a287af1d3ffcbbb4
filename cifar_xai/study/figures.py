"""A study's results as one figure: each number with its interval and the line it is judged
against (chance, no explanation, guessing), so a reader sees at a glance which differences
are wider than their intervals."""

from __future__ import annotations

import numpy as np

from cifar_xai.plots import figure_png, plt


def _panel(ax, names: list[str], values: list, intervals: list, reference: float, reference_label: str,
           title: str, signed: bool = False) -> None:
    y = np.arange(len(names))
    shown = np.array([np.nan if v is None else v for v in values], float)
    lows = np.array([np.nan if i is None or i[0] is None else i[0] for i in intervals], float)
    highs = np.array([np.nan if i is None or i[1] is None else i[1] for i in intervals], float)
    # Nothing answered yet: no point and no bar (NaN), never a made-up zero.
    errors = np.vstack([np.clip(shown - lows, 0, None), np.clip(highs - shown, 0, None)])
    ax.errorbar(shown, y, xerr=errors, fmt="o", color="#1976d2", ecolor="#1976d2", capsize=4)
    ax.axvline(reference, color="#d32f2f", linestyle="--", linewidth=1)
    ax.text(reference, len(names) - 0.45, f" {reference_label}", color="#d32f2f", fontsize=9, va="bottom")
    ax.set_yticks(y, names)
    ax.set_ylim(-0.6, len(names) - 0.1)
    ax.invert_yaxis()
    ax.set_xlim(-1 if signed else 0, 1)
    ax.xaxis.set_major_formatter(lambda value, _: f"{value:+.0%}" if signed else f"{value:.0%}")
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(axis="x", alpha=0.3)


def results_png(found: dict) -> bytes:
    """Simulation accuracy (Wilson 95 %), its difference from no explanation (bootstrap 95 %), the
    trust question's balanced accuracy (bootstrap 95 %) and, if asked, the recognition of the class
    visualisations, as PNG bytes."""
    conditions = found["conditions"]
    names = list(conditions)
    methods = [c for c in names if "vs_control" in conditions[c]["simulation"]]
    recognition = found["recognition"]
    panels = 3 + bool(recognition["n"])
    fig, axes = plt.subplots(panels, 1, figsize=(6.4, 1.2 + 0.55 * panels * max(len(names), 2)),
                             layout="constrained", squeeze=False)
    simulation = [conditions[c]["simulation"] for c in names]
    _panel(axes[0, 0], names, [s["accuracy"] for s in simulation], [s["wilson95"] for s in simulation],
           found["chance"], "chance", "Predicting the model: accuracy (Wilson 95 %)")
    versus = [conditions[c]["simulation"]["vs_control"] for c in methods]
    _panel(axes[1, 0], methods or ["(no method answered yet)"], [v["difference"] for v in versus] or [None],
           [v["bootstrap95"] for v in versus] or [None], 0.0, "no explanation",
           "Helped by the explanation: difference from no explanation (bootstrap 95 %, raters and images)",
           signed=True)
    trust = [conditions[c]["trust"] for c in names]
    _panel(axes[2, 0], names, [t["balanced_accuracy"] for t in trust], [t["bootstrap95"] for t in trust], 0.5,
           "guessing", "Telling right predictions from wrong: balanced accuracy (bootstrap 95 %)")
    if recognition["n"]:
        _panel(axes[3, 0], ["class visualisations"], [recognition["accuracy"]], [recognition["wilson95"]],
               recognition["chance"], "chance", "Naming the model's class pictures: accuracy (Wilson 95 %)")
    caption = found["caution"] or f"{found['raters']} raters, {found['answers']} answers"
    fig.suptitle(caption, fontsize=9, color="#b71c1c" if found["caution"] else "#424242", wrap=True)
    return figure_png(fig)
