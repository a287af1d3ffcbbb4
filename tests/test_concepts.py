"""Concept explanations: the planted mark, CAVs, TCAV's statistics on a model with a known answer,
NMF discovery's exact logit split, concept sets and the CLI's one-line errors."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_xai.concepts.cav import fit_cav
from cifar_xai.concepts.discovery import (
    choose_k,
    delete_concept,
    discover_concepts,
    explain_concepts,
    nmf,
    region_deletion,
    relative_error,
)
from cifar_xai.concepts.sets import CONCEPT_SETS, concept_images, load_concept_folder
from cifar_xai.concepts.tcav import random_sets, tcav, welch_t_test
from cifar_xai.config import MARK_COLOUR, MIN_CONCEPT_IMAGES
from cifar_xai.data.marks import mark_box, planted_corners, stamp
from cifar_xai.errors import UserError
from cifar_xai.images import save_png
from cifar_xai.models import build_model
from tests.conftest import run_module

MAGENTA = np.array(MARK_COLOUR, np.float32)


def _is_mark(images: np.ndarray) -> np.ndarray:
    """[N, H, W] true where a pixel has the mark's colour."""
    return np.all(np.abs(images - MAGENTA) < 1, axis=-1)


# --- the planted mark -------------------------------------------------------------------------

def test_stamp_paints_exactly_the_box_and_minus_one_leaves_the_image():
    images = np.full((5, 32, 32, 3), 100, np.uint8)
    out = stamp(images, [0, 1, 2, 3, -1]).numpy()
    for corner in range(4):
        top, left, bottom, right = mark_box(corner)
        expected = np.zeros((32, 32), bool)
        expected[top:bottom, left:right] = True
        assert np.array_equal(_is_mark(out[corner]), expected)
        assert np.all(out[corner][~expected] == 100)
    assert np.array_equal(out[4], images[4])


def test_planted_corners_mark_a_share_of_the_target_class_only_and_the_same_images_each_time():
    indices = np.arange(20000)
    labels = indices % 10
    corners = planted_corners(indices, labels, target=3, share=0.3, seed=0).numpy()
    marked = corners >= 0
    assert not marked[labels != 3].any()
    assert abs(marked[labels == 3].mean() - 0.3) < 0.03
    assert set(np.unique(corners[marked])) == {0, 1, 2, 3}
    again = planted_corners(indices[::-1], labels[::-1], target=3, share=0.3, seed=0).numpy()[::-1]
    assert np.array_equal(corners, again)   # decided by the index, not by the order of a batch


def test_training_pipeline_stamps_the_planted_class(tiny_data_dir):
    from cifar_xai.data.pipeline import training_dataset

    ds, _ = training_dataset(tiny_data_dir, "train", 60, seed=0, pad=2, plant=(3, 1.0))
    images, labels = (t.numpy() for t in next(iter(ds)))
    has_mark = _is_mark(images).sum(axis=(1, 2)) >= 20   # a 5x5 mark, whole after a 2-px shift
    assert (labels == 3).any()
    assert has_mark[labels == 3].all() and not has_mark[labels != 3].any()


def test_fit_refuses_a_bad_planted_mark():
    result = run_module("trainers.fit", "--plant-mark", "cat:1.5")
    assert result.returncode == 2
    assert "--plant-mark" in result.stderr and "share" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- CAVs and the t-test --------------------------------------------------------------------------

def test_cav_finds_the_separating_direction_and_reports_held_out_accuracy():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=500)
    direction /= np.linalg.norm(direction)
    random = rng.normal(size=(60, 500))
    concept = rng.normal(size=(60, 500)) + 8 * direction
    cav = fit_cav(concept, random)
    assert cav.accuracy == 1.0
    assert abs(np.linalg.norm(cav.direction) - 1) < 1e-9
    assert cav.direction @ direction > 0.7
    # Two sets from one distribution: nothing to separate on unseen images.
    chance = np.mean([fit_cav(rng.normal(size=(60, 500)), rng.normal(size=(60, 500)), seed).accuracy
                      for seed in range(10)])
    assert 0.3 < chance < 0.7


def test_welch_t_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.3, 1.0):
        a, b = rng.normal(shift, 1, 20), rng.normal(0, 2, 25)
        assert welch_t_test(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-6)
    assert welch_t_test([1, 1, 1], [1, 1, 1]) == 1.0
    assert welch_t_test([1, 1, 1], [0, 0, 0]) == 0.0


