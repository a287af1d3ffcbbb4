"""The raters' answers: one append-only file per rater (`answers/<rater>.jsonl`), a line per answer,
flushed and synced to disk as it is given, so a killed server or a closed tab loses at most the
answer in flight. A truncated last line (the answer in flight) is detected, skipped and reported;
an answer for a trial not in the design, or for a trial already answered, is refused."""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.errors import UserError
from cifar_xai.study.design import CONTROL, Design

RATER_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SIMULATION = "simulation"      # which class will the model predict? (a choice among the trial's four)
TRUST = "trust"                # shown the prediction: is it right? (yes / no, confidence 1-4)
LOCALISATION = "localisation"  # does the highlighted region cover the object? (yes / partly / no), a mask
RECOGNITION = "recognition"    # which class does this class visualisation show? (ten choices)
TRIAL_TASKS = (SIMULATION, TRUST, LOCALISATION)
TASKS = (*TRIAL_TASKS, RECOGNITION)
MASK_GRID = 8                  # the painted object mask: MASK_GRID x MASK_GRID cells over the image
VISUALISATION = "class_visualisation"   # the condition recorded for recognition answers
RATERS_FILE = "raters.jsonl"   # rater -> slot, append-only: a rater keeps their slot when they come back
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class AlreadyAnswered(UserError):
    """A second answer to a question: refused, the first one stays."""


@dataclass(frozen=True)
class Record:
    answers: list[dict]
    skipped: list[str]        # notes on lines that could not be read (a truncated last line)


def _lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


def rater_file(folder: str | os.PathLike, rater: str) -> Path:
    if not RATER_ID.match(rater or ""):
        raise UserError(f"rater id {rater!r}: use 1-40 letters, digits, '-' or '_'")
    return Path(folder) / "answers" / f"{rater}.jsonl"


def read_answers(path: Path) -> Record:
    answers, skipped = [], []
    if not path.is_file():
        return Record(answers, skipped)
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            answers.append(json.loads(line))
        except ValueError:
            last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
            skipped.append(f"{path.name} line {number}: " + ("a truncated last line (an answer in flight when the "
                           "server stopped), skipped" if last else "not an answer this project wrote, skipped"))
    return Record(answers, skipped)


def recognition_id(class_name: str) -> str:
    """The trial id of a class visualisation: a number, so neither a URL nor a file name gives the class away."""
    return f"v{CLASS_NAMES.index(class_name)}"


def recognised_class(trial_id: str) -> str:
    """The class a recognition trial's visualisation was made for (the inverse of `recognition_id`)."""
    return CLASS_NAMES[int(trial_id[1:])]


def tasks_of(condition: str) -> tuple[str, ...]:
    """The questions a trial asks under `condition`: the control has no highlighted region to judge."""
    return (SIMULATION, TRUST) if condition == CONTROL else TRIAL_TASKS


def check_answer(design: Design, answer: dict) -> None:
    """A one-line UserError unless `answer` is a valid answer to a question of `design`."""
    task = answer.get("task")
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if task == RECOGNITION:
        if answer.get("trial") not in {recognition_id(c) for c in design.recognition}:
            raise UserError(f"no class visualisation {answer.get('trial')!r} in this study's design")
        if answer.get("choice") not in CLASS_NAMES:
            raise UserError(f"recognition answer {answer.get('choice')!r} is not a class; valid: "
                            f"{', '.join(CLASS_NAMES)}")
        return
    trial = design.trial(str(answer.get("trial")))
    if task == SIMULATION and answer.get("choice") not in trial.choices:
        raise UserError(f"simulation answer {answer.get('choice')!r} is not one of trial {trial.trial}'s choices")
    if task == TRUST and (answer.get("right") not in (True, False) or answer.get("confidence") not in (1, 2, 3, 4)):
        raise UserError("a trust answer needs right: true or false and confidence 1-4")
    if task == LOCALISATION and answer.get("covers") not in ("yes", "partly", "no"):
        raise UserError("a localisation answer needs covers: yes, partly or no")
    mask = answer.get("mask")
    if task == LOCALISATION and mask is not None and (
            not isinstance(mask, list) or len(mask) != MASK_GRID**2 or any(v not in (0, 1) for v in mask)):
        raise UserError(f"a painted mask is a list of {MASK_GRID**2} cells, each 0 or 1 (row by row)")


