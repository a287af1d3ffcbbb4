"""The registries of methods and metrics: one list each, read by everything, no name twice."""

import numpy as np
import pytest

from cifar_xai.explain.methods import METHODS
from cifar_xai.explain.registry import register as register_method
from cifar_xai.interpretability import sparseness
from cifar_xai.interpretability.metrics import METRICS
from cifar_xai.interpretability.registry import ExplanationMetric, Figure, figures
from cifar_xai.interpretability.registry import register as register_metric
from cifar_xai.interpretability.settings import QUICK, Settings
from cifar_xai.models import build_model


def test_registering_a_method_name_twice_is_an_error_and_keeps_the_first():
    before = METHODS["gradcam"]
    with pytest.raises(ValueError, match="already registered"):
        register_method("gradcam", "Another Grad-CAM")(lambda probe, images, classes: images)
    assert METHODS["gradcam"] is before


def test_registering_a_metric_name_twice_is_an_error_and_keeps_the_first():
    before = METRICS["road"]

    class AnotherRoad(ExplanationMetric):
        name, title, group = "road", "Another ROAD", "faithfulness"

    with pytest.raises(ValueError, match="already registered"):
        register_metric(AnotherRoad)
    assert METRICS["road"] is before


def test_a_metric_must_name_a_known_group_and_known_needs():
    class Nameless(ExplanationMetric):
        group = "faithfulness"

    class Needy(ExplanationMetric):
        name, title, group, needs = "needy", "Needy", "complexity", frozenset({"a_gpu"})

    with pytest.raises(ValueError, match="name and a group"):
        register_metric(Nameless)
    with pytest.raises(ValueError, match="a_gpu"):
        register_metric(Needy)
    assert "needy" not in METRICS


def test_every_figure_key_is_unique_and_declares_a_known_direction():
    keys = [figure.key for figure in figures(Settings())]
    assert len(keys) == len(set(keys))
    assert all(figure.better in (None, "higher", "lower") for figure in figures(Settings()))
    # Grid sizes come from the settings: the keys follow them.
    assert "gridpg_4x4_median" in [f.key for f in figures(Settings(grid_sizes=(4,)))]
    assert "gridpg_3x3_median" not in [f.key for f in figures(Settings(grid_sizes=(4,)))]


def test_the_grid_pointing_game_declares_what_a_dense_head_lacks():
    gap, dense = build_model("interpretable_cnn", "small"), build_model("standard_cnn", "small")
    assert METRICS["gridpg"].unmet(gap) is None
    assert "32x32" in METRICS["gridpg"].unmet(dense)
    assert all(METRICS[name].unmet(dense) is None for name in ("faithfulness", "road", "sanity", "sparseness"))


def test_figure_headings_say_which_direction_is_better():
    assert Figure("x", "ROAD MoRF", "lower").heading == "ROAD MoRF (lower better)"
    assert Figure("x", "2x2 IQR").heading == "2x2 IQR"


def _gini_by_pairs(values: np.ndarray) -> float:
    """The textbook definition, independent of the sorted form: mean absolute difference over
    all pairs, divided by twice the mean."""
    values = np.abs(values.ravel()).astype(np.float64)
    return float(np.abs(values[:, None] - values[None, :]).mean() / (2 * values.mean()))


def test_sparseness_is_the_gini_index_of_the_absolute_map():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 8, 8))
    expected = [_gini_by_pairs(m) for m in maps]
    np.testing.assert_allclose(sparseness.gini(maps), expected, rtol=1e-10)
    point = np.zeros((1, 8, 8))
    point[0, 3, 4] = 5.0
    assert sparseness.gini(point)[0] == pytest.approx(1 - 1 / 64)     # all mass on one pixel
    assert sparseness.gini(np.ones((1, 8, 8)))[0] == pytest.approx(0.0)   # spread evenly
    assert sparseness.gini(np.zeros((1, 8, 8)))[0] == 0.0              # no attribution: no NaN
    # A sharper map is sparser: a narrow Gaussian above a wide one.
    grid = np.mgrid[-8:8, -8:8]
    narrow, wide = (np.exp(-(grid ** 2).sum(0) / (2 * s ** 2))[None] for s in (1.0, 4.0))
    assert sparseness.gini(narrow)[0] > sparseness.gini(wide)[0]


def test_quick_settings_keep_every_metric_reading_the_same_first_images():
    # ROAD and sparseness reuse the deletion game's maps only if they read no more images.
    assert QUICK.road_images <= QUICK.faithfulness_images
    assert Settings().road_images <= Settings().faithfulness_images
