"""The prototype network: push, the exact arithmetic of its logits and explanations, a tiny run
end to end, the CLI and its one-line errors."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from cifar_xai.explain.prototypes import explain_prototypes, similarity_maps
from cifar_xai.models import DISTANCES_LAYER, LOGITS_LAYER, SIMILARITY_MAPS_LAYER, build_model
from cifar_xai.prototypes.push import latent_maps, prototype_classes, push, squared_distances
from cifar_xai.prototypes.training import prototype_loss
from tests.conftest import run_module


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    model = build_model("prototype_cnn", "small", prototypes_per_class=2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 32, 32, 3)).astype(np.uint8)
    labels = np.arange(30) % 10
    return model, images, labels


def test_push_moves_each_prototype_exactly_onto_the_nearest_own_class_training_patch(tiny):
    model, images, labels = tiny
    before = model.get_layer(DISTANCES_LAYER).vectors.numpy().copy()
    provenance = push(model, images, labels, batch_size=7)   # batches that split the images
    after = model.get_layer(DISTANCES_LAYER).vectors.numpy()
    latent = latent_maps(model, images)
    owner = prototype_classes(model)
    for j, entry in enumerate(provenance):
        assert labels[entry["image"]] == owner[j] == entry["class"]
        assert np.array_equal(after[j], latent[entry["image"], entry["row"], entry["col"]])
        # No patch of the class's images is nearer to where the prototype was.
        own = latent[labels == owner[j]]
        nearest = squared_distances(own, before[j:j + 1]).min()
        assert entry["squared_distance_moved"] == pytest.approx(nearest, rel=1e-9)
    layer = model.get_layer(DISTANCES_LAYER)
    assert np.array_equal(layer.source_positions.numpy()[:, 0], [e["image"] for e in provenance])
    assert np.array_equal(layer.source_images.numpy()[0], images[provenance[0]["image"]].astype(np.float32))


def test_logits_are_the_last_layer_applied_to_the_best_similarities(tiny):
    model, images, _ = tiny
    maps, logits = similarity_maps(model, images[:6])
    expected = maps.max(axis=(1, 2)) @ model.get_layer(LOGITS_LAYER).kernel.numpy()
    assert np.allclose(logits, expected, atol=1e-4)
    assert maps.shape[-1] == model.get_layer(DISTANCES_LAYER).prototypes


def test_prototype_contributions_sum_to_the_logit(tiny):
    model, images, _ = tiny
    found = explain_prototypes(model, images[:5], classes=None, top_k=3)
    probabilities = model.predict(images[:5], verbose=0)
    for item, p in zip(found, probabilities, strict=True):
        assert item.class_index == int(np.argmax(p))
        assert item.contributions.sum() == pytest.approx(item.logit, abs=1e-4)
        assert list(item.top) == list(np.argsort(-item.contributions)[:3])
        assert item.maps.shape == (3, 32, 32)


def test_prototype_loss_is_cluster_and_separation_of_the_nearest_prototypes():
    identity = np.repeat(np.eye(2, dtype=np.float32), 2, axis=0)      # prototypes 0, 1 -> class 0
    distances = np.array([[1.0, 4.0, 2.0, 9.0]], np.float32)
    loss = prototype_loss(identity)(np.array([[1.0, 0.0]], np.float32), distances).numpy()
    assert loss[0] == pytest.approx(0.8 * 1.0 - 0.08 * 2.0)


def test_a_model_without_prototypes_is_refused():
    from cifar_xai.errors import UserError

    with pytest.raises(UserError, match="no prototypes"):
        explain_prototypes(build_model("interpretable_cnn", "small"), np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="at least 1"):
        build_model("prototype_cnn", "small", prototypes_per_class=0)


@pytest.fixture(scope="module")
def prototype_run(tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("proto")
    keras.utils.set_random_seed(0)
    build_model("interpretable_cnn", "small").save(root / "base.keras")
    result = run_module("trainers.fit", "--model", "prototype_cnn", "--width", "small", "--batch-size", "40",
                        "--validation", "24", "--mixed-precision", "off", "--prototypes-per-class", "2",
                        "--init-from", os.fspath(root / "base.keras"), "--data-dir", os.fspath(tiny_data_dir),
                        "--run-dir", os.fspath(root / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


@pytest.mark.slow
def test_a_tiny_prototype_network_trains_pushes_and_records_it(prototype_run):
    metrics = json.loads((prototype_run / "metrics.json").read_text())
    measured = metrics["prototypes"]
    for key in ("accuracy_after_warmup", "accuracy_before_push", "accuracy_after_push", "accuracy_after_last_layer"):
        assert 0 <= measured[key] <= 1
    pushed = json.loads((prototype_run / "push.json").read_text())
    assert pushed["split"] == "train[:-24]" and len(pushed["prototypes"]) == 20
    from cifar_xai.model_io import load_model

    model = load_model(prototype_run / "model.keras")
    positions = model.get_layer(DISTANCES_LAYER).source_positions.numpy()
    assert (positions[:, 0] >= 0).all()
    assert [p["image"] for p in pushed["prototypes"]] == positions[:, 0].tolist()
    assert model.get_layer(SIMILARITY_MAPS_LAYER) is not None


@pytest.mark.slow
def test_cli_explains_with_prototypes_and_the_contributions_add_up(prototype_run, tmp_path):
    result = run_module("cifar_xai.explain", "--image", "samples/cat.png", "--method", "prototypes", "--model",
                        os.fspath(prototype_run / "model.keras"), "--out", os.fspath(tmp_path), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    entry = json.loads(result.stdout)[0]
    assert len(entry["prototypes"]) == 3
    assert entry["sum_of_contributions"] == pytest.approx(entry["logit"], abs=1e-3)
    assert (tmp_path / "cat_prototypes.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["trainers.fit", "--model", "prototype_cnn", "--prototypes-per-class", "0"], "must be at least 1"),
    (["trainers.fit", "--prototypes-per-class", "3"], "for --model prototype_cnn only"),
    (["trainers.fit", "--model", "prototype_cnn", "--init-from", "no/such.keras"], "no model to start"),
    (["cifar_xai.explain", "--image", "samples/cat.png", "--method", "prototypes"], "no prototypes"),
])
def test_bad_prototype_requests_get_one_line(args, message, tmp_path):
    result = run_module(*args, *(["--run-dir", os.fspath(tmp_path / "r")] if args[0] == "trainers.fit" else []))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_the_savedmodel_serves_and_explains_with_prototypes(prototype_run, tmp_path):
    import tensorflow as tf

    from cifar_xai.export import export_saved_model
    from cifar_xai.model_io import load_model

    model = load_model(prototype_run / "model.keras")
    folder = export_saved_model(model, tmp_path, name="proto")
    served = tf.saved_model.load(os.fspath(folder))
    assert {"serving_default", "explain_prototypes"} <= set(served.signatures)
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    out = served.signatures["explain_prototypes"](images=tf.constant(images))
    library = explain_prototypes(model, images, top_k=3)
    for i, item in enumerate(library):
        assert out["prototype_id"][i].numpy().tolist() == item.top.tolist()
        assert np.allclose(out["contribution"][i].numpy(), item.contributions[item.top], atol=1e-4)
        assert np.allclose(out["similarity_maps"][i].numpy(), item.maps, atol=1e-3)
    probabilities = served.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()
    assert np.allclose(probabilities, model.predict(images, verbose=0), atol=1e-5)
    empty = served.signatures["explain_prototypes"](images=tf.zeros([0, 32, 32, 3], tf.uint8))
    assert empty["prototype_id"].shape == (0, 3)


def test_the_prototype_map_needs_a_prototype_network(tiny):
    from cifar_xai.explain import ExplanationError, explain

    with pytest.raises(ExplanationError, match="prototype network"):
        explain(build_model("interpretable_cnn", "small"), np.zeros((1, 32, 32, 3)), "prototypes")
    model, images, _ = tiny
    maps = explain(model, images[:2], "prototypes", normalize=False)
    assert maps.shape == (2, 32, 32) and (maps >= 0).all()


def test_diagnostics_count_duplicates_and_measure_purity(tiny):
    from cifar_xai.prototypes.diagnostics import duplicates, purity

    model, images, labels = tiny
    push(model, images, labels)
    found = duplicates(model)
    assert found["prototypes"] == 20
    assert found["distinct"] + sum(len(g) - 1 for g in found["duplicate_groups"]) == 20
    # After push each prototype is one of its class's patches: its nearest patch is itself.
    assert purity(model, images, labels, neighbours=1)["mean"] == 1.0
    assert 0 <= purity(model, images, labels)["min"] <= 1


@pytest.mark.slow
def test_the_report_of_a_prototype_network_has_its_gallery_and_diagnostics(prototype_run, tiny_data_dir, tmp_path):
    from cifar_xai.data.pipeline import split_arrays
    from cifar_xai.interpretability import suite
    from cifar_xai.model_io import load_model
    from cifar_xai.report.build import build
    from tests.test_report import TINY

    model = load_model(prototype_run / "model.keras")
    images, labels = suite.load_test_set(tiny_data_dir)
    training = tuple(t.numpy() for t in split_arrays(tiny_data_dir, "train[:-24]"))
    metrics = build(model, prototype_run / "model.keras", tmp_path, images, labels, TINY, "test", log=lambda _: None,
                    training_images=training)
    assert metrics["prototypes"]["duplicates"]["prototypes"] == 20
    assert 0 <= metrics["prototypes"]["purity"]["mean"] <= 1
    assert "gridpg_2x2_median" in metrics["interpretability"]["prototypes"]
    assert "cam" not in metrics["interpretability"]            # n/a without a GAP head, not a number
    page = (tmp_path / "index.html").read_text()
    assert "<h2>Prototypes</h2>" in page and 'alt="prototype gallery"' in page


@pytest.mark.slow
def test_shipping_a_prototype_network_keeps_its_provenance(prototype_run, tiny_data_dir, tmp_path):
    from cifar_xai.model_io import load_model
    from cifar_xai.shipping import ship

    shipped = ship(prototype_run, tiny_data_dir, dest=tmp_path)
    assert shipped == tmp_path / "prototype_cnn.keras"
    card = (tmp_path / "prototype_cnn.md").read_text()
    assert "push provenance" in card and "20 prototypes" in card and "before push" in card
    assert json.loads((tmp_path / "prototype_cnn.run" / "push.json").read_text())["prototypes"][0]["class"] == 0
    positions = load_model(shipped).get_layer(DISTANCES_LAYER).source_positions.numpy()
    assert (positions[:, 0] >= 0).all()
    assert (tmp_path / "prototype_cnn" / "1" / "saved_model.pb").is_file()


def test_the_projector_shows_the_prototypes_as_extra_points(tmp_path):
    """prototype_cnn's prototypes join the test images in the Projector, as their source images."""
    from cifar_xai.model_io import load_model
    from cifar_xai.projector import write_projector
    from tests.conftest import ROOT

    model = load_model(ROOT / "saved_models" / "prototype_cnn.keras")
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    folder = write_projector(model, images, np.arange(6), tmp_path)
    metadata = (folder / "metadata.tsv").read_text().splitlines()
    assert len(metadata) == 1 + 6 + 100
    assert metadata[7].split("\t")[4] == "prototype 0" and metadata[7].split("\t")[0] == "airplane"
    assert len((folder / "features.tsv").read_text().splitlines()) == 106
