"""Shared fixtures: a tiny CIFAR-10 written in the original binary format, and tfds prepared from it.

No test needs the real dataset or a network: the tiny batches go through the same preparation
path as the real ones, with their own MD5s in place of the published ones.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
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


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
    """A logdir with one small trained-model run, as trainers.fit leaves it, and a folder without a model."""
    import json

    import keras

    from cifar_xai.models import build_model
    from cifar_xai.report.frontier import FRONTIER_FILE, Point, to_json

    root = tmp_path_factory.mktemp("logdir")
    (root / "tiny").mkdir()
    keras.utils.set_random_seed(0)
    build_model("interpretable_cnn", "small").save(root / "tiny" / "model.keras")
    (root / "tiny" / "config.json").write_text(json.dumps({"model": "interpretable_cnn", "epochs": 1, "seed": 0}))
    # The frontier of recipes the run was chosen from, as benchmarks.frontier --json writes it.
    points = [Point("tiny-recipe", 0.91, 0.84, 0.045, "validation", 2000, 0.955),
              Point("other", 0.90, 0.85, 0.05, "validation", 2000)]
    (root / "tiny" / FRONTIER_FILE).write_text(json.dumps(to_json(points, "tiny-recipe", "best clean + mCA")))
    (root / "not-a-run").mkdir()
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def studies_dir(tmp_path_factory) -> Path:
    """The folder the tab's TensorBoard reads studies from (tests create studies in it)."""
    return tmp_path_factory.mktemp("studies")


@pytest.fixture(scope="session")
def tensorboard(logdir, tiny_data_dir, studies_dir):
    """One TensorBoard, with the Explanations tab, for every browser test of the session."""
    port = free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "tensorboard"), "--logdir", os.fspath(logdir),
               "--port", str(port), "--host", "127.0.0.1", "--cifar_xai_data_dir", os.fspath(tiny_data_dir),
               "--cifar_xai_studies", os.fspath(studies_dir)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/data/plugins_listing", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for every browser test of the session (Debian's, driven by Playwright)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        yield launched
        launched.close()


def watched(page) -> tuple[list, list]:
    """The page's console errors and failed requests, collected as it runs."""
    errors, failed = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error"
            and not message.location.get("url", "").endswith("favicon.ico") else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    return errors, failed
