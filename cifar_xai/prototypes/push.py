"""Push (ProtoPNet's projection step): every prototype becomes the nearest latent patch of a
*training* image of its own class, so each one is literally "this part of that training image".

The images are the training split the model learned from (never validation or test images: a
prototype that is a test patch would leak the answer into the explanation). The source image,
the patch's position and the box of its most similar pixels are stored in the model itself.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.errors import UserError
from cifar_xai.models import ADDON_LAYER, DISTANCES_LAYER
from cifar_xai.probes import layer_activations
from cifar_xai.prototype_layers import SOURCE_SHAPE, log_similarity

BOX_PERCENTILE = 95   # ProtoPNet's: the box around the pixels above this percentile of the upsampled similarity


def prototype_classes(model: keras.Model) -> np.ndarray:
    """[M] the class each prototype belongs to, from the last layer's +1 initialisation order."""
    prototypes = model.get_layer(DISTANCES_LAYER).prototypes
    classes = model.output.shape[-1]
    return np.arange(prototypes) // (prototypes // classes)


def latent_maps(model: keras.Model, images, batch_size: int = 500) -> np.ndarray:
    """The add-on's latent map of raw images: float32 [N, H, W, D]."""
    return layer_activations(model, images, ADDON_LAYER, batch_size)


def squared_distances(latent: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """[N, H, W, D] x [M, D] -> [N, H, W, M], the layer's own formula in float64."""
    latent, vectors = latent.astype(np.float64), vectors.astype(np.float64)
    return np.maximum((latent**2).sum(-1, keepdims=True) - 2 * latent @ vectors.T + (vectors**2).sum(-1), 0)


def activation_box(similarity: np.ndarray, size: int) -> list[int]:
    """[top, left, bottom, right] around the pixels of the upsampled similarity map (h x w -> size)
    at or above its BOX_PERCENTILE-th percentile."""
    upsampled = tf.image.resize(similarity[None, ..., None].astype(np.float32), [size, size], "bilinear")[0, ..., 0]
    mask = upsampled.numpy() >= np.percentile(upsampled, BOX_PERCENTILE)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1]


def push(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> list[dict]:
    """Move every prototype onto its nearest own-class latent patch of `images` (the training split,
    raw pixels, with `labels`); return, per prototype, where it came from and how far it moved."""
    layer = model.get_layer(DISTANCES_LAYER)
    vectors = layer.vectors.numpy()
    owner = prototype_classes(model)
    labels = np.asarray(labels)
    best = np.full(len(vectors), np.inf)
    found = np.zeros_like(vectors)
    where = np.full((len(vectors), 3), -1, np.int64)
    for start in range(0, len(images), batch_size):
        latent = latent_maps(model, images[start:start + batch_size], batch_size)
        n, height, width, _ = latent.shape
        distances = squared_distances(latent, vectors).reshape(n * height * width, -1)
        # A patch may only become a prototype of its own image's class.
        foreign = labels[start:start + n][:, None] != owner[None, :]
        distances[np.repeat(foreign, height * width, axis=0)] = np.inf
        nearest = distances.argmin(axis=0)
        closer = distances[nearest, np.arange(len(vectors))] < best
        for j in np.flatnonzero(closer):
            image, rest = divmod(int(nearest[j]), height * width)
            row, col = divmod(rest, width)
            best[j] = distances[nearest[j], j]
            found[j] = latent[image, row, col]
            where[j] = (start + image, row, col)
    missing = np.flatnonzero(where[:, 0] < 0)
    if len(missing):
        raise UserError(f"no training images of the class of prototype(s) {missing[:5].tolist()} to push onto")
    layer.vectors.assign(found.astype(np.float32))
    sources = np.stack([np.asarray(images[i], np.float32) for i in where[:, 0]])
    source_latent = latent_maps(model, sources)                           # one pass over the sources
    boxes = [activation_box(log_similarity(tf.constant(squared_distances(source_latent[j:j + 1], found[j:j + 1])
                                                       [0, ..., 0])).numpy(), sources.shape[1])
             for j in range(len(where))]
    if sources.shape[1:] == SOURCE_SHAPE:
        layer.source_images.assign(sources)
    layer.source_positions.assign(where.astype(np.int32))
    layer.source_boxes.assign(np.array(boxes, np.int32))
    return [{"prototype": j, "class": int(owner[j]), "image": int(where[j, 0]), "row": int(where[j, 1]),
             "col": int(where[j, 2]), "box": boxes[j], "squared_distance_moved": float(best[j])}
            for j in range(len(vectors))]
