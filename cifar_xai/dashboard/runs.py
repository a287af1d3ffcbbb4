"""The runs the tab shows, each loaded once under its own lock.

A slow or broken run never holds up another's routes: the store's own lock only guards its
dictionaries, never a load or a walk of the logdir. A run that fails to load is remembered with
its one-line reason until one of its files changes; an unknown name is answered from a listing
re-read at most every `LISTING_SECONDS`."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifar_xai.errors import NotFound, UserError
from cifar_xai.model_io import SHIPPED_MODEL
from cifar_xai.models import has_gap_head, is_prototype_model

# How stale the list of runs may be: a run trained while the tab is open appears within this.
LISTING_SECONDS = 5.0
SHIPPED_PREFIX = "shipped/"


def find_runs(logdir: Path, shipped: Path = SHIPPED_MODEL.parent) -> dict[str, Path]:
    """Run name -> model file: every run folder under the logdir that holds a trained model
    (model.keras), and the shipped models as `shipped/<name>`, or `shipped/<name> (project)` when a
    logdir run already has that name: a logdir run is never hidden by a shipped model."""
    found = {}
    if logdir.is_dir():
        for model in sorted(logdir.rglob("model.keras")):
            if not any(part.startswith(".") for part in model.relative_to(logdir).parts):
                found[os.fspath(model.parent.relative_to(logdir)) or "."] = model
    for model in sorted(shipped.glob("*.keras")):
        name = f"{SHIPPED_PREFIX}{model.stem}"
        found[name if name not in found else f"{name} (project)"] = model
    return found


@dataclass
class Run:
    """One model, loaded once, with its test-set predictions and OOD scores once computed."""

    name: str
    path: Path
    model: object
    detector: object
    calibrated: bool
    probabilities: np.ndarray = None
    labels: np.ndarray = None
    flagged: np.ndarray = None
    warming: bool = False   # the whole test split is being predicted in the background
    predicted: threading.Event = field(default_factory=threading.Event)   # ... and is done
    # Guards the run's predictions: predicting the test split takes seconds, and must not hold up
    # other runs' routes.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kind(self) -> str:
        return ("prototype_cnn" if is_prototype_model(self.model) else
                "interpretable_cnn" if has_gap_head(self.model) else "standard_cnn")


def _signature(path: Path) -> tuple:
    """What a failed load is remembered against: the run's files' sizes and times."""
    folder = path.parent
    names = (path.name, "metrics.json", "config.json", path.with_suffix(".ood.npz").name)
    found = []
    for candidate in [folder / n for n in names] + [path.with_suffix(".run") / "metrics.json"]:
        try:
            stat = candidate.stat()
            found.append((candidate.name, stat.st_mtime_ns, stat.st_size))
        except OSError:
            found.append((candidate.name, None, None))
    return tuple(found)


class RunStore:
    def __init__(self, logdir: Path, shipped: Path):
        self.logdir, self.shipped = logdir, shipped
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._failed: dict[str, tuple[tuple, str]] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._listing: tuple[float, dict[str, Path]] = (-float("inf"), {})

    def paths(self, fresh: bool = False) -> dict[str, Path]:
        """The runs' model files, re-listed when older than LISTING_SECONDS (or `fresh`)."""
        read_at, listing = self._listing
        if fresh or time.monotonic() - read_at > LISTING_SECONDS:
            listing = find_runs(self.logdir, self.shipped)   # outside the lock: a walk can be slow
            self._listing = (time.monotonic(), listing)
        return listing

    def get(self, name: str) -> Run:
        with self._lock:
            if name in self._runs:
                return self._runs[name]
        paths = self.paths()
        if name not in paths:
            raise NotFound(f"unknown run {name!r}; valid: {', '.join(paths) or 'none (train one)'}")
        with self._lock:
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:   # one load per run at a time; other runs' requests go on meanwhile
            with self._lock:
                if name in self._runs:
                    return self._runs[name]
                failed = self._failed.get(name)
            signature = _signature(paths[name])
            if failed and failed[0] == signature:
                raise UserError(failed[1])
            try:
                run = self._load(name, paths[name])
            except UserError as err:
                with self._lock:
                    self._failed[name] = (signature, str(err))
                raise
            with self._lock:
                self._runs[name] = run
                self._failed.pop(name, None)
            return run

    @staticmethod
    def _load(name: str, path: Path) -> Run:
        from cifar_xai.model_io import load_model, run_metrics
        from cifar_xai.uncertainty.calibration import confidences_calibrated
        from cifar_xai.uncertainty.detector import detector_beside

        model = load_model(path)
        detector, _ = detector_beside(model, path)
        metrics = run_metrics(path)
        try:
            calibrated = confidences_calibrated(model, metrics)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise UserError(f"run {name}: its metrics.json is not a run record trainers.fit wrote "
                            f"({type(err).__name__}: {err})") from None
        return Run(name, path, model, detector, calibrated)
