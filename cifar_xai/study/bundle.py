"""A study beyond one server: a self-contained folder (the rater's page, its script, the study's
images; no TensorFlow, no server code) that any web host or crowd-sourcing platform can serve,
and the import of the answer files its raters download back into the study's own records.

A rater opens `index.html?rater=ID` (`&slot=N` to choose the Latin square's row, as a platform
passing a participant's number would; otherwise the id picks one). Answers stay in the rater's
browser until they download them as `ID.jsonl` at the end; `python -m cifar_xai.study import`
checks every line against the design as the tab checks an answer given to it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cifar_xai.errors import UserError
from cifar_xai.files import write_text
from cifar_xai.study.answers import AlreadyAnswered, append_answer, check_answer, join, read_answers
from cifar_xai.study.design import load_design
from cifar_xai.study.materials import MAPS, MATERIALS, materials_folder
from cifar_xai.study.page import BUNDLE, data_script, page_data, page_file

README = """A study of cifar-xai, to take in a browser.

Open index.html?rater=YOUR_ID (letters, digits, - or _), or serve this folder from any web host
and send each rater that address (add &slot=N to choose which rotation of the conditions they get).
Answers stay in the rater's browser (a rater can close the page and come back) until they press
"Download my answers" at the end; collect those files and run

    python -m cifar_xai.study import studies/{name} RATER.jsonl ...

to add them to the study's records, then `python -m cifar_xai.study results studies/{name}`.
"""


def write_bundle(study: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The bundle of `study` in the new folder `out` (never overwritten). The design file, which
    holds the true labels, and the raw maps stay behind: a rater's page shows nothing else."""
    design = load_design(study)
    data = page_data(study, design, BUNDLE, f"{MATERIALS}/")
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} already exists; choose another --out (a bundle is never written over anything)")
    staged = out.with_name(f".{out.name}.building")
    if staged.exists():
        shutil.rmtree(staged)   # ours: an earlier bundle that was stopped half-written
    shutil.copytree(materials_folder(study), staged / MATERIALS, ignore=shutil.ignore_patterns(MAPS, "*.json"))
    write_text(staged / "index.html", page_file("take.html"))
    write_text(staged / "take.js", page_file("take.js"))
    write_text(staged / "study.js", data_script(data))
    write_text(staged / "README.txt", README.format(name=Path(study).name))
    os.replace(staged, out)
    return out


def import_answers(study: str | os.PathLike, path: str | os.PathLike) -> tuple[int, int]:
    """Add a downloaded answer file's answers to the study: (added, already recorded). Every line is
    checked as the tab checks an answer; one that is not valid stops the import in one line, the
    lines before it kept (importing the same file again adds nothing twice)."""
    design = load_design(study)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no answer file at {path}")
    record = read_answers(path)
    for note in record.skipped:
        print(f"note: {note}")
    added = known = 0
    for number, answer in enumerate(record.answers, 1):
        try:
            if not isinstance(answer, dict):
                raise UserError("not an answer")
            check_answer(design, answer)     # before joining: a bad line registers no rater
            slot = join(study, design, str(answer.get("rater", "")), int(answer.get("slot", -1)))
            append_answer(study, design, answer["rater"], slot, answer)
            added += 1
        except AlreadyAnswered:
            known += 1
        except (UserError, TypeError, ValueError) as err:
            raise UserError(f"{path} answer {number}: {err}; the {added} answers before it were added") from None
    return added, known
