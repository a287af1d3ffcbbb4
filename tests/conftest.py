"""Shared fixtures: a tiny CIFAR-10 written in the original binary format, and tfds prepared from it.

No test needs the real dataset or a network: the tiny batches go through the same preparation
path as the real ones, with their own MD5s in place of the published ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cifar_xai.data.sources import TEST_FILE, TRAIN_FILES, file_md5, write_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "datasets" / "cifar-10-batches-bin"
IMAGES_PER_BATCH = 24


def make_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Noise images whose mean colour depends on the class, so a network can learn them."""
    palette = np.linspace(30, 225, 10)
    base = np.stack([palette[labels], palette[::-1][labels], palette[(labels * 3) % 10]], axis=-1)
    noise = rng.normal(0, 25, size=(len(labels), 32, 32, 3))
    return np.clip(base[:, None, None, :] + noise, 0, 255).astype(np.uint8)


def write_tiny_cifar(folder: Path, seed: int = 0, per_batch: int = IMAGES_PER_BATCH) -> dict[str, str]:
    """Write six small batch files; return their MD5s (the tiny data's own 'published' sums)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*TRAIN_FILES, TEST_FILE):
        labels = np.arange(per_batch) % 10
        rng.shuffle(labels)
        write_batch(folder / name, make_images(rng, labels), labels)
    return {name: file_md5(folder / name) for name in (*TRAIN_FILES, TEST_FILE)}


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bin") / "cifar-10-batches-bin"
    return folder, write_tiny_cifar(folder)


@pytest.fixture(scope="session")
def tiny_data_dir(tiny_cifar, tmp_path_factory) -> Path:
    """A tfds data dir holding `cifar10` prepared from the tiny batches."""
    from cifar_xai.data.tfds_cifar10 import prepare_from_binaries

    folder, md5s = tiny_cifar
    data_dir = tmp_path_factory.mktemp("tfds")
    prepare_from_binaries(folder, data_dir, expected_md5=md5s)
    return data_dir


def run_module(module: str, *args: str, timeout: float = 600, env: dict | None = None, **kwargs):
    """Run `python -m module args` from the project root, as a user would (`env`: variables to add)."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=kwargs.pop("cwd", ROOT), env=env,
        capture_output=True, text=True, timeout=timeout, **kwargs,
    )
