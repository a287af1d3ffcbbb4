"""`python training/train.py ...`: the project description's training command, an alias of
`python -m trainers.fit ...` (same flags, e.g. --dataset cifar10 --model interpretable_cnn)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar_xai.errors import run_cli  # noqa: E402
from trainers.fit import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
