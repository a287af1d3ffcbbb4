"""How stable are the explanations? Across retrained models, and under a 1-pixel shift or a mirror.

    python -m benchmarks.stability --model runs/dr-seed0/model.keras --model runs/dr-seed1/model.keras \\
        --model runs/dr-seed2/model.keras            # 3 seeds of the shipped recipe, 1,000 test images

With several models: per method, the mean agreement of every pair's maps of the same test images
(Spearman rank correlation, share of shared top-20 % pixels; chance: 0 and 0.2), each model
explaining its own prediction, with the share of images the pair predicts alike. For the first
model: the agreement of each map with the map of the image shifted by one pixel (shifted back)
and of the mirrored image (mirrored back). SmoothGrad and Integrated Gradients use the report's
settings (4 samples, 8 steps). Prints the tables and the machine; --json writes every figure.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from cifar_xai.cli import OneLineParser, add_data_flags, load_tensorflow, output_file, positive_int, write_json

METHODS = ("cam", "gradcam", "gradcam++", "layercam", "scorecam_fast", "saliency", "smoothgrad",
           "integrated_gradients", "prototypes")


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m benchmarks.stability", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="PATH",
                        help="a .keras model; repeat for the retraining comparison (same classes and input)")
    parser.add_argument("--images", type=positive_int, default=1000, help="first N test images (default 1,000)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), metavar="M",
                        help="methods to measure (default: every one the models can run)")
    add_data_flags(parser)
    parser.add_argument("--json", metavar="PATH", type=output_file, help="write every figure as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_tensorflow()
    from cifar_xai.data.pipeline import split_arrays
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.errors import UserError
    from cifar_xai.explain import METHODS as KNOWN
    from cifar_xai.interpretability.stability import input_stability, retraining_stability
    from cifar_xai.interpretability.suite import Settings
    from cifar_xai.model_io import load_model
    from cifar_xai.shipping import machine_description

    unknown = sorted(set(args.methods) - set(KNOWN))
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(KNOWN)}")
    models = [load_model(path) for path in args.model]
    shapes = {tuple(model.output.shape[1:]) for model in models}
    if len(shapes) > 1:
        raise UserError(f"the models predict different numbers of classes ({sorted(shapes)}); compare models "
                        "trained on the same classes")
    ensure_prepared(args.data_dir, args.cifar_bin)
    images = split_arrays(args.data_dir, "test", limit=args.images)[0].numpy().astype("float32")
    options = Settings().method_options
    start = time.perf_counter()
    result = {"models": args.model, "machine": machine_description(), "date": time.strftime("%Y-%m-%d")}
    if len(models) > 1:
        retrained = result["retraining"] = retraining_stability(models, images, args.methods, options)
        print(f"Across {len(models)} models ({retrained['pairs']} pairs, {retrained['images']} test images): "
              f"predictions agree on {retrained['prediction_agreement']:.1%}")
        print(f"{'method':>22s} {'Spearman':>9s} {'top-20 % shared':>16s}")
        for method, values in retrained["methods"].items():
            print(f"{method:>22s} {values['spearman']:9.3f} {values['top20_overlap']:16.3f}")
    changed = result["input_changes"] = input_stability(models[0], images, args.methods, options)
    kept = changed["prediction_kept"]
    print(f"\n{args.model[0]} under changes the prediction should ignore ({changed['images']} test images; "
          f"prediction kept: 1-px shift {kept['translate_1px']:.1%}, mirror {kept['mirror']:.1%})")
    print(f"{'method':>22s} {'shift: Spearman':>16s} {'top-20 %':>9s} {'mirror: Spearman':>17s} {'top-20 %':>9s}")
    for method, values in changed["methods"].items():
        shift, mirror = values["translate_1px"], values["mirror"]
        print(f"{method:>22s} {shift['spearman']:16.3f} {shift['top20_overlap']:9.3f} {mirror['spearman']:17.3f} "
              f"{mirror['top20_overlap']:9.3f}")
    result["seconds"] = time.perf_counter() - start
    print(f"\n{result['machine']}; {result['seconds']:.0f} s")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
