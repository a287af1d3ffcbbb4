"""Reading a user's image file into what the model takes: uint8 RGB 32x32, with notes on what changed."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from cifar_xai import IMAGE_SIZE
from cifar_xai.errors import UserError

MODEL_SIZE = IMAGE_SIZE
# Far above any real photo's need, far below what a crafted "decompression bomb" asks for.
MAX_PIXELS = 40_000_000


EXIF_ORIENTATION = 0x0112


def load_image(path: str | os.PathLike, size: int = MODEL_SIZE) -> tuple[np.ndarray, list[str]]:
    """The image as uint8 [size, size, 3] and a list of notes (mode converted, resized, ...).

    Any size and mode Pillow reads is accepted; 16-bit images are scaled to 8 bits, transparency
    is composited on black, grayscale is repeated on three channels. Problems raise `UserError`.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(path) as image:
                image.load()  # decode now: a truncated file fails here, not later
                # A phone photo stores its rotation as EXIF orientation: apply it, so the model
                # sees the picture as every viewer displays it.
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
                if orientation not in (1, None):
                    notes.append(f"turned upright as its EXIF orientation ({orientation}) says")
                array = _to_rgb8(ImageOps.exif_transpose(image), notes)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path} is too large to decode safely (over {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image file Pillow can read (PNG, JPEG, BMP, ...)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path} could not be decoded ({err}); is the file truncated or corrupt?") from None
    if array.shape[:2] != (size, size):
        notes.append(f"resized from {array.shape[1]}x{array.shape[0]} to {size}x{size}")
        array = resize_image(array, size)
    return array, notes


def _to_rgb8(image, notes: list[str]) -> np.ndarray:
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        notes.append(f"{mode} image scaled to 8 bits")
        gray = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("palette image converted to RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
        notes.append("transparency composited on black")
    if image.mode in ("L", "1"):
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
