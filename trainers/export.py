"""Export a trained model for TF Serving: `python -m trainers.export --model PATH [--export-base DIR]`.

Writes <export-base>/<name>/<version>/ with the serving_default, explain_cam and
explain_cam_class signatures (see cifar_xai/export.py) and TF Serving warm-up requests;
serving_default also returns ood_score and in_distribution when the model's OOD statistics
(`<model>.ood.npz`, from `python -m trainers.fit_ood`) are beside it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cifar_xai.cli import OneLineParser, load_tensorflow, positive_int
from cifar_xai.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m trainers.export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .keras model (default: saved_models/interpretable_cnn.keras)")
    parser.add_argument("--export-base", default="saved_models", help="base folder (default saved_models)")
    parser.add_argument("--name", help="model name in the path (default: the model's own, e.g. interpretable_cnn)")
    parser.add_argument("--version", type=positive_int, help="version number (default: the next free one)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    args = parser.parse_args(argv)
    load_tensorflow()
    from cifar_xai.export import export_saved_model
    from cifar_xai.model_io import SHIPPED_MODEL, load_model
    from cifar_xai.uncertainty.detector import detector_beside

    model = load_model(args.model)
    detector, reason = detector_beside(model, args.model or SHIPPED_MODEL)
    path = export_saved_model(model, args.export_base, args.name, args.version, args.overwrite, detector)
    print(f"exported {path}")
    print(f"serving_default returns ood_score ({detector.default}) and in_distribution" if detector else
          f"note: no ood_score in serving_default ({reason})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
