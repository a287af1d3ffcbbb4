""""This looks like that": a prototype network's decision, read off the network itself.

    found = explain_prototypes(model, images, classes=None, top_k=3)

For each image and its class k (predicted, or given as `explain` takes classes), the logit is
exactly sum_j W[j, k] * s_j, where s_j is prototype j's best log-similarity anywhere on the image
(the last layer has no bias). Each prototype's contribution W[j, k] * s_j is therefore exact, and
they add up to the logit. The top `top_k` by contribution come with their similarity map on the
image (upsampled to its size), the training image each prototype was pushed onto and the box of
its patch there (stored in the model by push).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.errors import UserError
from cifar_xai.explain.inputs import as_image_batch, check_model, target_classes
from cifar_xai.explain.registry import register
from cifar_xai.models import DISTANCES_LAYER, LOGITS_LAYER, SIMILARITY_MAPS_LAYER, is_prototype_model
from cifar_xai.probes import Probe, probe_for
from cifar_xai.prototypes.push import prototype_classes


def require_prototypes(model: keras.Model) -> keras.Model:
    model = check_model(model)
    if not is_prototype_model(model):
        raise UserError(f"{model.name} has no prototypes; explain a prototype_cnn (trainers.fit --model prototype_cnn) "
                        "or use another method")
    return model


@dataclass(frozen=True)
class PrototypeExplanation:
    class_index: int
    logit: float                 # the model's class logit (before any temperature)
    contributions: np.ndarray    # [M]: W[j, k] * s_j for every prototype; they sum to `logit`
    top: np.ndarray              # [top_k] prototype ids, largest contribution first
    similarities: np.ndarray     # [top_k] best log-similarity of each on the image
    weights: np.ndarray          # [top_k] W[j, k]
    maps: np.ndarray             # [top_k, H, W] similarity maps upsampled to the image, raw log-similarity
    prototype_classes: np.ndarray  # [top_k] the class each prototype belongs to
    sources: list[dict]          # [top_k] {"image": split index, "row", "col", "box": [t, l, b, r]}


def similarity_maps(model: keras.Model, images) -> tuple[np.ndarray, np.ndarray]:
    """(log-similarity maps [N, h, w, M] at the latent resolution, logits [N, C]) for raw images."""
    maps, logits = probe_for(model, SIMILARITY_MAPS_LAYER).features_and_logits(as_image_batch(images))
    return maps.numpy(), logits.numpy()


def explain_prototypes(model: keras.Model, images, classes=None, top_k: int = 3) -> list[PrototypeExplanation]:
    """One `PrototypeExplanation` per image (see the module doc)."""
    model = require_prototypes(model)
    batch = as_image_batch(images)
    targets = target_classes(model, batch, classes).numpy()
    maps, logits = similarity_maps(model, batch)
    best = maps.max(axis=(1, 2))                                        # [N, M]: what the last layer reads
    weights = np.asarray(model.get_layer(LOGITS_LAYER).kernel, np.float64)  # [M, C]
    layer = model.get_layer(DISTANCES_LAYER)
    positions, boxes = layer.source_positions.numpy(), layer.source_boxes.numpy()
    owners = prototype_classes(model)
    top_k = min(top_k, weights.shape[0])
    upsampled = tf.image.resize(maps, batch.shape[1:3], "bilinear").numpy()
    out = []
    for i, k in enumerate(targets):
        contributions = weights[:, k] * best[i]
        top = np.argsort(-contributions)[:top_k]
        out.append(PrototypeExplanation(
            class_index=int(k), logit=float(logits[i, k]), contributions=contributions, top=top,
            similarities=best[i, top], weights=weights[top, k], maps=np.moveaxis(upsampled[i][..., top], -1, 0),
            prototype_classes=owners[top],
            sources=[{"image": int(positions[j, 0]), "row": int(positions[j, 1]), "col": int(positions[j, 2]),
                      "box": boxes[j].tolist()} for j in top],
        ))
    return out


@register("prototypes", "Prototypes", needs_prototypes=True)
def prototype_evidence(probe: Probe, images, classes):
    """A map for the metrics every other method is held to: sum_j W[j, k] * similarity_j(x, y), the
    class's prototype evidence at each position (the last layer reads each map's maximum)."""
    def build():
        maps_probe = probe_for(probe.model, SIMILARITY_MAPS_LAYER)
        kernel = probe.model.get_layer(LOGITS_LAYER).kernel

        @tf.function(reduce_retracing=True)
        def run(images, classes):
            maps = maps_probe.features_and_logits(images)[0]
            weights = tf.gather(tf.transpose(tf.cast(kernel, tf.float32)), classes)
            return tf.nn.relu(tf.einsum("nhwm,nm->nhw", maps, weights))

        return run

    return probe.compiled("prototype_evidence", build)(images, classes)


def source_patches(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """(source images uint8 [M, 32, 32, 3], boxes [M, 4]) of every prototype, as push stored them."""
    layer = require_prototypes(model).get_layer(DISTANCES_LAYER)
    if (layer.source_positions.numpy()[:, 0] < 0).any():
        raise UserError(f"{model.name}'s prototypes were never pushed onto training images; finish its training")
    return np.clip(layer.source_images.numpy(), 0, 255).astype(np.uint8), layer.source_boxes.numpy()
