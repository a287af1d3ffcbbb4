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

from cifar_xai import CLASS_NAMES
from cifar_xai.study.answers import (
    LOCALISATION,
    MASK_GRID,
    RECOGNITION,
    SIMULATION,
    TRUST,
    recognised_class,
    recognition_id,
)
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


def _draws(rows: list[tuple], seed: int, draws: int):
    """Weights of raters and images (how often each was drawn with replacement), `draws` times:
    both are resampled because one rater's answers, and the answers about one image, are not
    independent."""
    raters = sorted({row[0] for row in rows})
    images = sorted({row[1] for row in rows})
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        yield (dict(zip(raters, np.bincount(rng.integers(0, len(raters), len(raters)), minlength=len(raters)),
                        strict=True)),
               dict(zip(images, np.bincount(rng.integers(0, len(images), len(images)), minlength=len(images)),
                        strict=True)))


def bootstrap_difference(by_condition: dict[str, list[tuple[str, str, bool]]], condition: str, control: str,
                         seed: int = 0, draws: int = BOOTSTRAP) -> tuple[float, float, float]:
    """accuracy(condition) - accuracy(control) and its 95 % percentile interval, resampling raters
    and images with replacement."""
    observed = _accuracy(by_condition[condition]) - _accuracy(by_condition[control])
    differences = [_weighted(by_condition[condition], r, i) - _weighted(by_condition[control], r, i)
                   for r, i in _draws(by_condition[condition] + by_condition[control], seed, draws)]
    low, high = np.nanpercentile(differences, [2.5, 97.5])
    return observed, float(low), float(high)


def balanced_accuracy(rows: list[tuple[bool, bool]]) -> float:
    """(said right, was right) pairs: the mean of the hit rate on right and on wrong predictions."""
    right = [said for said, was in rows if was]
    wrong = [not said for said, was in rows if not was]
    parts = [np.mean(x) for x in (right, wrong) if x]
    return float(np.mean(parts)) if parts else float("nan")


def bootstrap_balanced_accuracy(rows: list[tuple[str, str, bool, bool]], seed: int = 0,
                                draws: int = BOOTSTRAP) -> tuple[float, float]:
    """95 % interval of the balanced accuracy of (rater, image, said right, was right) rows,
    resampling raters and images."""
    if not rows:
        return float("nan"), float("nan")
    said = np.array([row[2] for row in rows], float)
    was = np.array([row[3] for row in rows], bool)
    found = []
    for raters, images in _draws(rows, seed, draws):
        w = np.array([raters[r] * images[i] for r, i, _, _ in rows], float)
        parts = [np.dot(w[group], hit[group]) / w[group].sum()
                 for group, hit in ((was, said), (~was, 1 - said)) if w[group].sum() > 0]
        found.append(np.mean(parts) if parts else np.nan)
    low, high = np.nanpercentile(found, [2.5, 97.5])
    return float(low), float(high)


