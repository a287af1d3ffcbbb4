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

from cifar_xai.errors import UserError
from cifar_xai.study.design import Design

RATER_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SIMULATION = "simulation"      # which class will the model predict? (a choice among the trial's four)
TRUST = "trust"                # shown the prediction: is it right? (yes / no, confidence 1-4)
LOCALISATION = "localisation"  # does the highlighted region cover the object? (yes / partly / no)
TASKS = (SIMULATION, TRUST, LOCALISATION)
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


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


def _check(design: Design, answer: dict) -> None:
    trial = design.trial(str(answer.get("trial")))
    task = answer.get("task")
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if task == SIMULATION and answer.get("choice") not in trial.choices:
        raise UserError(f"simulation answer {answer.get('choice')!r} is not one of trial {trial.trial}'s choices")
    if task == TRUST and (answer.get("right") not in (True, False) or answer.get("confidence") not in (1, 2, 3, 4)):
        raise UserError("a trust answer needs right: true or false and confidence 1-4")
    if task == LOCALISATION and answer.get("covers") not in ("yes", "partly", "no"):
        raise UserError("a localisation answer needs covers: yes, partly or no")


def append_answer(folder: str | os.PathLike, design: Design, rater: str, slot: int, answer: dict) -> dict:
    """Check and append one answer (trial, task, its fields) for `rater`; returns what was written."""
    path = rater_file(folder, rater)
    _check(design, answer)
    conditions = dict((t.trial, c) for t, c in design.for_rater(slot))
    record = {**answer, "rater": rater, "slot": slot, "condition": conditions[answer["trial"]]}
    with _lock(path):
        done = {(a.get("trial"), a.get("task")) for a in read_answers(path).answers}
        if (answer["trial"], answer["task"]) in done:
            raise UserError(f"trial {answer['trial']} ({answer['task']}) is already answered by {rater}; answers are "
                            "never replaced")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.write((json.dumps(record, sort_keys=True) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
    return record


def next_trial(design: Design, folder: str | os.PathLike, rater: str, slot: int,
               tasks: tuple[str, ...] = (SIMULATION, TRUST, LOCALISATION)) -> tuple[int, str] | None:
    """(position in the rater's order, task) of the first unanswered question, None when done:
    where a rater who stopped comes back to."""
    done = {(a["trial"], a["task"]) for a in read_answers(rater_file(folder, rater)).answers}
    for position, (trial, _) in enumerate(design.for_rater(slot)):
        for task in tasks:
            if (trial.trial, task) not in done:
                return position, task
    return None


def all_answers(folder: str | os.PathLike) -> Record:
    answers, skipped = [], []
    for path in sorted((Path(folder) / "answers").glob("*.jsonl")):
        found = read_answers(path)
        answers += found.answers
        skipped += found.skipped
    return Record(answers, skipped)
