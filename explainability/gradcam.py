"""`python explainability/gradcam.py --image IMG --class_id 3`: the project description's command,
an alias of `python -m cifar_xai.explain --method gradcam ...` (any other --method still wins)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar_xai.errors import run_cli  # noqa: E402
from cifar_xai.explain.__main__ import main  # noqa: E402

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not any(a == "--method" or a.startswith("--method=") for a in arguments):
        arguments = ["--method", "gradcam", *arguments]
    sys.exit(run_cli(main, arguments))
