"""What keeps one server usable by several people at once: caches bounded by bytes, uploads
bounded in number and kept under ids nobody can guess, and long per-key jobs computed once.

Everything here is plain Python and thread-safe; nothing holds a lock while it computes."""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as JobTimeout

from cifar_xai.errors import NotFound, Pending


def size_of(value) -> int:
    """Roughly the bytes a cached answer holds: its strings (the data URLs) and arrays dominate."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(size_of(k) + size_of(v) for k, v in value.items()) + 64
    if isinstance(value, list | tuple):
        return sum(size_of(v) for v in value) + 16
    nbytes = getattr(value, "nbytes", None)
    return int(nbytes) if nbytes is not None else sys.getsizeof(value)


class LRUCache:
    """Key -> value, least recently used dropped first once the values' sizes pass `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value) -> None:
        size = size_of(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                self._bytes -= self._items.popitem(last=False)[1][1]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes


class Uploads:
    """Decoded uploads under random ids (128 bits: one client cannot read another's by guessing),
    the `max_count` most recently used kept."""

    def __init__(self, max_count: int):
        self.max_count = max_count
        self._items: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image) -> str:
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._items[key] = image
            while len(self._items) > self.max_count:
                self._items.popitem(last=False)
        return key

    def get(self, key: str):
        with self._lock:
            if key not in self._items:
                raise NotFound(f"no upload {key!r}; upload the image again (the {self.max_count} most recent "
                               "uploads are kept)")
            self._items.move_to_end(key)
            return self._items[key]


class Jobs:
    """Long computations (concept discovery, a run's channel statistics) run once per key, one at
    a time on a worker thread (two cores cannot run two at once any faster): a request waits up to
    `wait` seconds for its job, then is told it is still running (`Pending`); a later request for
    the same key gets the same job, never a second one. A failed job is forgotten, so asking again
    retries it."""

    def __init__(self, workers: int = 1):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cifar-xai-job")
        self._jobs: dict[Hashable, tuple[Future, float, str]] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._jobs

    def result(self, key: Hashable, compute: Callable[[], object], wait: float, what: str):
        with self._lock:
            if key not in self._jobs:
                self._jobs[key] = (self._pool.submit(compute), time.monotonic(), what)
            future, started, _ = self._jobs[key]
        try:
            return future.result(timeout=wait)
        except JobTimeout:
            queued = "" if future.running() else " (queued behind another job)"
            raise Pending(f"{what} is running{queued}, started {time.monotonic() - started:.0f} s ago; "
                          "this view asks again in a few seconds") from None
        except Exception:
            with self._lock:
                if self._jobs.get(key, (None,))[0] is future:
                    del self._jobs[key]
            raise
