"""TCAV and concept discovery on CIFAR-10 data: the images each study reads, chosen in one place
for the CLI, the report and the shortcut benchmark.

- random sets: the model's own training images (its run's training split, validation excluded);
- the images of a class TCAV scores: held out from training: the run's validation split, or the
  test split for a model trained without one;
- the images concepts are discovered in: the class's training images (CRAFT's choice: the
  concepts are what the model learned the class from); the atlas shows their regions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cifar_xai.concepts.atlas import atlas_png, atlas_record, top_regions
from cifar_xai.concepts.discovery import (
    ConceptBasis,
    ConceptExplanation,
    discover_and_explain,
    region_deletion,
)
from cifar_xai.concepts.sets import MARK_CONCEPT, concept_images, is_folder, load_concept_folder
from cifar_xai.concepts.tcav import TCAVResult, random_sets, tcav
from cifar_xai.config import DISCOVERY_IMAGES, TCAV_RUNS, TCAV_SET_SIZE, TCAV_TARGET
from cifar_xai.data.pipeline import Splits, split_arrays
from cifar_xai.explain.inputs import class_id


def training_split(settings: dict | None) -> str:
    """The split the model trained on, from its run's config.json (the shipped one held out 5,000)."""
    return Splits.holding_out((settings or {}).get("validation", 0)).train


def held_out_split(settings: dict | None) -> str:
    """The validation split of the model's run, or the test split when it held none out."""
    return Splits.holding_out((settings or {}).get("validation", 0)).validation or "test"


def random_pool(data_dir, settings: dict | None, count: int) -> np.ndarray:
    """The first `count` training images: where random sets and the mark's backgrounds come from."""
    return split_arrays(data_dir, training_split(settings), limit=count)[0].numpy()


def named_concepts(specs: Sequence[str], seed: int = 0, backgrounds: np.ndarray | None = None,
                   count: int = TCAV_SET_SIZE) -> dict[str, np.ndarray]:
    """Concept name -> images, for built-in names and folders alike (a folder is named by its path)."""
    concepts = {}
    for spec in specs:
        if is_folder(spec):
            concepts[Path(spec).name or spec] = load_concept_folder(spec)
        else:
            concepts[spec] = concept_images(spec, count, seed, backgrounds)
    return concepts


def run_tcav(model: keras.Model, specs: Sequence[str], classes: Sequence[int | str], data_dir,
             settings: dict | None = None, layers: Sequence[str] | None = None, runs: int = TCAV_RUNS,
             images: int = 200, seed: int = 0, target: str = TCAV_TARGET,
             progress: Callable[[str], None] | None = None) -> list[TCAVResult]:
    """TCAV of every concept in `specs` for every class, on `images` held-out images of each class,
    against `runs` random sets of the model's training images."""
    targets = [class_id(name) for name in classes]
    # Disjoint random sets, and the mark's backgrounds after them (never in a random set).
    pool = random_pool(data_dir, settings, runs * TCAV_SET_SIZE + (TCAV_SET_SIZE * 2 if MARK_CONCEPT in specs else 0))
    randoms, backgrounds = pool[:runs * TCAV_SET_SIZE], pool[runs * TCAV_SET_SIZE:]
    concepts = named_concepts(specs, seed, backgrounds)
    held_out, labels = (t.numpy() for t in split_arrays(data_dir, held_out_split(settings)))
    class_images = {k: held_out[labels == k][:images] for k in targets}
    return tcav(model, concepts, class_images, random_sets(randoms, runs, seed=seed), layers, seed=seed, target=target,
                progress=progress)


@dataclass(frozen=True)
class Discovery:
    basis: ConceptBasis
    explanation: ConceptExplanation   # on the images the concepts were found in
    images: np.ndarray
    regions: list[list[dict]]         # per concept, the regions that express it most
    record: dict                      # the atlas as JSON

    def png(self, examples: int = 6) -> bytes:
        return atlas_png(self.basis, self.explanation, self.images, self.regions, examples)


def run_discovery(model: keras.Model, class_name: int | str, data_dir, settings: dict | None = None,
                  images: int = DISCOVERY_IMAGES, k: int | None = None, seed: int = 0,
                  test_images: int = 200) -> Discovery:
    """Concepts of a class from its training images (the model's training split), checked on its
    test images: `discover_class` on CIFAR-10 read from `data_dir`."""
    target = class_id(class_name)
    split = training_split(settings)
    train = split_arrays(data_dir, split, classes=(target,))[0].numpy()[:images]
    test = split_arrays(data_dir, "test", classes=(target,))[0].numpy()[:test_images]
    return discover_class(model, train, test, target, k, seed, {"split": split})


def discover_class(model: keras.Model, train: np.ndarray, test: np.ndarray, target: int, k: int | None = None,
                   seed: int = 0, extra: dict | None = None) -> Discovery:
    """Concepts of class `target` found in `train` (its images), the atlas, and the faithfulness
    check on `test` (its held-out images): painting over the top concepts' regions against
    painting over as many random regions."""
    basis, explanation = discover_and_explain(model, train, target, k, seed)
    faithfulness = region_deletion(model, test, basis, seed=seed)
    regions = top_regions(explanation, train.shape[1])
    record = atlas_record(basis, explanation, regions,
                          {"images": len(train), **(extra or {}), "region_deletion_test": faithfulness})
    return Discovery(basis, explanation, train, regions, record)
