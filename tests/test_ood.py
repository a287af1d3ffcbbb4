"""Out-of-distribution detection: the metrics against hand-computed cases, every fitted score
against a plain numpy reference, the detector's file, the outlier sets and their readers."""

import gzip
import json

import numpy as np
import pytest
import tensorflow as tf

from cifar_xai.data.ood_sets import SYNTHETIC_SETS, fashion_mnist, read_idx, synthetic_set, to_rgb32, write_idx
from cifar_xai.errors import UserError
from cifar_xai.models import build_model
from cifar_xai.uncertainty.benchmark import format_table, ood_benchmark
from cifar_xai.uncertainty.detector import fit_detector, load_detector, model_outputs, ood_path
from cifar_xai.uncertainty.metrics import aupr, auroc, fpr_at_tpr, risk_coverage, threshold_at_tpr
from cifar_xai.uncertainty.ood import KNN, Blocks, Mahalanobis, ViM

# ---- metrics: hand-computed cases --------------------------------------------------------------


def test_auroc_counts_pairs_and_ties_half():
    assert auroc([1, 2, 3], [0]) == 1.0
    assert auroc([0], [1, 2]) == 0.0
    assert auroc([5, 5, 5], [5, 5]) == 0.5            # all equal: no separation
    # pairs: (1 vs 1) half twice, (1 vs 0) won twice -> 3 of 4
    assert auroc([1, 1], [1, 0]) == 0.75