def _known_answer_model(uses_mark: bool) -> keras.Model:
    """A two-channel network whose first block measures the mark's colour (channel 0) and
    brightness (channel 1), with a GAP head: the 'cat' logit reads the colour channel when
    `uses_mark`, no logit does otherwise. TCAV's answer is known by construction."""
    image = keras.Input((32, 32, 3), name="image")
    detector = keras.layers.Conv2D(2, 1, name="block1a_conv")
    x = keras.layers.ReLU(name="block1a_relu")(detector(image))
    lift = keras.layers.Conv2D(2, 1, name="block1b_conv")
    features = keras.layers.ReLU(name="cam_features")(lift(x))
    pooled = keras.layers.Rescaling(1.0, name="logit_scale")(keras.layers.GlobalAveragePooling2D(name="gap")(features))
    dense = keras.layers.Dense(10, name="logits")
    model = keras.Model(image, keras.layers.Softmax(name="probabilities")(dense(pooled)))
    # Channel 0: (R + B - 2 G) / 255 - 0.5, large on magenta only; channel 1: mean brightness.
    detector.set_weights([np.array([[[[1, 1 / 3], [-2, 1 / 3], [1, 1 / 3]]]], np.float32) / 255,
                          np.array([-0.5, 0], np.float32)])
    # Identity plus a bias that keeps every position active: the derivative reaches every image.
    lift.set_weights([np.eye(2, dtype=np.float32)[None, None], np.ones(2, np.float32)])
    kernel = np.zeros((2, 10), np.float32)
    kernel[0, 3] = 5.0 if uses_mark else 0.0
    dense.set_weights([kernel, np.zeros(10, np.float32)])
    return model


@pytest.mark.parametrize("uses_mark", [True, False])
def test_tcav_finds_the_mark_only_where_the_model_uses_it(uses_mark):
    rng = np.random.default_rng(0)
    pool = rng.integers(30, 220, (700, 32, 32, 3)).astype(np.uint8)
    mark = concept_images("mark", 40, backgrounds=pool[600:])
    model = _known_answer_model(uses_mark)
    results = tcav(model, {"mark": mark}, {"cat": pool[:30], "dog": pool[30:60]},
                   random_sets(pool[60:600], 10, size=40), layers=["block1a_relu", "cam_features"])
    by_key = {(r.class_name, r.layer): r for r in results}
    cat = by_key["cat", "block1a_relu"]
    assert cat.cav_accuracy > 0.9   # the CAV does see the mark
    if uses_mark:
        assert cat.significant and cat.score == 1.0
        assert by_key["cat", "cam_features"].constant_gradient and by_key["cat", "cam_features"].significant
        assert np.mean(by_key["cat", "cam_features"].projections) > 0
    else:
        assert not cat.significant
    for layer in ("block1a_relu", "cam_features"):
        assert not by_key["dog", layer].significant     # the dog logit reads nothing


def test_mark_attribution_is_the_mass_on_the_mark_as_a_multiple_of_its_area():
    from cifar_xai.concepts.shortcut import mark_attribution
    from cifar_xai.data.marks import random_corners

    rng = np.random.default_rng(0)
    corners = random_corners(12, seed=3)
    images = stamp(rng.integers(30, 220, (12, 32, 32, 3)), corners).numpy()
    uses = mark_attribution(_known_answer_model(True), images, corners, target=3)
    # The cat CAM reads the colour channel, 1 everywhere (the lift's bias) and far more on the mark.
    assert uses["cam"] > 2 and uses["gradcam"] > 2
    blind = mark_attribution(_known_answer_model(False), images, corners, target=3)
    assert blind["cam"] == pytest.approx(1.0)    # a zero map counts as spread evenly: chance


def test_tcav_refuses_too_few_concept_images_and_random_sets():
    model = _known_answer_model(True)
    images = np.zeros((MIN_CONCEPT_IMAGES - 1, 32, 32, 3), np.uint8)
    randoms = [np.zeros((30, 32, 32, 3), np.uint8)] * 3
    with pytest.raises(UserError, match="at least 20"):
        tcav(model, {"tiny": images}, {"cat": randoms[0]}, randoms)
    with pytest.raises(UserError, match="random sets"):
        tcav(model, {"ok": randoms[0]}, {"cat": randoms[0]}, randoms[:1])


# --- discovery ---------------------------------------------------------------------------------

def test_nmf_recovers_a_non_negative_low_rank_matrix_and_the_elbow_picks_its_rank():
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (400, 3)) @ rng.uniform(0, 1, (3, 40))
    errors = {k: relative_error(data, *nmf(data, k, iterations=500)) for k in range(1, 6)}
    assert errors[3] < 0.02 and errors[1] > errors[2] > errors[3]
    assert choose_k(errors) == 3
    u, v = nmf(data, 3)
    assert (u >= 0).all() and (v >= 0).all()


@pytest.fixture(scope="module")
def gap_model():
    keras.utils.set_random_seed(0)
    model = build_model("interpretable_cnn", "small")
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3)).astype(np.uint8)
    return model, images


