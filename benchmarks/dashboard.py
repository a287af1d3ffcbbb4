"""How live the Explanations tab feels: its routes timed as TensorBoard calls them.

    python -m benchmarks.dashboard [--run shipped/interpretable_cnn] [--repeats 20]

Prints, with the machine: the one-time costs (loading the run's model; predicting and scoring the
test split for the gallery), then the median over --repeats of the first detail view of an image
(uncached: a new image each time, the chosen method, the OOD verdict, the contrastive map on a
close call) for each overview method, and of a gallery page (a new page or filter each time).
Then the views of what it learned: the confusion matrix, the layers view of a new image, the
one-time channel statistics and a channel's card (a new channel each time). The targets (issues
26, 32): a detail view within 2 s, a gallery page, the confusion matrix and the layers view within
1 s, a channel's card within 2 s once the statistics are ready.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from cifar_xai.cli import OneLineParser, add_data_flags, load_tensorflow, positive_int

    parser = OneLineParser(prog="python -m benchmarks.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="shipped/interpretable_cnn", help="a run name as the tab lists it")
    parser.add_argument("--logdir", default="runs", help="the logdir TensorBoard would be given (default runs)")
    parser.add_argument("--repeats", type=positive_int, default=20)
    add_data_flags(parser)
    args = parser.parse_args(argv)
    load_tensorflow()
    from tensorboard.plugins import base_plugin
    from werkzeug.test import Client

    from cifar_xai.dashboard.plugin import ExplanationsPlugin
    from cifar_xai.data.tfds_cifar10 import ensure_prepared
    from cifar_xai.explain.registry import OVERVIEW_METHODS
    from cifar_xai.shipping import machine_description

    ensure_prepared(args.data_dir, args.cifar_bin)
    plugin = ExplanationsPlugin(base_plugin.TBContext(
        logdir=args.logdir, flags=argparse.Namespace(cifar_xai_data_dir=args.data_dir or "")))
    apps = plugin.get_plugin_apps()

    def get(route: str, query: str) -> float:
        start = time.perf_counter()
        response = Client(apps[route]).get(f"{route}?{query}")
        if response.status_code != 200:
            raise SystemExit(f"error: {route}?{query}: {response.get_json()['error']}")
        return time.perf_counter() - start

    print(machine_description())
    print(f"run {args.run}, median of {args.repeats}\n")
    loading = get("/run", f"run={args.run}")
    first = get("/gallery", f"run={args.run}")          # answered from its own 48 images
    start = time.perf_counter()
    plugin.dashboard._predictions(plugin.dashboard.run(args.run))   # the background scoring, waited for
    print(f"one-time per run: loading the model and its OOD statistics {loading:.2f} s; the first gallery page "
          f"{first:.2f} s; the rest of the test split predicted and scored behind it "
          f"{first + time.perf_counter() - start:.2f} s\n")
    methods = [m for m in OVERVIEW_METHODS if m in
               [x["name"] for x in plugin.dashboard.methods(args.run)["methods"] if x["applicable"]]]
    count = len(plugin.dashboard.test_images()[0])
    print("| route | median | worst |\n|---|---|---|")
    for number, method in enumerate(methods):
        # A new image for each request: the first view, never the cache; one warm-up traces the method.
        get("/detail", f"run={args.run}&source=test:{count - 1}&method={method}")
        times = [get("/detail", f"run={args.run}&source=test:{(number * 1000 + i) % count}&method={method}")
                 for i in range(args.repeats)]
        print(f"| first detail view, {method} | {statistics.median(times):.3f} s | {max(times):.3f} s |")
    filters = ("all", "correct", "wrong", "least_confident", "flagged_ood", "close_calls")
    times = [get("/gallery", f"run={args.run}&filter={filters[i % len(filters)]}&page={i // len(filters)}")
             for i in range(args.repeats)]
    print(f"| gallery page (48 images) | {statistics.median(times):.3f} s | {max(times):.3f} s |")
    times = [get("/confusion", f"run={args.run}") for _ in range(args.repeats)]
    print(f"| confusion matrix | {statistics.median(times):.3f} s | {max(times):.3f} s |")
    get("/layers", f"run={args.run}&source=test:{count - 2}")      # traces the all-blocks forward pass once
    times = [get("/layers", f"run={args.run}&source=test:{(7919 * i) % count}") for i in range(args.repeats)]
    print(f"| layers view of an image (every block's top channels) | {statistics.median(times):.3f} s | "
          f"{max(times):.3f} s |")
    from cifar_xai.errors import Pending

    start = time.perf_counter()
    while True:   # the route answers 202 while the job runs: wait for it
        try:
            plugin.dashboard._layers._statistics(args.run)
            break
        except Pending:
            continue
    print(f"| one-time per run: channel statistics over the test split | {time.perf_counter() - start:.1f} s | |")
    layers = [block["layer"] for block in plugin.dashboard.layers(args.run, "test:0")["blocks"]]
    times = [get("/channel", f"run={args.run}&layer={layers[i % len(layers)]}&channel={i}&source=test:{i}")
             for i in range(args.repeats)]
    print(f"| a channel's card (examples, votes) | {statistics.median(times):.3f} s | {max(times):.3f} s |")
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
