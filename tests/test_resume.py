"""Nothing lost: a failure at any stage boundary of a run, and rerunning the same command
finishes it with the same figures, without training again and without duplicated history rows.
--overwrite deletes only what the project wrote."""

from __future__ import annotations

import csv
import json
import os

import pytest

from cifar_xai.config import PRESETS
from cifar_xai.errors import UserError
from cifar_xai.faults import InjectedFault
from cifar_xai.training import TRAINED, prepare_run_dir, train
from tests.conftest import run_module

pytestmark = pytest.mark.slow

CONFIG = PRESETS["quick"].replace(epochs=2, batch_size=40, mixed_precision="off", validation=20)
STAGES = ("fit:trained", "fit:calibrated", "fit:saved", "fit:evaluated")


def history_epochs(run_dir) -> list[int]:
    with open(run_dir / "history.csv") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize("stage", STAGES)
def test_a_failure_after_training_resumes_without_training_again(stage, tiny_data_dir, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("CIFAR_XAI_FAULT", stage)
    with pytest.raises(InjectedFault):
        train(CONFIG, run_dir, tiny_data_dir, verbose=0, explain_every=0)
    assert not (run_dir / "metrics.json").exists() and (run_dir / TRAINED).is_file()
    trained = (run_dir / TRAINED).read_bytes()
    monkeypatch.delenv("CIFAR_XAI_FAULT")
    capsys.readouterr()
    metrics = train(CONFIG, run_dir, tiny_data_dir, verbose=0, explain_every=0)
    assert "continuing with calibration" in capsys.readouterr().out
    assert (run_dir / TRAINED).read_bytes() == trained          # the same weights, not a second training
    assert history_epochs(run_dir) == [0, 1]                       # no duplicated rows
    assert metrics["resumed"] is True
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == metrics["test"]


def test_resumed_figures_are_those_of_the_trained_weights(tiny_data_dir, tmp_path, monkeypatch):
    """A run that failed right after training and one that failed after its test evaluation both
    finish with the figures an uninterrupted pass over the same trained weights gives."""
    run_dir = tmp_path / "run"
    monkeypatch.setenv("CIFAR_XAI_FAULT", "fit:evaluated")
    with pytest.raises(InjectedFault):
        train(CONFIG, run_dir, tiny_data_dir, verbose=0, explain_every=0)
    monkeypatch.delenv("CIFAR_XAI_FAULT")
    first = train(CONFIG, run_dir, tiny_data_dir, verbose=0, explain_every=0, overwrite=False)
    # Again from the same trained weights: remove what came after training, rerun.
    (run_dir / "metrics.json").unlink()
    (run_dir / "model.keras").unlink()
    second = train(CONFIG, run_dir, tiny_data_dir, verbose=0, explain_every=0)
    assert second["test"] == first["test"] and second["test_tta"] == first["test_tta"]
    assert second["calibration"]["temperature"] == pytest.approx(first["calibration"]["temperature"], rel=1e-9)


def test_kill_9_while_saving_leaves_no_half_file_and_the_rerun_finishes(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "killed"
    flags = ["--preset", "quick", "--epochs", "2", "--batch-size", "40", "--mixed-precision", "off", "--validation",
             "20", "--explain-every", "0", "--data-dir", os.fspath(tiny_data_dir), "--run-dir", os.fspath(run_dir)]
    fault = {"CIFAR_XAI_FAULT": "fit:calibrated", "CIFAR_XAI_FAULT_MODE": "kill"}
    killed = run_module("trainers.fit", *flags, env=fault)
    assert killed.returncode == -9
    assert not (run_dir / "model.keras").exists() and (run_dir / TRAINED).is_file()
    result = run_module("trainers.fit", *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    assert history_epochs(run_dir) == [0, 1]
    assert json.loads((run_dir / "metrics.json").read_text())["resumed"] is True


def test_overwrite_deletes_only_a_run_folder(tmp_path):
    config = CONFIG
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    prepare_run_dir(runs / "a", config)                  # a run: config.json written by the project
    (runs / "a" / "metrics.json").write_text("{}")
    # The folder of runs is not a run: --overwrite refuses it and deletes nothing.
    with pytest.raises(UserError, match=f"{runs} does not hold a training run this project wrote"):
        prepare_run_dir(runs, config, overwrite=True)
    assert (runs / "a" / "config.json").is_file()
    # A user's folder with their own files: refused.
    mine = tmp_path / "home"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="does not hold a training run"):
        prepare_run_dir(mine, config, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work"
    # A file: refused, with or without --overwrite.
    (tmp_path / "notes.txt").write_text("keep")
    for overwrite in (True, False):
        with pytest.raises(UserError, match="is a file"):
            prepare_run_dir(tmp_path / "notes.txt", config, overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "keep"
    # A finished run: replaced by a fresh one.
    assert prepare_run_dir(runs / "a", config, overwrite=True) is False
    assert not (runs / "a" / "metrics.json").exists() and (runs / "a" / "config.json").is_file()


def shipped_state(dest):
    """What each shipped artefact says about the run it came from."""
    import keras

    from cifar_xai.uncertainty.detector import fingerprint

    return {
        "keras": fingerprint(keras.models.load_model(dest / "interpretable_cnn.keras", compile=False)),
        "record": json.loads((dest / "interpretable_cnn.run" / "config.json").read_text())["seed"],
        "card": "| seed | 1 |" in (dest / "interpretable_cnn.md").read_text(),
        "export": (dest / "interpretable_cnn" / "1" / "saved_model.pb").stat().st_mtime_ns,
        "ood": (dest / "interpretable_cnn.ood.npz").exists(),
    }


def test_ship_is_all_or_nothing_and_a_rerun_completes_it(tiny_data_dir, tmp_path, monkeypatch):
    """A failure after staging leaves the old model whole; a failure half-way through the swap is
    completed by the next run of the same command: never a new model beside an old export."""
    import keras

    from cifar_xai.shipping import ship
    from cifar_xai.uncertainty.detector import fingerprint

    runs = {}
    for seed, validation in ((0, 20), (1, 0)):   # the second without a validation split: no OOD statistics
        runs[seed] = tmp_path / f"run{seed}"
        train(CONFIG.replace(seed=seed, validation=validation), runs[seed], tiny_data_dir, verbose=0, explain_every=0)
    dest = tmp_path / "saved_models"
    ship(runs[0], tiny_data_dir, dest)
    old = shipped_state(dest)
    assert old["record"] == 0 and old["ood"] and not old["card"]
    new_fingerprint = fingerprint(keras.models.load_model(runs[1] / "model.keras", compile=False))

    monkeypatch.setenv("CIFAR_XAI_FAULT", "ship:staged")
    with pytest.raises(InjectedFault):
        ship(runs[1], tiny_data_dir, dest, overwrite=True)
    assert shipped_state(dest) == old                          # entirely the old model

    for step in range(5):                                      # a failure after each move of the swap
        monkeypatch.setenv("CIFAR_XAI_FAULT", f"commit:{step}")
        with pytest.raises(InjectedFault):
            ship(runs[1], tiny_data_dir, dest, overwrite=True)
        monkeypatch.delenv("CIFAR_XAI_FAULT")
        ship(runs[1], tiny_data_dir, dest, overwrite=True)     # the same command again
        new = shipped_state(dest)
        assert new["keras"] == new_fingerprint and new["record"] == 1 and new["card"], step
        assert not new["ood"], step                            # the old model's statistics do not stay beside it
        assert sorted(p.name for p in dest.iterdir()) == [
            "interpretable_cnn", "interpretable_cnn.keras", "interpretable_cnn.md", "interpretable_cnn.run"], step
        ship(runs[0], tiny_data_dir, dest, overwrite=True)     # back to the old one for the next step


def test_an_interrupted_export_leaves_the_old_version_whole(tmp_path, monkeypatch):
    import keras
    import numpy as np
    import tensorflow as tf

    from cifar_xai.export import export_saved_model
    from cifar_xai.models import build_model

    images = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)), tf.uint8)

    def served(version):
        return tf.saved_model.load(str(version)).signatures["serving_default"](images=images)["probabilities"].numpy()

    keras.utils.set_random_seed(0)
    old = export_saved_model(build_model("interpretable_cnn", "small"), tmp_path, "m", version=1)
    before = served(old)
    keras.utils.set_random_seed(1)
    other = build_model("interpretable_cnn", "small")
    monkeypatch.setenv("CIFAR_XAI_FAULT", "export:staged")
    with pytest.raises(InjectedFault):
        export_saved_model(other, tmp_path, "m", version=1, overwrite=True)
    np.testing.assert_array_equal(served(old), before)                  # entirely the old version
    monkeypatch.delenv("CIFAR_XAI_FAULT")
    new = export_saved_model(other, tmp_path, "m", version=1, overwrite=True)   # the same command again
    assert not np.allclose(served(new), before)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]   # no staging left behind
