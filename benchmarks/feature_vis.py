"""Are the class visualisations recognisable? Each method's images of the ten classes, judged by
models that did not make them.

    python -m benchmarks.feature_vis [--model M] --judge J [--judge J2] [--seeds 2] [--json FILE]

For each method (`visualise`: the decorrelated Fourier parameterisation with transformation
robustness; `tf-keras-vis`: pixel-space activation maximisation, what the report showed before),
one image per class and seed is made from `--model`, shrunk to 32x32 (box filter), and classified
by each `--judge`: the share judged as the class it was made for (chance 10 %), the mean
probability of that class, and the seconds per image. Prints the machine; `--json` writes it all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from cifar_xai.cli import OneLineParser, load_tensorflow, output_file, positive_int, write_json

    parser = OneLineParser(prog="python -m benchmarks.feature_vis", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the model whose classes are visualised (default: the shipped one)")
    parser.add_argument("--judge", action="append", required=True, help="a model that did not make the images")
    parser.add_argument("--seeds", type=positive_int, default=2)
    parser.add_argument("--steps", type=positive_int, help="optimisation steps (default: each method's own)")
    parser.add_argument("--json", type=output_file, metavar="FILE")
    parser.add_argument("--figure", type=output_file, metavar="PNG",
                        help="also draw the first seed's images, a row per method")
    args = parser.parse_args(argv)
    load_tensorflow()
    import numpy as np

    from cifar_xai import NUM_CLASSES
    from cifar_xai.explain.features import activation_maximization
    from cifar_xai.explain.visualise import STEPS, visualise
    from cifar_xai.images import resize_image
    from cifar_xai.model_io import load_model
    from cifar_xai.probes import predict
    from cifar_xai.shipping import machine_description

    model = load_model(args.model)
    judges = {path: load_model(path) for path in args.judge}
    methods = {"visualise": lambda seed: visualise(model, range(NUM_CLASSES), seed=seed, steps=args.steps or STEPS),
               "tf-keras-vis": lambda seed: activation_maximization(model, range(NUM_CLASSES), seed=seed,
                                                                    steps=args.steps or 256)}
    print(machine_description())
    print(f"{args.seeds} seed(s) x {NUM_CLASSES} classes per method; judged at 32x32; chance 10 %\n")
    print("| method | judge | judged as its class | mean probability of its class | seconds per image |")
    print("|---|---|---|---|---|")
    result, rows = {}, {}
    for name, make in methods.items():
        start = time.perf_counter()
        images = np.concatenate([make(seed) for seed in range(args.seeds)])
        rows[name] = images[:NUM_CLASSES]
        seconds = (time.perf_counter() - start) / len(images)
        small = np.stack([resize_image(image, 32) for image in images]).astype(np.float32)
        wanted = np.tile(np.arange(NUM_CLASSES), args.seeds)
        result[name] = {"seconds_per_image": seconds, "judges": {}}
        for path, judge in judges.items():
            p = predict(judge, small)
            hit, probability = float((p.argmax(1) == wanted).mean()), float(p[np.arange(len(p)), wanted].mean())
            result[name]["judges"][path] = {"judged_as_class": hit, "probability": probability,
                                            "predicted": p.argmax(1).tolist()}
            print(f"| {name} | {path} | {hit:.0%} | {probability:.1%} | {seconds:.1f} s |")
    if args.figure:
        from pathlib import Path

        from cifar_xai.plots import visualisation_rows_png

        Path(args.figure).write_bytes(visualisation_rows_png(rows))
    write_json(args.json, {"model": args.model, "seeds": args.seeds, "methods": result,
                           "machine": machine_description()})
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
