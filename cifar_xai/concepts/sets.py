"""Concept image sets that exist offline: procedural patterns, colour fields, generated textures,
the planted mark, a user's folder of images, and random CIFAR-10 training images as counterparts.

Every generator is `(count, rng) -> uint8 [count, 32, 32, 3]` and varies what the concept does
not name (colour, frequency, phase, position), so a CAV separates the concept, not one image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifar_xai import IMAGE_SIZE
from cifar_xai.config import MIN_CONCEPT_IMAGES
from cifar_xai.errors import UserError

# Saturated and neutral colours the patterns are drawn in (two different ones per image).
PALETTE = np.array([
    (220, 30, 30), (30, 160, 40), (40, 70, 220), (240, 210, 30), (240, 130, 20),
    (150, 50, 190), (20, 190, 200), (245, 245, 245), (15, 15, 15), (130, 130, 130),
], np.float32)
COLOUR_FIELDS = {"red": 0, "green": 1, "blue": 2, "yellow": 3, "white": 7, "black": 8}


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(IMAGE_SIZE, dtype=np.float32), np.arange(IMAGE_SIZE, dtype=np.float32))


def _two_colours(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a [N, H, W] mask in 0..1 with two different palette colours per image, plus faint noise."""
    pick = np.array([rng.choice(len(PALETTE), 2, replace=False) for _ in range(len(mask))])
    first, second = PALETTE[pick[:, 0]][:, None, None], PALETTE[pick[:, 1]][:, None, None]
    images = first * mask[..., None] + second * (1 - mask[..., None])
    return np.clip(images + rng.normal(0, 6, images.shape), 0, 255).round().astype(np.uint8)


def _stripes(angles: tuple[float, ...]) -> Callable[[int, np.random.Generator], np.ndarray]:
    def make(count: int, rng: np.random.Generator) -> np.ndarray:
        x, y = _grid()
        angle = rng.choice(angles, count)[:, None, None] + rng.uniform(-0.1, 0.1, (count, 1, 1))
        period = rng.uniform(4, 10, (count, 1, 1))   # two frequency octaves
        phase = rng.uniform(0, 2 * np.pi, (count, 1, 1))
        wave = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
        return _two_colours((wave > 0).astype(np.float32), rng)

    return make


def dots(count: int, rng: np.random.Generator) -> np.ndarray:
    """A regular grid of round dots (spacing 5-10 px) on a plain ground."""
    x, y = _grid()
    spacing = rng.uniform(5, 10, (count, 1, 1))
    offset = rng.uniform(0, 10, (count, 2, 1, 1))
    dx = (x + offset[:, 0]) % spacing - spacing / 2
    dy = (y + offset[:, 1]) % spacing - spacing / 2
    return _two_colours((dx**2 + dy**2 < (spacing * 0.3) ** 2).astype(np.float32), rng)


def zigzag(count: int, rng: np.random.Generator) -> np.ndarray:
    """Horizontal zig-zag bands: a triangle wave across, stripes along it."""
    x, y = _grid()
    period = rng.uniform(6, 12, (count, 1, 1))
    amplitude = rng.uniform(2, 4, (count, 1, 1))
    triangle = amplitude * np.abs((x / period + rng.uniform(0, 1, (count, 1, 1))) % 1 * 2 - 1)
    band = rng.uniform(5, 9, (count, 1, 1))
    transpose = rng.random(count) < 0.5   # vertical zig-zags too
    mask = ((y + triangle) % band < band / 2).astype(np.float32)
    mask[transpose] = np.swapaxes(mask[transpose], 1, 2)
    return _two_colours(mask, rng)


