"""tf.data pipelines over tfds' `cifar10`: the one path every image takes into training or evaluation.

Images stay raw pixels (float32 in 0..255): normalisation lives inside the model, so a trained
model takes the same input as a user's PNG or a serving client.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from cifar_xai.data.augment import corruption_augment as corrupt_batch
from cifar_xai.data.augment import mix_augment as mix_batch
from cifar_xai.data.marks import planted_corners, stamp
from cifar_xai.data.tfds_cifar10 import DATASET, require_prepared
from cifar_xai.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class Splits:
    """tfds split expressions; the validation images are the last `validation` training images."""

    train: str
    validation: str | None
    test: str = "test"

    @classmethod
    def holding_out(cls, validation: int) -> Splits:
        if validation <= 0:
            return cls(train="train", validation=None)
        return cls(train=f"train[:-{validation}]", validation=f"train[-{validation}:]")

    @classmethod
    def checked(cls, validation: int, data_dir: str | os.PathLike | None) -> Splits:
        """`holding_out`, refusing a validation split that leaves nothing to train on."""
        available = num_examples("train", data_dir)
        if validation >= available:
            raise UserError(f"--validation {validation} holds out all {available:,} training images; "
                            "pass a smaller --validation (0: none)")
        return cls.holding_out(validation)


def num_examples(split: str, data_dir: str | os.PathLike | None, classes: Sequence[int] | None = None) -> int:
    """How many images `split` holds (of `classes` only, when given)."""
    import tensorflow_datasets as tfds  # here: tfds takes seconds to import; only reading data needs it

    if classes is not None:
        return int(load_split(split, data_dir, classes).reduce(np.int64(0), lambda count, _: count + 1))
    builder = tfds.builder(DATASET, data_dir=None if data_dir is None else os.fspath(data_dir))
    return builder.info.splits[split].num_examples


def load_split(split: str, data_dir: str | os.PathLike | None, classes: Sequence[int] | None = None) -> tf.data.Dataset:
    """(uint8 image [32, 32, 3], int64 label) pairs, decoded once and then served from memory.

    With `classes` (CIFAR-10 class ids), only their images, labelled by their position in
    `classes`: the open-set protocol trains on 6 classes and keeps the 4 others unseen.
    """
    import tensorflow_datasets as tfds  # here: tfds takes seconds to import; only reading data needs it

    require_prepared(data_dir)
    ds = tfds.load(
        DATASET,
        split=split,
        data_dir=None if data_dir is None else os.fspath(data_dir),
        as_supervised=True,
        download=False,
        shuffle_files=False,
    )
    if classes is not None:
        relabel = np.full(10, -1, np.int64)
        relabel[list(classes)] = np.arange(len(classes))
        ds = ds.filter(lambda image, label: tf.gather(relabel, label) >= 0).map(
            lambda image, label: (image, tf.gather(relabel, label)))
    # The whole of CIFAR-10 is 180 MB as uint8: decoding the PNGs once and caching them keeps
    # the two CPU cores for the network instead of the decoder.
    return ds.cache()


def random_crop_flip(images: tf.Tensor, seed: tf.Tensor, pad: int, flips: tf.Tensor | None = None) -> tf.Tensor:
    """Batched augmentation: translate by up to `pad` px (reflect padding) and flip half the images
    (or those where `flips` [batch] is true).

    Works on a whole batch with two gathers instead of one crop per image, so it costs a small
    fraction of a training step. `seed` is a stateless seed [2]: the same seed, the same batch out.
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    batch, size = tf.shape(images)[0], images.shape[1]
    if pad > 0:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        offsets = tf.random.stateless_uniform([batch, 2], crop_seed, 0, 2 * pad + 1, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(size)[None, :]
        cols = offsets[:, 1:] + tf.range(size)[None, :]
        images = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    if flips is None:
        flips = tf.random.stateless_uniform([batch], flip_seed) < 0.5
    return tf.where(flips[:, None, None, None], tf.reverse(images, axis=[2]), images)


def alternating_flips(indices: tf.Tensor, epochs: tf.Tensor, seed: int) -> tf.Tensor:
    """airbench's alternating flip: each image is mirrored in every other epoch, starting from a
    random (seeded) side, so any two consecutive epochs show both sides of every image, which
    random flips only do half the time. `indices` and `epochs` are int64 [batch]."""
    # Knuth's multiplicative hash of (index, seed): a fixed random starting side per image.
    mixed = (indices * 2654435761 + tf.cast(seed, tf.int64) * 40503) % (1 << 32)
    return tf.math.floormod(mixed // (1 << 16) + epochs, 2) == 1


def training_dataset(
    data_dir: str | os.PathLike | None,
    split: str,
    batch_size: int,
    seed: int,
    pad: int = 4,
    corruption_augment: float = 0.0,
    noise_max: float = 0.1,
    classes: Sequence[int] | None = None,
    plant: tuple[int, float] | None = None,
    mix_augment: float = 0.0,
) -> tuple[tf.data.Dataset, int]:
    """An endless, shuffled, augmented stream of (float32 images, labels) and the steps per epoch.

    Endless so that every epoch draws new translations: batch `k` of the run is translated with
    the stateless seed (seed, k), which makes a run reproducible from its seed alone. Flips
    alternate per image from epoch to epoch (`alternating_flips`). A `corruption_augment` share
    of the images also gets noise, blur or lowered contrast, a `mix_augment` share AugMix's mix
    (`cifar_xai.data.augment`). `plant`
    (class, share) stamps the planted mark on that share of the class's images (`cifar_xai.data.marks`).
    """
    count = num_examples(split, data_dir, classes)
    if count < batch_size:
        raise UserError(f"batch size {batch_size} is larger than the {count} training images; pass a smaller "
                        "--batch-size")

    def augment(step, batch):
        positions, (indices, (images, labels)) = batch
        flips = alternating_flips(indices, positions // count, seed)
        step_seed = tf.stack([tf.cast(seed, tf.int64), step])
        if plant is not None:  # before the crop and flip, which then move it as they move the image
            images = stamp(images, planted_corners(indices, labels, *plant, seed))
        images = tf.cast(random_crop_flip(images, step_seed, pad, flips), tf.float32)
        # Its own stream, so adding it leaves the crops and flips of every batch as they were.
        images = corrupt_batch(images, step_seed + [0, 1 << 40], corruption_augment, noise_max)
        images = mix_batch(images, step_seed + [0, 1 << 41], mix_augment)
        return images, labels

    ds = (
        load_split(split, data_dir, classes)
        .enumerate()  # each image's index: its flip parity
        .shuffle(count, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .enumerate()  # position in the stream: position // count is the image's epoch
        .batch(batch_size, drop_remainder=True)
        .enumerate()  # the step: the seed of its translations
        .map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
        .prefetch(AUTOTUNE)
    )
    return ds, count // batch_size


def evaluation_dataset(
    data_dir: str | os.PathLike | None, split: str, batch_size: int, classes: Sequence[int] | None = None
) -> tf.data.Dataset:
    """(float32 images, labels) batches in the split's fixed order, no augmentation."""
    return (
        load_split(split, data_dir, classes)
        .batch(batch_size)
        .map(lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def file_indices(data_dir: str | os.PathLike | None, split: str) -> np.ndarray:
    """Each image's place in the original CIFAR-10 batch files, in the split's (tfds') order: tfds
    stores it as `id` ("test_09933": image 9,933 of test_batch.bin; "train_16399": of the five
    data batches in turn). The gallery numbers images in tfds' order and shows this beside it."""
    import tensorflow_datasets as tfds

    require_prepared(data_dir)
    ds = tfds.load(DATASET, split=split, data_dir=None if data_dir is None else os.fspath(data_dir),
                   download=False, shuffle_files=False).map(lambda example: example["id"])
    ids = next(iter(ds.batch(1 << 20))).numpy()
    return np.array([int(item.rsplit(b"_", 1)[1]) for item in ids], np.int64)


def split_arrays(
    data_dir: str | os.PathLike | None, split: str, limit: int | None = None, classes: Sequence[int] | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """A whole split (or its first `limit` images) as (uint8 images [N, 32, 32, 3], int64 labels [N])."""
    ds = load_split(split, data_dir, classes)
    if limit is not None:
        ds = ds.take(limit)
    images, labels = next(iter(ds.batch(1 << 20)))
    return images, labels
