"""Fit a model's out-of-distribution detector: `python -m trainers.fit_ood --model runs/<run>/model.keras`.

Scores the training split once (Mahalanobis, KNN and ViM statistics), sets each score's threshold
at 95 % TPR on the held-out validation split, and writes `<model>.ood.npz` beside the model file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cifar_xai.cli import OneLineParser, add_data_flags, load_tensorflow, non_negative_int, positive_int
from cifar_xai.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    from cifar_xai.config import KNN_BANK, OOD_FLIP_AVERAGE, OOD_SCORE

    parser = OneLineParser(prog="python -m trainers.fit_ood", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .keras model (default: saved_models/interpretable_cnn.keras)")
    parser.add_argument("--validation", type=non_negative_int, metavar="N",
                        help="the last N training images the model did not train on (default: from the run's "
                             "config.json)")
    parser.add_argument("--score", default=None,
                        help=f"the score behind in_distribution (default {OOD_SCORE}; see docs/ood.md)")
    parser.add_argument("--knn-bank", type=positive_int, default=KNN_BANK, metavar="N",
                        help=f"training features KNN keeps (default {KNN_BANK:,})")
    parser.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=OOD_FLIP_AVERAGE,
                        help="score the mean of each image's and its mirror's outputs (default: "
                             f"{'on' if OOD_FLIP_AVERAGE else 'off'}; docs/ood.md)")
    add_data_flags(parser)
    args = parser.parse_args(argv)
    load_tensorflow()
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.uncertainty.detector import fit_for_model_file

    ensure_prepared(args.data_dir, args.cifar_bin, False)
    detector, path = fit_for_model_file(args.model, args.data_dir, args.validation, args.score, args.knn_bank,
                                        args.flip_average)
    thresholds = ", ".join(f"{name} {value:.4g}" for name, value in detector.thresholds.items())
    print(f"fitted on {detector.meta['train_images']:,} training images, thresholds at 95 % TPR of "
          f"{detector.meta['validation_images']:,} held-out images: {thresholds}; in_distribution by "
          f"{detector.default} -> {path}")
    from cifar_xai.projector import refresh_run_projector

    projector = refresh_run_projector(args.model, detector, args.data_dir)
    if projector:
        print(f"the Projector's metadata now carries the OOD score and flag -> {projector}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