def append_answer(folder: str | os.PathLike, design: Design, rater: str, slot: int, answer: dict) -> dict:
    """Check and append one answer (trial, task, its fields) for `rater`; returns what was written."""
    path = rater_file(folder, rater)
    check_answer(design, answer)
    conditions = dict((t.trial, c) for t, c in design.for_rater(slot))
    condition = VISUALISATION if answer["task"] == RECOGNITION else conditions[answer["trial"]]
    if answer["task"] not in (RECOGNITION, *tasks_of(condition)):
        raise UserError(f"trial {answer['trial']} is shown with no explanation to rater slot {slot}: it asks no "
                        f"{answer['task']} question")
    known = {"trial", "task", "choice", "right", "confidence", "covers", "mask", "seconds"}
    record = {**{k: v for k, v in answer.items() if k in known}, "rater": rater, "slot": slot, "condition": condition}
    with _lock(path):
        done = {(a.get("trial"), a.get("task")) for a in read_answers(path).answers}
        if (answer["trial"], answer["task"]) in done:
            raise AlreadyAnswered(f"trial {answer['trial']} ({answer['task']}) is already answered by {rater}; "
                                  "answers are never replaced")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.write((json.dumps(record, sort_keys=True) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
    return record


def questions(design: Design, slot: int, tasks: tuple[str, ...] = TASKS) -> list[tuple[str, str]]:
    """Every (trial id, task) rater slot `slot` answers, in the order asked: each trial's questions
    in turn, then the class visualisations."""
    asked = [(trial.trial, task) for trial, condition in design.for_rater(slot)
             for task in tasks_of(condition) if task in tasks]
    if RECOGNITION in tasks:
        asked += [(recognition_id(c), RECOGNITION) for c in design.recognition_order(slot)]
    return asked


def next_trial(design: Design, folder: str | os.PathLike, rater: str, slot: int,
               tasks: tuple[str, ...] = TASKS) -> tuple[int, str] | None:
    """(position in the rater's questions, task) of the first unanswered one, None when done:
    where a rater who stopped comes back to."""
    done = answered(folder, rater)
    for position, question in enumerate(questions(design, slot, tasks)):
        if question not in done:
            return position, question[1]
    return None


def answered(folder: str | os.PathLike, rater: str) -> set[tuple[str, str]]:
    return {(a.get("trial"), a.get("task")) for a in read_answers(rater_file(folder, rater)).answers}


def raters(folder: str | os.PathLike) -> dict[str, int]:
    """rater -> slot, as joined."""
    path = Path(folder) / RATERS_FILE
    found: dict[str, int] = {}
    for entry in read_answers(path).answers:
        if isinstance(entry, dict) and "rater" in entry and "slot" in entry:
            found.setdefault(str(entry["rater"]), int(entry["slot"]))
    return found


def join(folder: str | os.PathLike, design: Design, rater: str, slot: int | None = None) -> int:
    """The rater's slot: the one they had if they come back, else `slot` (an imported record's),
    else the least-filled slot (the lowest on a tie), so the Latin square's rows fill evenly."""
    rater_file(folder, rater)   # checks the id
    path = Path(folder) / RATERS_FILE
    with _lock(path):
        known = raters(folder)
        if rater in known:
            if slot is not None and slot != known[rater]:
                raise UserError(f"rater {rater} has slot {known[rater]} in this study, not {slot}; one rater, one slot")
            return known[rater]
        if slot is None:
            counts = np.bincount(list(known.values()), minlength=design.raters)[:design.raters]
            slot = int(np.argmin(counts))
        design.for_rater(slot)
        with path.open("ab") as handle:
            handle.write((json.dumps({"rater": rater, "slot": slot}) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
        return slot


def all_answers(folder: str | os.PathLike) -> Record:
    answers, skipped = [], []
    for path in sorted((Path(folder) / "answers").glob("*.jsonl")):
        found = read_answers(path)
        answers += found.answers
        skipped += found.skipped
    return Record(answers, skipped)
