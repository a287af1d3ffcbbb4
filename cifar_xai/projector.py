"""The embedding projector's files for a run: its test images' features (the pooled CAM map the
classifier reads, or the hidden layer of a dense head), with a sprite of the images and their
label, prediction, confidence and OOD score, so TensorBoard's own Projector tab shows them. For
prototype_cnn, its prototypes join them as extra points: each as the training image it was pushed
onto, in the same feature space, labelled `prototype <j>` with its class.

Written into the run's `tensorboard/projector/` folder (TSV tensors: no checkpoint needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from scipy.special import softmax
from tensorboard.plugins import projector

from cifar_xai import CLASS_NAMES
from cifar_xai.data.pipeline import split_arrays
from cifar_xai.explain.prototypes import source_patches
from cifar_xai.files import write_bytes, write_text
from cifar_xai.images import png_bytes
from cifar_xai.model_io import SHIPPED_MODEL, load_model
from cifar_xai.models import is_prototype_model
from cifar_xai.prototypes.push import prototype_classes
from cifar_xai.uncertainty.calibration import temperature_of
from cifar_xai.uncertainty.detector import OODDetector, model_outputs

# As many test images as the Projector stays quick with: a 32 x 32 sprite of 32-px images.
PROJECTED_IMAGES = 1024


def write_projector(model: keras.Model, images: np.ndarray, labels: np.ndarray, log_dir: str | os.PathLike,
                    detector: OODDetector | None = None, count: int = PROJECTED_IMAGES) -> Path:
    """Write the first `count` images' features, metadata and sprite into `log_dir`; its folder."""
    folder = Path(log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = np.asarray(images)[:count], np.asarray(labels)[:count]
    kinds = ["test image"] * len(images)
    if is_prototype_model(model):
        sources, _ = source_patches(model)
        owners = prototype_classes(model)
        images = np.concatenate([images, sources.astype(images.dtype)])
        labels = np.concatenate([labels, owners])
        kinds += [f"prototype {j}" for j in range(len(sources))]
    # One forward pass for the features, the probabilities and the OOD score.
    outputs = detector.outputs(model, images) if detector else model_outputs(model, images)
    features = outputs["features"]
    probabilities = softmax(outputs["class_logits"] / temperature_of(model), axis=1)
    scores = detector.score_arrays(outputs, [detector.default])[detector.default] if detector else None
    flagged = ~detector.in_distribution({detector.default: scores}) if detector else None
    write_text(folder / "features.tsv", "\n".join("\t".join(f"{v:.5g}" for v in row) for row in features) + "\n")
    header = "label\tprediction\tconfidence\tcorrect\tpoint" + ("\tood_score\tflagged_ood" if detector else "")
    rows = []
    for i, p in enumerate(probabilities):
        row = (f"{CLASS_NAMES[labels[i]]}\t{CLASS_NAMES[p.argmax()]}\t{p.max():.3f}\t{p.argmax() == labels[i]}"
               f"\t{kinds[i]}")
        if detector:
            row += f"\t{scores[i]:.3f}\t{bool(flagged[i])}"
        rows.append(row)
    write_text(folder / "metadata.tsv", header + "\n" + "\n".join(rows) + "\n")
    write_bytes(folder / "sprite.png", _sprite(images))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = f"{model.name} features"
    embedding.tensor_path, embedding.metadata_path = "features.tsv", "metadata.tsv"
    embedding.sprite.image_path = "sprite.png"
    embedding.sprite.single_image_dim.extend(images.shape[1:3][::-1])
    projector.visualize_embeddings(os.fspath(folder), config)
    return folder


def _sprite(images: np.ndarray) -> bytes:
    side = int(np.ceil(np.sqrt(len(images))))
    height, width = images.shape[1:3]
    sheet = np.zeros((side * height, side * width, 3), np.uint8)
    for i, image in enumerate(images):
        row, col = divmod(i, side)
        sheet[row * height:(row + 1) * height, col * width:(col + 1) * width] = image
    return png_bytes(sheet)


def refresh_run_projector(model_path: str | os.PathLike | None, detector: OODDetector, data_dir) -> Path | None:
    """A run's Projector files (trainers.fit wrote them before any detector existed), rewritten with
    each image's OOD score and flag; None for a model outside a run folder or an open-set run."""
    folder = Path(model_path or SHIPPED_MODEL).parent / "tensorboard" / "projector"
    if not (folder / "projector_config.pbtxt").is_file() or detector.meta.get("known_classes"):
        return None
    images, labels = split_arrays(data_dir, "test", limit=PROJECTED_IMAGES)
    return write_projector(load_model(model_path), images.numpy(), labels.numpy(), folder, detector)
