"""The 15 common corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019), generated locally.

Each corruption is a function `(images, severity, rng) -> images` on a whole batch of uint8 RGB
images [N, H, W, 3], with the CIFAR severity parameters of `make_cifar_c.py` (hendrycks/robustness)
in the table beside it. They are written with numpy, scipy.ndimage and Pillow, vectorised over the
batch, so the benchmark builds its sets on the fly instead of downloading 2.9 GB.

Where the original needs what we cannot have, the function is an honest approximation (see
docs/robustness.md): ImageMagick's motion blur (used by `motion_blur` and `snow`) is rebuilt as
its one-sided Gaussian line kernel, and `frost` overlays a procedural ice texture instead of the
six frost photographs. Like CIFAR-10-C's files, results are truncated to uint8.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from cifar_xai.errors import UserError

SEVERITIES = (1, 2, 3, 4, 5)

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _unit(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32) / 255.0


def _bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str = "edge") -> np.ndarray:
    """Sample images [N, H, W, C] at fractional positions rows, cols [N, H, W] (bilinear).

    Positions outside the image are clamped ("edge"), mirrored without repeating the border
    ("mirror": OpenCV's BORDER_REFLECT_101) or mirrored repeating it ("reflect", as scipy names it)."""
    n, h, w, _ = images.shape

    def fold(index, size):
        if mode == "edge":
            return np.clip(index, 0, size - 1)
        if mode == "mirror":
            period = 2 * (size - 1)
            index = np.abs(index) % period
            return np.where(index >= size, period - index, index)
        index = index % (2 * size)
        return np.where(index >= size, 2 * size - 1 - index, index)

    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    batch = np.arange(n)[:, None, None]
    out = 0.0
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            out = out + wr * wc * images[batch, fold(r0 + dr, h), fold(c0 + dc, w)]
    return out


def _grid(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, h, w = images.shape[:3]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    return np.broadcast_to(rows, (n, h, w)), np.broadcast_to(cols, (n, h, w))


def _gaussian(images: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian over the spatial axes of [N, H, W, C] (or [N, H, W])."""
    sigmas = (0, sigma, sigma, 0)[: images.ndim]
    return ndimage.gaussian_filter(images, sigmas, mode=mode, truncate=truncate)


def _clipped_zoom(images: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by `factor` (linear interpolation), cropped back to the input size.

    scipy.ndimage.zoom(order=1), as make_cifar_c uses it, maps corner pixel to corner pixel: the
    same as TensorFlow's align_corners bilinear resize, which is ~20x faster on a batch."""
    import tensorflow as tf  # imported here: the benchmark's flags list the corruptions before TensorFlow loads

    h = images.shape[1]
    crop = int(np.ceil(h / factor))
    top = (h - crop) // 2
    size = int(round(crop * factor))
    zoomed = tf.raw_ops.ResizeBilinear(
        images=tf.constant(images[:, top:top + crop, top:top + crop], tf.float32), size=[size, size],
        align_corners=True,
    ).numpy()
    trim = (size - h) // 2
    return zoomed[:, trim:trim + h, trim:trim + h]


def _translated(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each image [N, H, W, C] sampled at (y + rows[n], x + cols[n]): bilinear, borders clamped.

    TensorFlow's projective-transform kernel does this ~25x faster than numpy's gathers."""
    import tensorflow as tf  # imported here: the benchmark's flags list the corruptions before TensorFlow loads

    n = len(images)
    transforms = np.zeros((n, 8), np.float32)
    transforms[:, 0] = transforms[:, 4] = 1
    transforms[:, 2], transforms[:, 5] = cols, rows
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.constant(images, tf.float32), transforms=transforms, output_shape=images.shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST",
    )
    return out.numpy()


def _motion_kernel_blur(images: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's MotionBlurImage: a one-sided line of 2 * radius + 1 samples along `angles`
    (degrees, one per image) weighted by exp(-i^2 / (2 sigma^2)); borders clamped."""
    width = int(2 * np.ceil(radius) + 1)
    steps = np.arange(width, dtype=np.float32)
    weights = np.exp(-(steps**2) / (2 * sigma**2))
    weights /= weights.sum()
    theta = np.deg2rad(angles)
    out = 0.0
    for step, weight in zip(steps, weights, strict=True):
        out = out + weight * _translated(images, step * np.sin(theta), step * np.cos(theta))
    return out


def _rgb_to_gray(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], np.float32)


def gaussian_noise(images, severity, rng):
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    x = _unit(images)
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(images, severity, rng):
    c = (500, 250, 100, 75, 50)[severity - 1]
    x = _unit(images)
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(images, severity, rng):
    # skimage's random_noise(mode="s&p"): `amount` of the values (each channel apart), half salt.
    c = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    x = _unit(images).copy()
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    x[hit & salt], x[hit & ~salt] = 1.0, 0.0
    return x * 255


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    span = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(span, span)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    # OpenCV's GaussianBlur with a 3x3 window and BORDER_REFLECT_101, as make_cifar_c applies it.
    return ndimage.gaussian_filter(disk, alias_blur, mode="mirror", truncate=1.0 / max(alias_blur, 1e-6))


def defocus_blur(images, severity, rng):
    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    kernel = _disk(radius, alias)
    return np.clip(ndimage.correlate(_unit(images), kernel[None, :, :, None], mode="mirror"), 0, 1) * 255


def glass_blur(images, severity, rng):
    sigma, delta, iterations = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[severity - 1]
    x = np.uint8(_gaussian(_unit(images), sigma) * 255)
    n, h, w = x.shape[:3]
    batch = np.arange(n)
    for _ in range(iterations):
        for row in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                # numpy's randint(-d, d) excludes d: the original only ever reads up / left. Its
                # "swap" `x[h, w], x[h', w'] = x[h', w'], x[h, w]` assigns through views, so it
                # copies the neighbour into (h, w) and leaves the neighbour as it was: so do we.
                dx, dy = rng.integers(-delta, delta, size=(2, n))
                x[batch, row, col] = x[batch, row + dy, col + dx]
    return np.clip(_gaussian(x / 255.0, sigma), 0, 1) * 255


def motion_blur(images, severity, rng):
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    angles = rng.uniform(-45, 45, size=len(images))
    return np.clip(_motion_kernel_blur(np.asarray(images, np.float32), radius, sigma, angles), 0, 255)


def zoom_blur(images, severity, rng):
    top = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    factors = np.arange(1, top, 0.01)
    x = _unit(images)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def snow(images, severity, rng):
    loc, scale, zoom, threshold, radius, sigma, keep = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[severity - 1]
    x = _unit(images)
    n, h, w, _ = x.shape
    flakes = _clipped_zoom(rng.normal(size=(n, h, w, 1), loc=loc, scale=scale).astype(np.float32), zoom)
    flakes[flakes < threshold] = 0
    # make_cifar_c round-trips the layer through an 8-bit PNG before ImageMagick blurs it.
    flakes = np.floor(np.clip(flakes, 0, 1) * 255) / 255
    flakes = _motion_kernel_blur(flakes, radius, sigma, rng.uniform(-135, -45, size=n))
    x = keep * x + (1 - keep) * np.maximum(x, _rgb_to_gray(x)[..., None] * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2, axes=(1, 2)), 0, 1) * 255


def _frost_texture(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Procedural stand-in for the frost photographs: bright, branching ice streaks on a dim
    glass, in 0..255 like the photos (dark gaps, streaks up to ~250)."""
    size = 2 * h
    base = rng.normal(size=(n, size, size)).astype(np.float32)
    streaks = 0.0
    for sigma, angle_spread in ((0.8, 1), (1.6, 1), (3.2, 1)):
        field = ndimage.gaussian_filter(base, (0, sigma, sigma), mode="wrap")
        # Ridges of a smooth random field look like crystal edges: bright where |field| is small.
        ridges = np.exp(-(field / (field.std(axis=(1, 2), keepdims=True) * 0.15)) ** 2)
        streaks = streaks + ridges / (angle_spread * 3)
    top = rng.integers(0, size - h, size=n)
    left = rng.integers(0, size - w, size=n)
    crop = np.stack([s[t:t + h, c:c + w] for s, t, c in zip(streaks, top, left, strict=True)])
    crop = np.clip(crop / crop.max(axis=(1, 2), keepdims=True), 0, 1)
    tint = np.array([0.85, 0.92, 1.0], np.float32)
    return (20 + 230 * crop[..., None]) * tint


def frost(images, severity, rng):
    weight_image, weight_frost = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    n, h, w, _ = images.shape
    return np.clip(weight_image * np.asarray(images, np.float32) + weight_frost * _frost_texture(n, h, w, rng), 0, 255)


def _plasma_fractal(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """make_cifar_c's diamond-square height maps [n, size, size] in [0, 1], one per image."""
    maps = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def wibbled(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        maps[:, half:size:step, half:size:step] = wibbled(square)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = wibbled(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = wibbled(top)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def fog(images, severity, rng):
    strength, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    x = _unit(images)
    n, h, w, _ = x.shape
    size = 1 << int(np.ceil(np.log2(max(h, w))))
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + strength * _plasma_fractal(n, size, decay, rng)[:, :h, :w, None]
    return np.clip(x * peak / (peak + strength), 0, 1) * 255


def brightness(images, severity, rng):
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    hsv = rgb_to_hsv(_unit(images))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def contrast(images, severity, rng):
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = _unit(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(images, severity, rng):
    size = images.shape[1]
    alpha, sigma, affine = (
        (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)
    )[severity - 1]
    alpha, sigma, affine = alpha * size, sigma * size, affine * size
    x = _unit(images)
    n, h, w, _ = x.shape
    # A random affine map moving three points around the centre by up to `affine` px (OpenCV's
    # getAffineTransform + warpAffine: each output pixel samples the inverse-mapped position).
    centre, square = np.float32([h, w]) // 2, min(h, w) // 3
    src = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    dst = src + rng.uniform(-affine, affine, size=(n, 3, 2)).astype(np.float32)
    ones = np.ones((n, 3, 1), np.float32)
    # Points are (x, y) as OpenCV reads them; solve dst -> src to sample backwards.
    inverse = np.linalg.solve(np.concatenate([dst, ones], axis=2), np.broadcast_to(src, (n, 3, 2)))
    rows, cols = _grid(x)
    grid = np.stack([cols, rows, np.ones_like(rows)], axis=-1)  # (x, y, 1)
    source = np.einsum("nhwk,nkj->nhwj", grid, inverse)
    x = _bilinear(x, source[..., 1], source[..., 0], mode="mirror")
    if alpha > 0:
        def displacement():
            noise = rng.uniform(-1, 1, size=(n, h, w))
            return (_gaussian(noise, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)

        dx, dy = displacement(), displacement()
        x = _bilinear(x, rows + dy, cols + dx, mode="reflect")  # scipy's map_coordinates(mode="reflect")
    return np.clip(x, 0, 1) * 255


def pixelate(images, severity, rng):
    from PIL import Image

    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = images.shape[1:3]
    small = (int(w * c), int(h * c))
    return np.stack([
        np.asarray(Image.fromarray(image).resize(small, Image.BOX).resize((w, h), Image.BOX)) for image in images
    ])


def jpeg_compression(images, severity, rng):
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[severity - 1]
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(out)


# In CIFAR-10-C's order; its four extra "held-out" corruptions are not part of the mean.
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
# The corruptions that are approximations of the original, named in the docs and the benchmark.
APPROXIMATED = ("motion_blur", "snow", "frost")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """`images` (uint8 [N, H, W, 3]) under corruption `name` at `severity` (1-5), as uint8.

    Deterministic: the same images, name, severity and seed give the same output. Each
    (corruption, severity) draws from its own stream, so sets can be built in any order.
    """
    if name not in CORRUPTIONS:
        raise UserError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise UserError(f"severity {severity!r} is not one of {', '.join(map(str, SEVERITIES))} (1 = mildest)")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"corrupt() takes uint8 RGB images [N, H, W, 3], not {images.dtype} {list(images.shape)}")
    if len(images) == 0:
        return images.copy()
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(name), int(severity)])
    out = CORRUPTIONS[name](images, int(severity), rng)
    # np.uint8(...) truncates, as CIFAR-10-C's files were written.
    return np.asarray(np.clip(out, 0, 255), np.float32).astype(np.uint8)
