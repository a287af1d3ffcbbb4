"""What the dashboard's routes answer, as plain data: the runs a logdir holds, a gallery page of
test images with filters, one image analysed in full (every method, any class, the OOD verdict,
the contrastive pair), an upload, and a run's measurements. Models and predictions are loaded
once per run; each map is computed once per (image, method, class)."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.config import CLOSE_CALL_MARGIN, DASHBOARD_UPLOAD_LIMIT
from cifar_xai.errors import NotFound, UserError
from cifar_xai.explain.analysis import analyse
from cifar_xai.explain.maps import finish_maps, normalize_maps
from cifar_xai.explain.methods import METHODS
from cifar_xai.explain.registry import applicable_methods, why_not
from cifar_xai.images import png_bytes
from cifar_xai.interpretability.metrics import figures
from cifar_xai.interpretability.settings import Settings
from cifar_xai.model_io import SHIPPED_MODEL, load_model, run_folder, run_metrics
from cifar_xai.models import has_gap_head, is_prototype_model
from cifar_xai.report.frontier import TABLE_HEADER, frontier_png, load_frontier, table_rows
from cifar_xai.uncertainty.calibration import confidences_calibrated

PAGE_SIZE = 48
# Training images of a class the dashboard discovers its concepts in: fewer than the report's
# 1,000, so the first request for a class answers in seconds.
CONCEPT_IMAGES = 300
FILTERS = ("all", "correct", "wrong", "least_confident", "flagged_ood", "close_calls")
# The map's colours: matplotlib's "inferno" (dark = no evidence, bright = most), as 256 RGB rows.
_COLOURS = None


def _colours() -> np.ndarray:
    global _COLOURS
    if _COLOURS is None:
        from matplotlib import colormaps

        _COLOURS = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return _COLOURS


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_data_url(array: np.ndarray) -> str:
    return data_url(png_bytes(array))


def heatmap_png(heatmap: np.ndarray) -> str:
    """A map in [0, 1] as the colour-mapped PNG the page lays over the image."""
    return png_data_url(_colours()[np.clip(np.round(heatmap * 255), 0, 255).astype(int)])


def signed_png(signed: np.ndarray) -> str:
    """A signed map (the contrastive one): red for the class, blue for the rival, white for 0."""
    scale = float(np.abs(signed).max()) or 1.0
    value = np.clip(signed / scale, -1, 1)[..., None]
    red, blue = np.array([214, 39, 40]), np.array([31, 119, 180])
    rgb = np.where(value > 0, 255 + value * (red - 255), 255 - value * (blue - 255))
    return png_data_url(rgb.astype(np.uint8))


def find_runs(logdir: Path, shipped: Path = SHIPPED_MODEL.parent) -> dict[str, Path]:
    """Run name -> model file: every run folder under the logdir that holds a trained model
    (model.keras), and the shipped models, as `shipped/<name>`."""
    found = {}
    if logdir.is_dir():
        for model in sorted(logdir.rglob("model.keras")):
            if not any(part.startswith(".") for part in model.relative_to(logdir).parts):
                found[os.fspath(model.parent.relative_to(logdir)) or "."] = model
    for model in sorted(shipped.glob("*.keras")):
        found[f"shipped/{model.stem}"] = model
    return found


@dataclass
class Run:
    """One model, loaded once, with its test-set predictions and OOD scores."""

    name: str
    path: Path
    model: object
    detector: object
    calibrated: bool
    probabilities: np.ndarray = None
    labels: np.ndarray = None
    flagged: np.ndarray = None
    cache: dict = field(default_factory=dict)
    warming: bool = False   # the whole test split is being predicted in the background
    # Its own lock: predicting the test split takes seconds, and must not hold up other runs' routes.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kind(self) -> str:
        return ("prototype_cnn" if is_prototype_model(self.model) else
                "interpretable_cnn" if has_gap_head(self.model) else "standard_cnn")


class Dashboard:
    def __init__(self, logdir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                 shipped: Path = SHIPPED_MODEL.parent):
        self.logdir, self.data_dir, self.shipped = Path(logdir), data_dir, shipped
        self._runs: dict[str, Run] = {}
        self._uploads: dict[str, np.ndarray] = {}
        self._images = None
        self._lock = threading.Lock()   # TensorBoard serves requests from several threads

    # ---- runs -------------------------------------------------------------------------------
    def runs(self) -> list[dict]:
        return [{"name": name, "path": os.fspath(path)} for name, path in find_runs(self.logdir, self.shipped).items()]

    def run(self, name: str) -> Run:
        with self._lock:
            if name not in self._runs:
                paths = find_runs(self.logdir, self.shipped)
                if name not in paths:
                    raise NotFound(f"unknown run {name!r}; valid: {', '.join(paths) or 'none (train one)'}")
                from cifar_xai.uncertainty.detector import detector_beside

                model = load_model(paths[name])
                detector, _ = detector_beside(model, paths[name])
                self._runs[name] = Run(name, paths[name], model, detector,
                                       confidences_calibrated(model, run_metrics(paths[name])))
            return self._runs[name]

    def methods(self, name: str) -> dict:
        run = self.run(name)
        usable = applicable_methods(run.model, list(METHODS))
        return {"kind": run.kind, "calibrated": run.calibrated, "has_detector": run.detector is not None,
                "methods": [{"name": m, "title": METHODS[m].title, "applicable": m in usable} for m in METHODS],
                "classes": list(CLASS_NAMES)}

    # ---- the gallery ------------------------------------------------------------------------
    def test_images(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._images is None:
                from cifar_xai.data.pipeline import split_arrays

                images, labels = split_arrays(self.data_dir, "test")
                self._images = (images.numpy().astype(np.uint8), labels.numpy())
            return self._images

    def _predictions(self, run: Run) -> Run:
        images, labels = self.test_images()
        with run.lock:
            if run.probabilities is None:
                (run.probabilities, run.flagged), run.labels = _scored(run, images), labels
        return run

    def _first_page(self, run: Run, page: int) -> dict | None:
        """The unfiltered gallery's page from its own 48 images while the whole test split is still
        being predicted and scored in the background (11.6 s once per run on 2 cores), so a run's
        first page answers at once; None when the whole split is ready or the page does not exist."""
        images, labels = self.test_images()
        pages = -(-len(labels) // PAGE_SIZE)
        if run.probabilities is not None or not 0 <= page < pages:
            return None
        if not run.warming:
            run.warming = True
            threading.Thread(target=self._predictions, args=(run,), daemon=True).start()
        shown = np.arange(page * PAGE_SIZE, min((page + 1) * PAGE_SIZE, len(labels)))
        probabilities, flagged = _scored(run, images[shown])
        return {"run": run.name, "filter": "all", "total": int(len(labels)), "page": page, "pages": pages,
                "calibrated": run.calibrated, "items": _items(shown, labels[shown], probabilities, flagged)}

    def gallery(self, name: str, filter_: str = "all", class_name: str | None = None, page: int = 0) -> dict:
        if filter_ not in FILTERS:
            raise UserError(f"unknown filter {filter_!r}; valid: {', '.join(FILTERS)}")
        if filter_ == "all" and not class_name:
            early = self._first_page(self.run(name), page)
            if early is not None:
                return early
        run = self._predictions(self.run(name))
        p, labels = run.probabilities, run.labels
        predicted, confidence = p.argmax(1), p.max(1)
        top_two = np.sort(p, axis=1)[:, -2:]
        keep = np.ones(len(labels), bool)
        if class_name:
            if class_name not in CLASS_NAMES:
                raise UserError(f"unknown class {class_name!r}; valid: {', '.join(CLASS_NAMES)}")
            keep &= labels == CLASS_NAMES.index(class_name)
        order = np.arange(len(labels))
        if filter_ == "correct":
            keep &= predicted == labels
        elif filter_ == "wrong":
            keep &= predicted != labels
        elif filter_ == "flagged_ood":
            keep &= run.flagged
        elif filter_ == "close_calls":
            keep &= top_two[:, 1] - top_two[:, 0] < CLOSE_CALL_MARGIN
        elif filter_ == "least_confident":
            order = np.argsort(confidence, kind="stable")
        chosen = order[keep[order]]
        pages = max(1, -(-len(chosen) // PAGE_SIZE))
        if not 0 <= page < pages:
            raise NotFound(f"page {page} is out of range; this filter has {pages} page(s)")
        shown = chosen[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
        return {"run": name, "filter": filter_, "total": int(len(chosen)), "page": page, "pages": pages,
                "calibrated": run.calibrated, "items": _items(shown, labels[shown], p[shown], run.flagged[shown])}

    def image_png(self, index: int) -> bytes:
        return png_bytes(self._image(f"test:{index}")[0])

    # ---- one image in full ------------------------------------------------------------------
    def _image(self, source: str) -> tuple[np.ndarray, str | None]:
        """(pixels, true label or None) of `test:<index>` or `upload:<id>`."""
        kind, _, key = source.partition(":")
        if kind == "test":
            images, labels = self.test_images()
            try:
                index = int(key)
            except ValueError:
                raise UserError(f"image {key!r} is not a test-image index") from None
            if not 0 <= index < len(images):
                raise NotFound(f"image {index} is out of range; the test split has {len(images)} images "
                               f"(0-{len(images) - 1})")
            return images[index], CLASS_NAMES[labels[index]]
        if kind == "upload":
            if key not in self._uploads:
                raise NotFound(f"no upload {key!r}; upload the image again")
            return self._uploads[key], None
        raise UserError(f"unknown image source {source!r}; use test:<index> or upload:<id>")

    def detail(self, name: str, source: str, method: str = "cam", class_name: str | None = None) -> dict:
        run = self.run(name)
        if method not in METHODS:
            raise UserError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        if class_name is not None and class_name not in CLASS_NAMES:
            raise UserError(f"unknown class {class_name!r}; valid: {', '.join(CLASS_NAMES)}")
        image, label = self._image(source)
        key = (source, method, class_name)
        if key not in run.cache:
            found = analyse(run.model, image, [method], class_name, run.detector, run.calibrated)[0]
            result = found.to_dict()
            result.update(
                label=label, top=found.top(3), method=method, method_title=METHODS[method].title,
                map=heatmap_png(found.maps[method]) if method in found.maps else None,
                reason=None if method in found.maps else f"n/a: {why_not(run.model, method)}",
                contrastive_map=signed_png(found.contrastive) if found.contrastive is not None else None,
                rival=CLASS_NAMES[found.rival] if found.rival is not None else None,
                image=png_data_url(image),
                prototypes=_prototype_evidence(run.model, image, class_name) if run.kind == "prototype_cnn" else None)
            run.cache[key] = result
        return run.cache[key]

    def concepts(self, name: str, source: str, class_name: str | None = None, images: int = CONCEPT_IMAGES) -> dict:
        """For a GAP network: the class logit split exactly among the concepts discovered (NMF) in
        the CAM map over the class's training images, with where each of the top three sits on this
        image. Discovery runs once per (run, class); n/a with the reason for other networks."""
        run = self.run(name)
        if run.kind != "interpretable_cnn":
            return {"reason": f"n/a: the logit splits over concepts only under a GAP head; this is a {run.kind}"}
        from cifar_xai.concepts.discovery import discover_concepts, explain_concepts
        from cifar_xai.concepts.study import training_split
        from cifar_xai.data.pipeline import split_arrays
        from cifar_xai.model_io import run_config
        from cifar_xai.probes import predict

        image, _ = self._image(source)
        target = (CLASS_NAMES.index(class_name) if class_name in CLASS_NAMES
                  else int(predict(run.model, image[None].astype(np.float32)).argmax()))
        key = ("concepts", target)
        if key not in run.cache:
            train = split_arrays(self.data_dir, training_split(run_config(run.path)), classes=(target,),
                                 limit=images)[0].numpy()
            run.cache[key] = discover_concepts(run.model, train, target)
        basis = run.cache[key]
        found = explain_concepts(run.model, image[None], basis)
        contributions = found.contributions[0]
        maps = found.maps(basis)[0]                                   # [h, w, k] on this image
        top = np.argsort(-contributions)[:3]
        size = image.shape[:2]
        return {"class": CLASS_NAMES[target], "logit": float(found.logits[0]), "bias": float(found.bias),
                "residual": float(found.residual[0]), "images": int(images),
                "concepts": [{"rank": int(j) + 1, "contribution": float(c)} for j, c in enumerate(contributions)],
                "top": [{"rank": int(j) + 1, "contribution": float(contributions[j]),
                         "where": heatmap_png(finish_maps(maps[None, ..., j], size).numpy()[0])} for j in top]}

    def upload(self, data: bytes, filename: str = "upload") -> str:
        """Store an uploaded image file (any format the CLI reads); its id for `detail`."""
        if len(data) > DASHBOARD_UPLOAD_LIMIT:
            raise UserError(f"{filename} is {len(data) / 1e6:.1f} MB; the dashboard takes images up to "
                            f"{DASHBOARD_UPLOAD_LIMIT // 2**20} MB")
        if not data:
            raise UserError(f"{filename} is empty; choose an image file")
        from cifar_xai.images import load_image

        suffix = Path(filename).suffix[:10]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(data)
            image, _ = load_image(path)
        with self._lock:   # two uploads at once get two ids
            key = f"{len(self._uploads)}"
            self._uploads[key] = image
        return key

    # ---- measurements -----------------------------------------------------------------------
    def measurements(self, names: Sequence[str]) -> dict:
        """The runs' own figures (metrics.json) and, where a report was built into the run folder
        (python -m reports.build --out RUN/report), its explanation metrics, as tables whose
        columns come from the metrics registry."""
        rows, interpretability = [], {}
        for name in names:
            run = self.run(name)
            trained = run_metrics(run.path) or {}
            test = trained.get("test", {})
            rows.append({"run": name, "kind": run.kind, "accuracy": test.get("accuracy"),
                         "accuracy_tta": (trained.get("test_tta") or {}).get("flip_translate"),
                         "ece": (test.get("calibration") or {}).get("ece"), "calibrated": run.calibrated,
                         "train_seconds": trained.get("train_seconds")})
            report = run.path.parent / "report" / "metrics.json"
            if report.is_file():
                found = json.loads(report.read_text())
                interpretability[name] = found.get("interpretability", {})
                rows[-1]["mca"] = (found.get("robustness") or {}).get("mca")
        columns = [{"key": f.key, "title": f.heading} for f in figures(Settings()) if f.in_table]
        frontiers = {name: frontier for name in names if (frontier := self._frontier(name))}
        return {"runs": rows, "columns": columns, "interpretability": interpretability, "frontiers": frontiers}

    def _frontier(self, name: str) -> dict | None:
        """The recipe frontier the run was chosen from (benchmarks.frontier --json into its folder,
        carried to saved_models/<name>.run/ by trainers.ship): the figure and its table, drawn once
        per run."""
        run = self.run(name)
        if "frontier" not in run.cache:
            run.cache["frontier"] = _frontier_view(run.path)
        return run.cache["frontier"]


def _frontier_view(model_path: Path) -> dict | None:
    try:
        frontier = load_frontier(run_folder(model_path))
    except UserError as err:
        return {"error": str(err)}
    if frontier is None:
        return None
    points, chosen, rule = frontier
    return {"png": data_url(frontier_png(points, chosen)), "rule": rule, "header": TABLE_HEADER,
            "rows": [[v if isinstance(v, str) else round(v, 4) for v in row] for row in table_rows(points, chosen)]}


def _prototype_evidence(model, image: np.ndarray, class_name: str | None, top_k: int = 3) -> dict:
    """prototype_cnn's own account: the top prototypes by contribution, where each matches on the
    image, the training patch it was pushed onto, and the exact arithmetic (they add up to the logit)."""
    from cifar_xai.explain.prototypes import explain_prototypes, source_patches

    found = explain_prototypes(model, image, class_name, top_k)[0]
    sources, boxes = source_patches(model)
    top = []
    for rank, j in enumerate(found.top):
        top.append({"prototype": int(j), "class": CLASS_NAMES[found.prototype_classes[rank]],
                    "similarity": float(found.similarities[rank]), "weight": float(found.weights[rank]),
                    "contribution": float(found.contributions[j]),
                    "where": heatmap_png(normalize_maps(found.maps[rank:rank + 1]).numpy()[0]),
                    "source": png_data_url(sources[j]), "box": [int(v) for v in boxes[j]]})
    return {"logit": float(found.logit), "sum_of_contributions": float(found.contributions.sum()),
            "prototypes": len(found.contributions), "top": top}



def _scored(run: Run, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, flagged out-of-distribution) of test images, for the gallery."""
    from cifar_xai.probes import predict

    probabilities = predict(run.model, images.astype(np.float32))
    if run.detector is None:
        return probabilities, np.zeros(len(images), bool)
    return probabilities, ~run.detector.in_distribution(run.detector.score_images(run.model, images))


def _items(indices: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, flagged: np.ndarray) -> list[dict]:
    """The gallery's thumbnails' data: one row of each argument per image."""
    return [{"index": int(i), "label": CLASS_NAMES[label], "predicted": CLASS_NAMES[p.argmax()],
             "confidence": float(p.max()), "correct": bool(p.argmax() == label), "flagged": bool(flag)}
            for i, label, p, flag in zip(indices, labels, probabilities, flagged, strict=True)]
