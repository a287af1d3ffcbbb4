"""Ship a finished run as the default model: `python -m trainers.ship --run-dir runs/<run>`.

Writes saved_models/interpretable_cnn.keras, its model card (.md), the run's record (.run/) and the
SavedModel export saved_models/interpretable_cnn/1/ (see cifar_xai/shipping.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cifar_xai.cli import OneLineParser, load_tensorflow
from cifar_xai.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m trainers.ship", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a finished trainers.fit run")
    parser.add_argument("--data-dir",
                        help="tfds data dir, to measure the TTA accuracy of runs that did not record it "
                             "(default: tfds' own)")
    parser.add_argument("--dest", default="saved_models", help="where to ship (default saved_models)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already shipped there")
    args = parser.parse_args(argv)
    load_tensorflow()
    from cifar_xai.shipping import ship

    ship(args.run_dir, args.data_dir, args.dest, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
