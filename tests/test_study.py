"""The human study's library: the design (balanced, counterbalanced, reproducible, never
overwritten), the append-only answers (nothing lost, nothing answered twice, a truncated line
skipped with a note), and the statistics against known values and simulated raters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar_xai import CLASS_NAMES
from cifar_xai.errors import UserError
from cifar_xai.study.answers import SIMULATION, TRUST, all_answers, append_answer, next_trial, rater_file
from cifar_xai.study.design import CONTROL, create_study, load_design, make_design
from cifar_xai.study.statistics import krippendorff_alpha, results, wilson


def predictions(seed: int = 0, images: int = 600, accuracy: float = 0.9):
    """Labels and probabilities of a model right on `accuracy` of the images."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, images)
    predicted = np.where(rng.random(images) < accuracy, labels, (labels + rng.integers(1, 10, images)) % 10)
    logits = rng.normal(0, 1, (images, 10))
    logits[np.arange(images), predicted] += 6
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probabilities


@pytest.fixture()
def design():
    labels, probabilities = predictions()
    return make_design("m.keras", labels, probabilities, ["cam", "saliency"], per_class=4, raters=6, seed=3)


def test_the_design_is_balanced_counterbalanced_and_reproducible(design):
    labels, probabilities = predictions()
    assert len(design.trials) == 40 and sum(t.correct for t in design.trials) == 20     # half right, half wrong
    assert {t.label for t in design.trials} == set(CLASS_NAMES)
    assert all(sum(t.label == c for t in design.trials) == 4 for c in CLASS_NAMES)
    assert design.conditions == ("cam", "saliency", CONTROL)
    for trial in design.trials:
        assert trial.predicted in trial.choices and len(set(trial.choices)) == 4
    for slot in range(design.raters):
        seen = design.for_rater(slot)
        assert sorted(t.trial for t, _ in seen) == sorted(t.trial for t in design.trials)   # every image once
    # Every image under every condition across the first len(conditions) raters, orders differ.
    for position in range(len(design.trials)):
        shown = {dict((t.trial, c) for t, c in design.for_rater(s))[design.trials[position].trial] for s in range(3)}
        assert shown == set(design.conditions)
    assert [t.trial for t, _ in design.for_rater(0)] != [t.trial for t, _ in design.for_rater(1)]
    again = make_design("m.keras", labels, probabilities, ["cam", "saliency"], per_class=4, raters=6, seed=3)
    assert again == design
    assert make_design("m.keras", labels, probabilities, ["cam", "saliency"], 4, 6, seed=4) != design


def test_a_study_folder_is_never_overwritten_and_reads_back(design, tmp_path):
    folder = create_study(tmp_path / "s", design)
    assert load_design(folder) == design
    with pytest.raises(UserError, match="never overwritten"):
        create_study(folder, design)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "design.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="design.json is not a study design file"):
        load_design(tmp_path / "broken")
    with pytest.raises(UserError, match="no study at"):
        load_design(tmp_path / "nothing")


def test_answers_are_appended_never_replaced_and_a_rater_resumes_where_they_stopped(design, tmp_path):
    folder = create_study(tmp_path / "s", design)
    order = design.for_rater(2)
    first = order[0][0]
    assert next_trial(design, folder, "ann", 2, (SIMULATION,)) == (0, SIMULATION)
    written = append_answer(folder, design, "ann", 2, {"trial": first.trial, "task": SIMULATION,
                                                         "choice": first.choices[0]})
    assert written["condition"] == order[0][1]
    assert next_trial(design, folder, "ann", 2, (SIMULATION,)) == (1, SIMULATION)
    with pytest.raises(UserError, match="already answered"):
        append_answer(folder, design, "ann", 2, {"trial": first.trial, "task": SIMULATION, "choice": first.choices[1]})
    with pytest.raises(UserError, match="no trial 't999'"):
        append_answer(folder, design, "ann", 2, {"trial": "t999", "task": SIMULATION, "choice": "cat"})
    with pytest.raises(UserError, match="not one of trial"):
        append_answer(folder, design, "ann", 2, {"trial": order[1][0].trial, "task": SIMULATION, "choice": "nope"})
    with pytest.raises(UserError, match="rater id"):
        rater_file(folder, "../evil")
    # Two raters at once keep separate records.
    append_answer(folder, design, "bob", 3, {"trial": first.trial, "task": TRUST, "right": True, "confidence": 3})
    assert [json.loads(line)["rater"] for line in rater_file(folder, "bob").read_text().splitlines()] == ["bob"]
    # A server killed mid-write: the truncated last line is skipped with a note, nothing else lost.
    with rater_file(folder, "ann").open("ab") as handle:
        handle.write(b'{"trial": "t00')
    found = all_answers(folder)
    assert len(found.answers) == 2 and len(found.skipped) == 1 and "truncated last line" in found.skipped[0]


