"""Writing files and folders so that no reader, and no crash, ever sees half of one.

Every write goes to a temporary name beside its target and becomes the target by one rename
(`os.replace`, atomic on POSIX): after a crash the target is the old file or the new one, never
a mix. The temporary name ends with the target's own name, so writers that insist on a suffix
(`model.save` wants `.keras`, `save_weights` wants `.weights.h5`) accept it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from cifar_xai import faults
from cifar_xai.errors import UserError


def temporary_beside(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write `path`'s content to; renamed onto `path` when the block ends
    without an error, removed when it fails."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, data) -> Path:
    """`data` as indented JSON; numpy scalars are written as numbers."""
    return write_text(path, json.dumps(data, indent=2, default=float) + "\n")


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """A JSON object the project wrote (a run record, a benchmark's --json); anything else, a
    damaged file or valid JSON that is not an object, is refused in one line that names the file."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not a {what} file ({str(err).splitlines()[0]})") from None
    if not isinstance(result, dict):
        raise UserError(f"{path} is not a {what} file (not a JSON object)")
    return result


def replace_folder(staged: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete folder `staged` where `target` is: `target` is moved aside, `staged`
    renamed in, and only then is the old one deleted, so `target` is always whole (a crash
    between the two renames leaves the old one beside it, under `.old-<pid>-<name>`)."""
    staged, target = Path(staged), Path(target)
    old = target.with_name(f".old-{os.getpid()}-{target.name}")
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    if old.exists():
        shutil.rmtree(old)


def is_run_folder(folder: Path) -> bool:
    """A folder `trainers.fit` wrote: its config.json holds a run's settings."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"model", "epochs", "seed"} <= set(config)


def is_report_folder(folder: Path) -> bool:
    """A folder `reports.build` wrote: its index.html beside its metrics.json."""
    return (Path(folder) / "index.html").is_file() and (Path(folder) / "metrics.json").is_file()


def remove_own_folder(folder: str | os.PathLike, is_ours, what: str) -> None:
    """Delete `folder` only when `is_ours(folder)` recognises it as something the project wrote
    (`what`: "a training run", "a report"); anything else, a file included, is refused in one
    line that names it. Never a parent of runs, a home folder, or a user's own files."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"{folder} is a file, not {what} this project wrote; --overwrite replaces only those, "
                        "choose another path")
    if not any(folder.iterdir()):
        return   # empty: nothing to lose, and the folder can be used as it is
    if not is_ours(folder):
        raise UserError(f"{folder} does not hold {what} this project wrote, so --overwrite will not delete it; "
                        "choose another path")
    shutil.rmtree(folder)


def commit_staged(staging: str | os.PathLike, dest: str | os.PathLike, names: list[str]) -> None:
    """Move each of `names` (paths relative to `staging`, files or folders) onto `dest/<name>`,
    as one transaction: a name absent from `staging` is removed from `dest`, so nothing of the
    previous version stays beside the new one.

    The plan is written first (`.<staging>.commit.json` in `dest`); `recover_commits(dest)`, run
    before the next attempt, completes an interrupted commit. Each step is a rename, and each can
    be repeated, so a crash at any point ends, after the rerun, with every name new."""
    staging, dest = Path(staging), Path(dest)
    journal = dest / f".{staging.name}.commit.json"
    write_json(journal, {"staging": staging.name, "present": [n for n in names if (staging / n).exists()],
                         "names": list(names)})
    _roll_forward(journal)


def recover_commits(dest: str | os.PathLike) -> list[str]:
    """Finish every commit `dest` holds a plan for; return the staging folders completed."""
    done = []
    for journal in sorted(Path(dest).glob(".*.commit.json")):
        _roll_forward(journal)
        done.append(journal.name[1:-len(".commit.json")])
    return done


def _roll_forward(journal: Path) -> None:
    plan = json.loads(journal.read_text())
    dest = journal.parent
    staging, trash = dest / plan["staging"], dest / f"{plan['staging']}.old"
    for step, name in enumerate(plan["names"]):
        new, target, old = staging / name, dest / name, trash / name
        if name in plan["present"] and not new.exists():
            continue   # moved in by an earlier attempt
        if target.exists():
            old.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, old)
        if name in plan["present"]:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new, target)
        faults.reached(f"commit:{step}")
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    journal.unlink()
