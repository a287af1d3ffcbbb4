"""The gallery: pages of test images with their predictions, filtered (wrong, least confident,
flagged out-of-distribution, close calls, a true class, a predicted class: a confusion-matrix
cell), and the run's confusion matrix with per-class precision and recall."""

from __future__ import annotations

import threading

import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.config import CLOSE_CALL_MARGIN
from cifar_xai.dashboard.context import Context
from cifar_xai.dashboard.runs import Run
from cifar_xai.errors import NotFound, Pending, UserError
from cifar_xai.images import png_bytes

PAGE_SIZE = 48
# How long a filtered page or the confusion matrix waits for the run's predictions before saying
# they are being computed (the page asks again).
WAIT = 20.0
FILTERS = ("all", "correct", "wrong", "least_confident", "flagged_ood", "close_calls")


def _class_id(name: str | None, what: str) -> int | None:
    if not name:
        return None
    if name not in CLASS_NAMES:
        raise UserError(f"unknown {what} {name!r}; valid: {', '.join(CLASS_NAMES)}")
    return CLASS_NAMES.index(name)


class Gallery:
    def __init__(self, context: Context):
        self.context = context

    def predictions(self, run: Run) -> Run:
        """The run with its whole test split predicted and scored (once per run)."""
        images, labels = self.context.test_images()
        with run.lock:
            if run.probabilities is None:
                (run.probabilities, run.flagged), run.labels = scored(run, images), labels
                run.predicted.set()
        return run

    def _start(self, run: Run) -> None:
        if not run.warming:
            run.warming = True
            threading.Thread(target=self.predictions, args=(run,), daemon=True).start()

    def ready(self, run: Run, wait: float = WAIT) -> Run:
        """The run with its whole test split predicted, started in the background if need be; a
        request that would wait longer than `wait` is told it is running (202) instead."""
        self._start(run)
        if not run.predicted.wait(wait):
            raise Pending(f"the {len(self.context.test_images()[1]):,} test images are being predicted and scored "
                          f"for {run.name} (once per run); this view asks again in a few seconds")
        return run

    def _first_page(self, run: Run, page: int) -> dict | None:
        """The unfiltered gallery's page from its own 48 images while the whole test split is still
        being predicted and scored in the background, so a run's first page answers at once; None
        when the whole split is ready."""
        images, labels = self.context.test_images()
        if run.probabilities is not None:
            return None
        self._start(run)
        shown = np.arange(page * PAGE_SIZE, min((page + 1) * PAGE_SIZE, len(labels)))
        probabilities, flagged = scored(run, images[shown])
        return {"run": run.name, "filter": "all", "total": int(len(labels)), "page": page,
                "pages": -(-len(labels) // PAGE_SIZE), "calibrated": run.calibrated,
                "items": items(shown, labels[shown], probabilities, flagged, self.context.file_index)}

    def page(self, name: str, filter_: str = "all", class_name: str | None = None, page: int = 0,
             predicted_name: str | None = None) -> dict:
        if filter_ not in FILTERS:
            raise UserError(f"unknown filter {filter_!r}; valid: {', '.join(FILTERS)}")
        true_class, predicted_class = _class_id(class_name, "class"), _class_id(predicted_name, "predicted class")
        # Out of range for any filter: answered before a single prediction.
        most = -(-len(self.context.test_images()[1]) // PAGE_SIZE)
        if not 0 <= page < most:
            raise NotFound(f"page {page} is out of range; no filter has more than {most} page(s)")
        run = self.context.run(name)
        if filter_ == "all" and true_class is None and predicted_class is None:
            early = self._first_page(run, page)
            if early is not None:
                return early
        run = self.ready(run)
        p, labels = run.probabilities, run.labels
        predicted, confidence = p.argmax(1), p.max(1)
        top_two = np.sort(p, axis=1)[:, -2:]
        keep = np.ones(len(labels), bool)
        if true_class is not None:
            keep &= labels == true_class
        if predicted_class is not None:
            keep &= predicted == predicted_class
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
        if not page < pages:
            raise NotFound(f"page {page} is out of range; this filter has {pages} page(s)")
        shown = chosen[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
        return {"run": name, "filter": filter_, "total": int(len(chosen)), "page": page, "pages": pages,
                "calibrated": run.calibrated, "items": items(shown, labels[shown], p[shown], run.flagged[shown],
                                                                     self.context.file_index)}

    def confusion(self, name: str) -> dict:
        """The test split's confusion matrix (rows: true class, columns: predicted), row-normalised
        beside the counts, with each class's precision and recall."""
        run = self.ready(self.context.run(name))
        predicted = run.probabilities.argmax(1)
        k = run.probabilities.shape[1]
        counts = np.zeros((k, k), np.int64)
        np.add.at(counts, (run.labels, predicted), 1)
        rows, columns = counts.sum(1), counts.sum(0)
        diagonal = np.diag(counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(rows > 0, diagonal / np.maximum(rows, 1), np.nan)
            precision = np.where(columns > 0, diagonal / np.maximum(columns, 1), np.nan)
            normalised = counts / np.maximum(rows[:, None], 1)
        return {"run": name, "classes": list(CLASS_NAMES[:k]), "counts": counts.tolist(),
                "row_normalised": normalised.round(4).tolist(),
                "precision": [None if np.isnan(v) else float(v) for v in precision],
                "recall": [None if np.isnan(v) else float(v) for v in recall],
                "accuracy": float(diagonal.sum() / max(counts.sum(), 1)), "images": int(counts.sum())}

    def image_png(self, index: int) -> bytes:
        return png_bytes(self.context.image(f"test:{index}")[0])


def scored(run: Run, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, flagged out-of-distribution) of test images, for the gallery."""
    from cifar_xai.probes import predict

    probabilities = predict(run.model, images.astype(np.float32))
    if run.detector is None:
        return probabilities, np.zeros(len(images), bool)
    return probabilities, ~run.detector.in_distribution(run.detector.score_images(run.model, images))


def items(indices: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, flagged: np.ndarray,
          file_index: np.ndarray | None = None) -> list[dict]:
    """The gallery's thumbnails' data: one row of each argument per image; `index` in tfds' order,
    `file_index` the image's place in test_batch.bin (samples/README's numbers)."""
    return [{"index": int(i), "file_index": None if file_index is None else int(file_index[i]),
             "label": CLASS_NAMES[label], "predicted": CLASS_NAMES[p.argmax()],
             "confidence": float(p.max()), "correct": bool(p.argmax() == label), "flagged": bool(flag)}
            for i, label, p, flag in zip(indices, labels, probabilities, flagged, strict=True)]