def test_concepts_split_the_logit_exactly_and_deleting_one_removes_its_contribution(gap_model):
    model, images = gap_model
    basis = discover_concepts(model, images, "cat", k=4)
    explanation = explain_concepts(model, images, basis)
    logits = np.log(model.predict(images, verbose=0))[:, 3]   # up to a constant per image
    real = keras.Model(model.input, model.get_layer("logits").output)(images.astype(np.float32)).numpy()[:, 3]
    assert np.allclose(explanation.logits, real, atol=1e-3)
    # The split adds up to the model's own logit (its Dense layer), not to a recomputation of it.
    assert np.allclose(explanation.bias + explanation.contributions.sum(axis=1) + explanation.residual,
                       real, atol=1e-3)
    assert np.isfinite(logits).all()
    for concept in range(4):
        without, contribution = delete_concept(model, images, basis, concept)
        assert np.allclose(explanation.logits - without, contribution, atol=1e-4)
    maps = explanation.maps(basis)
    assert maps.shape == (40, 4, 4, 4)
    assert np.allclose(maps.mean(axis=(1, 2)), explanation.contributions)


def test_region_deletion_reports_both_drops(gap_model):
    model, images = gap_model
    basis = discover_concepts(model, images, 3, k=3)
    result = region_deletion(model, images, basis)
    assert result["share_of_image"] == 0.25 and result["images"] == 40
    assert np.isfinite(result["concept_regions_drop"]) and np.isfinite(result["random_regions_drop"])


def test_discovery_refuses_a_model_without_a_gap_head():
    model = build_model("standard_cnn", "small")
    with pytest.raises(UserError, match="no GAP head"):
        discover_concepts(model, np.zeros((4, 32, 32, 3), np.uint8), "cat")


# --- concept sets ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONCEPT_SETS))
def test_built_in_concepts_are_images_that_vary_and_repeat_with_the_seed(name):
    images = concept_images(name, 8, seed=1)
    assert images.dtype == np.uint8 and images.shape == (8, 32, 32, 3)
    assert np.array_equal(images, concept_images(name, 8, seed=1))
    assert not np.array_equal(images[0], images[1])


def test_a_concept_folder_is_read_and_bad_folders_get_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_concept_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        load_concept_folder(tmp_path / "empty")
    folder = tmp_path / "stripes"
    folder.mkdir()
    for index, image in enumerate(concept_images("stripes_vertical", MIN_CONCEPT_IMAGES - 1)):
        save_png(folder / f"{index}.png", image)
    with pytest.raises(UserError, match="at least 20"):
        load_concept_folder(folder)
    save_png(folder / "last.png", concept_images("stripes_vertical", 1, seed=5)[0])
    assert load_concept_folder(folder).shape == (MIN_CONCEPT_IMAGES, 32, 32, 3)
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="not images"):
        load_concept_folder(folder)


# --- the command line --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("concepts") / "model.keras"
    keras.utils.set_random_seed(0)
    build_model("interpretable_cnn", "small").save(path)
    return path


