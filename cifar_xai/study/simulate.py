"""Simulated raters: scripted people who answer a study from what its page shows, to check that
the statistics find a difference where there is one (the known-answer study) and none where
there is none. They never write to a study's records: their answers are returned, not appended.

A *photo reader* answers the class they see in the photo (the true label, when it is among the
four choices, `eye` of the time; else a guess): what a person does without an explanation.
A *map reader* does the same, except that on a photo with a planted mark (a small square in a
corner, which a person can see), when one choice's map peaks on it, they answer that class.
"""

from __future__ import annotations

import numpy as np

from cifar_xai.data.marks import mark_box
from cifar_xai.study.answers import LOCALISATION, SIMULATION, TRUST, questions
from cifar_xai.study.design import CONTROL, Design

EYE = 0.9          # how often a person names the class a CIFAR photo shows (among four choices)
# A map "peaks on the mark" when its maximum lies within this many pixels of the mark's square:
# an upsampled 8x8 CAM peaks at a cell's centre (cells 4 px apart), rarely inside a 5-px square.
NEAR = 2


def peaks_on_mark(heatmap: np.ndarray, corner: int, near: int = NEAR) -> bool:
    if corner < 0:
        return False
    top, left, bottom, right = mark_box(corner, heatmap.shape[0])
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return bool(top - near <= row < bottom + near and left - near <= column < right + near)


def simulated_answers(design: Design, maps: dict[str, np.ndarray], raters: int, reads_maps: bool = True,
                      eye: float = EYE, seed: int = 0) -> list[dict]:
    """Every answer of `raters` simulated raters (slots in turn), as the answer files hold them."""
    rng = np.random.default_rng(seed)
    answers = []
    for number in range(raters):
        slot, rater = number % design.raters, f"sim{number:02d}"
        conditions = dict((t.trial, c) for t, c in design.for_rater(slot))
        for trial_id, task in questions(design, slot, (SIMULATION, TRUST, LOCALISATION)):
            trial, condition = design.trial(trial_id), conditions[trial_id]
            seen = trial.label if trial.label in trial.choices and rng.random() < eye else rng.choice(trial.choices)
            choice = seen
            if reads_maps and condition != CONTROL:
                lit = [c for k, c in enumerate(trial.choices)
                       if peaks_on_mark(maps[f"{trial_id}/{condition}"][k], trial.mark)]
                if lit:
                    choice = lit[0]
            record = {"trial": trial_id, "task": task, "rater": rater, "slot": slot, "condition": condition}
            if task == SIMULATION:
                record["choice"] = str(choice)
            elif task == TRUST:
                # Shown the prediction: right if it is what they see, unless the map explained it.
                record.update(right=bool(trial.predicted in (seen, choice)), confidence=int(rng.integers(2, 5)))
            else:
                record["covers"] = "yes"
            answers.append(record)
    return answers
