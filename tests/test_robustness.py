"""The corruption benchmark's corruptions: deterministic, shape- and dtype-preserving, ordered by
severity, refusing bad names and severities in one line; and the benchmark's bookkeeping."""

import numpy as np
import pytest

from cifar_xai.errors import UserError
from cifar_xai.robustness import APPROXIMATED, CORRUPTIONS, SEVERITIES, corrupt
from cifar_xai.robustness.benchmark import corruption_benchmark, format_table
from tests.conftest import ROOT

# The shipped sample images (one real CIFAR-10 test image per class), several times over so the
# random corruptions draw different noise for each copy.
SAMPLES = sorted((ROOT / "samples").glob("*.png"))

# CIFAR-10-C's published schedules trade one component against another for these two, so a
# larger severity is not further away in pixels: glass blur's severity 3 (sigma 0.4, one pass
# of pixel swaps) against 4 (sigma 0.25, two passes); elastic_transform's affine part shrinks
# (2.6 -> 1.0 px) while the elastic part grows. Their severities are checked to differ instead.
NOT_ORDERED_IN_PIXELS = ("glass_blur", "elastic_transform")
# frost weighs the image down (1 -> 0.75) while the frost layer grows: the image's share, not
# the pixel distance, is what grows; measured as 1 - the correlation with the clean image.
ORDERED_BY_CORRELATION = ("frost",)


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in SAMPLES] * 4)


def pixel_distance(a, b):
    return float(np.abs(a.astype(np.float64) - b).mean())


def decorrelation(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return float(1 - ((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))).mean())


def test_there_are_the_fifteen_cifar10c_corruptions():
    assert len(CORRUPTIONS) == 15
    assert set(APPROXIMATED) <= set(CORRUPTIONS)
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_deterministic_keeps_shape_and_dtype_and_changes_the_image(images, name):
    before = images.copy()
    first = corrupt(images, name, 3, seed=7)
    assert first.shape == images.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, corrupt(images, name, 3, seed=7))
    assert pixel_distance(first, images) > 0.5
    # Another seed draws other noise, where the corruption is random at all.
    if name not in ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"):
        assert not np.array_equal(first, corrupt(images, name, 3, seed=8))
    # The input is never modified in place.
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n not in NOT_ORDERED_IN_PIXELS])
def test_a_larger_severity_moves_the_image_further(images, name):
    measure = decorrelation if name in ORDERED_BY_CORRELATION else pixel_distance
    distances = [measure(corrupt(images, name, severity), images) for severity in SEVERITIES]
    # Non-decreasing, allowing 5 % for ties in the published schedule (motion blur's radius 6
    # and 8 at sigma 2 weigh the same first 6 px; the angles are random), and the last clearly beyond the first.
    assert all(b >= a * 0.95 for a, b in zip(distances, distances[1:], strict=False)), distances
    assert distances[-1] > 1.5 * distances[0], distances


@pytest.mark.parametrize("name", NOT_ORDERED_IN_PIXELS)
def test_severities_of_the_traded_schedules_all_differ(images, name):
    outputs = [corrupt(images, name, severity) for severity in SEVERITIES]
    for i, a in enumerate(outputs):
        for b in outputs[i + 1:]:
            assert pixel_distance(a, b) > 0.5


def test_gaussian_noise_has_the_published_standard_deviation():
    flat = np.full((64, 32, 32, 3), 128, np.uint8)
    for severity, sigma in zip(SEVERITIES, (0.04, 0.06, 0.08, 0.09, 0.10), strict=True):
        measured = (corrupt(flat, "gaussian_noise", severity).astype(np.float64) - 128).std() / 255
        assert measured == pytest.approx(sigma, rel=0.03)


@pytest.mark.parametrize(("name", "severity", "message"), [
    ("gaussian_noise", 0, "severity 0 is not one of 1, 2, 3, 4, 5"),
    ("gaussian_noise", 6, "severity 6 is not one of"),
    ("gaussian_noise", 2.5, "severity 2.5 is not one of"),
    ("gaussian_noise", True, "severity True is not one of"),
    ("gausian_noise", 1, "unknown corruption 'gausian_noise'; valid: gaussian_noise,"),
])
def test_bad_name_or_severity_is_a_one_line_error(images, name, severity, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as error:
        corrupt(images, name, severity)
    assert "\n" not in str(error.value)


def test_non_uint8_or_non_rgb_images_are_refused(images):
    with pytest.raises(UserError, match="uint8 RGB images"):
        corrupt(images.astype(np.float32), "contrast", 1)
    with pytest.raises(UserError, match="uint8 RGB images"):
        corrupt(images[..., :1], "contrast", 1)


def test_benchmark_scores_every_set_and_means_them(images):
    import keras

    # A model that always answers the mean brightness's class: its accuracy is computable by hand.
    inputs = keras.Input((32, 32, 3))
    brightness = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(10, kernel_initializer="ones", bias_initializer="zeros")(brightness)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    labels = np.zeros(len(images), np.int64)  # Dense with equal weights: ties -> argmax 0, always right
    result = corruption_benchmark(model, images, labels, ["contrast", "jpeg_compression"], severities=(1, 5))
    assert set(result["corruptions"]) == {"contrast", "jpeg_compression"}
    assert set(result["corruptions"]["contrast"]) == {"1", "5"}
    assert result["clean"]["accuracy"] == 1.0 and result["mca"] == 1.0
    # Uniform probabilities: confidence 0.1 against accuracy 1.
    assert result["clean"]["ece"] == pytest.approx(0.9, abs=1e-5)
    assert result["num_images"] == len(images)
    table = format_table(result)
    assert table[2].startswith("| contrast | 100.00% | 100.00% | 100.00% |") and "clean" in table[-1]


def test_benchmark_runs_on_the_fully_connected_baseline_too(images):
    from cifar_xai.models import build_model

    result = corruption_benchmark(build_model("standard_cnn", "small"), images, np.arange(len(images)) % 10,
                                  ["gaussian_noise"], severities=(2,))
    assert 0 <= result["corruptions"]["gaussian_noise"]["2"]["accuracy"] <= 1
    assert sum(result["calibration"]["corrupted"]["bin_counts"]) == len(images)


def test_a_validation_split_larger_than_the_data_is_a_one_line_error(tiny_data_dir, capsys):
    from benchmarks.robustness import main
    from cifar_xai.errors import run_cli

    status = run_cli(main, ["--split", "validation", "--validation", "5000", "--data-dir", str(tiny_data_dir)])
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --validation 5000 holds out all 120 training images; pass a smaller --validation (0: none)"]
