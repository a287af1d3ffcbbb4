"""Reading a user's image file into what the model takes: uint8 RGB 32x32, with notes on what changed.

The decoder is built to be fed anything by anyone (the Explanations tab decodes uploads from
several people at once): only the formats below are opened, a file's decoded size is checked from
its header before a pixel is decoded, JPEGs are decoded already shrunk, every image is reduced
in its own mode before any conversion (never a full-size float copy), and at most
`MAX_DECODES` decodes run at once. Nothing here changes process-wide state.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cifar_xai import IMAGE_SIZE
from cifar_xai.errors import Busy, UserError

MODEL_SIZE = IMAGE_SIZE
# The formats the project documents (README, docs/dashboard.md); Pillow's others (EPS, which runs
# Ghostscript, PSD, ICNS, ...) are never opened. Pillow's JPEG opener also reads MPO, how many
# phones store a JPEG.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
FORMAT_NAMES = "PNG, JPEG, WebP, GIF, BMP or TIFF"
# Pixels decoded at full size (after a JPEG's shrink-on-decode): a 24-megapixel photo fits; at
# most 4 bytes each, one decode then needs at most ~2 x 100 MB on top of the process.
MAX_PIXELS = 25_000_000
# Decodes at once; others wait up to DECODE_WAIT seconds, then are told the server is busy.
MAX_DECODES = 2
DECODE_WAIT = 10.0
_DECODES = threading.BoundedSemaphore(MAX_DECODES)
# Reduced (box-averaged, in the file's own mode) until the shorter side is at most this many times
# the model's size, before any mode conversion; the final resize then averages what is left.
REDUCED_SIDE = 4

EXIF_ORIENTATION = 0x0112
# Bytes that name a format Pillow could read but we do not open, for the refusal's message.
_SIGNATURES = ((b"%!PS", "PostScript / EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"),
               (b"8BPS", "Photoshop (PSD)"), (b"icns", "ICNS"), (b"\x00\x00\x01\x00", "ICO"),
               (b"<svg", "SVG"), (b"<?xml", "XML / SVG"), (b"\x0a\x05\x01", "PCX"),
               (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
               (b"gimp xcf", "GIMP (XCF)"), (b"SIMPLE  =", "FITS"), (b"P1", "PNM"), (b"P2", "PNM"), (b"P3", "PNM"),
               (b"P4", "PNM"), (b"P5", "PNM"), (b"P6", "PNM"))

# Pillow warns (DecompressionBombWarning) on opening a header of over ~89 M pixels, before our own
# smaller cap refuses it in one line; silenced once at import, never toggled per call (a
# catch_warnings() block is not thread-safe in a threaded server).
warnings.filterwarnings("ignore", message="Image size .* exceeds limit", module="PIL")


def load_image(path: str | os.PathLike, size: int = MODEL_SIZE) -> tuple[np.ndarray, list[str]]:
    """The image file at `path` as uint8 [size, size, 3] and a list of notes (mode converted,
    resized, ...); see `decode_image`. Problems raise `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    with path.open("rb") as file:
        return decode_image(file, os.fspath(path), size)


def decode_image(file: BinaryIO | bytes, name: str, size: int = MODEL_SIZE) -> tuple[np.ndarray, list[str]]:
    """An image file's content as uint8 [size, size, 3] and notes; `name` is what messages call it.

    PNG, JPEG, WebP, GIF, BMP and TIFF of any size and mode up to `MAX_PIXELS`: 16-bit images are
    scaled to 8 bits, transparency is composited on black, grayscale is repeated on three
    channels, EXIF orientation is applied. Problems raise `UserError` (`Busy` when `MAX_DECODES`
    decodes are already running)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(file, bytes | bytearray):
        file = io.BytesIO(file)
    if not _DECODES.acquire(timeout=DECODE_WAIT):
        raise Busy(f"the server is decoding {MAX_DECODES} other images; try {name} again in a few seconds")
    try:
        with Image.open(file, formats=FORMATS) as image:
            return _decoded(image, name, size)
    except UnidentifiedImageError:
        found = _format_of(file)
        if found:
            raise UserError(f"{name} is a {found} file, not an image file we read ({FORMAT_NAMES}); "
                            "convert it to one of them") from None
        raise UserError(f"{name} is not an image file we read ({FORMAT_NAMES}); convert it to one of them") from None
    except Image.DecompressionBombError:
        raise UserError(f"{name} is too large to decode safely (over {MAX_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{name} could not be decoded ({reason}); is the file truncated or corrupt?") from None
    finally:
        _DECODES.release()


def _format_of(file: BinaryIO) -> str | None:
    """The name of a format we do not open, from the file's first bytes, when we know it."""
    file.seek(0)
    head = file.read(16)
    return next((label for signature, label in _SIGNATURES if head.startswith(signature)), None)


def _decoded(image, name: str, size: int) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    width, height = image.size
    if image.format in ("JPEG", "MPO"):
        # Shrink-on-decode (a power of two, never below REDUCED_SIDE x size): a 24 MP photo decodes
        # as 1.5 MP.
        image.draft("RGB", (size * REDUCED_SIDE, size * REDUCED_SIDE))
    if image.size[0] * image.size[1] > MAX_PIXELS:
        raise UserError(f"{name} is too large to decode safely ({width}x{height}, over {MAX_PIXELS:,} pixels)")
    image.load()  # decode now: a truncated file fails here, not later
    # A phone photo stores its rotation as EXIF orientation, applied once reduced, so the model sees
    # the picture as every viewer displays it. Read after the size check: a PNG's getexif() decodes.
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    image = _reduced(image, size, notes)
    transpose = _transposition(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
        notes.append(f"turned upright as its EXIF orientation ({orientation}) says")
        if orientation >= 5:
            width, height = height, width
    array = _to_rgb8(image, notes)
    if (width, height) != (size, size):
        notes.append(f"resized from {width}x{height} to {size}x{size}")
        array = resize_image(array, size)
    return array, notes


def _transposition(orientation):
    """The Pillow transpose that displays an image stored with this EXIF orientation, or None."""
    from PIL import Image

    t = Image.Transpose
    return {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_270,
            7: t.TRANSVERSE, 8: t.ROTATE_90}.get(orientation)


def _reduced(image, size: int, notes: list[str]):
    """`image` box-averaged in its own mode (converted first only where Pillow cannot reduce the
    mode) until its shorter side is at most REDUCED_SIDE x `size`: every later copy is small."""
    factor = min(image.size) // (size * REDUCED_SIDE)
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("palette image converted to RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode.startswith("I;16"):
        image = image.convert("I")
    if image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        # Premultiplied: its colour channels *are* the image composited on black, and averaging
        # them averages what the composite shows.
        image = image.convert("RGBa")
        notes.append("transparency composited on black")
    if factor >= 2:
        image = image.reduce(factor)
    image.info["source_mode"] = mode
    return image


def _to_rgb8(image, notes: list[str]) -> np.ndarray:
    mode = image.info.get("source_mode", image.mode)
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)   # reduced already: a small copy
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        notes.append(f"{mode} image scaled to 8 bits")
        gray = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "RGBa":
        return np.asarray(image, dtype=np.uint8)[..., :3].copy()
    if image.mode in ("L",):
        notes.append("grayscale image repeated on 3 channels")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def resize_image(array: np.ndarray, size: int = MODEL_SIZE) -> np.ndarray:
    """uint8 [H, W, 3] -> [size, size, 3], as every user's image is resized."""
    from PIL import Image

    # Box filtering averages every source pixel when shrinking (no aliasing); bilinear when growing.
    shrinking = min(array.shape[:2]) > size
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(array).resize((size, size), resample), dtype=np.uint8)


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def png_bytes(array: np.ndarray) -> bytes:
    """An image array (uint8 RGB or grey) encoded as PNG, in memory."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
