"""Explain a prediction: `python -m cifar_xai.explain --image sample.png --class_id 3 --method gradcam`.

Writes a PNG panel (image, heatmap, overlay, with the predicted class, its calibrated probability
and the explained class) and the raw heatmap as .npy beside it, for each image and method. Says
how much to trust it: the out-of-distribution score of the model's detector (`<model>.ood.npz`)
with the image's in-distribution percentile and a plain verdict; when the two most probable
classes are close, the panel adds the contrastive CAM, "why A rather than B". `--json` prints
the same figures as JSON.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from cifar_xai.cli import OneLineParser, load_tensorflow
from cifar_xai.errors import UserError, run_cli

PROTOTYPES = "prototypes"   # a prototype_cnn's own explanation (cifar_xai.explain.prototypes.py)


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m cifar_xai.explain", description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, action="extend", nargs="+", metavar="PATH",
                        help="image files, any size or mode (several after one --image, or --image repeated)")
    parser.add_argument("--class_id", "--class-id", dest="class_id", metavar="ID|NAME",
                        help="class to explain, 0-9 or a name such as cat (default: the predicted class)")
    parser.add_argument("--class", dest="class_name", metavar="NAME|ID", help="the same as --class_id")
    parser.add_argument("--method", default="gradcam",
                        help="an explanation method, all, or prototypes (a prototype_cnn's own explanation: "
                             "which training patches the image looks like); default gradcam")
    parser.add_argument("--top", type=int, default=3, metavar="K", help="prototypes shown with --method prototypes")
    parser.add_argument("--layer", help="conv layer for the CAM family (default cam_features)")
    parser.add_argument("--feature-maps", action="store_true",
                        help="also write the activations of --layer (default cam_features) as a grid")
    parser.add_argument("--model", help="a .keras model (default: saved_models/interpretable_cnn.keras)")
    parser.add_argument("--out", default="explanations", help="output folder (default explanations/)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)
    if args.class_id is not None and args.class_name is not None:
        parser.error(f"--class_id {args.class_id} and --class {args.class_name} both name a class; give one")
    args.class_id = args.class_id if args.class_id is not None else args.class_name
    return args


def output_names(paths: Sequence[Path]) -> list[str]:
    """A distinct file-name stem per input image, so no output replaces another: the stem, or the
    name with its extension when two stems meet (photo.png, photo.jpg), or with its folders too
    when the names meet as well (a/cat.png, b/cat.png)."""
    def spelled(path: Path, parts: int) -> str:
        if parts == 0:
            return path.stem
        named = "_".join((*path.parent.parts[-(parts - 1):], path.name) if parts > 1 else (path.name,))
        return named.replace(".", "_").replace("/", "_")

    names = []
    for path in paths:
        parts = 0
        while parts < len(path.parts) and sum(spelled(other, parts) == spelled(path, parts) for other in paths) > 1:
            parts += 1
        names.append(spelled(path, parts))
    # The same file given twice still gets two outputs.
    return [name if names[:i].count(name) == 0 else f"{name}_{names[:i].count(name) + 1}"
            for i, name in enumerate(names)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_tensorflow()
    import json

    import numpy as np

    from cifar_xai import CLASS_NAMES
    from cifar_xai.explain import METHODS, ExplanationError, feature_maps
    from cifar_xai.explain.analysis import analyse
    from cifar_xai.explain.inputs import class_id
    from cifar_xai.explain.registry import applicable_methods, why_not
    from cifar_xai.images import load_image
    from cifar_xai.model_io import SHIPPED_MODEL, load_model, run_metrics
    from cifar_xai.models import CAM_LAYER
    from cifar_xai.plots import explanation_panel_png, image_grid_png
    from cifar_xai.uncertainty import confidences_calibrated
    from cifar_xai.uncertainty.detector import detector_beside

    def say(text: str) -> None:
        # With --json, stdout carries the JSON document only.
        print(text, file=sys.stderr if args.json else sys.stdout)

    try:
        methods = (list(METHODS) if args.method == "all" else [] if args.method == PROTOTYPES
                   else [METHODS[args.method].name])
    except KeyError:
        valid = dict.fromkeys([*METHODS, "all", PROTOTYPES])   # the registry lists prototypes too: once
        raise UserError(f"unknown method {args.method!r}; valid: {', '.join(valid)}") from None
    try:
        target = None if args.class_id is None else class_id(args.class_id)
    except ExplanationError as err:
        raise UserError(str(err)) from None
    paths = [Path(path) for path in args.image]
    images = [(path, *load_image(path)) for path in paths]
    names = output_names(paths)
    model = load_model(args.model)
    if args.method == PROTOTYPES:
        from cifar_xai.explain.prototypes import require_prototypes

        require_prototypes(model)
        if args.top < 1:
            raise UserError(f"--top {args.top}: show at least 1 prototype")
    if args.method == "all":   # every method this model can run
        methods = applicable_methods(model, methods)
    for method in methods:     # asked for by name: a model that cannot run it says why, in one line
        if refusal := why_not(model, method):
            raise UserError(refusal)
    calibrated = confidences_calibrated(model, run_metrics(args.model or SHIPPED_MODEL))
    # Said only where it matters: a probability without a (helpful) temperature is not calibrated.
    confidence_label = "" if calibrated else ", uncalibrated"
    detector, reason = detector_beside(model, args.model or SHIPPED_MODEL)
    if reason:  # still explain, without a verdict
        say(f"note: {reason}; explaining without an in-distribution verdict")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = []
    for (path, image, notes), stem in zip(images, names, strict=True):
        for note in notes:
            say(f"note: {path.name}: {note}")
        try:
            found_all = analyse(model, image, methods, target, detector, calibrated, args.layer)[0]
        except ExplanationError as err:
            raise UserError(str(err)) from None
        probabilities, first, second = found_all.probabilities, found_all.predicted, found_all.runner_up
        explained = found_all.explained
        # Explaining another class than the prediction writes other files: the class is in their name.
        stem = stem if explained == first else f"{stem}_{CLASS_NAMES[explained]}"
        maps = {}
        for method, heatmap in found_all.maps.items():
            np.save(out / f"{stem}_{method}.npy", heatmap)
            maps[METHODS[method].title] = heatmap
        signed = {}
        if found_all.contrastive is not None:
            title = f"why {CLASS_NAMES[first]} rather than\n{CLASS_NAMES[second]} (red: {CLASS_NAMES[first]})"
            signed[title] = found_all.contrastive
            np.save(out / f"{stem}_contrastive.npy", signed[title])
        verdict = found_all.ood
        caption = (f"{path.name}: predicted {CLASS_NAMES[first]} ({probabilities[first]:.1%}{confidence_label}), "
                   f"explaining {CLASS_NAMES[explained]} ({probabilities[explained]:.1%})"
                   + (f" at layer {args.layer}" if args.layer else ""))
        if verdict:
            caption += (f"\n{'in' if verdict['in_distribution'] else 'OUT OF'} distribution: {verdict['verdict']} "
                        f"(percentile {verdict['percentile']:.0f}: {verdict['percentile']:.0f} % of held-out CIFAR-10 "
                        f"images score lower on {verdict['score']})")
        panel = out / f"{stem}_{args.method}.png"
        looks_like = None
        if args.method == PROTOTYPES:
            from cifar_xai.explain.prototypes import explain_prototypes, source_patches
            from cifar_xai.plots import prototype_panel_png

            found = explain_prototypes(model, image, explained, args.top)[0]
            sources, boxes = source_patches(model)
            panel.write_bytes(prototype_panel_png(image, found, sources, caption))
            looks_like = [{"prototype": int(j), "class": CLASS_NAMES[c], "similarity": float(s), "weight": float(w),
                           "contribution": float(found.contributions[j]), "source": source}
                          for j, c, s, w, source in zip(found.top, found.prototype_classes, found.similarities,
                                                        found.weights, found.sources, strict=True)]
            say(f"{caption} -> {panel}".replace("\n", "; "))
            for item in looks_like:
                say(f"  looks like prototype {item['prototype']} ({item['class']}, training image "
                    f"{item['source']['image']}): similarity {item['similarity']:.2f} x weight {item['weight']:+.2f} = "
                    f"{item['contribution']:+.2f} of the {CLASS_NAMES[explained]} logit {found.logit:.2f}")
        else:
            panel.write_bytes(explanation_panel_png(image, maps, caption, signed))
            say(f"{caption} -> {panel}".replace("\n", "; "))
        entry = {
            "image": str(path), "notes": notes, "predicted": CLASS_NAMES[first],
            "probability": float(probabilities[first]), "calibrated": calibrated,
            "runner_up": CLASS_NAMES[second], "runner_up_probability": float(probabilities[second]),
            "explained": CLASS_NAMES[explained], "methods": methods, "panel": str(panel),
            "contrastive": f"{CLASS_NAMES[first]} rather than {CLASS_NAMES[second]}" if signed else None,
            "ood": verdict,
        }
        if looks_like is not None:
            entry["prototypes"] = looks_like
            entry["logit"] = found.logit
            entry["sum_of_contributions"] = float(found.contributions.sum())
        if args.feature_maps:
            activations = np.moveaxis(feature_maps(model, image, args.layer), -1, 0)
            layer = args.layer or CAM_LAYER
            grid = out / f"{stem}_features_{layer}.png"
            grid.write_bytes(image_grid_png(activations, f"{path.name}: {len(activations)} feature maps of {layer}"))
            say(f"feature maps of {layer} -> {grid}")
            entry["feature_maps"] = str(grid)
        report.append(entry)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
