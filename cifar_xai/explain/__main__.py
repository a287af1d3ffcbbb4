"""Explain a prediction: `python -m cifar_xai.explain --image sample.png --class_id 3 --method gradcam`.

Writes a PNG panel (image, heatmap, overlay, with the predicted class, its probability and the
explained class) and the raw heatmap as .npy beside it, for each image and method.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from cifar_xai.cli import OneLineParser, load_tensorflow
from cifar_xai.errors import UserError, run_cli


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m cifar_xai.explain", description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, action="append", metavar="PATH",
                        help="image file, any size or mode (repeat for several)")
    parser.add_argument("--class_id", "--class-id", dest="class_id", metavar="ID|NAME",
                        help="class to explain, 0-9 or a name such as cat (default: the predicted class)")
    parser.add_argument("--class", dest="class_name", metavar="NAME|ID", help="the same as --class_id")
    parser.add_argument("--method", default="gradcam", help="an explanation method, or all (default gradcam)")
    parser.add_argument("--layer", help="conv layer for the CAM family (default cam_features)")
    parser.add_argument("--feature-maps", action="store_true",
                        help="also write the activations of --layer (default cam_features) as a grid")
    parser.add_argument("--model", help="a .keras model (default: saved_models/interpretable_cnn.keras)")
    parser.add_argument("--out", default="explanations", help="output folder (default explanations/)")
    args = parser.parse_args(argv)
    if args.class_id is not None and args.class_name is not None:
        parser.error(f"--class_id {args.class_id} and --class {args.class_name} both name a class; give one")
    args.class_id = args.class_id if args.class_id is not None else args.class_name
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_tensorflow()
    from cifar_xai import CLASS_NAMES
    from cifar_xai.explain import METHODS, ExplanationError, explain, feature_maps, predict
    from cifar_xai.explain.core import class_id
    from cifar_xai.images import load_image
    from cifar_xai.model_io import load_model
    from cifar_xai.models import CAM_LAYER
    from cifar_xai.plots import explanation_panel_png, image_grid_png

    try:
        methods = list(METHODS) if args.method == "all" else [METHODS[args.method].name]
    except KeyError:
        raise UserError(f"unknown method {args.method!r}; valid: {', '.join(METHODS)}, all") from None
    try:
        target = None if args.class_id is None else class_id(args.class_id)
    except ExplanationError as err:
        raise UserError(str(err)) from None
    images = [(Path(path), *load_image(path)) for path in args.image]
    model = load_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import numpy as np

    for path, image, notes in images:
        for note in notes:
            print(f"note: {path.name}: {note}")
        probabilities = predict(model, image[None].astype(np.float32))[0]
        predicted = int(probabilities.argmax())
        explained = predicted if target is None else target
        maps = {}
        for method in methods:
            try:
                heatmap = explain(model, image, method, classes=explained, layer=args.layer)[0]
            except ExplanationError as err:
                raise UserError(str(err)) from None
            np.save(out / f"{path.stem}_{method}.npy", heatmap)
            maps[METHODS[method].title] = heatmap
        caption = (f"{path.name}: predicted {CLASS_NAMES[predicted]} ({probabilities[predicted]:.1%}), "
                   f"explaining {CLASS_NAMES[explained]} ({probabilities[explained]:.1%})"
                   + (f" at layer {args.layer}" if args.layer else ""))
        panel = out / f"{path.stem}_{args.method}.png"
        panel.write_bytes(explanation_panel_png(image, maps, caption))
        print(f"{caption} -> {panel}")
        if args.feature_maps:
            activations = np.moveaxis(feature_maps(model, image, args.layer), -1, 0)
            layer = args.layer or CAM_LAYER
            grid = out / f"{path.stem}_features_{layer}.png"
            grid.write_bytes(image_grid_png(activations, f"{path.name}: {len(activations)} feature maps of {layer}"))
            print(f"feature maps of {layer} -> {grid}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
