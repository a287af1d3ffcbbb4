"""Loading trained models, with one-line errors for files that are missing or not ours."""

from __future__ import annotations

import os
from pathlib import Path

from cifar_xai.errors import UserError

# The model trained with the documented default recipe, shipped with the repository.
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "saved_models" / "interpretable_cnn.keras"


def load_model(path: str | os.PathLike | None = None):
    """A cifar-xai Keras model from a `.keras` file (default: the shipped model)."""
    import keras  # imported here: CLIs name SHIPPED_MODEL in their flags before Keras loads

    from cifar_xai.models import CAM_LAYER, LOGITS_LAYER, layer_names

    path = Path(path) if path else SHIPPED_MODEL
    if not path.is_file():
        hint = "train one with python -m trainers.fit and pass --model runs/<run>/model.keras"
        raise UserError(f"no model file at {path}; {hint}")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile errors... all mean "not loadable".
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if len(first) > 200:  # long Keras messages: cut at a word, and say so
            first = first[:200].rsplit(" ", 1)[0] + " …"
        raise UserError(f"{path} is not a Keras model file this project can load ({first})") from None
    if not {CAM_LAYER, LOGITS_LAYER} <= layer_names(model):
        raise UserError(
            f"{path} is a Keras model but not a cifar-xai one (no {CAM_LAYER!r} and {LOGITS_LAYER!r} layers); "
            "train one with python -m trainers.fit"
        )
    return model


def run_config(model_path: str | os.PathLike | None = None) -> dict | None:
    """The trainers.fit settings (config.json) of the run that made a model file, when known:
    beside a run's model.keras, or in the `<name>.run/` record of a shipped model."""
    return _run_record(model_path, "config.json")


def run_metrics(model_path: str | os.PathLike | None = None) -> dict | None:
    """The metrics.json of the run that made a model file, when known (as `run_config`)."""
    return _run_record(model_path, "metrics.json")


def run_folder(model_path: str | os.PathLike | None = None) -> Path | None:
    """The folder holding the config.json of the run that made a model file: the run's own folder
    beside its model.keras, or the `<name>.run/` record of a shipped model; None when unknown."""
    path = Path(model_path) if model_path else SHIPPED_MODEL
    return next((folder for folder in (path.parent, path.with_suffix(".run")) if (folder / "config.json").is_file()),
                None)


def _run_record(model_path: str | os.PathLike | None, name: str) -> dict | None:
    from cifar_xai.files import read_json_object

    folder = run_folder(model_path)
    return read_json_object(folder / name, "run record") if folder and (folder / name).is_file() else None
