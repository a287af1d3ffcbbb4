"""The design of a study: a seeded sample of test images stratified by class and balanced between
the model's right and wrong predictions, the conditions compared (explanation methods and a
no-explanation control), and a counterbalanced assignment: every rater sees every image once,
under one condition, conditions rotated across raters (a Latin square), in an order shuffled per
rater. The same inputs and seed give the same design, written once to `design.json`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.errors import UserError
from cifar_xai.files import read_json_object, write_json

CONTROL = "none"          # the condition shown no explanation: what every method is measured against
CHOICES = 4               # simulation: the model's top four classes, as HIVE's distinction task
DESIGN_FILE = "design.json"
VERSION = 2           # 2: marks, the recognition task and a note (version 1 designs read as without)


@dataclass(frozen=True)
class Trial:
    """One image of the study: what a rater is shown and what the answers are scored against."""

    trial: str            # "t017": the id answers name
    index: int            # the test image, tfds order
    label: str            # its true class (never shown in study mode)
    predicted: str        # the model's prediction
    correct: bool
    choices: tuple[str, ...]   # the model's top CHOICES classes, in a shuffled order
    mark: int = -1        # the corner of a planted mark stamped on the image (known-answer study), -1 none


@dataclass(frozen=True)
class Design:
    run: str
    seed: int
    conditions: tuple[str, ...]          # methods, then CONTROL
    trials: tuple[Trial, ...]
    raters: int                          # rater slots: each a row of the Latin square
    # assignment[r][i]: (trial position, condition) of the i-th trial rater slot r sees.
    assignment: tuple[tuple[tuple[int, str], ...], ...]
    # The recognition task: the classes whose class visualisation raters name (ten choices each).
    recognition: tuple[str, ...] = ()
    note: str = ""                       # what the study is for, shown to no rater (a known-answer study's key)

    def for_rater(self, slot: int) -> list[tuple[Trial, str]]:
        if not 0 <= slot < self.raters:
            raise UserError(f"rater slot {slot} is out of range; this study has {self.raters} (0-{self.raters - 1})")
        return [(self.trials[position], condition) for position, condition in self.assignment[slot]]

    def recognition_order(self, slot: int) -> list[str]:
        """The class visualisations rater slot `slot` names, in its own shuffled order, after the trials."""
        self.for_rater(slot)
        order = np.random.default_rng([self.seed, 3, slot]).permutation(len(self.recognition))
        return [self.recognition[int(i)] for i in order]

    def trial(self, trial_id: str) -> Trial:
        found = next((t for t in self.trials if t.trial == trial_id), None)
        if found is None:
            raise UserError(f"no trial {trial_id!r} in this study's design")
        return found

    def to_json(self) -> dict:
        return {"version": VERSION, **asdict(self)}

    @staticmethod
    def from_json(data: dict) -> Design:
        try:
            return Design(data["run"], int(data["seed"]), tuple(data["conditions"]),
                          tuple(Trial(**{**t, "choices": tuple(t["choices"])}) for t in data["trials"]),
                          int(data["raters"]),
                          tuple(tuple((int(p), str(c)) for p, c in row) for row in data["assignment"]),
                          tuple(data.get("recognition", ())), str(data.get("note", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"not a {DESIGN_FILE} this project wrote ({type(err).__name__}: {err})") from None


def sample(labels: np.ndarray, probabilities: np.ndarray, per_class: int, seed: int) -> list[int]:
    """`per_class` test images of every class, half the model gets right and half it gets wrong
    (where a class has too few mistakes, all of them and more right ones), in a seeded order.
    Balanced, else "the model is right" would score the model's accuracy by itself."""
    if per_class < 2 or per_class % 2:
        raise UserError(f"--per-class {per_class}: give an even number of at least 2 (half right, half wrong)")
    rng = np.random.default_rng(seed)
    predicted = probabilities.argmax(1)
    chosen = []
    for k in range(probabilities.shape[1]):
        right = np.flatnonzero((labels == k) & (predicted == k))
        wrong = np.flatnonzero((labels == k) & (predicted != k))
        n_wrong = min(per_class // 2, len(wrong))
        n_right = min(per_class - n_wrong, len(right))
        chosen += rng.choice(wrong, n_wrong, replace=False).tolist()
        chosen += rng.choice(right, n_right, replace=False).tolist()
    return [int(i) for i in rng.permutation(chosen)]


def make_design(run: str, labels: np.ndarray, probabilities: np.ndarray, conditions: list[str], per_class: int,
                raters: int, seed: int = 0, recognition: bool = True, marks: np.ndarray | None = None,
                note: str = "") -> Design:
    """The whole design from the run's test-split predictions (see the module doc). `marks`: the
    corner of a mark stamped on each test image before it was predicted (-1 none), for the
    known-answer study; `recognition` adds the class-visualisation task (every class once)."""
    conditions = [c for c in conditions if c != CONTROL] + [CONTROL]
    if len(set(conditions)) != len(conditions):
        raise UserError("each condition once, please: " + ", ".join(conditions))
    if raters < len(conditions):
        raise UserError(f"--raters {raters}: at least one per condition ({len(conditions)}), so every image is seen "
                        "under every condition")
    rng = np.random.default_rng([seed, 1])
    trials = []
    for number, index in enumerate(sample(labels, probabilities, per_class, seed)):
        top = np.argsort(-probabilities[index])[:CHOICES]
        trials.append(Trial(f"t{number:03d}", index, CLASS_NAMES[labels[index]], CLASS_NAMES[top[0]],
                            bool(top[0] == labels[index]), tuple(CLASS_NAMES[k] for k in rng.permutation(top)),
                            -1 if marks is None else int(marks[index])))
    assignment = []
    for slot in range(raters):
        order = np.random.default_rng([seed, 2, slot]).permutation(len(trials))
        # Latin square: image i under condition (i + slot) mod C for rater slot `slot`.
        assignment.append(tuple((int(i), conditions[(int(i) + slot) % len(conditions)]) for i in order))
    return Design(run, seed, tuple(conditions), tuple(trials), raters, tuple(assignment),
                  tuple(CLASS_NAMES) if recognition else (), note)


def create_study(folder: str | os.PathLike, design: Design) -> Path:
    """A new study folder holding the design; an existing folder is never overwritten."""
    folder = Path(folder)
    if folder.exists():
        raise UserError(f"{folder} already exists; a study folder is never overwritten: choose another --out")
    (folder / "answers").mkdir(parents=True)
    write_json(folder / DESIGN_FILE, design.to_json())
    return folder


def load_design(folder: str | os.PathLike) -> Design:
    path = Path(folder) / DESIGN_FILE
    if not path.is_file():
        raise UserError(f"no study at {folder} (no {DESIGN_FILE}); create one with python -m cifar_xai.study create")
    return Design.from_json(read_json_object(path, "study design"))
