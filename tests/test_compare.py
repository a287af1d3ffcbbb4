"""The comparison report: one column per model, n/a where a method does not apply, and models
that cannot be compared refused in one line."""

from __future__ import annotations

import json
import os

import keras
import pytest

from cifar_xai.errors import UserError
from cifar_xai.interpretability import suite
from cifar_xai.models import build_model
from cifar_xai.report.compare import NOT_APPLICABLE, build_comparison, check_comparable, model_names
from tests.conftest import run_module
from tests.test_report import TINY


@pytest.fixture(scope="module")
def comparison(tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    keras.utils.set_random_seed(0)
    models = {}
    for name in ("interpretable_cnn", "standard_cnn"):
        model = build_model(name, "small")
        model.save(root / f"{name}.keras")
        models[name] = (model, root / f"{name}.keras")
    images, labels = suite.load_test_set(tiny_data_dir)
    # As reports.build does: built under a staging name, then swapped in as --out.
    said = []
    summary = build_comparison(models, root / ".out.building", images, labels, TINY, "test", log=said.append)
    (root / ".out.building").rename(root / "out")
    summary["said"] = said
    return root, summary


def test_the_build_never_names_its_staging_folder(comparison):
    _, summary = comparison
    assert summary["said"] and not any(".building" in line for line in summary["said"])


def test_every_table_has_a_column_per_model_and_n_a_where_a_method_does_not_apply(comparison):
    root, summary = comparison
    assert set(summary["models"]) == {"interpretable_cnn", "standard_cnn"}
    assert "cam" in summary["models"]["interpretable_cnn"]["interpretability"]
    assert "cam" not in summary["models"]["standard_cnn"]["interpretability"]
    page = (root / "out" / "index.html").read_text()
    # The CAM row of every measurement table: a number for the GAP network, n/a for the dense head.
    cam_rows = [row for row in page.split("<tr>") if row.startswith("<td>cam</td>")]
    assert cam_rows and all(row.endswith(f"<td>{NOT_APPLICABLE}</td></tr>") for row in cam_rows)
    assert any(row.count(f"<td>{NOT_APPLICABLE}</td>") == 1 for row in cam_rows)   # measured where it applies
    assert page.count("<th>interpretable_cnn</th>") >= 5 and page.count("<th>standard_cnn</th>") >= 5
    saved = json.loads((root / "out" / "metrics.json").read_text())
    assert saved["verdict"]["standard_cnn"]["method"] == "gradcam"
    assert "cam" in saved["models"]["interpretable_cnn"]["stability"]["methods"]
    assert "cam" not in saved["models"]["standard_cnn"]["stability"]["methods"]
    assert "Stability under changes" in page


def test_models_of_other_classes_or_inputs_are_refused():
    with pytest.raises(UserError, match="classes"):
        check_comparable({"ten": build_model("interpretable_cnn", "small"),
                          "six": build_model("interpretable_cnn", "small", num_classes=6)})
    inputs = keras.Input((32, 32, 3), name="image")
    other = keras.Model(inputs, keras.layers.Dense(10, name="logits")(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(UserError, match="take their input differently"):
        check_comparable({"ours": build_model("interpretable_cnn", "small"), "other": other})


def test_column_names_stay_distinct():
    from pathlib import Path

    assert model_names([Path("runs/a/model.keras"), Path("runs/b/model.keras")]) == ["a", "b"]
    assert model_names([Path("x/m.keras"), Path("y/m.keras")]) == ["x/m", "y/m"]
    assert model_names([Path("x/one.keras"), Path("y/two.keras")]) == ["one", "two"]


@pytest.mark.slow
def test_cli_refuses_models_of_other_classes_in_one_line(tmp_path):
    build_model("interpretable_cnn", "small").save(tmp_path / "ten.keras")
    build_model("interpretable_cnn", "small", num_classes=6).save(tmp_path / "six.keras")
    result = run_module("reports.build", "--model", os.fspath(tmp_path / "ten.keras"), "--model",
                        os.fspath(tmp_path / "six.keras"), "--out", os.fspath(tmp_path / "out"))
    assert result.returncode == 2
    assert "classes" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
