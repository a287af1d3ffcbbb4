"""Honest diagnostics of a pushed prototype network: the traps ProtoPNet implementations fall into,
measured rather than assumed away.

- duplicates: prototypes pushed onto the same latent patch are one prototype counted twice;
- purity: the share of each prototype's 10 nearest training patches that come from its own class
  (a prototype that also matches other classes' patches explains little);
- localisation is measured by the suite's grid pointing game on the `prototypes` map
  (cifar_xai.explain.prototypes.prototype_evidence), beside CAM on the CAM network.
"""

from __future__ import annotations

from collections import Counter

import keras
import numpy as np

from cifar_xai.models import DISTANCES_LAYER
from cifar_xai.prototypes.push import latent_maps, prototype_classes, squared_distances

PURITY_NEIGHBOURS = 10


def duplicates(model: keras.Model) -> dict:
    """Prototypes sharing a source patch (image, row, column): the distinct count and the groups."""
    positions = model.get_layer(DISTANCES_LAYER).source_positions.numpy()
    keys = [tuple(p) for p in positions.tolist()]
    groups = [[j for j, key in enumerate(keys) if key == shared] for shared, n in Counter(keys).items() if n > 1]
    return {"prototypes": len(keys), "distinct": len(set(keys)), "duplicate_groups": groups}


def purity(model: keras.Model, images: np.ndarray, labels: np.ndarray, neighbours: int = PURITY_NEIGHBOURS) -> dict:
    """Per prototype, the share of its `neighbours` nearest latent patches of `images` (training
    images, with `labels`) that belong to its class; their mean and the least pure prototype."""
    vectors = model.get_layer(DISTANCES_LAYER).vectors.numpy()
    latent = latent_maps(model, images)
    n, height, width, _ = latent.shape
    distances = squared_distances(latent, vectors).reshape(n * height * width, -1)
    patch_labels = np.repeat(np.asarray(labels), height * width)
    nearest = np.argpartition(distances, neighbours, axis=0)[:neighbours]          # [neighbours, M]
    shares = (patch_labels[nearest] == prototype_classes(model)[None, :]).mean(axis=0)
    return {"mean": float(shares.mean()), "min": float(shares.min()), "per_prototype": shares.tolist(),
            "images": int(n), "neighbours": neighbours}
