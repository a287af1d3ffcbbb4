"""Figures rendered to PNG bytes (matplotlib, no display), for reports and TensorBoard alike."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def confusion_matrix_png(cm: np.ndarray, class_names: Sequence[str], title: str = "Confusion matrix") -> bytes:
    """Row-normalised colours (recall per class) with the raw counts written in each cell."""
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (row, col), count in np.ndenumerate(cm):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                color="white" if rates[row, col] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    return figure_png(fig)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """A heatmap in [0, 1] blended over a uint8 RGB image of the same size: uint8 [H, W, 3]."""
    colours = plt.get_cmap(cmap)(np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * np.asarray(image, np.float32) + alpha * colours, 0, 255).astype(np.uint8)


def explanation_panel_png(image: np.ndarray, maps: dict[str, np.ndarray], caption: str) -> bytes:
    """Image, then per method its heatmap (top) and overlay (bottom); `caption` on top."""
    columns = 1 + len(maps)
    fig, axes = plt.subplots(2, columns, figsize=(2.1 * columns, 4.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image, interpolation="nearest")
    axes[0, 0].set_title("image", fontsize=9)
    for column, (title, heatmap) in enumerate(maps.items(), start=1):
        axes[0, column].imshow(heatmap, cmap="jet", vmin=0, vmax=1, interpolation="bilinear")
        axes[0, column].set_title(title, fontsize=9)
        axes[1, column].imshow(overlay(image, heatmap), interpolation="nearest")
    fig.suptitle(caption, fontsize=9)
    return figure_png(fig)


def image_grid_png(tiles: np.ndarray, title: str, columns: int = 16, cmap: str | None = "viridis") -> bytes:
    """Tiles [N, h, w] (one colour map) or [N, h, w, 3] (RGB in [0, 1]) in a grid."""
    count = len(tiles)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.7, rows * 0.7 + 0.4), squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < count:
            ax.imshow(tiles[index], cmap=None if tiles.ndim == 4 else cmap, interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    return figure_png(fig)