def test_aupr_in_and_out_by_hand():
    # ranked 3 (in), 2 (out), 1 (in), 0 (out): recall 1/2 at precision 1, recall 1 at precision 2/3
    assert aupr([3, 1], [2, 0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # outliers as positives, by -score: 0 (out), 1 (in), 2 (out): 1/2 at 1, 1 at 2/3
    assert aupr([3, 1], [2, 0], positive="ood") == pytest.approx(0.5 + 0.5 * 2 / 3)
    # all tied: one threshold, precision = share of positives
    assert aupr([1, 1, 1], [1]) == pytest.approx(0.75)


def test_fpr_at_95_tpr():
    inliers = np.arange(100.0)                         # threshold keeping 95 of them: 5
    assert threshold_at_tpr(inliers) == 5.0
    assert fpr_at_tpr(inliers, [4.9, 5.0, 99.0, -1.0]) == 0.5
    assert fpr_at_tpr([2.0] * 10, [2.0] * 4) == 1.0     # all equal: every outlier kept
    assert fpr_at_tpr([10, 11, 12], [0, 1]) == 0.0


def test_metrics_refuse_empty_or_non_finite_scores():
    with pytest.raises(ValueError, match="at least one"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        fpr_at_tpr([1.0, np.nan], [0.0])


def test_risk_coverage_orders_by_confidence_and_breaks_ties_pessimistically():
    curve = risk_coverage([0.9, 0.1], [True, False])
    assert curve["risk"].tolist() == [0.0, 0.5] and curve["aurc"] == 0.25
    assert curve["accuracy_at"]["100%"] == 0.5
    tied = risk_coverage([0.5, 0.5], [True, False])     # a constant score earns no credit
    assert tied["risk"].tolist() == [1.0, 0.5]
    assert risk_coverage([0.2, 0.9, 0.5, 0.7], [False, True, True, True])["accuracy_at"]["80%"] == 0.75


# ---- scores against numpy references ------------------------------------------------------------


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    train = rng.normal(0, 1, (300, 6)) + 3 * np.eye(6)[labels] * [1, 1, 1, 0, 0, 0]
    kernel, bias = rng.normal(0, 1, (6, 3)), rng.normal(0, 1, 3)
    queries = rng.normal(0, 2, (20, 6))
    return train, labels, kernel, bias, queries


def _outputs(features, kernel, bias, blocks=None):
    out = {"features": features, "logits": features @ kernel + bias, "blocks": blocks or [features]}
    return out


def _fitted_scores(score, features, blocks=None, query_blocks=None):
    """`score` fitted on the fixture's training features, then applied to its queries (numpy)."""
    train, labels, kernel, bias, queries = features
    score.fit(_outputs(train, kernel, bias, blocks), labels, kernel, bias)
    return score.score(_tensors(_outputs(queries, kernel, bias, query_blocks))).numpy()


def _tensors(outputs):
    return {k: [tf.constant(b, tf.float32) for b in v] if k == "blocks" else tf.constant(v, tf.float32)
            for k, v in outputs.items()}


def test_mahalanobis_matches_numpy(features):
    train, labels, kernel, bias, queries = features
    got = _fitted_scores(Mahalanobis(), features)
    means = np.stack([train[labels == k].mean(0) for k in range(3)])
    centred = train - means[labels]
    precision = np.linalg.inv(centred.T @ centred / len(train))
    expected = [-min((q - m) @ precision @ (q - m) for m in means) for q in queries]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_knn_matches_brute_force(features):
    train, labels, kernel, bias, queries = features
    got = _fitted_scores(KNN(k=5), features)
    unit = train / np.linalg.norm(train, axis=1, keepdims=True)
    expected = []
    for q in queries:
        distances = np.linalg.norm(unit - q / np.linalg.norm(q), axis=1)
        expected.append(-np.sort(distances)[4])
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_vim_matches_its_definition(features):
    train, labels, kernel, bias, queries = features
    score = ViM(dim=2)
    score.fit(_outputs(train, kernel, bias), labels, kernel, bias)
    origin = -np.linalg.pinv(kernel.T) @ bias
    # The classifier's logits do not change when measured from that origin (bias absorbed).
    np.testing.assert_allclose((train - origin) @ kernel, train @ kernel + bias, atol=1e-8)
    values, vectors = np.linalg.eigh(np.cov((train - origin).T, bias=True, ddof=None) + np.outer(
        (train - origin).mean(0), (train - origin).mean(0)))
    residual_basis = vectors[:, np.argsort(-values)[2:]]
    alpha = (train @ kernel + bias).max(1).mean() / np.linalg.norm((train - origin) @ residual_basis, axis=1).mean()
    logits = queries @ kernel + bias
    energy = np.log(np.exp(logits).sum(1))
    expected = energy - alpha * np.linalg.norm((queries - origin) @ residual_basis, axis=1)
    got = score.score(_tensors(_outputs(queries, kernel, bias))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_blocks_standardises_each_block_and_adds_them(features):
    train, labels, kernel, bias, queries = features
    blocks = [train[:, :3], train[:, 3:]]
    score = Blocks()
    score.fit(_outputs(train, kernel, bias, blocks), labels, kernel, bias)
    total = 0.0
    for part, query in zip(blocks, [queries[:, :3], queries[:, 3:]], strict=True):
        mean = part.mean(0)
        precision = np.linalg.inv(np.cov(part.T, bias=True))
        train_d = np.einsum("nd,de,ne->n", part - mean, precision, part - mean)
        query_d = np.einsum("nd,de,ne->n", query - mean, precision, query - mean)
        total = total + (query_d - train_d.mean()) / train_d.std()
    got = score.score(_tensors(_outputs(queries, kernel, bias, [queries[:, :3], queries[:, 3:]]))).numpy()
    np.testing.assert_allclose(got, -total, rtol=1e-3, atol=1e-3)


# ---- the detector on a real (untrained) network ----------------------------------------------


@pytest.fixture(scope="module")
def detector_setup():
    model = build_model("interpretable_cnn", width="small")
    rng = np.random.default_rng(0)
    train = rng.integers(40, 200, (120, 32, 32, 3)).astype(np.uint8)
    validation = rng.integers(40, 200, (60, 32, 32, 3)).astype(np.uint8)
    detector = fit_detector(model, train, validation, rng.integers(0, 10, 120), knn_bank=None)
    return model, detector, validation


def test_thresholds_keep_95_percent_of_held_out_images(detector_setup):
    model, detector, validation = detector_setup
    scores = detector.score_images(model, validation)
    for name in scores:
        kept = detector.in_distribution(scores, name).mean()
        assert 0.95 <= kept < 0.95 + 2 / len(validation), name
    percentiles = detector.percentile(scores)
    assert percentiles.min() == 0 and 90 < percentiles.max() < 100


def test_detector_file_round_trip_and_refuses_another_model(detector_setup, tmp_path):
    model, detector, validation = detector_setup
    path = detector.save(tmp_path / "model.ood.npz")
    loaded = load_detector(model, path)
    before, after = detector.score_images(model, validation), loaded.score_images(model, validation)
    for name in before:
        # KNN's bank is stored as float16: its distances move by about 1e-3.
        np.testing.assert_allclose(after[name], before[name], rtol=2e-3, atol=2e-3, err_msg=name)
    assert loaded.thresholds == detector.thresholds and loaded.default == detector.default
    with pytest.raises(UserError, match="another model"):
        load_detector(build_model("interpretable_cnn", width="small"), path)
    (tmp_path / "broken.ood.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not an OOD statistics file"):
        load_detector(model, tmp_path / "broken.ood.npz")
    with pytest.raises(UserError, match="fit_ood"):
        load_detector(model, tmp_path / "missing.ood.npz")
    assert ood_path("runs/x/model.keras").as_posix() == "runs/x/model.ood.npz"


def test_model_outputs_handle_an_empty_batch(detector_setup):
    model, _, _ = detector_setup
    outputs = model_outputs(model, np.zeros((0, 32, 32, 3), np.uint8))
    assert outputs["logits"].shape == (0, 10) and outputs["features"].shape[0] == 0


def test_flip_averaged_outputs_are_the_mean_over_image_and_mirror_and_predictions_stay_the_images(detector_setup):
    model, _, validation = detector_setup
    images, mirrors = validation[:7], validation[:7, :, ::-1]
    plain, mirrored = model_outputs(model, images), model_outputs(model, mirrors)
    averaged = model_outputs(model, images, batch_size=3, flip_average=True)
    for key in ("features", "logits"):
        np.testing.assert_allclose(averaged[key], (plain[key] + mirrored[key]) / 2, rtol=1e-4, atol=1e-4)
    for got, a, b in zip(averaged["blocks"], plain["blocks"], mirrored["blocks"], strict=True):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-4, atol=1e-4)
    # What the model predicts is never the average: the served class is the image's own.
    np.testing.assert_allclose(averaged["class_logits"], plain["logits"], rtol=1e-5, atol=1e-5)
    empty = model_outputs(model, np.zeros((0, 32, 32, 3), np.uint8), flip_average=True)
    assert empty["class_logits"].shape == (0, 10)


def test_flip_averaged_detector_scores_image_and_mirror_alike_and_old_files_load_plain(detector_setup, tmp_path):
    model, detector, validation = detector_setup
    assert detector.flip_average                     # the default, OOD_FLIP_AVERAGE
    images = validation[:10]
    own, mirrored = detector.score_images(model, images), detector.score_images(model, images[:, :, ::-1])
    for name in own:
        np.testing.assert_allclose(own[name], mirrored[name], rtol=1e-3, atol=1e-3, err_msg=name)
    assert load_detector(model, detector.save(tmp_path / "flip.ood.npz")).flip_average
    rng = np.random.default_rng(1)
    plain = fit_detector(model, rng.integers(40, 200, (120, 32, 32, 3)).astype(np.uint8), validation,
                         rng.integers(0, 10, 120), knn_bank=None, flip_average=False)
    assert not np.allclose(plain.score_images(model, images)["blocks"],
                           plain.score_images(model, images[:, :, ::-1])["blocks"])
    # A file written before the setting existed was fitted on the images alone, and must be read so.
    path = plain.save(tmp_path / "old.ood.npz")
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    del meta["flip_average"]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    old = load_detector(model, path)
    assert not old.flip_average
    np.testing.assert_allclose(old.score_images(model, images)["energy"], plain.score_images(model, images)["energy"],
                               rtol=1e-5)


def test_benchmark_separates_noise_from_the_images_the_scores_were_fitted_on(detector_setup):
    model, detector, validation = detector_setup
    flat = np.full((30, 32, 32, 3), 128, np.uint8)
    result = ood_benchmark(model, detector, validation, np.zeros(len(validation), np.int64),
                           {"constant_colours": flat}, {"noise": (validation[:10], np.zeros(10, np.int64))})
    # Even an untrained network's block statistics tell flat grey from textured images.
    assert result["outliers"]["constant_colours"]["scores"]["blocks"]["auroc"] > 0.9
    assert set(result["summary"]) == set(detector.scores)
    table = format_table(result)
    assert "constant_colours" in table
    # No near-OOD set for a ten-class model: the table says why, rather than leaving no row.
    assert "near-OOD: no set for a model of all ten classes" in table and "--known-classes" in table


# ---- outlier sets and their reader ------------------------------------------------------------


def test_idx_reader_reads_what_was_written_plain_and_gzipped(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), array)
    (tmp_path / "a.gz").write_bytes(gzip.compress((tmp_path / "a-idx3-ubyte").read_bytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-5], "truncated"),
    (lambda raw: b"\x12\x34" + raw[2:], "bad magic"),
    (lambda raw: gzip.compress(raw)[:-20], "could not be read"),
])
def test_idx_reader_names_a_corrupt_file(tmp_path, damage, message):
    write_idx(tmp_path / "good", np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "bad").write_bytes(damage((tmp_path / "good").read_bytes()))
    with pytest.raises(UserError, match=message) as error:
        read_idx(tmp_path / "bad")
    assert str(tmp_path / "bad") in str(error.value)


