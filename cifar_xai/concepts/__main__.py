"""Concept explanations from the command line: TCAV with its significance test, and concept discovery.

    python -m cifar_xai.concepts tcav --concept stripes_horizontal --concept my_stripes/ --class cat
    python -m cifar_xai.concepts discover --class cat          # a concept atlas: PNG + JSON
    python -m cifar_xai.concepts list                          # the built-in concept sets

TCAV tests each concept against 20 random sets of the model's training images and prints, per
class and layer, the score with its p-value (or "not significant"). At the map under a GAP head
the score is 0 or 1 by construction (the head is linear), so the class weight's projection on the
CAV is tested there instead. `discover` factorises the CAM map over the class's training images
and splits its logit among the concepts, exactly.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cifar_xai import CLASS_NAMES
from cifar_xai.cli import OneLineParser, add_data_flags, load_tensorflow, positive_int
from cifar_xai.config import DISCOVERY_IMAGES, TCAV_RUNS, TCAV_TARGET, TCAV_TARGETS
from cifar_xai.errors import UserError, run_cli
from cifar_xai.files import write_bytes, write_json

PROG = "python -m cifar_xai.concepts"


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    test = commands.add_parser("tcav", help="test concepts against random sets (Kim et al. 2018)")
    test.add_argument("--concept", action="append", required=True, metavar="NAME|DIR",
                      help="a built-in concept (see `list`) or a folder of >= 20 images; repeat for several")
    test.add_argument("--class", dest="classes", action="append", required=True, metavar="CLASS",
                      help="class name or id whose logit is tested; repeat for several")
    test.add_argument("--layer", action="append", metavar="L",
                      help="conv layer to test at; repeat for several (default: every block output)")
    test.add_argument("--runs", type=positive_int, default=TCAV_RUNS,
                      help=f"random sets, one CAV each (default {TCAV_RUNS}; Kim et al. ask for >= 20)")
    test.add_argument("--images", type=positive_int, default=200,
                      help="held-out images of each class (the run's validation split, else test; default 200)")
    test.add_argument("--target", choices=TCAV_TARGETS, default=TCAV_TARGET,
                      help=f"what is differentiated: the class logit (Kim et al.) or its log-probability "
                           f"(tensorflow/tcav's loss gradient); default {TCAV_TARGET}")

    find = commands.add_parser("discover", help="find a class's concepts in the CAM map (NMF) and draw their atlas")
    find.add_argument("--class", dest="classes", action="append", required=True, metavar="CLASS",
                      help="class name or id; repeat for several")
    find.add_argument("--concepts", type=positive_int, metavar="K",
                      help="how many concepts (default: chosen by the reconstruction error's elbow)")
    find.add_argument("--images", type=positive_int, default=DISCOVERY_IMAGES,
                      help=f"training images of the class to factorise (default {DISCOVERY_IMAGES})")

    for sub in (test, find):
        sub.add_argument("--model", help="a .keras model (default: the shipped one)")
        sub.add_argument("--out", default="concepts", help="folder for the PNG and JSON (default concepts/)")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace this command's earlier PNG and JSON in --out")
        sub.add_argument("--seed", type=int, default=0, help="seed of the random sets and generated concepts")
        add_data_flags(sub)
    commands.add_parser("list", help="the built-in concept sets")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "list":
        from cifar_xai.concepts.sets import concept_names

        print("\n".join(concept_names()))
        return 0
    load_tensorflow()
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.explain.inputs import ExplanationError, class_id
    from cifar_xai.model_io import SHIPPED_MODEL, load_model, run_config

    try:
        classes = [class_id(name) for name in args.classes]
    except ExplanationError as err:
        raise UserError(str(err)) from None
    model_path = Path(args.model) if args.model else SHIPPED_MODEL
    model = load_model(model_path)
    settings = run_config(model_path)
    ensure_prepared(args.data_dir, args.cifar_bin)
    out = Path(args.out)
    # The names the outputs will have, checked before the minutes of work: nothing replaced silently.
    names = ([f"tcav-{'-'.join(sorted({CLASS_NAMES[k] for k in classes}))}"] if args.command == "tcav"
             else [f"atlas-{CLASS_NAMES[k]}" for k in classes])
    existing = [out / f"{name}{suffix}" for name in names for suffix in (".png", ".json")
                if (out / f"{name}{suffix}").exists()]
    if existing and not args.overwrite:
        raise UserError(f"{existing[0]} exists (an earlier run's); pass --overwrite to replace it, or another --out")
    start = time.perf_counter()
    try:
        if args.command == "tcav":
            written = tcav_command(model, args, classes, settings, out)
        else:
            written = discover_command(model, args, classes, settings, out)
    except ExplanationError as err:
        raise UserError(str(err)) from None
    print(f"({time.perf_counter() - start:.0f} s) wrote {', '.join(map(str, written))}")
    return 0


def tcav_command(model, args, classes: list[int], settings, out: Path) -> list[Path]:
    from cifar_xai.concepts.atlas import tcav_png
    from cifar_xai.concepts.sets import MARK_CONCEPT, concept_names, is_folder, load_concept_folder
    from cifar_xai.concepts.study import run_tcav
    from cifar_xai.explain.inputs import resolve_layer

    for spec in args.concept:   # every concept and layer checked before the slow part
        if is_folder(spec):
            load_concept_folder(spec)
        elif spec not in concept_names():
            raise UserError(f"unknown concept {spec!r}; valid: {', '.join(concept_names())}, or a folder of images")
    layers = [resolve_layer(model, layer) for layer in args.layer] if args.layer else None
    results = run_tcav(model, args.concept, classes, args.data_dir, settings, layers, args.runs, args.images,
                       args.seed, args.target, progress=lambda line: print(line, file=sys.stderr, flush=True))
    for result in results:
        print(f"{result.class_name:>10s} {result.layer:>13s} {result.concept:>20s}: {result.summary()}")
    unlearnable = sum(not r.learnable for r in results)
    print(f"\n{results[0].tests} tests (concept x class x layer with a learnable CAV), family-wise level "
          f"{results[0].alpha:g} by Holm's step-down; {unlearnable} of {len(results)} not tested: the layer does not "
          "tell the concept from random images better than chance")
    if any(r.constant_gradient for r in results):
        print("\n(at cam_features the logit is linear in the map, so every image has the same derivative and the "
              "TCAV score is 0 or 1; the class weight's projection on the CAV is tested there instead)")
    if MARK_CONCEPT in args.concept:
        print("(mark: the planted 5x5 mark on random training images, against the same kind of images unmarked)")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"tcav-{'-'.join(sorted({r.class_name for r in results}))}"
    png, record = out / f"{stem}.png", out / f"{stem}.json"
    write_bytes(png, tcav_png(results))
    write_json(record, [r.to_dict() for r in results])
    return [png, record]


def discover_command(model, args, classes: list[int], settings, out: Path) -> list[Path]:
    from cifar_xai.concepts.study import run_discovery

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, k in enumerate(classes, 1):
        print(f"discovering the concepts of {CLASS_NAMES[k]} ({number} of {len(classes)})...", file=sys.stderr,
              flush=True)
        found = run_discovery(model, k, args.data_dir, settings, args.images, args.concepts, args.seed)
        record = found.record
        print(f"{CLASS_NAMES[k]}: {record['k']} concepts, mean logit {record['mean_logit']:.2f} = bias "
              f"{record['bias']:+.2f} + concepts {sum(c['contribution'] for c in record['concepts']):+.2f} + residual "
              f"{record['mean_residual']:+.2f}")
        for concept in record["concepts"]:
            print(f"  concept {concept['rank']}: {concept['contribution']:+.2f} logit ({concept['share']:.0%})")
        test = record["region_deletion_test"]
        print(f"  painting over the top concepts' regions ({test['share_of_image']:.0%} of the image) lowers the logit "
              f"by {test['concept_regions_drop']:.2f}, random regions by {test['random_regions_drop']:.2f}")
        png, path = out / f"atlas-{CLASS_NAMES[k]}.png", out / f"atlas-{CLASS_NAMES[k]}.json"
        write_bytes(png, found.png())
        write_json(path, record)
        written += [png, path]
    return written


if __name__ == "__main__":
    sys.exit(run_cli(main))
