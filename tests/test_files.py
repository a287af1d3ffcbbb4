"""Writes that no crash can leave half-done, and outputs that never replace what is not ours."""

from __future__ import annotations

import pytest

from cifar_xai.errors import UserError
from cifar_xai.files import atomic_path, is_run_folder, remove_own_folder, replace_folder, write_json, write_text
from reports.build import check_out


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"accuracy": 0.')
        raise RuntimeError("power cut")
    assert target.read_text() == '{\n  "accuracy": 0.9\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    # The temporary name keeps the target's suffixes (Keras insists on .keras / .weights.h5).
    with atomic_path(tmp_path / "model.weights.h5") as tmp:
        assert tmp.name.endswith("model.weights.h5") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "model.weights.h5").read_bytes() == b"x"


def test_a_folder_is_replaced_whole(tmp_path):
    target, staged = tmp_path / "report", tmp_path / ".report.building"
    for folder, text in ((target, "old"), (staged, "new")):
        folder.mkdir()
        write_text(folder / "index.html", text)
    (target / "only-old.png").write_text("stale")
    replace_folder(staged, target)
    assert (target / "index.html").read_text() == "new" and not (target / "only-old.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_remove_own_folder_refuses_what_the_project_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"theme": "dark"}')   # someone else's config.json
    with pytest.raises(UserError, match="does not hold a training run"):
        remove_own_folder(tmp_path / "mine", is_run_folder, "a training run")
    assert (tmp_path / "mine" / "config.json").exists()
    (tmp_path / "run").mkdir()
    write_json(tmp_path / "run" / "config.json", {"model": "interpretable_cnn", "epochs": 1, "seed": 0})
    remove_own_folder(tmp_path / "run", is_run_folder, "a training run")
    assert not (tmp_path / "run").exists()


def test_a_report_never_replaces_another_or_lands_among_a_users_files(tmp_path):
    check_out(tmp_path / "new", overwrite=False)                 # a new folder: fine
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", overwrite=False)               # an empty one: fine
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"...")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="holds files that are not a report"):
            check_out(tmp_path / "photos", overwrite)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_out(tmp_path / "notes.txt", True)
    report = tmp_path / "report"
    report.mkdir()
    write_text(report / "index.html", "<html>")
    write_json(report / "metrics.json", {})
    with pytest.raises(UserError, match="already holds a report; pass --overwrite"):
        check_out(report, overwrite=False)
    check_out(report, overwrite=True)


def test_an_empty_folder_is_used_as_it_is(tmp_path):
    (tmp_path / "empty").mkdir()
    remove_own_folder(tmp_path / "empty", is_run_folder, "a training run")
    assert (tmp_path / "empty").is_dir()
