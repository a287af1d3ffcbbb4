"""Figures rendered to PNG bytes (matplotlib, no display), for reports and TensorBoard alike."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cifar_xai import CLASS_NAMES  # noqa: E402


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


def explanation_panel_png(image: np.ndarray, maps: dict[str, np.ndarray], caption: str,
                          signed: dict[str, np.ndarray] | None = None) -> bytes:
    """Image, then per method its heatmap (top) and overlay (bottom); `caption` on top.

    `signed` maps (a contrastive CAM) are drawn blue-white-red around 0, symmetric in range:
    red for the first class, blue for its rival."""
    signed = signed or {}
    columns = 1 + len(maps) + len(signed)
    # Constrained layout leaves room for a caption of several lines above two-line titles, so
    # the OOD line never crosses "why cat rather than dog".
    fig, axes = plt.subplots(2, columns, figsize=(2.1 * columns, 5.2), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image, interpolation="nearest")
    axes[0, 0].set_title("image", fontsize=9)
    # The cell under the image names the two rows, so no cell is left empty or unexplained.
    axes[1, 0].text(0.5, 0.5, "top row: heatmap\n(colour bar below it)\n\nthis row: heatmap\nover the image",
                    ha="center", va="center", fontsize=8, transform=axes[1, 0].transAxes)
    shown = None
    for column, (title, heatmap) in enumerate(maps.items(), start=1):
        shown = axes[0, column].imshow(heatmap, cmap="jet", vmin=0, vmax=1, interpolation="bilinear")
        axes[0, column].set_title(title, fontsize=9)
        axes[1, column].imshow(overlay(image, heatmap), interpolation="nearest")
    if shown is not None:
        bar = fig.colorbar(shown, ax=list(axes[0, 1:1 + len(maps)]), orientation="horizontal", shrink=0.6, aspect=30)
        bar.set_ticks([0, 1], labels=["0: no evidence", "1: most evidence"], fontsize=7)
    for column, (title, contrast) in enumerate(signed.items(), start=1 + len(maps)):
        extent = max(float(np.abs(contrast).max()), 1e-12)
        shown = axes[0, column].imshow(contrast, cmap="RdBu_r", vmin=-extent, vmax=extent, interpolation="bilinear")
        axes[0, column].set_title(title, fontsize=9)
        axes[1, column].imshow(overlay(image, (contrast / extent + 1) / 2, cmap="RdBu_r"), interpolation="nearest")
        bar = fig.colorbar(shown, ax=axes[0, column], orientation="horizontal", shrink=0.9)
        bar.set_ticks([-extent, 0, extent], labels=["rival", "0", "class"], fontsize=7)
    # Wrapped to the figure's width (~14 characters per inch at 9 pt): a long OOD line would
    # otherwise widen the figure past its panels.
    width = max(40, int(2.1 * columns * 14))
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in caption.splitlines()), fontsize=9)
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


def reliability_diagram_png(calibration: dict) -> bytes:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    edges = np.asarray(calibration["bin_edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    counts = np.asarray(calibration["bin_counts"])
    accuracy = np.asarray(calibration["bin_accuracy"])
    confidence = np.asarray(calibration["bin_confidence"])
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    filled = counts > 0
    ax.bar(centres[filled], accuracy[filled], width=width * 0.95, color="tab:blue", edgecolor="black",
           label="accuracy")
    ax.bar(centres[filled], (confidence - accuracy)[filled], bottom=accuracy[filled], width=width * 0.95,
           color="tab:red", alpha=0.3, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"Reliability, ECE = {calibration['ece']:.3f} ({calibration['bins']} bins)")
    ax.legend(loc="upper left")
    return figure_png(fig)


def training_curves_png(history: dict[str, list[float]]) -> bytes:
    """Loss, accuracy and learning rate per epoch from a Keras history.csv."""
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key in zip(axes, ("loss", "accuracy", "learning_rate"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            # A prototype_cnn run logs its classifier's accuracy as probabilities_accuracy.
            found = history.get(prefix + key) or history.get(f"{prefix}probabilities_{key}", [])
            values = [v for v in found if v == v]  # drop NaN ("NA" rows)
            if values:
                ax.plot(epochs[: len(values)], values, style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return figure_png(fig)


def curves_png(curves: dict[str, np.ndarray], title: str, x: Sequence[float] | None = None,
               xlabel: str = "fraction of pixels changed", ylabel: str = "probability of the class") -> bytes:
    """Mean curves per method, {name: [points]}, over `x` (default: evenly from 0 to 1)."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, curve in curves.items():
        ax.plot(np.linspace(0, 1, len(curve)) if x is None else x, curve, label=name,
                linestyle="--" if name in ("random", "gaussian", "sobel") else "-")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def gallery_png(rows: list[tuple[np.ndarray, dict[str, np.ndarray], str]], title: str) -> bytes:
    """One row per image: the image (with its caption), then an overlay per named heatmap."""
    columns = 1 + max(len(maps) for _, maps, _ in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.9 * columns, 1.75 * len(rows) + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (image, maps, caption) in enumerate(rows):
        axes[r, 0].imshow(image, interpolation="nearest")
        axes[r, 0].set_title(caption, fontsize=7)
        for c, (name, heatmap) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(overlay(image, heatmap), interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def prototype_panel_png(image: np.ndarray, found, sources: np.ndarray, caption: str) -> bytes:
    """"This looks like that": per top prototype, where on the image it matches (its similarity
    map), the training image it was pushed onto with the patch boxed, and the arithmetic of its
    contribution to the logit. `found` is a cifar_xai.explain.prototypes.PrototypeExplanation."""
    from matplotlib.patches import Rectangle

    rows = len(found.top)
    fig, axes = plt.subplots(rows, 3, figsize=(7.2, 2.2 * rows + 0.7), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, j in enumerate(found.top):
        heat = found.maps[r] - found.maps[r].min()
        axes[r, 0].imshow(overlay(image, heat / heat.max() if heat.max() > 0 else heat), interpolation="nearest")
        axes[r, 0].set_title("this part of the image..." if r == 0 else "", fontsize=8)
        axes[r, 1].imshow(sources[j], interpolation="nearest")
        top, left, bottom, right = found.sources[r]["box"]
        axes[r, 1].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                       edgecolor="yellow", linewidth=1.5))
        axes[r, 1].set_title("...looks like this training patch" if r == 0 else "", fontsize=8)
        owner = CLASS_NAMES[found.prototype_classes[r]]
        axes[r, 2].text(0.0, 0.5, f"prototype {j} ({owner})\nsimilarity {found.similarities[r]:.2f}\n"
                        f"x weight {found.weights[r]:+.2f}\n= {found.contributions[j]:+.2f} of the logit\n"
                        f"({found.logit:.2f}, the sum over all\n{len(found.contributions)} prototypes)",
                        fontsize=8, va="center", transform=axes[r, 2].transAxes)
    fig.suptitle(caption, fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def prototype_gallery_png(sources: np.ndarray, boxes: np.ndarray, classes: Sequence[str], title: str) -> bytes:
    """Every prototype as the training image it was pushed onto, its patch boxed: one row per class."""
    from matplotlib.patches import Rectangle

    per_class = len(sources) // len(classes)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(0.95 * per_class + 0.8, 1.0 * len(classes) + 0.5),
                             squeeze=False)
    for j, (image, (top, left, bottom, right)) in enumerate(zip(sources, boxes, strict=True)):
        ax = axes[j // per_class, j % per_class]
        ax.imshow(image, interpolation="nearest")
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor="yellow",
                               linewidth=1.2))
        ax.set_xticks([])
        ax.set_yticks([])
        if j % per_class == 0:
            ax.set_ylabel(classes[j // per_class], fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def visualisation_rows_png(rows: dict[str, np.ndarray]) -> bytes:
    """A row of ten class images [10, h, w, 3] per method, the classes named above the first row."""
    figure, axes = plt.subplots(len(rows), 10, figsize=(12, 1.45 * len(rows) + 0.3), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(10):
            axes[r, c].imshow(images[c])
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(CLASS_NAMES[c], fontsize=11)
        axes[r, 0].set_ylabel(name, fontsize=10)
    figure.tight_layout()
    return figure_png(figure)


def time_to_accuracy_png(curves: dict[str, tuple[Sequence[float], Sequence[float]]], title: str) -> bytes:
    """Validation accuracy (%) against training seconds, one line per recipe: {name: (seconds, accuracy)}."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (seconds, accuracy) in curves.items():
        ax.plot(seconds, 100 * np.asarray(accuracy), marker="o", label=name)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure_png(fig)
