from pathlib import Path

import numpy as np
import pytest

from cifar_xai.data.sources import (
    PUBLISHED_MD5,
    RECORD_BYTES,
    read_batch,
    verify_batches,
    write_batch,
)
from cifar_xai.errors import UserError
from tests.conftest import SHARED_CIFAR, write_tiny_cifar


def test_batch_round_trip_keeps_every_byte(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    path = tmp_path / "b.bin"
    write_batch(path, images, labels)
    assert path.stat().st_size == 7 * RECORD_BYTES
    images_back, labels_back = read_batch(path)
    np.testing.assert_array_equal(images_back, images)
    np.testing.assert_array_equal(labels_back, labels)


def test_record_layout_is_label_then_rgb_planes(tmp_path):
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 0, 1] = (10, 20, 30)  # row 0, column 1
    write_batch(tmp_path / "b.bin", image, np.array([7]))
    raw = (tmp_path / "b.bin").read_bytes()
    assert raw[0] == 7
    assert (raw[1 + 1], raw[1 + 1024 + 1], raw[1 + 2048 + 1]) == (10, 20, 30)


def test_verify_accepts_matching_md5s(tmp_path):
    md5s = write_tiny_cifar(tmp_path)
    assert verify_batches(tmp_path, md5s) == tmp_path


def test_verify_refuses_a_changed_byte_naming_the_file(tmp_path):
    md5s = write_tiny_cifar(tmp_path)
    path = tmp_path / "data_batch_3.bin"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"data_batch_3\.bin has MD5 .* expected"):
        verify_batches(tmp_path, md5s)


def test_verify_refuses_missing_and_truncated_files(tmp_path):
    md5s = write_tiny_cifar(tmp_path)
    (tmp_path / "test_batch.bin").write_bytes((tmp_path / "test_batch.bin").read_bytes()[:-5])
    with pytest.raises(UserError, match=r"test_batch\.bin is \d+ bytes, not a whole number"):
        verify_batches(tmp_path, md5s)
    (tmp_path / "data_batch_1.bin").unlink()
    with pytest.raises(UserError, match=r"data_batch_1\.bin is missing; .*--cifar-bin"):
        verify_batches(tmp_path, md5s)
    with pytest.raises(UserError, match="does not exist"):
        verify_batches(tmp_path / "nowhere", md5s)


def test_tiny_data_fails_the_published_md5s(tmp_path):
    write_tiny_cifar(tmp_path)
    with pytest.raises(UserError, match="expected 5dd7e06a14cb22eb9f671a540d1b7c25"):
        verify_batches(tmp_path)


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason="the real CIFAR-10 batches are not beside the repo")
def test_real_batches_match_the_published_md5s():
    assert verify_batches(SHARED_CIFAR) == Path(SHARED_CIFAR)
    images, labels = read_batch(SHARED_CIFAR / "test_batch.bin")
    assert images.shape == (10000, 32, 32, 3) and np.bincount(labels).tolist() == [1000] * 10
    assert set(PUBLISHED_MD5) == {p.name for p in SHARED_CIFAR.glob("*.bin")}
