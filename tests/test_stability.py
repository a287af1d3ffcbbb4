"""Explanation stability measures: identities they must satisfy and what chance gives."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_xai.interpretability.stability import (
    agreement,
    input_stability,
    retraining_stability,
    shifted,
    spearman,
    top_overlap,
)
from cifar_xai.models import build_model


def test_a_map_agrees_with_itself_and_its_exact_mirror_mapped_back():
    from cifar_xai.interpretability.stability import change_agreement

    maps = np.random.default_rng(1).uniform(size=(5, 32, 32))
    assert agreement(maps, maps) == {"spearman": pytest.approx(1.0), "top20_overlap": pytest.approx(1.0)}
    images = np.random.default_rng(2).uniform(0, 255, (5, 32, 32, 3))
    # A map that moves with the image (its red channel): mirrored and shifted back, it agrees exactly.
    exact = change_agreement(lambda batch: np.asarray(batch)[..., 0], images)
    for change in ("translate_1px", "mirror"):
        assert exact[change] == {"spearman": pytest.approx(1.0), "top20_overlap": pytest.approx(1.0)}, change
    # A map that ignores the image does not move with it, and mapping back shows it: a ramp
    # (brighter to the right) mirrored back is reversed (Spearman -1); a fixed random pattern
    # shifted back no longer lines up with itself (Spearman near 0).
    ramp = np.broadcast_to(np.arange(32, dtype=float), (32, 32))
    fixed = change_agreement(lambda batch: np.broadcast_to(ramp, np.asarray(batch).shape[:3]), images)
    assert fixed["mirror"]["spearman"] == pytest.approx(-1.0) and fixed["mirror"]["top20_overlap"] == 0.0
    pattern = np.random.default_rng(3).uniform(size=(32, 32))
    fixed = change_agreement(lambda batch: np.broadcast_to(pattern, np.asarray(batch).shape[:3]), images)
    assert abs(fixed["translate_1px"]["spearman"]) < 0.15


def test_unrelated_random_maps_agree_at_chance():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(size=(200, 32, 32)), rng.uniform(size=(200, 32, 32))
    assert abs(spearman(a, b).mean()) < 0.02
    assert top_overlap(a, b).mean() == pytest.approx(0.2, abs=0.01)
    assert spearman(np.zeros((1, 4)), a[:1, 0, :4]).tolist() == [0.0]   # a constant map: no correlation


def test_a_model_is_perfectly_stable_with_itself_and_shifting_moves_one_pixel():
    keras.utils.set_random_seed(0)
    model = build_model("interpretable_cnn", "small")
    images = np.random.default_rng(3).integers(0, 256, (6, 32, 32, 3)).astype(np.float32)
    same = retraining_stability([model, model], images, ["cam", "saliency"])
    assert same["prediction_agreement"] == 1.0
    for values in same["methods"].values():
        assert values["spearman"] == pytest.approx(1.0) and values["top20_overlap"] == pytest.approx(1.0)
    moved = shifted(images)
    assert np.array_equal(moved[:, :, 1:], images[:, :, :-1]) and np.array_equal(moved[:, :, 0], images[:, :, 0])
    changed = input_stability(model, images, ["cam", "gradcam"])
    assert set(changed["methods"]) == {"cam", "gradcam"}
    for values in changed["methods"].values():
        assert -1 <= values["mirror"]["spearman"] <= 1 and 0 <= values["translate_1px"]["top20_overlap"] <= 1
