"""How the tab's maps and images travel: PNG data URLs, colour-mapped heatmaps, signed maps."""

from __future__ import annotations

import base64
import functools

import numpy as np

from cifar_xai.images import png_bytes


@functools.cache
def _colours() -> np.ndarray:
    """matplotlib's "inferno" (dark = no evidence, bright = most) as 256 RGB rows."""
    from matplotlib import colormaps

    return (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_data_url(array: np.ndarray) -> str:
    return data_url(png_bytes(array))


def heatmap_png(heatmap: np.ndarray) -> str:
    """A map in [0, 1] as the colour-mapped PNG the page lays over the image."""
    return png_data_url(_colours()[np.clip(np.round(heatmap * 255), 0, 255).astype(int)])


def signed_png(signed: np.ndarray) -> str:
    """A signed map (the contrastive one): red for the class, blue for the rival, white for 0."""
    scale = float(np.abs(signed).max()) or 1.0
    value = np.clip(signed / scale, -1, 1)[..., None]
    red, blue = np.array([214, 39, 40]), np.array([31, 119, 180])
    rgb = np.where(value > 0, 255 + value * (red - 255), 255 - value * (blue - 255))
    return png_data_url(rgb.astype(np.uint8))