def test_wilson_matches_newcombes_worked_example():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263, score interval 0.2553-0.3662.
    low, high = wilson(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-5) and high == pytest.approx(0.3662, abs=5e-5)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)


def test_krippendorffs_alpha_on_the_published_example_and_the_limits():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers x 12 units.
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
            [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    values = {(f"r{r}", f"u{u:02d}"): v for r, row in enumerate(data) for u, v in enumerate(row) if v is not None}
    assert krippendorff_alpha(values, "nominal")[0] == pytest.approx(0.743, abs=1e-3)
    same = {(r, f"u{u}"): u % 3 for r in ("a", "b", "c") for u in range(30)}
    assert krippendorff_alpha(same, "nominal")[0] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = {(r, f"u{u}"): int(rng.integers(0, 4)) for r in ("a", "b", "c", "d") for u in range(400)}
    alpha, low, high = krippendorff_alpha(noise, "nominal")
    assert abs(alpha) < 0.05 and low < 0 < high


def simulate(design, folder, rater_kind: str, seed: int = 0) -> None:
    """Simulated raters: the oracle answers the model's prediction; random picks a choice at random;
    `cam_sees` is right under CAM and guesses otherwise (an explanation that helps)."""
    rng = np.random.default_rng(seed)
    for slot in range(design.raters):
        for trial, condition in design.for_rater(slot):
            knows = rater_kind == "oracle" or (rater_kind == "cam_sees" and condition == "cam")
            choice = trial.predicted if knows else trial.choices[int(rng.integers(0, 4))]
            append_answer(folder, design, f"{rater_kind}{slot}", slot, {"trial": trial.trial, "task": SIMULATION,
                                                                         "choice": choice})
            right = trial.correct if knows else bool(rng.integers(0, 2))
            append_answer(folder, design, f"{rater_kind}{slot}", slot, {"trial": trial.trial, "task": TRUST,
                                                                         "right": right, "confidence": 3})


@pytest.mark.parametrize("kind", ["oracle", "random", "cam_sees"])
def test_the_statistics_find_what_simulated_raters_know(design, tmp_path, kind):
    folder = create_study(tmp_path / kind, design)
    simulate(design, folder, kind)
    found = results(design, all_answers(folder).answers)
    sim = {c: e["simulation"] for c, e in found["conditions"].items()}
    if kind == "oracle":
        assert all(s["accuracy"] == 1.0 and s["wilson95"][0] > 0.25 and s["p_above_chance"] < 1e-6
                   for s in sim.values())
        assert found["conditions"]["cam"]["trust"]["balanced_accuracy"] == 1.0
    elif kind == "random":
        assert all(s["wilson95"][0] < 0.25 < s["wilson95"][1] for s in sim.values())
        assert all(s["vs_control"]["bootstrap95"][0] < 0 < s["vs_control"]["bootstrap95"][1]
                   for c, s in sim.items() if c != CONTROL)
    else:   # CAM helps, saliency does not: the bootstrap separates the first from the control only
        assert sim["cam"]["vs_control"]["bootstrap95"][0] > 0.3
        assert sim["saliency"]["vs_control"]["bootstrap95"][0] < 0 < sim["saliency"]["vs_control"]["bootstrap95"][1]
    # 6 raters, 80 simulation answers a condition: enough to rank (MIN_RATERS 5, MIN_ANSWERS 30).
    assert found["raters"] == 6 and found["rankable"] and found["caution"] is None


def test_too_few_raters_are_told_the_intervals_are_too_wide(design, tmp_path):
    folder = create_study(tmp_path / "few", design)
    trial, _ = design.for_rater(0)[0]
    append_answer(folder, design, "solo", 0, {"trial": trial.trial, "task": SIMULATION, "choice": trial.predicted})
    found = results(design, all_answers(folder).answers)
    assert not found["rankable"] and "too few to rank the methods" in found["caution"]


def test_the_cli_reports_and_exports_one_row_per_answer(design, tmp_path, capsys):
    from cifar_xai.errors import run_cli
    from cifar_xai.study.__main__ import main

    folder = create_study(tmp_path / "s", design)
    simulate(design, folder, "cam_sees")
    assert run_cli(main, ["results", str(folder), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "| cam |" in out and "| none |" in out and "Krippendorff's alpha" in out
    assert run_cli(main, ["export", str(folder), "--csv", str(tmp_path / "a.csv")]) == 0
    rows = (tmp_path / "a.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 6 * len(design.trials) and "condition" in rows[0]
    assert run_cli(main, ["results", str(tmp_path / "missing")]) == 2
    assert "no study at" in capsys.readouterr().err


def test_create_designs_a_study_on_a_models_predictions_and_refuses_bad_conditions(tiny_data_dir, tmp_path, capsys):
    import keras

    from cifar_xai.errors import run_cli
    from cifar_xai.models import build_model
    from cifar_xai.study.__main__ import main

    keras.utils.set_random_seed(0)
    build_model("interpretable_cnn", "small").save(tmp_path / "m.keras")
    common = ["--model", str(tmp_path / "m.keras"), "--data-dir", str(tiny_data_dir), "--per-class", "2"]
    assert run_cli(main, ["create", *common, "--out", str(tmp_path / "s"), "--raters", "3",
                          "--conditions", "cam,nonsense"]) == 2
    assert "unknown condition 'nonsense'" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert run_cli(main, ["create", *common, "--out", str(tmp_path / "s"), "--raters", "4"]) == 0
    design = load_design(tmp_path / "s")
    assert design.conditions == ("cam", "gradcam", "saliency", CONTROL) and design.trials
    assert "study designed in" in capsys.readouterr().out


def known_answer_design(seed: int = 0):
    """A planted-mark model's test predictions: half the images marked, and marked images of other
    classes predicted "cat" two times in three, as benchmarks.shortcut's 10 % model does (64 %)."""
    from cifar_xai.study.materials import known_answer_marks

    rng = np.random.default_rng(seed)
    labels, probabilities = predictions(seed, images=2000, accuracy=0.9)
    marks = known_answer_marks(len(labels), seed)
    flipped = (marks >= 0) & (labels != 3) & (rng.random(len(labels)) < 2 / 3)
    probabilities[flipped, 3] = probabilities[flipped].max(1) + 1
    probabilities /= probabilities.sum(1, keepdims=True)
    return make_design("m.keras", labels, probabilities, ["cam"], per_class=8, raters=8, seed=seed, marks=marks)


def cam_maps(design) -> dict:
    """Maps as a shortcut-learning model's CAM draws them: cat's peaks on the mark where there is
    one; every other map (and cat's on an unmarked image) peaks in the middle."""
    from cifar_xai.data.marks import mark_box

    maps = {}
    for trial in design.trials:
        stack = np.zeros((4, 32, 32), np.float32)
        for k, name in enumerate(trial.choices):
            stack[k, 14:18, 14:18] = 1
            if name == "cat" and trial.mark >= 0:
                top, left, bottom, right = mark_box(trial.mark)
                stack[k] = 0
                stack[k, top:bottom, left:right] = 1
        maps[f"{trial.trial}/cam"] = stack
    return maps


def test_simulated_map_readers_are_helped_by_cam_on_the_known_answer_study_and_photo_readers_are_not():
    from cifar_xai.study.simulate import peaks_on_mark, simulated_answers

    design = known_answer_design()
    maps = cam_maps(design)
    assert any(t.mark >= 0 for t in design.trials) and any(t.mark < 0 for t in design.trials)
    assert all(peaks_on_mark(maps[f"{t.trial}/cam"][t.choices.index("cat")], t.mark)
               for t in design.trials if t.mark >= 0 and "cat" in t.choices)
    helped = results(design, simulated_answers(design, maps, 16, reads_maps=True))
    versus = helped["conditions"]["cam"]["simulation"]["vs_control"]
    assert versus["bootstrap95"][0] > 0                  # CAM shows the shortcut: the interval is above 0
    unhelped = results(design, simulated_answers(design, maps, 16, reads_maps=False))
    low, high = unhelped["conditions"]["cam"]["simulation"]["vs_control"]["bootstrap95"]
    assert low < 0 < high                                # raters who ignore the maps gain nothing
    # Simulated raters never write to a study: their answers are returned only.
    assert all(a["rater"].startswith("sim") for a in simulated_answers(design, maps, 2))
