"""What the dashboard's routes answer, as plain data: one object over the tab's views, each in its
own module (gallery, detail, layers, measurements) on a shared `Context` (runs, test images, bounded
caches, uploads, long jobs). The plugin only parses requests and calls this."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# Imported here, once, in the thread that builds the dashboard: tfds and tf-keras-vis load their
# own dependencies lazily, and two request threads importing them at once left a half-initialised
# LazyModule behind ("'LazyModule' object is not callable" on every later call).
import tensorflow_datasets  # noqa: F401, I001

import cifar_xai.explain.features  # noqa: F401
from cifar_xai import CLASS_NAMES
from cifar_xai.dashboard.context import Context
from cifar_xai.dashboard.detail import Detail
from cifar_xai.dashboard.gallery import Gallery
from cifar_xai.dashboard.layers import Layers
from cifar_xai.dashboard.measurements import Measurements
from cifar_xai.dashboard.runs import Run
from cifar_xai.explain.methods import METHODS
from cifar_xai.explain.registry import applicable_methods
from cifar_xai.model_io import SHIPPED_MODEL


class Dashboard(Context):
    def __init__(self, logdir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                 shipped: Path = SHIPPED_MODEL.parent):
        super().__init__(logdir, data_dir, shipped)
        self._gallery, self._detail = Gallery(self), Detail(self)
        self._measurements, self._layers = Measurements(self), Layers(self)

    def runs(self) -> list[dict]:
        """The runs by name only: a model's place on the server's disk is not the page's business."""
        return [{"name": name} for name in self.store.paths(fresh=True)]

    def methods(self, name: str) -> dict:
        run = self.run(name)
        usable = applicable_methods(run.model, list(METHODS))
        return {"kind": run.kind, "calibrated": run.calibrated, "has_detector": run.detector is not None,
                "methods": [{"name": m, "title": METHODS[m].title, "applicable": m in usable} for m in METHODS],
                "classes": list(CLASS_NAMES)}

    def gallery(self, name: str, filter_: str = "all", class_name: str | None = None, page: int = 0,
                predicted_name: str | None = None) -> dict:
        return self._gallery.page(name, filter_, class_name, page, predicted_name)

    def confusion(self, name: str) -> dict:
        return self._gallery.confusion(name)

    def _predictions(self, run: Run) -> Run:
        return self._gallery.predictions(run)

    def image_png(self, index: int) -> bytes:
        return self._gallery.image_png(index)

    def detail(self, name: str, source: str, method: str = "cam", class_name: str | None = None) -> dict:
        return self._detail.detail(name, source, method, class_name)

    def concepts(self, name: str, source: str, class_name: str | None = None, **kwargs) -> dict:
        return self._detail.concepts(name, source, class_name, **kwargs)

    def upload(self, data: bytes, filename: str = "upload") -> str:
        return self._detail.upload(data, filename)

    def measurements(self, names: Sequence[str]) -> dict:
        return self._measurements.measurements(names)

    def layers(self, name: str, source: str) -> dict:
        return self._layers.layers(name, source)

    def channel(self, name: str, layer: str, channel: int, source: str | None = None,
                class_name: str | None = None) -> dict:
        return self._layers.channel(name, layer, channel, source, class_name)

    def channel_image(self, name: str, layer: str, channel: int) -> dict:
        return self._layers.channel_image(name, layer, channel)

    def class_images(self, name: str) -> dict:
        return self._layers.class_images(name)
