"""The interpretability metrics on hand-made cases whose answers are known."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_xai.interpretability import faithfulness, gridpg, sanity
from cifar_xai.interpretability.attributions import attribution_maps
from cifar_xai.metrics import calibration, row_normalized
from cifar_xai.models import build_model


def test_cell_shares_count_the_mass_inside_the_target_cell():
    maps = np.zeros((3, 64, 64), np.float32)
    maps[0, 32:, :32] = 1.0       # all in cell 2 (row 1, column 0)
    maps[1] = 1.0                 # uniform
    # maps[2] stays zero: no attribution at all
    shares = gridpg.cell_shares(maps, 2, np.array([2, 0, 3]))
    np.testing.assert_allclose(shares, [1.0, 0.25, 0.25])
    assert gridpg.cell_shares(maps[:1], 2, np.array([0]))[0] == 0.0
    negative = -np.ones((1, 96, 96), np.float32)
    negative[0, :32, :32] = 2.0   # negative evidence is not counted
    assert gridpg.cell_shares(negative, 3, np.array([0]))[0] == pytest.approx(1.0)


def test_grids_tile_distinct_confident_classes_in_their_cells():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)
    images = rng.integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
    probabilities = np.eye(10)[labels] * 0.95 + 0.005
    pool = gridpg.confident_pool(probabilities, labels, 0.9)
    grids = gridpg.make_grids(images, pool, 3, count=5, seed=1)
    assert grids.canvases.shape == (5, 96, 96, 3)
    for g in range(5):
        assert len(set(grids.cell_classes[g])) == 9
        assert grids.target_class[g] == grids.cell_classes[g, grids.target_cell[g]]
        row, col = divmod(int(grids.target_cell[g]), 3)
        cell = grids.canvases[g, row * 32:(row + 1) * 32, col * 32:(col + 1) * 32]
        candidates = images[labels == grids.target_class[g]]
        assert any(np.array_equal(cell, c) for c in candidates)
    with pytest.raises(ValueError, match="needs 9 classes"):
        gridpg.make_grids(images, {k: pool[k] for k in range(5)}, 3, count=1)


def test_confident_pool_keeps_only_correct_confident_images():
    probabilities = np.array([[0.95, 0.05], [0.6, 0.4], [0.05, 0.95], [0.97, 0.03]])
    pool = gridpg.confident_pool(probabilities, np.array([0, 0, 1, 1]), 0.9)
    assert pool[0].tolist() == [0] and pool[1].tolist() == [2]


def quadrant_model(images, training=False):
    """P(class 0) = mean brightness of the top-left quadrant: only those pixels matter."""
    brightness = tf.reduce_mean(tf.cast(images, tf.float32)[:, :16, :16], axis=[1, 2, 3]) / 255
    return tf.stack([brightness, 1 - brightness], axis=1)


def test_deletion_and_insertion_reward_the_faithful_map():
    images = np.zeros((4, 32, 32, 3), np.float32)
    images[:, :16, :16] = 200  # the quadrant the model reads is bright; blurring darkens it
    faithful = np.zeros((4, 32, 32), np.float32)
    faithful[:, :16, :16] = 1
    unfaithful = 1 - faithful
    classes = np.zeros(4, np.int64)
    good = faithfulness.curves(quadrant_model, images, faithful, classes, steps=8)
    assert good["deletion"].shape == (4, 9)
    bad = faithfulness.curves(quadrant_model, images, unfaithful, classes, steps=8)
    assert faithfulness.area_under(good["deletion"]).mean() < faithfulness.area_under(bad["deletion"]).mean()
    assert faithfulness.area_under(good["insertion"]).mean() > faithfulness.area_under(bad["insertion"]).mean()
    # The faithful map removes the whole quadrant in the first quarter of the pixels.
    np.testing.assert_allclose(good["deletion"][:, 2], 0.0, atol=1e-6)
    np.testing.assert_allclose(good["deletion"][:, 0], 200 / 255, rtol=1e-5)


def test_area_under_and_blur_on_known_inputs():
    assert faithfulness.area_under(np.full((1, 11), 0.5))[0] == pytest.approx(0.5)
    assert faithfulness.area_under(np.linspace(0, 1, 11)[None])[0] == pytest.approx(0.5)
    flat = np.full((1, 32, 32, 3), 77.0, np.float32)
    np.testing.assert_allclose(faithfulness.blur(flat), flat, rtol=1e-5)


def test_ranks_order_by_importance_and_break_ties_randomly():
    maps = np.zeros((1, 4, 4), np.float32)
    maps[0, 3, 3], maps[0, 0, 1] = 2.0, 1.0
    order = faithfulness.ranks(maps)
    assert order[0, 3, 3] == 0 and order[0, 0, 1] == 1
    assert sorted(order.ravel().tolist()) == list(range(16))
    flat_positions = faithfulness.ranks(np.zeros((1, 4, 4), np.float32)).ravel()
    assert flat_positions.tolist() != list(range(16))  # not raster order


def test_rankdata_averages_ties_and_spearman_detects_order():
    np.testing.assert_allclose(sanity.rankdata(np.array([[10, 20, 20, 5]])), [[2, 3.5, 3.5, 1]])
    a = np.random.default_rng(0).uniform(size=(3, 8, 8))
    np.testing.assert_allclose(sanity.spearman(a, a), 1.0)
    np.testing.assert_allclose(sanity.spearman(a, 1 - a), -1.0)
    assert sanity.spearman(np.ones((1, 8, 8)), a[:1])[0] == 0.0


def test_cascading_randomization_leaves_the_model_alone_and_decorrelates_gradcam():
    keras.utils.set_random_seed(0)
    model = build_model("interpretable_cnn", "small")
    before = [w.copy() for w in model.get_weights()]
    images = np.random.default_rng(1).uniform(0, 255, size=(4, 32, 32, 3)).astype(np.float32)

    def explain_fn(m):
        return {name: attribution_maps(m, images, name, [0, 1, 2, 3]) for name in ("gradcam", "sobel")}

    result = sanity.cascading_randomization(model, explain_fn)
    layers = result.pop("_layers")
    assert layers[0] == "logits" and layers[-1] == "stem_conv" and len(result["gradcam"]) == len(layers)
    assert result["sobel"] == pytest.approx([1.0] * len(layers))  # model-independent: never decorrelates
    assert result["gradcam"][-1] < 0.9
    for original, now in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(original, now)


def test_baselines_are_what_they_say():
    images = np.random.default_rng(2).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    gaussian = attribution_maps(None, images, "gaussian", [0, 0])
    assert np.unravel_index(gaussian[0].argmax(), (32, 32)) in {(15, 15), (15, 16), (16, 15), (16, 16)}
    assert attribution_maps(None, np.full((1, 32, 32, 3), 9.0), "sobel", [0]).max() == 0
    first = attribution_maps(None, images, "random", [0, 0])
    np.testing.assert_array_equal(first, attribution_maps(None, images, "random", [0, 0]))
    assert not np.array_equal(first[0], first[1])


def test_expected_calibration_error_by_hand():
    # Two bins used: confidence 0.9 (2 images, 1 right) and 0.6 (2 images, 2 right).
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    result = calibration(probabilities, labels, bins=10)
    assert result["ece"] == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))
    assert sum(result["bin_counts"]) == 4


def test_row_normalized_confusion():
    np.testing.assert_allclose(row_normalized([[3, 1], [0, 0]]), [[0.75, 0.25], [0, 0]])


def test_noisy_linear_imputation_fills_a_hole_in_a_linear_image_exactly():
    from cifar_xai.interpretability.road import noisy_linear_impute

    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([3 * rows + 2 * cols + 10, 100 + rows, 200 - cols], axis=-1)[None].astype(np.float32)
    removed = np.zeros((1, 32, 32), bool)
    removed[0, 5:20, 8:25] = True   # interior: every neighbour weight is in the image
    filled = noisy_linear_impute(np.where(removed[..., None], 0, image), removed, noise=0)
    np.testing.assert_allclose(filled, image, atol=1e-3)
    noisy = noisy_linear_impute(image, removed, noise=5.0)
    np.testing.assert_array_equal(noisy[~removed], image[~removed])   # known pixels are kept
    assert 3 < np.std(noisy[removed] - image[removed]) < 7


def test_road_ranks_a_map_that_points_at_the_evidence_above_one_that_does_not():
    from cifar_xai.interpretability.road import road_curves, road_scores

    # A model that looks only at the top-left quadrant's brightness: class 1 when it is bright.
    inputs = keras.Input((32, 32, 3))
    corner = keras.layers.Cropping2D(((0, 16), (0, 16)))(inputs)
    brightness = keras.layers.GlobalAveragePooling2D()(corner)
    logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[-0.1, 0.1]] * 3),
                                bias_initializer=keras.initializers.Constant([10.0, -10.0]))(brightness)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 60, (8, 32, 32, 3)).astype(np.float32)
    images[:, :16, :16] += 180        # bright corner, dark elsewhere: class 1
    classes = np.ones(8, np.int64)
    assert (np.asarray(model(images)).argmax(1) == 1).all()
    pointing = np.zeros((8, 32, 32), np.float32)
    pointing[:, :16, :16] = 1 + rng.uniform(size=(8, 16, 16))
    elsewhere = 1 - pointing / 2
    right = road_scores(road_curves(model, images, pointing, classes))
    wrong = road_scores(road_curves(model, images, elsewhere, classes))
    assert right["road_morf"] < wrong["road_morf"] - 0.3
    assert right["road_lerf"] > wrong["road_lerf"] + 0.3
    assert right["road_lerf_minus_morf"] > 0 > wrong["road_lerf_minus_morf"]
