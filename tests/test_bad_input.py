"""Bad input, measured: every odd file and every odd array gets a correct answer or a one-line
error, never a traceback and never a silent wrong answer. The cases are the ones users send:
broken files, unusual formats and modes, extreme sizes; arrays of the wrong rank, dtype or range."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cifar_xai.errors import UserError
from cifar_xai.explain.inputs import ExplanationError
from cifar_xai.images import load_image
from cifar_xai.models import build_model

RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.fromarray(RNG.integers(0, 256, (20, 20, 3), dtype=np.uint8)) for _ in range(3)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8
    return encoded(Image.fromarray(PHOTO), "JPEG", exif=exif)


def palette_with_transparency() -> bytes:
    image = Image.fromarray(PHOTO).quantize(8)
    image.info["transparency"] = 0
    return encoded(image, "PNG", transparency=0)


# name, file bytes, what must come back: "image" (a 32x32 RGB image) or the start of the error
FILES = [
    ("zero-byte.png", b"", "is not an image file"),
    ("truncated.png", encoded(Image.fromarray(PHOTO), "PNG")[:200], "could not be decoded"),
    ("truncated.jpg", encoded(Image.fromarray(PHOTO), "JPEG")[:300], "could not be decoded"),
    ("text.png", b"hello, I am not a picture", "is not an image file"),
    ("png-named.jpg", encoded(Image.fromarray(PHOTO), "PNG"), "image"),     # wrong extension: read by content
    ("cmyk.jpg", encoded(Image.fromarray(PHOTO).convert("CMYK"), "JPEG"), "image"),
    ("sixteen-bit.png", encoded(Image.fromarray(RNG.integers(0, 65536, (30, 40)).astype(np.uint16)), "PNG"), "image"),
    ("palette-transparent.png", palette_with_transparency(), "image"),
    ("photo.webp", encoded(Image.fromarray(PHOTO), "WEBP"), "image"),
    ("animated.gif", animated_gif(), "image"),
    ("one-pixel.png", encoded(Image.fromarray(PHOTO[:1, :1]), "PNG"), "image"),
    ("strip.png", encoded(Image.fromarray(RNG.integers(0, 256, (10, 10000, 3), dtype=np.uint8)), "PNG"), "image"),
    ("exif-rotated.jpg", exif_rotated(), "image"),
    ("grey-alpha.png", encoded(Image.fromarray(PHOTO).convert("LA"), "PNG"), "image"),
    ("float.tiff", encoded(Image.fromarray(RNG.uniform(0, 1, (20, 20)).astype(np.float32), "F"), "TIFF"), "image"),
]


@pytest.mark.parametrize(("name", "content", "expected"), FILES, ids=[f[0] for f in FILES])
def test_every_odd_file_gets_an_image_or_one_line(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    if expected == "image":
        image, notes = load_image(path)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert all("\n" not in note for note in notes)
    else:
        with pytest.raises(UserError) as caught:
            load_image(path)
        message = str(caught.value)
        assert expected in message and "\n" not in message and name in message


def test_a_missing_file_and_a_folder_are_named():
    for path in ("no/such/file.png", "."):
        with pytest.raises(UserError, match="does not exist"):
            load_image(path)


@pytest.fixture(scope="module")
def model():
    return build_model("interpretable_cnn", "small")


# what users pass to the Python API, and the start of the error it must get (None: a valid answer)
ARRAYS = [
    ("uint8 batch", RNG.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), None),
    ("one image", RNG.integers(0, 256, (32, 32, 3)).astype(np.float64), None),
    ("larger images", RNG.integers(0, 256, (1, 64, 48, 3), dtype=np.uint8), None),
    ("boolean mask", np.ones((1, 32, 32, 3), bool), None),
    ("rank 2", np.zeros((32, 32)), "expected RGB images"),
    ("rank 5", np.zeros((1, 1, 32, 32, 3)), "expected RGB images"),
    ("four channels", np.zeros((1, 32, 32, 4)), "expected RGB images"),
    ("empty batch", np.zeros((0, 32, 32, 3)), "expected RGB images"),
    ("no pixels", np.zeros((1, 0, 32, 3)), "have nothing to explain"),
    ("NaN", np.full((1, 32, 32, 3), np.nan), "images contain NaN or infinite"),
    ("inf", np.full((1, 32, 32, 3), np.inf), "images contain NaN or infinite"),
    ("huge values", np.full((1, 32, 32, 3), 1e30), "pixels must be raw values 0-255, got 1e+30"),
    ("negative values", np.full((1, 32, 32, 3), -1.0), "pixels must be raw values 0-255"),
    ("strings", np.full((1, 32, 32, 3), "a"), "pixels must be real numbers"),
    ("complex", np.zeros((1, 32, 32, 3), complex), "pixels must be real numbers"),
    ("ragged list", [[[0, 0, 0]], [[0, 0]]], "images must be an array"),
]


@pytest.mark.parametrize(("name", "array", "error"), ARRAYS, ids=[a[0] for a in ARRAYS])
def test_every_odd_array_gets_an_answer_or_one_line(model, name, array, error):
    from cifar_xai.explain.analysis import analyse
    from cifar_xai.explain.core import explain

    if error is None:
        maps = explain(model, array, "gradcam")
        found = analyse(model, array, ["cam"])
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
        assert all(np.isclose(a.probabilities.sum(), 1, atol=1e-4) for a in found)
        return
    for call in (lambda: explain(model, array, "gradcam"), lambda: analyse(model, array, ["cam"])):
        with pytest.raises(ExplanationError) as caught:
            call()
        assert error in str(caught.value) and "\n" not in str(caught.value)
