"""A study's numbers, each with its interval: simulation accuracy per condition (Wilson 95 %, an
exact binomial test against chance, 1/4) and each method's difference from the no-explanation
control (a bootstrap over raters and images, both resampled); how well raters tell the model's
right predictions from its wrong ones (balanced accuracy, HIVE's question); the share of "covers"
per method; inter-rater agreement (Krippendorff's alpha from the maintained `krippendorff`
package, with a bootstrap interval over trials). Below `MIN_RATERS` raters or `MIN_ANSWERS`
answers a condition, the results say the intervals are too wide to rank the methods."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from cifar_xai.study.answers import LOCALISATION, SIMULATION, TRUST
from cifar_xai.study.design import CHOICES, CONTROL, Design

Z95 = 1.959963984540054
MIN_RATERS = 5
MIN_ANSWERS = 30          # per condition and task
BOOTSTRAP = 2000


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (Wilson 1927; Newcombe 1998's method 3)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def binomial_p(successes: int, n: int, chance: float) -> float:
    """One-sided exact binomial test: the chance of this many or more successes at `chance`."""
    from scipy.stats import binomtest

    return float(binomtest(successes, n, chance, alternative="greater").pvalue) if n else 1.0


def _accuracy(rows: list[tuple[str, str, bool]]) -> float:
    return float(np.mean([ok for _, _, ok in rows])) if rows else float("nan")


def _weighted(group: list[tuple[str, str, bool]], raters: dict, images: dict) -> float:
    """Accuracy of `group` with each answer weighted by how often its rater and image were drawn."""
    w = np.array([raters[r] * images[i] for r, i, _ in group], float)
    return np.nan if w.sum() == 0 else float(np.dot(w, [ok for _, _, ok in group]) / w.sum())


def bootstrap_difference(by_condition: dict[str, list[tuple[str, str, bool]]], condition: str, control: str,
                         seed: int = 0, draws: int = BOOTSTRAP) -> tuple[float, float, float]:
    """accuracy(condition) - accuracy(control) and its 95 % percentile interval, resampling raters
    and images with replacement (both: a rater's and an image's answers are not independent)."""
    rows = by_condition[condition] + by_condition[control]
    raters = sorted({r for r, _, _ in rows})
    images = sorted({i for _, i, _ in rows})
    rng = np.random.default_rng(seed)
    observed = _accuracy(by_condition[condition]) - _accuracy(by_condition[control])
    differences = []
    for _ in range(draws):
        weight_r = dict(zip(raters, np.bincount(rng.integers(0, len(raters), len(raters)), minlength=len(raters)),
                            strict=True))
        weight_i = dict(zip(images, np.bincount(rng.integers(0, len(images), len(images)), minlength=len(images)),
                            strict=True))

        differences.append(_weighted(by_condition[condition], weight_r, weight_i)
                           - _weighted(by_condition[control], weight_r, weight_i))
    low, high = np.nanpercentile(differences, [2.5, 97.5])
    return observed, float(low), float(high)


def balanced_accuracy(rows: list[tuple[bool, bool]]) -> float:
    """(said right, was right) pairs: the mean of the hit rate on right and on wrong predictions."""
    right = [said for said, was in rows if was]
    wrong = [not said for said, was in rows if not was]
    parts = [np.mean(x) for x in (right, wrong) if x]
    return float(np.mean(parts)) if parts else float("nan")


def krippendorff_alpha(values: dict[tuple[str, str], object], level: str, seed: int = 0,
                       draws: int = 500) -> tuple[float, float, float] | None:
    """Krippendorff's alpha over {(rater, unit): value} with a bootstrap interval over units; None
    with fewer than two raters on any unit."""
    import krippendorff

    raters = sorted({r for r, _ in values})
    units = sorted({u for _, u in values})
    codes = {v: k for k, v in enumerate(sorted({str(v) for v in values.values()}))}
    matrix = np.full((len(raters), len(units)), np.nan)
    for (rater, unit), value in values.items():
        matrix[raters.index(rater), units.index(unit)] = float(value) if level == "ordinal" else codes[str(value)]
    if len(raters) < 2 or not np.any(np.sum(~np.isnan(matrix), axis=0) >= 2) or len(codes) < 2:
        return None
    alpha = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(draws):
        sample = matrix[:, rng.integers(0, len(units), len(units))]
        if len(np.unique(sample[~np.isnan(sample)])) > 1:
            boot.append(krippendorff.alpha(reliability_data=sample, level_of_measurement=level))
    low, high = (np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan))
    return alpha, float(low), float(high)


def results(design: Design, answers: list[dict], seed: int = 0) -> dict:
    """Every figure of the study (see the module doc), by condition."""
    trials = {t.trial: t for t in design.trials}
    simulation: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)
    trust: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    covers: dict[str, list[str]] = defaultdict(list)
    agreement: dict[str, dict] = {SIMULATION: {}, TRUST: {}, "confidence": {}}
    for a in answers:
        trial, condition = trials[a["trial"]], a["condition"]
        if a["task"] == SIMULATION:
            simulation[condition].append((a["rater"], trial.trial, a["choice"] == trial.predicted))
            agreement[SIMULATION][(a["rater"], trial.trial)] = a["choice"]
        elif a["task"] == TRUST:
            trust[condition].append((bool(a["right"]), trial.correct))
            agreement[TRUST][(a["rater"], trial.trial)] = bool(a["right"])
            agreement["confidence"][(a["rater"], trial.trial)] = int(a["confidence"])
        elif a["task"] == LOCALISATION:
            covers[condition].append(a["covers"])
    raters = sorted({a["rater"] for a in answers})
    out = {"raters": len(raters), "answers": len(answers), "chance": 1 / CHOICES, "conditions": {}}
    for condition in design.conditions:
        rows = simulation[condition]
        k, n = sum(ok for _, _, ok in rows), len(rows)
        entry = {"simulation": {"n": n, "correct": k, "accuracy": k / n if n else None, "wilson95": wilson(k, n),
                                "p_above_chance": binomial_p(k, n, 1 / CHOICES)},
                 "trust": {"n": len(trust[condition]), "balanced_accuracy": balanced_accuracy(trust[condition])},
                 "localisation": {"n": len(covers[condition]),
                                  "covers": covers[condition].count("yes") / len(covers[condition])
                                  if covers[condition] else None}}
        if condition != CONTROL and simulation[CONTROL] and rows:
            difference, low, high = bootstrap_difference(simulation, condition, CONTROL, seed)
            entry["simulation"]["vs_control"] = {"difference": difference, "bootstrap95": [low, high],
                                                 "resampled": "raters and images"}
        out["conditions"][condition] = entry
    out["agreement"] = {
        "simulation": krippendorff_alpha(agreement[SIMULATION], "nominal", seed),
        "trust": krippendorff_alpha(agreement[TRUST], "nominal", seed),
        "confidence": krippendorff_alpha(agreement["confidence"], "ordinal", seed)}
    thin = [c for c, e in out["conditions"].items() if e["simulation"]["n"] < MIN_ANSWERS]
    out["rankable"] = len(raters) >= MIN_RATERS and not thin
    out["caution"] = None if out["rankable"] else (
        f"too few to rank the methods: {len(raters)} rater(s) (at least {MIN_RATERS}) and "
        f"{', '.join(thin) or 'no condition'} under {MIN_ANSWERS} simulation answers; the intervals are too wide")
    return out
