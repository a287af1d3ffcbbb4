"""What every view of the tab shares: the runs, the test images, the bounded caches, the uploads
and the long-job queue, and how an image named by a request (`test:<i>`, `upload:<id>`) is found."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.dashboard.limits import Jobs, LRUCache, Uploads
from cifar_xai.dashboard.runs import Run, RunStore
from cifar_xai.errors import NotFound, UserError
from cifar_xai.model_io import SHIPPED_MODEL

# Answers kept for repeated requests (detail views, maps, concept bases...), least recently used
# dropped first: ~6 KB a detail view, so ~10,000 of them.
CACHE_BYTES = 64 * 2**20
# Decoded uploads kept (32x32x3 bytes each): the most recent this many.
KEPT_UPLOADS = 512
# How long a request waits for a long job (concept discovery, channel statistics, a visualisation)
# before being told it is running (202; the page asks again).
JOB_WAIT = 20.0


class Context:
    def __init__(self, logdir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                 shipped: Path = SHIPPED_MODEL.parent):
        self.logdir, self.data_dir, self.shipped = Path(logdir), data_dir, shipped
        self.store = RunStore(self.logdir, shipped)
        self.cache = LRUCache(CACHE_BYTES)
        self.uploads = Uploads(KEPT_UPLOADS)
        self.jobs = Jobs()
        self._images = None
        self.file_index: np.ndarray | None = None   # test image i is test_batch.bin's file_index[i]
        self._images_lock = threading.Lock()

    def run(self, name: str) -> Run:
        return self.store.get(name)

    def test_images(self) -> tuple[np.ndarray, np.ndarray]:
        """The test split as uint8 images and labels, in tfds' order (the gallery's indices)."""
        with self._images_lock:
            if self._images is None:
                from cifar_xai.data.pipeline import file_indices, split_arrays

                images, labels = split_arrays(self.data_dir, "test")
                self._images = (images.numpy().astype(np.uint8), labels.numpy())
                self.file_index = file_indices(self.data_dir, "test")
            return self._images

    def image(self, source: str) -> tuple[np.ndarray, str | None]:
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
            return self.uploads.get(key), None
        raise UserError(f"unknown image source {source!r}; use test:<index> or upload:<id>")

    def cached(self, key: tuple, compute):
        """`compute()`'s value, computed once per key while the cache keeps it."""
        found = self.cache.get(key)
        if found is None:
            found = compute()
            self.cache.put(key, found)
        return found