@pytest.mark.slow
def test_cli_discovers_concepts_and_writes_the_atlas(tiny_data_dir, model_file, tmp_path):
    result = run_module("cifar_xai.concepts", "discover", "--class", "cat", "--concepts", "3", "--model",
                        os.fspath(model_file), "--data-dir", os.fspath(tiny_data_dir), "--out", os.fspath(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    record = json.loads((tmp_path / "atlas-cat.json").read_text())
    assert record["k"] == 3 and len(record["concepts"]) == 3
    assert record["largest_decomposition_error"] < 1e-6
    assert tf.io.decode_png((tmp_path / "atlas-cat.png").read_bytes()).shape[-1] in (3, 4)
    assert "concept 1:" in result.stdout


@pytest.mark.slow
def test_cli_runs_tcav_and_writes_scores_with_p_values(tiny_data_dir, model_file, tmp_path):
    result = run_module("cifar_xai.concepts", "tcav", "--concept", "red", "--concept", "stripes_vertical",
                        "--class", "cat", "--layer", "block3a_relu", "--runs", "3", "--model", os.fspath(model_file),
                        "--data-dir", os.fspath(tiny_data_dir), "--out", os.fspath(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    results = json.loads((tmp_path / "tcav-cat.json").read_text())
    assert {r["concept"] for r in results} == {"red", "stripes_vertical"}
    assert all(0 <= r["p_value"] <= 1 and len(r["scores"]) == 3 for r in results)
    assert "p = " in result.stdout
    # The same command again never replaces those outputs silently.
    before = (tmp_path / "tcav-cat.json").read_text()
    again = run_module("cifar_xai.concepts", "tcav", "--concept", "red", "--class", "cat", "--model",
                       os.fspath(model_file), "--data-dir", os.fspath(tiny_data_dir), "--out", os.fspath(tmp_path))
    assert again.returncode == 2 and "tcav-cat.png exists (an earlier run's); pass --overwrite" in again.stderr
    assert (tmp_path / "tcav-cat.json").read_text() == before


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["tcav", "--concept", "red", "--class", "unicorn"], "unknown class"),
    (["tcav", "--concept", "plaid", "--class", "cat"], "unknown concept"),
    (["tcav", "--concept", "red", "--class", "cat", "--layer", "nope"], "unknown conv layer"),
    (["tcav", "--concept", "no/such/folder", "--class", "cat"], "does not exist"),
    (["discover", "--class", "cat", "--concepts", "0"], "must be at least 1"),
])
def test_cli_bad_input_gets_one_line(args, message, model_file, tiny_data_dir):
    result = run_module("cifar_xai.concepts", *args, "--model", os.fspath(model_file),
                        "--data-dir", os.fspath(tiny_data_dir))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def _holm_rejections(p_values, alpha):
    """Holm's procedure as the paper states it, independent of the adjusted form: sort, reject
    while p(i) <= alpha / (m - i), stop at the first that is not."""
    order = np.argsort(p_values, kind="stable")
    rejected = set()
    for i, index in enumerate(order):
        if p_values[index] > alpha / (len(p_values) - i):
            break
        rejected.add(int(index))
    return rejected


def test_holm_adjusted_p_values_reject_what_holms_procedure_rejects():
    from cifar_xai.concepts.tcav import holm_adjusted

    np.testing.assert_allclose(holm_adjusted([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    for _ in range(50):
        p_values = np.concatenate([rng.uniform(0, 1, 15), rng.uniform(0, 0.01, rng.integers(0, 6))])
        adjusted = holm_adjusted(p_values)
        assert (adjusted >= p_values).all() and (adjusted <= 1).all()
        for alpha in (0.01, 0.05, 0.1):
            assert set(np.flatnonzero(adjusted <= alpha).tolist()) == _holm_rejections(p_values, alpha)


def test_a_concept_of_random_images_is_not_significant_anywhere_on_the_shipped_model():
    """The control users need: a 'concept' drawn from the same source as the random sets. Every
    concept x class x layer one call tests must come out not significant (family-wise level 0.05),
    and at most layers the CAV must say it learned nothing."""
    from cifar_xai.model_io import load_model
    from tests.conftest import make_images

    rng = np.random.default_rng(7)
    pool = make_images(rng, rng.integers(0, 10, 1000))      # one source of images for everything
    model = load_model()
    results = tcav(model, {"random": pool[:50]}, {"cat": pool[50:80], "ship": pool[80:110], "truck": pool[110:140]},
                   random_sets(pool[140:], 10, size=50), seed=3)
    assert len(results) == 3 * len({r.layer for r in results})
    assert not [r.summary() for r in results if r.significant]
    assert all(r.tests == sum(x.learnable for x in results) for r in results)
    assert sum(not r.learnable for r in results) >= len(results) // 2


def test_an_unlearnable_concept_gets_no_score_and_leaves_the_family():
    from cifar_xai.concepts.tcav import TCAVResult, family_wise

    def result(accuracy, p_value):
        return TCAVResult("c", "cat", "block1a_relu", "logit", (0.5,), (0.5,), p_value, 0.05, (accuracy,))

    found = family_wise([result(0.52, 0.001), result(0.9, 0.01), result(0.9, 0.03)])
    assert not found[0].learnable and not found[0].significant and found[0].adjusted_p_value is None
    assert "not learnable at this layer" in found[0].summary()
    assert [r.tests for r in found] == [2, 2, 2]
    assert found[1].adjusted_p_value == pytest.approx(0.02) and found[1].significant
    assert found[2].adjusted_p_value == pytest.approx(0.03) and found[2].significant
    assert "Holm-adjusted over 2 tests" in found[1].summary()


def test_a_significant_score_below_chance_says_the_concept_pushes_against_the_class():
    from cifar_xai.concepts.tcav import TCAVResult, family_wise

    low, high = family_wise([
        TCAVResult("c", "cat", "block1a_relu", "logit", (0.01, 0.02), (0.5, 0.55), 0.001, 0.05, (0.9,)),
        TCAVResult("c", "cat", "block2a_relu", "logit", (0.97, 0.99), (0.5, 0.45), 0.001, 0.05, (0.9,)),
    ])
    assert low.significant and not low.positive and "LOWERS the class's score" in low.summary()
    assert high.significant and high.positive and "raises the class's score" in high.summary()
    assert "pushes against" not in high.summary()