def mask_scores(mask: np.ndarray, heatmap: np.ndarray) -> tuple[bool, float]:
    """A map against a human object mask (grid cells, upsampled to the map): does its maximum lie in
    the mask (the pointing game, no grid of the metric's own), and what share of its mass does
    (energy inside the mask)."""
    cells = mask.shape[0]
    full = np.kron(mask, np.ones((heatmap.shape[0] // cells, heatmap.shape[1] // cells))).astype(bool)
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    total = float(np.clip(heatmap, 0, None).sum())
    return bool(full[peak]), float(np.clip(heatmap, 0, None)[full].sum() / total) if total > 0 else float("nan")


def mean_pairwise_iou(masks: list[np.ndarray]) -> float | None:
    """The mean IoU over every pair of masks painted on one image: how far people agree on the object."""
    pairs = [(a, b) for k, a in enumerate(masks) for b in masks[k + 1:]]
    scores = [np.logical_and(a, b).sum() / union for a, b in pairs if (union := np.logical_or(a, b).sum())]
    return float(np.mean(scores)) if scores else None


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


def results(design: Design, answers: list[dict], maps: dict[str, np.ndarray] | None = None, seed: int = 0) -> dict:
    """Every figure of the study (see the module doc), by condition. `maps` (`materials.load_maps`)
    score each method against the object masks raters painted."""
    maps = maps or {}
    trials = {t.trial: t for t in design.trials}
    simulation: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)
    trust: dict[str, list[tuple[str, str, bool, bool]]] = defaultdict(list)
    covers: dict[str, list[str]] = defaultdict(list)
    masks: dict[str, list[np.ndarray]] = defaultdict(list)       # trial -> every mask painted on it
    recognised: list[tuple[str, str, bool]] = []
    agreement: dict[str, dict] = {SIMULATION: {}, TRUST: {}, "confidence": {}, RECOGNITION: {}}
    for a in answers:
        if a["task"] == RECOGNITION:
            recognised.append((a["rater"], a["trial"], a["choice"] == recognised_class(a["trial"])))
            agreement[RECOGNITION][(a["rater"], a["trial"])] = a["choice"]
            continue
        trial, condition = trials[a["trial"]], a["condition"]
        if a["task"] == SIMULATION:
            simulation[condition].append((a["rater"], trial.trial, a["choice"] == trial.predicted))
            agreement[SIMULATION][(a["rater"], trial.trial)] = a["choice"]
        elif a["task"] == TRUST:
            trust[condition].append((a["rater"], trial.trial, bool(a["right"]), trial.correct))
            agreement[TRUST][(a["rater"], trial.trial)] = bool(a["right"])
            agreement["confidence"][(a["rater"], trial.trial)] = int(a["confidence"])
        elif a["task"] == LOCALISATION:
            covers[condition].append(a["covers"])
            if a.get("mask") is not None and any(a["mask"]):
                masks[trial.trial].append(np.array(a["mask"], bool).reshape(MASK_GRID, MASK_GRID))
    raters = sorted({a["rater"] for a in answers})
    out = {"raters": len(raters), "answers": len(answers), "chance": 1 / CHOICES, "conditions": {}}
    for condition in design.conditions:
        rows = simulation[condition]
        k, n = sum(ok for _, _, ok in rows), len(rows)
        said = trust[condition]
        entry = {"simulation": {"n": n, "correct": k, "accuracy": k / n if n else None, "wilson95": wilson(k, n),
                                "p_above_chance": binomial_p(k, n, 1 / CHOICES)},
                 "trust": {"n": len(said), "balanced_accuracy": balanced_accuracy([r[2:] for r in said]),
                           "bootstrap95": list(bootstrap_balanced_accuracy(said, seed)),
                           "said_right_when_wrong": _share([r[2] for r in said if not r[3]])},
                 "localisation": {"n": len(covers[condition]),
                                  "covers": covers[condition].count("yes") / len(covers[condition])
                                  if covers[condition] else None}}
        if condition != CONTROL:
            entry["localisation"].update(_against_masks(design, condition, masks, maps))
        if condition != CONTROL and simulation[CONTROL] and rows:
            difference, low, high = bootstrap_difference(simulation, condition, CONTROL, seed)
            entry["simulation"]["vs_control"] = {"difference": difference, "bootstrap95": [low, high],
                                                 "resampled": "raters and images"}
        out["conditions"][condition] = entry
    k, n = sum(ok for _, _, ok in recognised), len(recognised)
    out["recognition"] = {"n": n, "correct": k, "accuracy": k / n if n else None, "wilson95": wilson(k, n),
                          "chance": 1 / len(CLASS_NAMES), "p_above_chance": binomial_p(k, n, 1 / len(CLASS_NAMES)),
                          "per_class": {c: _share([ok for _, t, ok in recognised if t == recognition_id(c)])
                                        for c in design.recognition}}
    ious = [iou for found in masks.values() if (iou := mean_pairwise_iou(found)) is not None]
    out["masks"] = {"painted": sum(len(m) for m in masks.values()), "images": len(masks),
                    "human_agreement_iou": float(np.mean(ious)) if ious else None, "images_with_two": len(ious)}
    out["agreement"] = {
        "simulation": krippendorff_alpha(agreement[SIMULATION], "nominal", seed),
        "trust": krippendorff_alpha(agreement[TRUST], "nominal", seed),
        "confidence": krippendorff_alpha(agreement["confidence"], "ordinal", seed),
        "recognition": krippendorff_alpha(agreement[RECOGNITION], "nominal", seed)}
    thin = [c for c, e in out["conditions"].items() if e["simulation"]["n"] < MIN_ANSWERS]
    out["rankable"] = len(raters) >= MIN_RATERS and not thin
    out["caution"] = None if out["rankable"] else (
        f"too few to rank the methods: {len(raters)} rater(s) (at least {MIN_RATERS}) and "
        f"{', '.join(thin) or 'no condition'} under {MIN_ANSWERS} simulation answers; the intervals are too wide")
    return _no_nan(out)


def _no_nan(value):
    """None where a figure is undefined (no answers yet): NaN is not JSON, and a browser refuses it."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _share(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def _against_masks(design: Design, condition: str, masks: dict[str, list[np.ndarray]],
                   maps: dict[str, np.ndarray]) -> dict:
    """The method's map of the predicted class against every mask painted on the trial's image
    (under any condition: the object does not depend on the explanation shown)."""
    hits, energies = [], []
    for trial in design.trials:
        heatmaps = maps.get(f"{trial.trial}/{condition}")
        if heatmaps is None:
            continue
        heatmap = heatmaps[trial.choices.index(trial.predicted)]
        for mask in masks.get(trial.trial, []):
            hit, energy = mask_scores(mask, heatmap)
            hits.append(hit)
            energies.append(energy)
    return {"masks": len(hits), "pointing_game": _share(hits),
            "energy_inside": float(np.nanmean(energies)) if energies else None}


def _interval(pair, signed: bool = False) -> str:
    low, high = pair
    if low is None or high is None:
        return "no interval yet"
    form = "{:+.0%}" if signed else "{:.0%}"
    return f"{form.format(low)} to {form.format(high)}" if signed else f"{form.format(low)}-{form.format(high)}"


def summary_lines(found: dict) -> list[str]:
    """The results as the lines the CLI prints (a markdown table, then one line a figure)."""
    lines = [f"{found['raters']} raters, {found['answers']} answers; chance in the simulation task "
             f"{found['chance']:.0%}",
             "| condition | simulation accuracy (Wilson 95 %) | p (above chance) | vs no explanation (bootstrap 95 %) "
             "| trust: balanced accuracy (bootstrap 95 %) | localisation: covers |",
             "|---|---|---|---|---|---|"]
    for condition, entry in found["conditions"].items():
        s = entry["simulation"]
        accuracy = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.0%} ({_interval(s['wilson95'])})"
        versus = s.get("vs_control")
        difference = "-" if not versus else (f"{versus['difference']:+.0%} "
                                            f"({_interval(versus['bootstrap95'], signed=True)})")
        trust, covers = entry["trust"], entry["localisation"]["covers"]
        trusted = ("n/a" if trust["balanced_accuracy"] is None
                   else f"{trust['balanced_accuracy']:.0%} ({_interval(trust['bootstrap95'])})")
        p_value = "n/a" if not s["n"] else f"{s['p_above_chance']:.2g}"
        lines.append(f"| {condition} | {accuracy} | {p_value} | {difference} | {trusted} | "
                     f"{'n/a' if covers is None else f'{covers:.0%}'} |")
    recognition = found["recognition"]
    if recognition["n"]:
        lines.append(f"recognition of the class visualisations: {recognition['accuracy']:.0%} "
                     f"({_interval(recognition['wilson95'])}) of {recognition['n']} answers, chance "
                     f"{recognition['chance']:.0%}, p {recognition['p_above_chance']:.2g}")
    masks = found["masks"]
    if masks["painted"]:
        iou = masks["human_agreement_iou"]
        agree = "n/a (one mask an image)" if iou is None else f"{iou:.2f}"
        lines.append(f"object masks: {masks['painted']} painted on {masks['images']} images; people agree on the "
                     f"object with a mean pairwise IoU of {agree}")
        for condition, entry in found["conditions"].items():
            place = entry["localisation"]
            if place.get("masks"):
                lines.append(f"  {condition}: pointing game {place['pointing_game']:.0%}, energy inside the mask "
                             f"{place['energy_inside']:.0%} ({place['masks']} masks)")
    for task, alpha in found["agreement"].items():
        said = ("n/a (needs two raters on a trial)" if alpha is None
                else f"Krippendorff's alpha {alpha[0]:.2f} ({alpha[1]:.2f} to {alpha[2]:.2f})")
        lines.append(f"agreement ({task}): {said}")
    if found["caution"]:
        lines.append(found["caution"])
    return lines
