"""What a person looks at: a concept atlas (each discovered concept with its share of the class
logit, the image regions that express it most and its own CAM) and TCAV bar charts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.patches import Patch

from cifar_xai.concepts.discovery import ConceptBasis, ConceptExplanation
from cifar_xai.concepts.tcav import TCAVResult
from cifar_xai.plots import figure_png, overlay, plt

CROP = 16   # side of an example region: the concept's map cell and its neighbourhood


def top_regions(explanation: ConceptExplanation, image_size: int, per_concept: int = 8) -> list[list[dict]]:
    """For each concept, the `per_concept` positions (from distinct images) that express it most:
    {"image", "box": [top, left, bottom, right], "coefficient"} with a CROP-pixel box around the cell."""
    coefficients = explanation.coefficients                     # [N, H, W, k]
    n, height, width, k = coefficients.shape
    cell = image_size // height
    regions = []
    for j in range(k):
        best = coefficients[..., j].reshape(n, -1)
        per_image = best.argmax(axis=1)
        strongest = np.argsort(-best.max(axis=1))[:per_concept]
        rows = []
        for index in strongest:
            row, col = divmod(int(per_image[index]), width)
            top = int(np.clip(row * cell + cell // 2 - CROP // 2, 0, image_size - CROP))
            left = int(np.clip(col * cell + cell // 2 - CROP // 2, 0, image_size - CROP))
            rows.append({"image": int(index), "box": [top, left, top + CROP, left + CROP],
                         "coefficient": float(best[index].max())})
        regions.append(rows)
    return regions


def upsampled_maps(explanation: ConceptExplanation, basis: ConceptBasis, image_size: int) -> np.ndarray:
    """Each concept's CAM at the image size, positive part, scaled per concept to [0, 1]: [N, S, S, k]."""
    import tensorflow as tf  # imported here: the concepts CLI reads its flags before TensorFlow loads

    maps = explanation.maps(basis).clip(min=0)
    maps = maps / np.maximum(maps.max(axis=(0, 1, 2), keepdims=True), 1e-12)
    return tf.image.resize(maps.astype(np.float32), [image_size, image_size], "bilinear").numpy()


def atlas_record(basis: ConceptBasis, explanation: ConceptExplanation, regions: list[list[dict]],
                 extra: dict | None = None) -> dict:
    """The atlas as JSON: every concept's contribution (logit units and share), its example regions."""
    total = float(np.sum(np.abs(basis.importance)))
    concepts = [{
        "rank": rank, "concept": int(j), "contribution": float(basis.importance[j]),
        "share": float(abs(basis.importance[j]) / total) if total else 0.0,
        "logit_per_unit": float(basis.head_weights[j]), "regions": regions[j],
    } for rank, j in enumerate(basis.order, start=1)]
    return {
        "class": basis.class_name, "concepts": concepts, "k": len(basis.concepts),
        "reconstruction_error": {str(k): v for k, v in basis.errors.items()},
        "mean_logit": float(explanation.logits.mean()), "mean_residual": float(explanation.residual.mean()),
        "bias": explanation.bias,
        # The exact split: bias + contributions + residual against the model's logit.
        "largest_decomposition_error": float(np.max(np.abs(
            explanation.bias + explanation.contributions.sum(axis=1) + explanation.residual - explanation.logits))),
        **(extra or {}),
    }


def atlas_png(basis: ConceptBasis, explanation: ConceptExplanation, images: np.ndarray,
              regions: list[list[dict]], examples: int = 6, title: str | None = None) -> bytes:
    """One row per concept, most important first: its contribution, its strongest regions (enlarged
    crops) and, on the strongest image, the concept's own CAM."""
    maps = upsampled_maps(explanation, basis, images.shape[1])
    rows = len(basis.concepts)
    fig, axes = plt.subplots(rows, examples + 2, figsize=(1.25 * (examples + 2), 1.3 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    total = np.sum(np.abs(basis.importance)) or 1.0
    for r, j in enumerate(basis.order):
        axes[r, 0].text(0.0, 0.5, f"concept {r + 1}\n{basis.importance[j]:+.2f} logit\n"
                        f"({abs(basis.importance[j]) / total:.0%} of the\nconcepts' part)",
                        fontsize=7, va="center", transform=axes[r, 0].transAxes)
        for c, region in enumerate(regions[j][:examples], start=1):
            top, left, bottom, right = region["box"]
            axes[r, c].imshow(images[region["image"], top:bottom, left:right], interpolation="nearest")
        strongest = regions[j][0]["image"]
        axes[r, -1].imshow(overlay(images[strongest], maps[strongest, ..., j]), interpolation="nearest")
        if r == 0:
            axes[r, 1].set_title("regions that express it most", fontsize=7, loc="left")
            axes[r, -1].set_title("its CAM", fontsize=7)
    fig.suptitle(title or f"Concepts of '{basis.class_name}' in the CAM map (NMF, k = {rows})", fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def tcav_png(results: Sequence[TCAVResult], title: str = "TCAV") -> bytes:
    """Per layer, a bar per concept: mean TCAV score (error bar: spread over random sets), the random
    CAVs' mean as a tick; hatched grey when not significant. At a GAP head's map, where the
    score is 0 or 1 by construction, the bar is omitted and marked "linear"."""
    layers = list(dict.fromkeys(r.layer for r in results))
    concepts = list(dict.fromkeys(r.concept for r in results))
    classes = list(dict.fromkeys(r.class_name for r in results))
    fig, axes = plt.subplots(len(classes), 1, figsize=(max(5.0, 1.1 * len(layers) * max(1, len(concepts)) ** 0.5 + 2),
                                                         2.6 * len(classes)), squeeze=False)
    width = 0.8 / len(concepts)
    colours = plt.get_cmap("tab10")
    for ax, name in zip(axes[:, 0], classes, strict=True):
        for c, concept in enumerate(concepts):
            for x, layer in enumerate(layers):
                match = [r for r in results if (r.class_name, r.concept, r.layer) == (name, concept, layer)]
                if not match:
                    continue
                result = match[0]
                position = x - 0.4 + width * (c + 0.5)
                if result.constant_gradient:
                    sign = ("+" if result.positive else "-") if result.significant else "n.s."
                    ax.text(position, 0.02, f"projection {sign}", rotation=90, fontsize=8, ha="center",
                            va="bottom", color=colours(c) if result.significant else "grey")
                    continue
                ax.bar(position, result.score, width, yerr=np.std(result.scores), capsize=2,
                       color=colours(c) if result.significant else "lightgrey",
                       hatch=None if result.significant else "//", edgecolor="black", linewidth=0.4)
                ax.plot([position - width / 2, position + width / 2], [np.mean(result.null_scores)] * 2,
                        color="black", linewidth=1)
        ax.set_xticks(range(len(layers)), layers, fontsize=9, rotation=20, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_xlim(-0.6, len(layers) - 0.4)   # text-only slots (projections) do not widen the axes
        ax.set_ylabel(f"TCAV score\n'{name}'", fontsize=10)
        handles = [Patch(facecolor=colours(c), edgecolor="black", label=concept) for c, concept in enumerate(concepts)]
        ax.legend(handles=handles, fontsize=9, loc="upper left", ncol=min(4, len(concepts)))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{title}: grey hatched = not significant; black tick = random CAVs' mean; at a GAP head's map the "
                 "class weight's projection on the CAV is tested instead (+ / - when significant)", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)