def checkerboard(count: int, rng: np.random.Generator) -> np.ndarray:
    x, y = _grid()
    square = rng.integers(3, 9, (count, 1, 1))
    shift = rng.integers(0, 8, (count, 2, 1, 1))
    mask = ((x + shift[:, 0]) // square + (y + shift[:, 1]) // square) % 2
    return _two_colours(mask.astype(np.float32), rng)


def _colour_field(index: int) -> Callable[[int, np.random.Generator], np.ndarray]:
    def make(count: int, rng: np.random.Generator) -> np.ndarray:
        """One colour, with the brightness gradients and grain a photo of a painted wall has."""
        x, y = _grid()
        tilt = rng.uniform(-1.2, 1.2, (count, 2, 1, 1))
        shade = 1 + (tilt[:, 0] * (x - 16) + tilt[:, 1] * (y - 16)) / 160
        images = PALETTE[index] * shade[..., None] * rng.uniform(0.8, 1.1, (count, 1, 1, 1))
        return np.clip(images + rng.normal(0, 8, images.shape), 0, 255).round().astype(np.uint8)

    return make


def _smooth_noise(count: int, rng: np.random.Generator, grid: int) -> np.ndarray:
    """Value noise: random values on a grid x grid lattice, upsampled bilinearly; [N, 32, 32]."""
    coarse = rng.uniform(-1, 1, (count, grid + 1, grid + 1))
    position = np.linspace(0, grid, IMAGE_SIZE, endpoint=False)
    low, frac = position.astype(int), position % 1
    rows = coarse[:, low] * (1 - frac)[None, :, None] + coarse[:, low + 1] * frac[None, :, None]
    return rows[:, :, low] * (1 - frac) + rows[:, :, low + 1] * frac


def _turbulence(count: int, rng: np.random.Generator) -> np.ndarray:
    return sum(_smooth_noise(count, rng, grid) / grid ** 0.5 for grid in (2, 4, 8))


def wood(count: int, rng: np.random.Generator) -> np.ndarray:
    """Growth rings: concentric bands around an off-image centre, bent by turbulence."""
    x, y = _grid()
    centre = rng.uniform(-40, 72, (count, 2, 1, 1))
    radius = np.hypot(x - centre[:, 0], y - centre[:, 1]) + 6 * _turbulence(count, rng)
    mask = 0.5 + 0.5 * np.sin(2 * np.pi * radius / rng.uniform(3, 6, (count, 1, 1)))
    return _two_colours(mask.astype(np.float32), rng)


def marble(count: int, rng: np.random.Generator) -> np.ndarray:
    """Veins: a sine along a random direction, displaced by turbulence."""
    x, y = _grid()
    angle = rng.uniform(0, np.pi, (count, 1, 1))
    along = x * np.cos(angle) + y * np.sin(angle)
    mask = 0.5 + 0.5 * np.sin(along / rng.uniform(2, 4, (count, 1, 1)) + 8 * _turbulence(count, rng))
    return _two_colours(mask.astype(np.float32) ** 3, rng)


def fur(count: int, rng: np.random.Generator) -> np.ndarray:
    """Fine strands: pixel noise smeared along one direction (a line-integral texture)."""
    x, y = _grid()
    noise = rng.uniform(0, 1, (count, IMAGE_SIZE, IMAGE_SIZE))
    angle = rng.uniform(0, np.pi, count)
    out = np.zeros_like(noise)
    for step in range(-4, 5):
        rows = np.clip(np.round(y[None] + step * np.sin(angle)[:, None, None]), 0, IMAGE_SIZE - 1).astype(int)
        cols = np.clip(np.round(x[None] + step * np.cos(angle)[:, None, None]), 0, IMAGE_SIZE - 1).astype(int)
        out += np.take_along_axis(noise.reshape(count, -1), (rows * IMAGE_SIZE + cols).reshape(count, -1),
                                  axis=1).reshape(noise.shape)
    out = (out - out.min(axis=(1, 2), keepdims=True)) / np.ptp(out, axis=(1, 2), keepdims=True)
    return _two_colours(out.astype(np.float32), rng)


CONCEPT_SETS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "stripes_horizontal": _stripes((np.pi / 2,)),
    "stripes_vertical": _stripes((0.0,)),
    "stripes_diagonal": _stripes((np.pi / 4, 3 * np.pi / 4)),
    "dots": dots,
    "zigzag": zigzag,
    "checkerboard": checkerboard,
    **{name: _colour_field(index) for name, index in COLOUR_FIELDS.items()},
    "wood": wood,
    "marble": marble,
    "fur": fur,
}
# Built from CIFAR-10 images (the planted mark stamped on random training images), so only where
# the caller has them: `concept_images(..., backgrounds=...)`.
MARK_CONCEPT = "mark"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def is_folder(spec: str) -> bool:
    """A --concept value naming a folder (an existing one, or any path) rather than a built-in set."""
    return os.sep in spec or "/" in spec or Path(spec).is_dir()


def concept_names() -> list[str]:
    return [*CONCEPT_SETS, MARK_CONCEPT]


def concept_images(name: str, count: int, seed: int = 0, backgrounds: np.ndarray | None = None) -> np.ndarray:
    """`count` images of the built-in concept `name`, the same for the same seed.

    `mark` stamps the planted mark (cifar_xai.data.marks) in a random corner of `backgrounds`
    (random CIFAR-10 images), so its CAV against random images isolates the mark itself."""
    rng = np.random.default_rng([seed, *name.encode()])
    if name == MARK_CONCEPT:
        from cifar_xai.data.marks import random_corners, stamp

        if backgrounds is None or len(backgrounds) < count:
            raise UserError(f"the {MARK_CONCEPT} concept needs {count} background images")
        chosen = np.asarray(backgrounds)[rng.choice(len(backgrounds), count, replace=False)]
        return stamp(chosen, random_corners(count, seed)).numpy().astype(np.uint8)
    if name not in CONCEPT_SETS:
        raise UserError(f"unknown concept {name!r}; valid: {', '.join(concept_names())}, or a folder of images")
    return CONCEPT_SETS[name](count, rng)


def load_concept_folder(folder: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """A user's concept: every image file in `folder` (not its sub-folders), resized to 32x32 as
    the explain CLI resizes any image. One-line errors for a missing, empty or too small folder;
    a file that is not a readable image is an error too, since a concept is only what it holds."""
    from cifar_xai.images import load_image

    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"concept folder {path} does not exist (or is not a folder)")
    files = sorted(item for item in path.iterdir() if item.is_file() and not item.name.startswith("."))
    if not files:
        raise UserError(f"concept folder {path} is empty; put {MIN_CONCEPT_IMAGES} or more images of the concept in it")
    others = [item.name for item in files if item.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        raise UserError(f"concept folder {path} holds {len(others)} file(s) that are not images (e.g. {others[0]}); "
                        "a concept folder holds only images of the concept")
    if len(files) < MIN_CONCEPT_IMAGES:
        raise UserError(f"concept folder {path} has {len(files)} images; a CAV needs at least {MIN_CONCEPT_IMAGES}")
    files = files[:limit] if limit else files
    return np.stack([load_image(item)[0] for item in files])
