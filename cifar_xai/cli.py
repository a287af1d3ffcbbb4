"""Shared pieces of the command lines: an argparse that reports errors in one line."""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`error: ...`) and name the valid values."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(2)


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --cifar-bin: where tfds' cifar10 is, and the batch files to prepare it from offline."""
    parser.add_argument("--data-dir", help="tfds data dir (default: tfds' own, ~/tensorflow_datasets)")
    parser.add_argument("--cifar-bin", metavar="DIR",
                        help="folder with the six CIFAR-10 binary batch files, to prepare tfds' cifar10 offline")


def add_benchmark_flags(parser: argparse.ArgumentParser, seed_of: str) -> None:
    """What every benchmark over generated image sets takes: their seed, the data, a JSON file."""
    parser.add_argument("--seed", type=non_negative_int, default=0, help=f"seed of {seed_of} (default 0)")
    add_data_flags(parser)
    parser.add_argument("--json", metavar="PATH", type=output_file, help="write every figure as JSON here")


def output_file(text: str) -> str:
    """A file the command will write: its folder must exist, checked before any work is done, so
    minutes of measuring are never lost to a mistyped folder at the end."""
    import os

    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text) or not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text!r}: {'is a folder' if os.path.isdir(text) else 'no folder ' + folder}"
                                         "; give a file in an existing folder")
    return text


def write_json(path: str | None, result: dict) -> None:
    """A benchmark's figures to `path` (its --json), atomically; nothing when no path was given."""
    if not path:
        return
    from cifar_xai import files  # stdlib only; kept here so the flags' module stays a leaf

    files.write_json(path, result)
    print(f"wrote {path}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def load_tensorflow() -> None:
    """Import TensorFlow and list its devices with the C++ start-up banner silenced.

    The banner (oneDNN, CUDA, CPU-feature notes, a failed cuInit on GPU-less machines) is noise
    around our one-line messages.

    Those lines are written to the stderr file descriptor before logging can be configured, so
    they are hidden at that level; Python errors raised by the import still surface normally.
    """
    import os

    from absl import logging as absl_logging

    # tfds reports routine states (an unprepared folder, a prepared one) as absl warnings.
    absl_logging.set_verbosity(absl_logging.ERROR)
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
