import numpy as np
import tensorflow as tf

from cifar_xai.data.pipeline import (
    Splits,
    alternating_flips,
    evaluation_dataset,
    num_examples,
    random_crop_flip,
    split_arrays,
    training_dataset,
)
from tests.conftest import IMAGES_PER_BATCH


def first_batches(data_dir, seed, count=3, batch_size=8):
    ds, _ = training_dataset(data_dir, "train", batch_size, seed)
    return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]


def test_training_batches_have_the_promised_shapes_dtypes_and_ranges(tiny_data_dir):
    ds, steps = training_dataset(tiny_data_dir, "train", 16, seed=0)
    assert steps == 5 * IMAGES_PER_BATCH // 16
    images, labels = next(iter(ds))
    assert images.shape == (16, 32, 32, 3) and images.dtype == tf.float32
    assert labels.shape == (16,) and labels.dtype == tf.int64
    assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
    assert set(labels.numpy()) <= set(range(10))


def test_augmentation_and_shuffle_are_reproducible_from_the_seed(tiny_data_dir):
    a, b, c = first_batches(tiny_data_dir, 3), first_batches(tiny_data_dir, 3), first_batches(tiny_data_dir, 4)
    for (xa, ya), (xb, yb) in zip(a, b, strict=False):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=False))


def test_every_epoch_draws_new_augmentations(tiny_data_dir):
    ds, steps = training_dataset(tiny_data_dir, "train", 40, seed=0, pad=4)
    batches = [x.numpy() for x, _ in ds.take(2 * steps)]
    epoch1, epoch2 = np.concatenate(batches[:steps]), np.concatenate(batches[steps:])
    assert not np.array_equal(np.sort(epoch1.reshape(len(epoch1), -1), axis=0),
                              np.sort(epoch2.reshape(len(epoch2), -1), axis=0))


def test_crop_is_a_window_of_the_reflect_padded_image_and_flip_mirrors():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 32, 32, 3)).astype(np.uint8)
    out = random_crop_flip(tf.constant(images), tf.constant([1, 2], tf.int64), pad=4).numpy()
    padded = np.pad(images, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect")
    shifted = 0
    for image, padded_image in zip(out, padded, strict=False):
        windows = [padded_image[r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
        matches = [np.array_equal(image, w) or np.array_equal(image, w[:, ::-1]) for w in windows]
        assert any(matches)
        shifted += not matches[4 * 9 + 4]
    assert shifted > 16  # most of 32 images moved (1 in 81 stays centred by chance)
    flipped = random_crop_flip(tf.constant(images), tf.constant([5, 6], tf.int64), pad=0).numpy()
    same = [np.array_equal(f, i) for f, i in zip(flipped, images, strict=False)]
    mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images, strict=False)]
    assert all(s or m for s, m in zip(same, mirrored, strict=False)) and 4 < sum(mirrored) < 28


def test_evaluation_pipeline_is_ordered_and_unaugmented(tiny_data_dir):
    images, labels = split_arrays(tiny_data_dir, "test")
    batches = list(evaluation_dataset(tiny_data_dir, "test", 10))
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in batches]), images.numpy().astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), labels.numpy())


def test_validation_split_holds_out_the_last_training_images(tiny_data_dir):
    splits = Splits.holding_out(20)
    total = num_examples("train", tiny_data_dir)
    assert num_examples(splits.train, tiny_data_dir) == total - 20
    assert num_examples(splits.validation, tiny_data_dir) == 20
    train_images, _ = split_arrays(tiny_data_dir, "train")
    held_out, _ = split_arrays(tiny_data_dir, splits.validation)
    np.testing.assert_array_equal(held_out.numpy(), train_images.numpy()[-20:])
    assert Splits.holding_out(0).validation is None


def test_alternating_flips_mirror_every_image_in_every_other_epoch():
    indices = tf.range(1000, dtype=tf.int64)
    first = alternating_flips(indices, tf.zeros_like(indices), seed=0).numpy()
    second = alternating_flips(indices, tf.ones_like(indices), seed=0).numpy()
    assert (first != second).all()
    assert 0.4 < first.mean() < 0.6  # a random starting side per image
    assert (alternating_flips(indices, tf.zeros_like(indices), seed=1).numpy() != first).any()


def test_two_consecutive_epochs_show_both_sides_of_every_image(tiny_data_dir):
    ds, steps = training_dataset(tiny_data_dir, "train", 40, seed=0, pad=0)
    batches = [x.numpy().astype(np.uint8) for x, _ in ds.take(2 * steps)]
    epoch1, epoch2 = np.concatenate(batches[:steps]), np.concatenate(batches[steps:])
    mirrored = {image[:, ::-1].tobytes() for image in epoch1}
    assert {image.tobytes() for image in epoch2} == mirrored