def test_fashion_mnist_missing_or_not_the_real_file_is_named(tmp_path):
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(UserError, match="MD5"):
        fashion_mnist(tmp_path)


def test_grey_images_become_rgb_32x32():
    grey = np.zeros((2, 28, 28), np.uint8)
    grey[:, 10:18, 10:18] = 255
    rgb = to_rgb32(grey)
    assert rgb.shape == (2, 32, 32, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all() and rgb[:, 16, 16].min() == 255 and rgb[:, 0, 0].max() == 0


@pytest.mark.parametrize("name", list(SYNTHETIC_SETS))
def test_synthetic_sets_are_seeded_uint8_images(name):
    images = synthetic_set(name, 12, seed=3)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, synthetic_set(name, 12, seed=3))
    assert not np.array_equal(images, synthetic_set(name, 12, seed=4))
    with pytest.raises(UserError, match="unknown synthetic set"):
        synthetic_set("plaid", 1)


def test_benchmark_cli_names_a_missing_or_corrupt_outlier_file_in_one_line(tmp_path, capsys):
    from benchmarks.ood import main
    from cifar_xai.errors import run_cli

    assert run_cli(main, ["--fashion-mnist", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path) in lines[0] and "t10k-images-idx3-ubyte" in lines[0]
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    assert run_cli(main, ["--fashion-mnist", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "t10k-images-idx3-ubyte.gz could not be read" in lines[0]


def test_the_blocks_score_reads_the_stems_smoothest_direction_then_block2a_on(detector_setup):
    from cifar_xai.layers import whitening_kernel
    from cifar_xai.uncertainty.detector import block_layers

    model, detector, _ = detector_setup
    assert block_layers(model) == ["stem_relu[0,12]", "block2a_relu", "block2b_relu", "block3a_relu", "cam_features"]
    assert detector.meta["block_layers"] == block_layers(model)
    # Filter 0 is the strongest direction (whitening_kernel sorts largest first) and 12 its negative.
    patches = np.random.default_rng(0).normal(size=(500, 2, 2, 3)) * np.linspace(1, 3, 12).reshape(1, 2, 2, 3)
    kernel = whitening_kernel(patches, 1e-3)
    np.testing.assert_allclose(kernel[..., 12], -kernel[..., 0])
    assert np.linalg.norm(kernel[..., 0]) < np.linalg.norm(kernel[..., 11])  # scaled by 1/sqrt(largest eigenvalue)


def test_a_score_the_file_lacks_is_refused_in_one_line_that_says_refit(detector_setup, tmp_path, monkeypatch):
    """A score added after the file was written (or its statistics lost) is named at load time,
    from the score's own declaration, instead of failing when it is first used."""
    import cifar_xai.uncertainty.detector as detector_module
    from cifar_xai.uncertainty.ood import OODScore, make_scores

    model, detector, _ = detector_setup
    path = detector.save(tmp_path / "model.ood.npz")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files if not key.startswith("vim/residual_basis")}
    np.savez(tmp_path / "damaged.ood.npz", **arrays)
    with pytest.raises(UserError, match=r"no fitted vim score \(residual_basis missing.*fit_ood"):
        load_detector(model, tmp_path / "damaged.ood.npz")

    class Later(OODScore):
        name, title, fitted = "later", "Later", ("centre",)

    monkeypatch.setattr(detector_module, "make_scores", lambda: {**make_scores(), "later": Later()})
    with pytest.raises(UserError, match="no fitted later score .*centre, threshold, reference values missing"):
        load_detector(model, path)


def test_every_fitted_score_declares_exactly_what_it_saves(detector_setup):
    _, detector, _ = detector_setup
    for name, score in detector.scores.items():
        assert score.missing_state(score.state()) == [], name
        assert set(score.fitted) <= set(score.state()), name


def test_mahalanobis_distances_are_exact_at_and_near_the_class_means():
    """Points at a class mean and a hair away from it, against a float64 reference: the centred
    difference keeps their tiny distances, where expanding f'Pf - 2f'Pm + m'Pm in float32 cancels
    to noise (or to a negative 'distance')."""
    from cifar_xai.uncertainty.ood import mahalanobis_distances

    rng = np.random.default_rng(0)
    dim = 64
    means = rng.normal(50, 10, (3, dim))                          # far from the origin, like ReLU features
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    covariance = basis @ np.diag(np.geomspace(1e-3, 10, dim)) @ basis.T
    precision = np.linalg.inv(covariance)
    offsets = rng.normal(size=(4, dim)) * np.array([0.0, 1e-3, 1e-2, 1e-1])[:, None]
    points = means[1] + offsets
    reference = np.einsum("nkd,de,nke->nk", points[:, None] - means[None], precision, points[:, None] - means[None])
    found = mahalanobis_distances(points.astype(np.float32), means, precision).numpy()
    assert (found >= 0).all()
    assert found[0, 1] == pytest.approx(0.0, abs=1e-3)              # at the mean: zero, not noise
    np.testing.assert_allclose(found[1:, 1], reference[1:, 1], rtol=2e-2)   # near it: the right size
    np.testing.assert_allclose(found[:, [0, 2]], reference[:, [0, 2]], rtol=1e-4)
