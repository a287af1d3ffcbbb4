import json

import pytest

from benchmarks.accuracy import TARGETS, main, run_or_read, table, verdict
from cifar_xai.config import PRESETS
from cifar_xai.errors import UserError, run_cli
from cifar_xai.models import build_model


def metrics(plain, translate, total, seed=0):
    return {"test": {"accuracy": plain}, "test_tta": {"flip": plain, "flip_translate": translate},
            "train_seconds": total - 40, "total_seconds": total,
            "config": PRESETS["default"].replace(seed=seed).to_dict()}


def test_table_has_a_row_per_seed_and_the_medians():
    rows = {0: metrics(0.93, 0.939, 1400), 1: metrics(0.92, 0.942, 1600), 2: metrics(0.94, 0.941, 1450)}
    lines = table(rows)
    assert len(lines) == 2 + 3 + 1
    assert lines[-1] == "| median | 93.00% | 93.00% | 94.10% | 1,410 s | 1,450 s |"


@pytest.mark.parametrize(("translate", "total", "met"), [
    ((0.940, 0.941, 0.950), (1400, 1450, 1600), True),     # medians 94.1 %, 1,450 s
    ((0.939, 0.941, 0.938), (1400, 1450, 1600), False),    # accuracy median below 94 %
    ((0.940, 0.941, 0.950), (1400, 1550, 1600), False),    # time median over 25 minutes
])
def test_verdict_needs_both_medians_within_the_target(translate, total, met):
    assert TARGETS["default"] == (0.94, 1500)
    rows = {seed: metrics(0.93, t, s, seed) for seed, (t, s) in enumerate(zip(translate, total, strict=True))}
    assert verdict("default", rows).endswith("-> met" if met else "-> not met")


def test_a_finished_run_with_other_settings_is_a_clear_error(tmp_path, tiny_data_dir, capsys):
    run_dir = tmp_path / "default-seed0"
    run_dir.mkdir()
    other = metrics(0.9, 0.9, 100)
    other["config"]["epochs"] = 3
    (run_dir / "metrics.json").write_text(json.dumps(other))
    assert run_cli(main, ["--seeds", "0", "--runs", str(tmp_path), "--data-dir", str(tiny_data_dir)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {run_dir} holds a run with other settings than preset 'default' seed 0; "
                     "pass another --runs or --pattern"]


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_a_run_from_before_the_logit_scale_setting_is_judged_by_its_model(tmp_path, factor):
    """Runs whose config.json predates `logit_scale` count for the preset only if their model has its scale."""
    run_dir = tmp_path / "default-seed0"
    run_dir.mkdir()
    legacy = metrics(0.93, 0.941, 1400)
    scale = legacy["config"].pop("logit_scale") * factor
    (run_dir / "metrics.json").write_text(json.dumps(legacy))
    build_model("interpretable_cnn", "small", logit_scale=scale).save(run_dir / "model.keras")
    if factor == 1.0:
        assert run_or_read("default", 0, run_dir, None) == legacy
    else:
        with pytest.raises(UserError, match="other settings than preset 'default' seed 0"):
            run_or_read("default", 0, run_dir, None)
