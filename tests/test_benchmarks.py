"""Every benchmark users are told to run starts, prints its table and exits 0 on the tiny data
set: a refactor cannot silently break one. (accuracy, robustness and ood have their own tests:
test_accuracy_benchmark.py, test_robustness.py, test_fit.py.) Figures are not checked here: the
benchmarks measure a real model; these only prove they still run."""

from __future__ import annotations

import os

import keras
import pytest

from cifar_xai.models import build_model


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> list[str]:
    """Two untrained small networks saved as model files, as a benchmark loads them."""
    folder = tmp_path_factory.mktemp("models")
    paths = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        path = folder / f"seed{seed}.keras"
        build_model("interpretable_cnn", "small").save(path)
        paths.append(os.fspath(path))
    return paths


def test_explanations_benchmark_prints_every_table(tiny_models, tiny_data_dir, capsys):
    from benchmarks.explanations import main

    assert main(["--model", tiny_models[0], "--data-dir", os.fspath(tiny_data_dir), "--images", "8",
                 "--batch", "4", "--repeats", "1", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "CAM / predict throughput" in out and "tf-keras-vis" in out
    assert "| Grad-CAM (`gradcam`) |" in out and "prototypes" not in out   # no prototypes on this network
    assert "| regularised (the library's) |" in out


def test_stability_benchmark_compares_two_models(tiny_models, tiny_data_dir, capsys):
    from benchmarks.stability import main

    assert main(["--model", tiny_models[0], "--model", tiny_models[1], "--images", "4", "--methods", "cam",
                 "saliency", "--data-dir", os.fspath(tiny_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "cam" in out and "saliency" in out


def test_noise_diagnosis_prints_a_row_per_sigma(tiny_models, tiny_data_dir, capsys):
    from benchmarks.noise_diagnosis import main

    assert main(["--model", tiny_models[0], "--images", "4", "--validation", "24", "--sigma", "0.02", "0.08",
                 "--data-dir", os.fspath(tiny_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "| 0.02 |" in out and "| 0.08 |" in out and "stem gain per direction" in out


@pytest.mark.parametrize(("flags", "message"), [
    (["--policies", "auto,fp8"], "policy 'fp8' is not one of auto, off"),
    (["--optimizers", "adam"], "optimizer 'adam' is not one of sgd, muon"),
    (["--width", "huge"], "invalid choice: 'huge'"),
])
def test_training_speed_refuses_bad_flags_in_one_line_before_training(flags, message, capsys):
    from benchmarks.training_speed import main

    with pytest.raises(SystemExit) as stopped:
        main(flags)
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and message in err and len(err.splitlines()) == 1


def test_training_speed_benchmark_measures_a_policy(tiny_data_dir, capsys):
    from benchmarks.training_speed import CONV_DIRECTIONS, main

    assert main(["--width", "small", "--policies", "float32", "--optimizers", "sgd,muon", "--batch-size", "16",
                 "--steps", "2", "--repeats", "1", "--profile", "--data-dir", os.fspath(tiny_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "| small | float32 | sgd |" in out and "| small | float32 | muon |" in out and "conv peak" in out
    # the profile found the step's kernels, each direction of the convolutions with its speed
    profile = out[out.index("Step profile"):]
    rows = {row[0]: row[1:] for row in (line.strip("| ").split(" | ") for line in profile.splitlines()
                                        if line.startswith("| ") and "ms per step" not in line)}
    directions = set(CONV_DIRECTIONS)
    assert directions | {"BatchNorm", "ReLU"} <= set(rows)
    assert sum(float(share.rstrip("%")) for _, share, *_ in rows.values()) == pytest.approx(100, abs=0.5)
    assert all(float(rows[d][2]) > 0 for d in directions) and "slowest conv kernels: block" in profile


@pytest.fixture(scope="module")
def small_data_dir(tmp_path_factory):
    """The tiny data at 120 images per batch: the shortcut benchmark's concept sets need 50 images
    of the test split besides the class's own."""
    from cifar_xai.data.tfds_cifar10 import prepare_from_binaries
    from tests.conftest import write_tiny_cifar

    folder = tmp_path_factory.mktemp("bin120") / "cifar-10-batches-bin"
    md5s = write_tiny_cifar(folder, per_batch=120)
    data_dir = tmp_path_factory.mktemp("tfds120")
    prepare_from_binaries(folder, data_dir, expected_md5=md5s)
    return data_dir


def test_shortcut_benchmark_measures_given_models(tiny_models, small_data_dir, capsys):
    from benchmarks.shortcut import main

    assert main(["--model", tiny_models[0], "--runs", "2", "--data-dir", os.fspath(small_data_dir)]) == 0
    assert "mass on the mark" in capsys.readouterr().out


def test_pytorch_reference_runs_where_pytorch_is_installed(capsys):
    pytest.importorskip("torch")
    from benchmarks.pytorch_reference import main

    assert main(["--width", "small", "--batch-size", "8", "--steps", "2", "--repeats", "1"]) == 0


def test_dashboard_benchmark_times_every_route(tiny_models, tiny_data_dir, tmp_path, capsys):
    import shutil

    from benchmarks.dashboard import main

    (tmp_path / "tiny").mkdir()
    shutil.copy(tiny_models[0], tmp_path / "tiny" / "model.keras")
    assert main(["--run", "tiny", "--logdir", os.fspath(tmp_path), "--repeats", "2",
                 "--data-dir", os.fspath(tiny_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "| first detail view, cam |" in out and "| gallery page (48 images) |" in out
    assert "| layers view of an image" in out and "| a channel's card" in out and "| confusion matrix |" in out


@pytest.mark.slow
def test_feature_visualisation_benchmark_judges_both_methods(tiny_models, tmp_path, capsys):
    from benchmarks.feature_vis import main

    assert main(["--model", tiny_models[0], "--judge", tiny_models[1], "--seeds", "1", "--steps", "2",
                 "--figure", str(tmp_path / "rows.png")]) == 0
    out = capsys.readouterr().out
    assert "| visualise |" in out and "| tf-keras-vis |" in out and (tmp_path / "rows.png").stat().st_size > 0


@pytest.mark.slow
def test_dashboard_load_benchmark_runs_clients_against_a_real_tensorboard(tiny_models, tiny_data_dir, tmp_path,
                                                                         capsys):
    import json
    import shutil

    from benchmarks.dashboard_load import main

    (tmp_path / "logdir" / "tiny").mkdir(parents=True)
    shutil.copy(tiny_models[0], tmp_path / "logdir" / "tiny" / "model.keras")
    assert main(["--clients", "2", "--seconds", "3", "--logdir", os.fspath(tmp_path / "logdir"),
                 "--data-dir", os.fspath(tiny_data_dir), "--json", os.fspath(tmp_path / "load.json")]) == 0
    out = capsys.readouterr().out
    assert "| detail |" in out and "server peak memory" in out, out
    found = json.loads((tmp_path / "load.json").read_text())
    assert found["errors"] == 0 and found["peak_mb"] > found["idle_mb"] > 0 and "tiny" in found["runs"], out


def test_frontier_marks_the_pareto_points_and_draws_them(tmp_path, capsys):
    import json

    from benchmarks.frontier import main
    from cifar_xai.report.frontier import Point, from_json, pareto

    def point(name, clean, mca):
        return Point(name, clean, mca, 0.05, "validation", 10)

    assert pareto([point("a", 0.9, 0.8), point("b", 0.92, 0.79), point("c", 0.89, 0.79)]) == {"a", "b"}
    for name, clean, mca in (("a", 0.9, 0.8), ("c", 0.89, 0.79), ("big", 0.95, 0.9)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"clean": {"accuracy": clean, "ece": 0.02}, "mca": mca,
                                                           "mean_ece": 0.05, "split": "validation",
                                                           "num_images": 10}))
    (tmp_path / "a.ood.json").write_text(json.dumps({"default": "energy", "summary": {
        "energy": {"far_auroc_min": 0.953}}}))
    out, saved = tmp_path / "frontier.png", tmp_path / "frontier.json"
    assert main(["--result", f"a={tmp_path / 'a.json'}", "--result", f"c={tmp_path / 'c.json'}",
                 "--result", f"big={tmp_path / 'big.json'}", "--over-budget", "big",
                 "--ood", f"a={tmp_path / 'a.ood.json'}", "--chosen", "a", "--out", os.fspath(out),
                 "--json", os.fspath(saved)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # "big" beats both but does not fit the time budget: "a" is the frontier among the choices
    assert "| a (shipped) | 90.00% | 80.00% | 5.00% | 95.30% | yes |" in lines[2]
    assert "| c | 89.00% | 79.00% | 5.00% | - |  |" in lines[3]
    assert "| big (over the time budget) | 95.00% | 90.00% | 5.00% | - |  |" in lines[4]
    assert out.read_bytes()[:4] == b"\x89PNG"
    points, chosen, _ = from_json(json.loads(saved.read_text()))
    assert chosen == "a" and [p.far_ood_worst for p in points] == [0.953, None, None]
    assert [p.over_budget for p in points] == [False, False, True]


def test_frontier_adds_new_recipes_to_an_earlier_frontier(tmp_path, capsys):
    import json

    from benchmarks.frontier import main
    from cifar_xai.errors import UserError
    from cifar_xai.report.frontier import Point, from_json, to_json

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(to_json([Point("old", 0.91, 0.83, 0.05, "validation", 2000)], "old", "the rule")))
    (tmp_path / "new.json").write_text(json.dumps({"clean": {"accuracy": 0.93}, "mca": 0.85, "mean_ece": 0.04}))
    assert main(["--with", os.fspath(earlier), "--result", f"new={tmp_path / 'new.json'}",
                 "--json", os.fspath(tmp_path / "both.json")]) == 0
    points, chosen, rule = from_json(json.loads((tmp_path / "both.json").read_text()))
    assert [p.name for p in points] == ["old", "new"] and chosen == "old" and rule == "the rule"
    assert "| new | 93.00% | 85.00% |" in capsys.readouterr().out
    with pytest.raises(UserError, match="--result old is already a point of"):
        main(["--with", os.fspath(earlier), "--result", f"old={tmp_path / 'new.json'}"])
    with pytest.raises(UserError, match="name at least one recipe"):
        main([])


def test_frontier_refuses_a_chosen_recipe_it_was_not_given(tmp_path):
    import json

    from benchmarks.frontier import main
    from cifar_xai.errors import UserError

    (tmp_path / "a.json").write_text(json.dumps({"clean": {"accuracy": 0.9}, "mca": 0.8, "mean_ece": 0.05}))
    with pytest.raises(UserError, match="--chosen 'b' names no --result"):
        main(["--result", f"a={tmp_path / 'a.json'}", "--chosen", "b"])
    with pytest.raises(UserError, match="not a benchmarks.robustness --json file"):
        main(["--result", f"a={tmp_path / 'missing.json'}"])
    from cifar_xai.report.frontier import from_json

    with pytest.raises(UserError, match="not a frontier.json that benchmarks.frontier --json wrote"):
        from_json({"points": [{"name": "a", "accuracy": 0.9}]})   # a damaged or foreign file


def test_serving_load_benchmark_finds_concurrent_calls_identical(tiny_models, tmp_path, capsys):
    from benchmarks.serving_load import main
    from cifar_xai.export import export_saved_model
    from cifar_xai.model_io import load_model

    version = export_saved_model(load_model(tiny_models[0]), tmp_path, "tiny", version=1)
    assert main(["--saved-model", os.fspath(version), "--threads", "4", "--calls", "24", "--max-batch", "8"]) == 0
    out = capsys.readouterr().out
    assert "4 threads:" in out and "differ from the sequential ones: 0" in out


def test_an_output_in_a_missing_folder_is_refused_before_any_work(tmp_path, capsys):
    """--json / --out name a file in a folder that does not exist: one line at parse time, exit 2,
    instead of a traceback after minutes of measuring."""
    from benchmarks.frontier import main as frontier
    from benchmarks.robustness import main as robustness

    for main, flag in ((frontier, "--out"), (robustness, "--json")):
        with pytest.raises(SystemExit) as stopped:
            main(["--result", "a=x.json", flag, os.fspath(tmp_path / "missing" / "out.json")] if main is frontier
                 else [flag, os.fspath(tmp_path / "missing" / "out.json")])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and "give a file in an existing folder" in err and len(err.splitlines()) == 1


def test_time_to_accuracy_reads_each_runs_history_and_times_it(tmp_path, capsys):
    import json

    from benchmarks.time_to_accuracy import main
    from cifar_xai.errors import UserError

    for name, accuracies in (("a", (0.5, 0.8, 0.9)), ("b", (0.7, 0.88, 0.89))):
        run = tmp_path / name
        run.mkdir()
        rows = "".join(f"{i},{a},10.0,{a}\n" for i, a in enumerate(accuracies))
        (run / "history.csv").write_text("epoch,accuracy,epoch_seconds,val_accuracy\n" + rows)
        (run / "metrics.json").write_text(json.dumps({"train_images": 1000}))
    assert main(["--run", f"a={tmp_path / 'a'}", "--run", f"b={tmp_path / 'b'}", "--img-per-s", "b=50",
                 "--thresholds", "0.85", "--figure", str(tmp_path / "t.png"), "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    # a: recorded epoch times (10 s each); b: 1,000 images at 50 img/s = 20 s an epoch.
    assert "| a | epoch 3, 30 s |" in out and "| b | epoch 2, 40 s |" in out and (tmp_path / "t.png").is_file()
    with pytest.raises(UserError, match="must be NAME=VALUE"):
        main(["--run", "nameless"])


def test_the_known_answer_study_benchmark_prints_both_kinds_of_simulated_raters(tiny_models, tiny_data_dir, tmp_path,
                                                                               capsys):
    from benchmarks.study_known_answer import main
    from cifar_xai.data.pipeline import split_arrays
    from cifar_xai.errors import UserError
    from cifar_xai.study.materials import known_answer_marks, prepare_study

    model = keras.saving.load_model(tiny_models[0])
    images, labels = (t.numpy() for t in split_arrays(tiny_data_dir, "test"))
    prepare_study(tmp_path / "marked", model, tiny_models[0], images, labels, ["cam"], 2, 2,
                  marks=known_answer_marks(len(images)), recognition=False)
    assert main(["--study", os.fspath(tmp_path / "marked"), "--raters", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 simulated map readers" in out and "4 simulated photo readers" in out and "| cam |" in out
    prepare_study(tmp_path / "plain", model, tiny_models[0], images, labels, ["cam"], 2, 2, recognition=False)
    with pytest.raises(UserError, match="has no planted marks"):
        main(["--study", os.fspath(tmp_path / "plain")])
