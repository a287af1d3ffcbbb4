"""Load held: the exported SavedModel called from several threads at once, as TF Serving's
workers or a Python service would, with batch sizes from 0 to 64.

    python -m benchmarks.serving_load [--saved-model saved_models/interpretable_cnn/1] [--threads 8] [--calls 1000]

Every call's outputs (probabilities, class, OOD score and verdict) are compared with the same
batch computed alone, sequentially: they must be identical. Prints the throughput (images/s) of
the concurrent calls beside the single-thread figure, with the machine.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from cifar_xai.cli import OneLineParser, load_tensorflow, positive_int

    parser = OneLineParser(prog="python -m benchmarks.serving_load", description=__doc__.splitlines()[0])
    parser.add_argument("--saved-model", default="saved_models/interpretable_cnn/1", help="a SavedModel version folder")
    parser.add_argument("--threads", type=positive_int, default=8)
    parser.add_argument("--calls", type=positive_int, default=1000)
    parser.add_argument("--max-batch", type=positive_int, default=64)
    args = parser.parse_args(argv)
    if not (Path(args.saved_model) / "saved_model.pb").is_file():
        from cifar_xai.errors import UserError

        raise UserError(f"no SavedModel at {args.saved_model}; export one with python -m trainers.export")
    load_tensorflow()
    import numpy as np
    import tensorflow as tf

    from cifar_xai.shipping import machine_description

    serve = tf.saved_model.load(args.saved_model).signatures["serving_default"]
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, args.max_batch + 1, args.calls)
    pool = rng.integers(0, 256, (args.max_batch, 32, 32, 3), dtype=np.uint8)
    batches = [pool[rng.permutation(args.max_batch)[:size]] for size in sizes]

    def call(images):
        return {key: value.numpy() for key, value in serve(images=tf.constant(images, tf.uint8)).items()}

    call(batches[0])   # warm-up: the first call traces
    start = time.perf_counter()
    alone = [call(images) for images in batches]
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as workers:
        together = list(workers.map(call, batches))
    concurrent = time.perf_counter() - start
    mismatches = sum(not all(np.array_equal(a[key], b[key]) for key in a) for a, b in zip(alone, together, strict=True))
    images = int(sizes.sum())
    print(machine_description())
    print(f"{args.saved_model}: {args.calls} calls, batch sizes 0-{args.max_batch} ({images:,} images, "
          f"{int((sizes == 0).sum())} empty)")
    print(f"one thread: {images / sequential:,.0f} images/s; {args.threads} threads: {images / concurrent:,.0f} "
          f"images/s; calls whose outputs differ from the sequential ones: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
