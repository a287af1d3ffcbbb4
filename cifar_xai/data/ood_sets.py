"""Images that are not CIFAR-10: the outliers the out-of-distribution benchmark shows the model.

- Fashion-MNIST's test set (Xiao et al. 2017), read from its original IDX files, resized to 32x32
  and repeated on three channels: real photographs of a kind the model never saw (far-OOD);
- synthetic sets, generated from a seed: uniform noise, noise JPEGs of any size resized as a
  user's upload is, Gaussian noise, smooth random blobs and constant colours — what a broken
  camera, an empty frame or a test pattern sends a server.

Every set is uint8 [N, 32, 32, 3], the same input the model and the serving signature take.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifar_xai import IMAGE_SIZE
from cifar_xai.errors import UserError

FASHION_MNIST_ENV = "CIFAR_XAI_FASHION_MNIST"
FASHION_MNIST_IMAGES = "t10k-images-idx3-ubyte"
# MD5 of the decompressed image stream (the same whether the file is stored gzipped or not).
FASHION_MNIST_MD5 = "8181f5470baa50b63fa0f6fddb340f0a"
# Where the file is looked for when no folder is given, in order.
FASHION_MNIST_PLACES = (
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "fashion-mnist",
    Path("/usr/share/datasets/fashion-mnist"),
)
HOW_TO_GET_FASHION_MNIST = (
    f"pass --fashion-mnist DIR (a folder with {FASHION_MNIST_IMAGES}[.gz]) or set ${FASHION_MNIST_ENV}; "
    "Debian's package dataset-fashion-mnist installs it under /usr/share/datasets/fashion-mnist"
)

# IDX type codes (the third byte of the magic number) and the numpy dtypes they stand for.
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UserError(f"{path} could not be read ({err}); is it truncated? {HOW_TO_GET_FASHION_MNIST}") from None


def read_idx(path: str | os.PathLike, expected_md5: str | None = None) -> np.ndarray:
    """The array in an IDX file (LeCun's MNIST format), gzipped or not.

    Header: two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian uint32; the data follow. A file whose header and length disagree, or whose
    contents differ from `expected_md5`, raises `UserError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; {HOW_TO_GET_FASHION_MNIST}")
    data = _read_bytes(path)
    if expected_md5 and hashlib.md5(data).hexdigest() != expected_md5:
        raise UserError(f"{path} is not the expected file (MD5 of its contents differs; corrupt or another "
                        f"dataset); {HOW_TO_GET_FASHION_MNIST}")
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number); {HOW_TO_GET_FASHION_MNIST}")
    dims = data[3]
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    if len(data) != header + int(np.prod(shape)) * dtype.itemsize:
        raise UserError(f"{path} holds {len(data) - header} data bytes, not the {shape} its header announces "
                        f"(truncated?); {HOW_TO_GET_FASHION_MNIST}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an (uncompressed) IDX file: the inverse of `read_idx`, for tests and tools."""
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    Path(path).write_bytes(header + array.tobytes())


def find_fashion_mnist(folder: str | os.PathLike | None = None) -> Path:
    """The Fashion-MNIST test-image file in `folder`, $CIFAR_XAI_FASHION_MNIST or the usual places."""
    candidates = [Path(folder)] if folder else (
        [Path(os.environ[FASHION_MNIST_ENV])] if os.environ.get(FASHION_MNIST_ENV) else list(FASHION_MNIST_PLACES))
    for place in candidates:
        for name in (f"{FASHION_MNIST_IMAGES}.gz", FASHION_MNIST_IMAGES):
            if (place / name).is_file():
                return place / name
    raise UserError(f"no {FASHION_MNIST_IMAGES}[.gz] in {', '.join(map(str, candidates))}; {HOW_TO_GET_FASHION_MNIST}")


def fashion_mnist(folder: str | os.PathLike | None = None, limit: int | None = None) -> np.ndarray:
    """Fashion-MNIST test images as uint8 [N, 32, 32, 3]: 28x28 grey, resized bilinearly, on 3 channels."""
    images = read_idx(find_fashion_mnist(folder), FASHION_MNIST_MD5)
    if images.ndim != 3:
        raise UserError(f"{find_fashion_mnist(folder)} holds {images.shape} values, not grey images [N, H, W]")
    return to_rgb32(images[:limit])


def to_rgb32(grey: np.ndarray) -> np.ndarray:
    """Grey images [N, H, W] as uint8 RGB [N, 32, 32, 3]: resized bilinearly, repeated on 3 channels."""
    import tensorflow as tf  # imported here: the OOD benchmark's flags name these sets before TensorFlow loads

    resized = tf.image.resize(np.asarray(grey, np.float32)[..., None], [IMAGE_SIZE, IMAGE_SIZE], "bilinear")
    return np.repeat(np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8), 3, axis=-1)


def uniform_noise(count: int, rng: np.random.Generator) -> np.ndarray:
    """Every pixel and channel independent, uniform in 0..255."""
    return rng.integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)


def gaussian_noise(count: int, rng: np.random.Generator) -> np.ndarray:
    """Independent pixels around a random mean grey (sigma 20-80), clipped to 0..255."""
    mean = rng.uniform(60, 196, (count, 1, 1, 1))
    sigma = rng.uniform(20, 80, (count, 1, 1, 1))
    return np.clip(rng.normal(mean, sigma, (count, IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 255).round().astype(np.uint8)


def smooth_blobs(count: int, rng: np.random.Generator) -> np.ndarray:
    """Coloured noise on a coarse 4x4 to 8x8 grid, upsampled smoothly: large soft blobs with no
    object in them (a stand-in for out-of-focus or texture-free photos)."""
    import tensorflow as tf  # imported here: the OOD benchmark's flags name these sets before TensorFlow loads

    out = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    grids = rng.choice((4, 6, 8), count)
    for grid in (4, 6, 8):
        picked = np.flatnonzero(grids == grid)
        if picked.size:
            coarse = rng.uniform(0, 255, (picked.size, grid, grid, 3)).astype(np.float32)
            smooth = tf.image.resize(coarse, [IMAGE_SIZE, IMAGE_SIZE], "bicubic").numpy()
            out[picked] = np.clip(smooth, 0, 255).round().astype(np.uint8)
    return out


def constant_colours(count: int, rng: np.random.Generator) -> np.ndarray:
    """One random colour over the whole image: an empty frame, a lens cap, a test card."""
    colours = rng.integers(0, 256, (count, 1, 1, 3), dtype=np.uint8)
    return np.broadcast_to(colours, (count, IMAGE_SIZE, IMAGE_SIZE, 3)).copy()


def noise_jpegs(count: int, rng: np.random.Generator) -> np.ndarray:
    """What a user uploading "random noise" sends: uniform noise of 48 to 256 pixels a side, saved
    as JPEG (quality 50-95), read back and resized to 32x32 the way the explain CLI resizes any
    image. Shrinking averages the noise down to sigma 10-40: noise at the strength the corruption
    augmentation trains the model to see through."""
    import io

    from PIL import Image

    from cifar_xai.images import resize_image

    out = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for index in range(count):
        side = int(rng.choice((48, 64, 96, 128, 256)))
        buffer = io.BytesIO()
        noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(noise).save(buffer, "JPEG", quality=int(rng.integers(50, 96)))
        out[index] = resize_image(np.asarray(Image.open(buffer).convert("RGB")))
    return out


SYNTHETIC_SETS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "uniform_noise": uniform_noise,
    "noise_jpeg": noise_jpegs,
    "gaussian_noise": gaussian_noise,
    "smooth_blobs": smooth_blobs,
    "constant_colours": constant_colours,
}


def synthetic_set(name: str, count: int, seed: int = 0) -> np.ndarray:
    """`count` images of the synthetic set `name`, the same for the same seed."""
    if name not in SYNTHETIC_SETS:
        raise UserError(f"unknown synthetic set {name!r}; valid: {', '.join(SYNTHETIC_SETS)}")
    # The set's name is part of the seed, so two sets never share their random stream.
    rng = np.random.default_rng([seed, *name.encode()])
    return SYNTHETIC_SETS[name](count, rng)
