"""The tab's study view: the studies in the studies folder, their rater page (answers to this
server), a rater joining and answering, the results with their figure, and a new study designed
from a run. Taking a study reads only the files `cifar_xai.study.materials` rendered, so raters
cost the server no TensorFlow; designing one is a long job on the tab's job queue.

Every write goes through `cifar_xai.study.answers`: append-only, one file per rater, checked
against the design; the plugin lets only the tab's own page send one (`plugin._writes`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from cifar_xai.errors import NotFound, UserError
from cifar_xai.study.answers import all_answers, answered, append_answer, join, raters
from cifar_xai.study.design import DESIGN_FILE, Design, load_design
from cifar_xai.study.materials import INDEX, MATERIALS, load_maps, materials_folder
from cifar_xai.study.page import SERVER, data_script, page_data, page_file

STUDY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,60}$")
MATERIAL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}\.jpg$")
# How long a request waits for a new study's design and rendering before the page polls (202).
CREATE_WAIT = 20.0


def run_label(model_path: str) -> str:
    """How a study's model is named in the tab: its run folder for a run's model.keras, else the file."""
    path = Path(model_path)
    return path.parent.name if path.name == "model.keras" else path.name


class Studies:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._designs: dict[str, Design] = {}
        self._results: dict[str, tuple[tuple, dict]] = {}
        self._lock = threading.Lock()

    # ---- finding a study ----------------------------------------------------------------------
    def path(self, name: str) -> Path:
        if not STUDY_NAME.match(name or ""):
            raise UserError(f"study name {name!r}: use 1-60 letters, digits, '-' or '_'")
        return self.folder / name

    def design(self, name: str) -> Design:
        folder = self.path(name)
        if not (folder / DESIGN_FILE).is_file():
            raise NotFound(f"no study named {name!r} in {self.folder}; the tab lists the studies it has")
        with self._lock:   # a design never changes once written: read once
            if name not in self._designs:
                self._designs[name] = load_design(folder)
            return self._designs[name]

    def listing(self) -> list[dict]:
        found = []
        for folder in sorted(self.folder.glob(f"*/{DESIGN_FILE}")):
            name = folder.parent.name
            if not STUDY_NAME.match(name):
                continue
            try:
                design = self.design(name)
            except UserError as err:
                found.append({"name": name, "error": str(err)})
                continue
            found.append({"name": name, "run": run_label(design.run), "conditions": list(design.conditions),
                          "trials": len(design.trials), "recognition": len(design.recognition),
                          "slots": design.raters, "raters": len(raters(folder.parent)),
                          "answers": len(all_answers(folder.parent).answers),
                          "takeable": (folder.parent / MATERIALS / INDEX).is_file(), "note": design.note})
        return found

    # ---- the rater's page ---------------------------------------------------------------------
    def page(self, name: str) -> str:
        self.design(name)
        return page_file("take.html").replace('src="study.js"', f'src="data.js?study={quote(name)}"')

    def data(self, name: str) -> str:
        design = self.design(name)
        return data_script(page_data(self.path(name), design, SERVER, f"file?study={quote(name)}&name="))

    def material(self, name: str, file: str) -> bytes:
        if not MATERIAL_NAME.match(file or ""):
            raise UserError(f"{file!r} is not a study image's name")
        path = materials_folder(self.path(name)) / file
        if not path.is_file():
            raise NotFound(f"study {name} has no image {file}")
        return path.read_bytes()

    def join(self, name: str, rater: str) -> dict:
        design, folder = self.design(name), self.path(name)
        materials_folder(folder)
        slot = join(folder, design, rater)
        return {"slot": slot, "answered": sorted(answered(folder, rater))}

    def answer(self, name: str, rater: str, answer: dict) -> dict:
        design, folder = self.design(name), self.path(name)
        slot = raters(folder).get(rater)
        if slot is None:
            raise UserError(f"rater {rater!r} has not joined study {name}; start from the study's page")
        return append_answer(folder, design, rater, slot, answer)

    # ---- results ------------------------------------------------------------------------------
    def results(self, name: str) -> dict:
        """Every figure of the study, recomputed only when an answer file changed."""
        from cifar_xai.study.statistics import results, summary_lines

        design, folder = self.design(name), self.path(name)
        signature = tuple((p.name, p.stat().st_size) for p in sorted((folder / "answers").glob("*.jsonl")))
        with self._lock:
            cached = self._results.get(name)
        if cached and cached[0] == signature:
            return cached[1]
        record = all_answers(folder)
        found = results(design, record.answers, load_maps(folder))
        found.update(name=name, notes=record.skipped, summary=summary_lines(found))
        with self._lock:
            self._results[name] = (signature, found)
        return found

    def results_png(self, name: str) -> bytes:
        from cifar_xai.study.figures import results_png

        return results_png(self.results(name))

    # ---- designing a new study from a run -----------------------------------------------------
    def create(self, jobs, request: dict, model_of: Callable[[str], tuple[object, str]],
               test_images: Callable[[], tuple]) -> dict:
        """Design and render a study (a job: predicting the test split and rendering maps takes a
        minute): `request` holds name, run, conditions, per_class, raters, seed, stamp_marks and the
        page's request id."""
        from cifar_xai.study.materials import KNOWN_ANSWER_NOTE, known_answer_marks, prepare_study

        name = str(request.get("name", ""))
        folder = self.path(name)
        try:
            conditions = [str(c) for c in request.get("conditions") or []]
            per_class, slots, seed = (int(request.get(k, d)) for k, d in (("per_class", 4), ("raters", 8), ("seed", 0)))
        except (TypeError, ValueError):
            raise UserError("per_class, raters and seed are whole numbers") from None
        # The page asks again with the same request id while the job runs (202): those polls get
        # its result; any other request for a name that exists is refused.
        key = ("study", name, str(request.get("request", "")))

        def compute() -> dict:

            model, path = model_of(str(request.get("run", "")))
            images, labels = test_images()
            marks = known_answer_marks(len(images), seed) if request.get("stamp_marks") else None
            design = prepare_study(folder, model, path, images, labels, conditions, per_class, slots, seed,
                                   True, marks, KNOWN_ANSWER_NOTE if marks is not None else "")
            return {"name": name, "trials": len(design.trials), "conditions": list(design.conditions)}

        if folder.exists() and key not in jobs:
            raise UserError(f"a study named {name} already exists; a study is never overwritten: choose another name")
        return jobs.result(key, compute, CREATE_WAIT, f"designing study {name}")
