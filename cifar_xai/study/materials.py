"""What raters are shown, rendered once when a study is made: each trial's image, each method
condition's map of each of its four choices laid over the image, and the class visualisations of
the recognition task. Taking a study then needs no TensorFlow and no model: the tab serves these
files, and a bundle (`cifar_xai.study.bundle`) copies them for any web host.

`materials/index.json` names the files; `materials/maps.npz` keeps the raw maps (float16, 32x32,
in the order of the trial's choices) that painted object masks are scored against."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.errors import UserError
from cifar_xai.files import read_json_object, write_json
from cifar_xai.study.answers import recognition_id
from cifar_xai.study.design import CONTROL, Design, create_study, make_design

MATERIALS = "materials"
INDEX = "index.json"
MAPS = "maps.npz"
SHOWN = 128        # pixels a side of every image shown: CIFAR's 32 upsampled smoothly, as people read photos
OPACITY = 0.5      # of the colour-mapped map over the image, as the report's overlays
JPEG_QUALITY = 90  # a bundle of 40 trials x 3 methods x 4 maps stays a few megabytes
KNOWN_ANSWER_NOTE = (
    "known answer: half the images carry the planted mark in a corner; a model that learned the shortcut predicts "
    "the planted class on marked images of other classes, which a rater can see in a map that lights up the mark "
    "and cannot see without one")
MARKED_SHARE = 0.5   # of a known-answer study's images: unmarked ones show what the mark changes


def known_answer_marks(count: int, seed: int = 0) -> np.ndarray:
    """The corner of the planted mark on each of `count` test images (-1: none) for a known-answer
    study: a random half is marked. Every image marked would be no test: with right and wrong
    predictions balanced, "the mark means cat" would be right as often as "what the photo shows"."""
    from cifar_xai.data.marks import random_corners

    corners = random_corners(count, seed)
    corners[np.random.default_rng([seed, 4]).random(count) >= MARKED_SHARE] = -1
    return corners


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _enlarge(array: np.ndarray) -> np.ndarray:
    """An image (uint8) or a map (float) at SHOWN pixels a side, smoothly."""
    from PIL import Image

    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize((SHOWN, SHOWN), Image.Resampling.BICUBIC))
    image = Image.fromarray(array.astype(np.float32), mode="F").resize((SHOWN, SHOWN), Image.Resampling.BILINEAR)
    return np.asarray(image)


def shown_overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """uint8 [SHOWN, SHOWN, 3]: the [0, 1] map over the image, as the report draws it."""
    from cifar_xai.plots import overlay

    return overlay(_enlarge(image), _enlarge(heatmap), OPACITY)


def render_materials(folder: str | os.PathLike, design: Design, model, images: np.ndarray) -> dict:
    """Write every file a rater may be shown into `folder/materials` (see the module doc); `images`
    are the test split's, uint8, indexed as the design's trials are (marks not yet stamped)."""
    from cifar_xai.data.marks import stamp
    from cifar_xai.explain.core import explain
    from cifar_xai.explain.visualise import visualise

    # Rendered beside, then renamed: a study is takeable only once its materials are whole.
    out = Path(folder) / f".{MATERIALS}.building"
    if out.exists():
        shutil.rmtree(out)   # ours: an earlier rendering that was stopped
    out.mkdir(parents=True)
    shown = images[[t.index for t in design.trials]]
    marks = np.array([t.mark for t in design.trials])
    if (marks >= 0).any():
        shown = np.round(stamp(shown, marks).numpy()).astype(np.uint8)
    index: dict = {"shown": SHOWN, "trials": {}, "recognition": {}}
    for trial, image in zip(design.trials, shown, strict=True):
        (out / f"{trial.trial}.jpg").write_bytes(_jpeg(_enlarge(image)))
        index["trials"][trial.trial] = {"image": f"{trial.trial}.jpg", "maps": {}}
    raw: dict[str, np.ndarray] = {}
    methods = [c for c in design.conditions if c != CONTROL]
    for method in methods:
        # One call per choice position: every trial's first choice, then every second, ...
        per_choice = [explain(model, shown.astype(np.float32), method,
                              [CLASS_NAMES.index(t.choices[k]) for t in design.trials])
                      for k in range(len(design.trials[0].choices))]
        for position, trial in enumerate(design.trials):
            maps = np.stack([m[position] for m in per_choice])
            raw[f"{trial.trial}/{method}"] = maps.astype(np.float16)
            names = []
            for k, heatmap in enumerate(maps):
                name = f"{trial.trial}-{method}-{k}.jpg"
                (out / name).write_bytes(_jpeg(shown_overlay(shown[position], heatmap)))
                names.append(name)
            index["trials"][trial.trial]["maps"][method] = names
    if design.recognition:
        pictures = visualise(model, [CLASS_NAMES.index(c) for c in design.recognition])
        for class_name, picture in zip(design.recognition, pictures, strict=True):
            name = f"{recognition_id(class_name)}.jpg"
            (out / name).write_bytes(_jpeg(_enlarge(picture)))
            index["recognition"][recognition_id(class_name)] = name
    np.savez_compressed(out / MAPS, **raw)
    write_json(out / INDEX, index)
    os.replace(out, Path(folder) / MATERIALS)
    return index


def materials_folder(folder: str | os.PathLike) -> Path:
    """The rendered materials of a study; a one-line error while they are not (yet) whole."""
    found = Path(folder) / MATERIALS
    if not (found / INDEX).is_file():
        raise UserError(f"the study {Path(folder).name} has no rendered materials yet: a study can be taken once "
                        "python -m cifar_xai.study create (or the tab's 'design a study') has finished")
    return found


def materials_index(folder: str | os.PathLike) -> dict:
    return read_json_object(materials_folder(folder) / INDEX, "study materials index")


def load_maps(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """{"t000/cam": float32 [choices, 32, 32]} of a study, {} before its materials exist."""
    path = Path(folder) / MATERIALS / MAPS
    if not path.is_file():
        return {}
    with np.load(path) as found:
        return {key: found[key].astype(np.float32) for key in found.files}


def prepare_study(out: str | os.PathLike, model, run: str, images: np.ndarray, labels: np.ndarray,
                  conditions: list[str], per_class: int, raters: int, seed: int = 0, recognition: bool = True,
                  marks: np.ndarray | None = None, note: str = "") -> Design:
    """Design a study on `model`'s predictions for the test `images` (stamped with `marks` first,
    for a known-answer study), create its folder and render its materials: what the CLI's
    `create` and the tab's "design a study" both do."""
    from cifar_xai.data.marks import stamp
    from cifar_xai.explain.methods import METHODS
    from cifar_xai.explain.registry import why_not
    from cifar_xai.probes import predict

    for condition in conditions:
        if condition != CONTROL and condition not in METHODS:
            raise UserError(f"unknown condition {condition!r}; valid: {', '.join(METHODS)}, {CONTROL}")
        if condition != CONTROL and (refusal := why_not(model, condition)):
            raise UserError(refusal)
    if Path(out).exists():
        raise UserError(f"{out} already exists; a study folder is never overwritten: choose another name")
    shown = images.astype(np.float32) if marks is None else stamp(images, marks).numpy()
    design = make_design(run, labels, predict(model, shown), conditions, per_class, raters, seed, recognition,
                         marks, note)
    folder = create_study(out, design)
    render_materials(folder, design, model, images)
    return design
