"""The rater's page: one static HTML page and one classic script (`page/take.html`, `page/take.js`,
no build step, no module imports, so it also runs from a folder opened as file://), fed a
`window.STUDY` object that this module writes. The tab serves it with answers going to the
server; a bundle serves it with answers kept in the browser and downloaded as a file. One page,
two ways to send an answer."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from cifar_xai import CLASS_NAMES
from cifar_xai.study.answers import MASK_GRID, questions
from cifar_xai.study.design import Design
from cifar_xai.study.materials import materials_index

SERVER, BUNDLE = "server", "bundle"


def page_file(name: str) -> str:
    return resources.files("cifar_xai.study").joinpath("page", name).read_text()


def page_data(folder: str | os.PathLike, design: Design, mode: str, files: str) -> dict:
    """What the page needs: every slot's questions in order with their condition, each trial's
    choices, images and maps (`files` + a name is a file's URL), the class visualisations.
    The true labels are not in it; the model's prediction is, since the trust question shows it."""
    index = materials_index(folder)
    conditions = [dict((t.trial, c) for t, c in design.for_rater(slot)) for slot in range(design.raters)]
    return {
        "name": Path(folder).name, "mode": mode, "files": files, "grid": MASK_GRID, "classes": list(CLASS_NAMES),
        "raters": design.raters,
        "plans": [[[trial, task, conditions[slot].get(trial, "")] for trial, task in questions(design, slot)]
                  for slot in range(design.raters)],
        "trials": {t.trial: {"choices": list(t.choices), "predicted": t.predicted,
                             "image": index["trials"][t.trial]["image"], "maps": index["trials"][t.trial]["maps"]}
                   for t in design.trials},
        "recognition": index["recognition"],
    }


def data_script(data: dict) -> str:
    # "</" escaped: a study's name can never close the script element it sits in.
    return "window.STUDY = " + json.dumps(data).replace("</", "<\\/") + ";\n"
