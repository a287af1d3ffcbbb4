"""Training throughput on this machine: img/s, achieved GFLOP/s, a convolution peak measured in the same
run, and the cost of the real tf.data pipeline against already-prepared tensors.

    python -m benchmarks.training_speed [--width default] [--policies float32,mixed_bfloat16] [--steps 20]
                                        [--keras-batchnorm] [--xla] [--pytorch] [--profile]

Every figure is the median of --repeats timed runs after a warm-up; ratios compare two things
measured in the same process. Needs tfds' cifar10 prepared (python -m trainers.fit does it).
--keras-batchnorm swaps our fused BatchNorm for Keras' own, to measure what the fused kernel buys;
--xla compiles the training step with XLA (jit_compile=True);
--pytorch runs benchmarks/pytorch_reference.py (same network, PyTorch bf16 autocast) afterwards in
its own process and prints the TF / PyTorch throughput ratio;
--profile traces --steps training steps of the last policy with TensorFlow's profiler and prints
where a step's time goes (convolutions, BatchNorm, pooling, activations, casts, optimizer, ...)
and what share of the measured conv peak the convolutions reach.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time


def layer_flops(model, size: int = 32) -> dict[str, float]:
    """Forward FLOPs (2 per multiply-add) per conv and dense layer for one size x size image."""
    import keras
    import numpy as np

    weighted = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)]
    shapes = keras.Model(model.input, [layer.output for layer in weighted])(np.zeros((1, size, size, 3), "float32"))
    flops = {}
    for layer, output in zip(weighted, shapes, strict=True):
        positions = int(np.prod(output.shape[1:-1])) if len(output.shape) == 4 else 1
        flops[layer.name] = 2 * positions * int(np.prod(layer.kernel.shape))
    return flops


def conv_flops(model, size: int = 32) -> float:
    """Forward FLOPs (2 per multiply-add) of the conv and dense layers for one size x size image."""
    return float(sum(layer_flops(model, size).values()))


def conv_peak(dtype, repeats: int = 5) -> float:
    """GFLOP/s of the network's own kind of work: a 3x3, 256-to-256-channel convolution on a batch
    of 8x8 maps, through the same oneDNN convolution path as training. A 4096^2 matmul used to
    serve as the peak, and the float32 convolutions beat it (117 %): it is not the path they take."""
    import tensorflow as tf

    images = tf.cast(tf.random.normal([512, 8, 8, 256]), dtype)
    kernel = tf.cast(tf.random.normal([3, 3, 256, 256]), dtype)
    run = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"))
    run(images).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(images).numpy()
        times.append(time.perf_counter() - start)
    return 2 * 512 * 8 * 8 * 256 * 256 * 9 / statistics.median(times) / 1e9


def seconds_per_step(model, dataset, steps: int, repeats: int) -> float:
    """Steady-state seconds per training step: one `fit` of 1 + repeats epochs of `steps` steps on
    one iterator, timing each epoch after the first (which pays for tracing, the shuffle-buffer
    fill and the first pass through the decode cache); the median of those epochs."""
    import keras

    times = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch:
                times.append((time.perf_counter() - self.start) / steps)

    model.fit(dataset, steps_per_epoch=steps, epochs=1 + repeats, verbose=0, callbacks=[EpochClock()])
    return statistics.median(times)


# What a training step's kernels do, by the op type TensorFlow's CPU (oneDNN) kernels report; the
# optimizer's element-wise ops are recognised by their scope instead (see `op_group`).
FORWARD, INPUT_GRADIENT, WEIGHT_GRADIENT = (
    "convolutions, forward", "convolutions, gradient of the input", "convolutions, gradient of the weights")
GROUPS = {
    FORWARD: ("Conv2D", "_MklNativeConv2D", "_MklNativeFusedConv2D", "_FusedConv2D"),
    INPUT_GRADIENT: ("Conv2DBackpropInput", "_MklNativeConv2DBackpropInput"),
    WEIGHT_GRADIENT: ("Conv2DBackpropFilter", "_MklNativeConv2DBackpropFilter"),
    "BatchNorm": ("FusedBatchNormV3", "_MklNativeFusedBatchNormV3", "_MklNativeFusedBatchNormEx", "_FusedBatchNormEx",
                  "FusedBatchNormGradV3", "_MklNativeFusedBatchNormGradV3"),
    "ReLU": ("Relu", "ReluGrad", "_MklRelu", "_MklReluGrad"),
    "pooling": ("MaxPool", "MaxPoolGrad", "_MklNativeMaxPool", "_MklNativeMaxPoolGrad", "Mean", "AvgPool",
                "AvgPoolGrad"),
    "casts (bfloat16 <-> float32)": ("Cast",),
    "input (next batch)": ("IteratorGetNext",),
}
OP_GROUPS = {op_type: group for group, op_types in GROUPS.items() for op_type in op_types}
CONV_DIRECTIONS = (FORWARD, INPUT_GRADIENT, WEIGHT_GRADIENT)


def op_group(name: str, op_type: str) -> str:
    if "/sgd/" in name or op_type.startswith(("ResourceApply", "Assign")) or op_type == "ReadVariableOp":
        return "optimizer and variables"
    if "/normalize" in name:
        return "input normalisation (pixels to mean 0, std 1)"
    return OP_GROUPS.get(op_type, "everything else")


def kernel_seconds(trace_dir) -> dict[tuple[str, str], float]:
    """Seconds per (op name, op type), summed over the executor's threads, from the profiler's XSpace.

    Each kernel is one event "<op name>:<op type>" (metadata after a "#") on a `tf_Compute` thread,
    the executor's inter-op pool; the events around them there (ExecutorState::Process) and on the
    Python thread contain kernels and are not counted, so no time is counted twice."""
    from pathlib import Path

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: dict[tuple[str, str], float] = {}
    for path in Path(trace_dir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for event in line.events:
                    name, _, op_type = plane.event_metadata[event.metadata_id].name.split("#")[0].rpartition(":")
                    if name and op_type and not name.startswith("ExecutorState"):
                        key = (name, op_type.strip())
                        totals[key] = totals.get(key, 0.0) + event.duration_ps * 1e-12
    return totals


def profile_step(model, dataset, steps: int, step_seconds: float, peak: float) -> None:
    """Trace `steps` training steps and print where a step's time goes, by op group, and how fast
    each direction of the convolutions runs against the conv peak."""
    import tempfile

    import tensorflow as tf

    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)   # traced and warm before the profile
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        wall = (time.perf_counter() - start) / steps
        tf.profiler.experimental.stop()
        kernels = {key: seconds / steps for key, seconds in kernel_seconds(trace_dir).items()}
    if not kernels:
        print("\nThe profiler recorded no kernels (this TensorFlow build names its threads differently).")
        return
    group_of = {key: op_group(*key) for key in kernels}
    groups: dict[str, float] = {}
    for key, seconds in kernels.items():
        groups[group_of[key]] = groups.get(group_of[key], 0.0) + seconds
    total = sum(groups.values())
    print(f"\nStep profile ({steps} steps on prepared tensors, TensorFlow's profiler): kernel time summed over "
          f"the executor's threads {1000 * total:.0f} ms per step, {1000 * wall:.0f} ms of wall time with the "
          f"profiler on ({1000 * step_seconds:.0f} ms without): {total / wall:.2f} kernels run side by side on "
          "average.")
    print("\n| op group | ms per step | share of kernel time | GFLOP/s while running | of the conv peak |")
    print("|---|---|---|---|---|")
    # Every direction of a conv does the forward pass's multiply-adds (the stem's kernel is fixed:
    # it has no weight gradient, and its input gradient is never needed).
    flops = layer_flops(model)
    batch = int(next(iter(dataset))[0].shape[0])
    learned = {name: f for name, f in flops.items() if not name.startswith("stem")}
    work = {FORWARD: sum(flops.values()), INPUT_GRADIENT: sum(learned.values()), WEIGHT_GRADIENT: sum(learned.values())}
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        rate = work[group] * batch / seconds / 1e9 if group in work and seconds else None
        print(f"| {group} | {1000 * seconds:.1f} | {seconds / total:.1%} | "
              + (f"{rate:.0f} | {rate / peak:.0%} |" if rate else "- | - |"))
    others: dict[str, float] = {}
    for (name, op_type), seconds in kernels.items():
        if group_of[name, op_type] == "everything else":
            others[op_type] = others.get(op_type, 0.0) + seconds
    print("\neverything else, by op type: " + ", ".join(
        f"{op_type} {1000 * s:.1f} ms" for op_type, s in sorted(others.items(), key=lambda item: -item[1])[:8]))
    slowest = sorted(((s, _layer(name, flops), op_type) for (name, op_type), s in kernels.items()
                      if group_of[name, op_type] in CONV_DIRECTIONS), reverse=True)[:6]
    print("slowest conv kernels: " + "; ".join(
        f"{layer} {op_type.replace('_MklNative', '')} {1000 * s:.1f} ms"
        f" ({(flops.get(layer, 0) * batch / s / 1e9):.0f} GFLOP/s)" for s, layer, op_type in slowest))
    whole = 3 * sum(flops.values()) * batch / step_seconds / 1e9
    print(f"the whole step, without the profiler: {whole:.0f} GFLOP/s = {whole / peak:.0%} of the conv peak")


def _layer(op_name: str, flops: dict[str, float]) -> str:
    """The Keras layer an op belongs to: the longest layer name among the op name's scopes (Keras
    adds a "_1" to a scope it opens twice)."""
    scopes = {scope.rsplit("_", 1)[0] if scope.rsplit("_", 1)[-1].isdigit() else scope for scope in op_name.split("/")}
    return max((name for name in flops if name in scopes), key=len, default="?")


@contextlib.contextmanager
def batchnorm_layer(models, keras_layer):
    """Build with Keras' own BatchNormalization (no scale) instead of ours inside the block, to
    measure what the fused kernel buys; our layer is back in place after it."""
    original = models.BatchNorm
    if keras_layer is not None:
        models.BatchNorm = lambda offset_lr_scale=None, **kwargs: keras_layer(scale=False, **kwargs)
    try:
        yield
    finally:
        models.BatchNorm = original


def _names(valid: tuple[str, ...], what: str):
    """A comma-separated list of `valid` names, checked before TensorFlow starts."""
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in valid]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{what} {bad[0] if bad else text!r} is not one of {', '.join(valid)}")
        return names
    return parse


def main(argv=None) -> int:
    from cifar_xai.cli import OneLineParser
    from cifar_xai.config import PRECISION_POLICIES, WIDTHS

    parser = OneLineParser(prog="python -m benchmarks.training_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--width", default="default", choices=list(WIDTHS))
    parser.add_argument("--policies", type=_names(PRECISION_POLICIES, "policy"), default="float32,mixed_bfloat16",
                        help="comma-separated Keras policies, or auto (what trainers.fit would choose here)")
    parser.add_argument("--optimizers", type=_names(("sgd", "muon"), "optimizer"), default="sgd",
                        help="comma-separated: sgd, muon (Muon for the conv filters)")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--keras-batchnorm", action="store_true")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--pytorch", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    from cifar_xai.cli import load_tensorflow

    load_tensorflow()
    import keras
    import tensorflow as tf

    from cifar_xai import models
    from cifar_xai.config import PRESETS
    from cifar_xai.data.pipeline import training_dataset
    from cifar_xai.models import build_model
    from cifar_xai.optimization import make_optimizer
    from cifar_xai.training import one_hot_targets

    config = PRESETS["default"].replace(width=args.width, batch_size=args.batch_size)
    args.batch_size = config.batch_size
    # The recipe's pipeline, its corruption-like augmentation included.
    real, _ = training_dataset(args.data_dir, "train", args.batch_size, seed=0, pad=config.translate,
                               corruption_augment=config.corruption_augment, noise_max=config.noise_max)
    real = real.map(one_hot_targets(10))
    # The same kind of batches, already decoded, augmented and in memory.
    prepared = tf.data.Dataset.from_tensor_slices(tuple(tf.stack(t) for t in zip(*real.take(8), strict=True))).repeat()

    from cifar_xai.shipping import machine_description

    print(machine_description())
    peaks = {"float32": conv_peak(tf.float32), "bfloat16": conv_peak(tf.bfloat16)}
    print(f"conv peak (3x3, 256 -> 256 channels, 8x8 maps, median): float32 {peaks['float32']:.0f} GFLOP/s, "
          f"bfloat16 {peaks['bfloat16']:.0f} GFLOP/s")
    print("\n| width | policy | optimizer | train img/s (prepared tensors) | GFLOP/s | of conv peak | "
          "real pipeline / prepared |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    from cifar_xai.precision import resolve_policy

    policies = [resolve_policy(p) for p in args.policies]   # auto: what trainers.fit would use on this machine
    for policy, optimizer in [(p, o) for p in policies for o in args.optimizers]:
        run_config = config.replace(optimizer=optimizer)
        keras.mixed_precision.set_global_policy(policy)
        with batchnorm_layer(models, keras.layers.BatchNormalization if args.keras_batchnorm else None):
            model = build_model("interpretable_cnn", args.width)
        model.compile(optimizer=make_optimizer(run_config, 100),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                      jit_compile=args.xla)
        on_prepared = seconds_per_step(model, prepared, args.steps, args.repeats)
        on_real = seconds_per_step(model, real, args.steps, args.repeats)
        throughput = args.batch_size / on_prepared
        results[policy if optimizer == "sgd" else f"{policy} + {optimizer}"] = throughput
        gflops = 3 * conv_flops(model) * throughput / 1e9  # backward ~ 2x forward
        peak = peaks["bfloat16" if "bfloat16" in policy else "float32"]
        print(f"| {args.width} | {policy} | {optimizer} | {throughput:.0f} | {gflops:.0f} | {gflops / peak:.0%} | "
              f"{on_real / on_prepared:.3f} |")
        print(f"(forward pass: {conv_flops(model) / 1e9:.3f} GFLOP per image)", file=sys.stderr)
    if args.profile:
        profile_step(model, prepared, args.steps, on_prepared, peak)
    if args.pytorch:
        import json
        import subprocess

        del model
        reference = subprocess.run(
            [sys.executable, "-m", "benchmarks.pytorch_reference", "--width", args.width,
             "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--repeats", str(args.repeats)],
            capture_output=True, text=True,
        )
        if reference.returncode:
            print((reference.stderr.strip().splitlines() or ["error: the PyTorch reference failed"])[-1])
            return reference.returncode
        torch = json.loads(reference.stdout.strip().splitlines()[-1])
        print(f"\nPyTorch reference ({torch['framework']}, bf16 autocast, channels-last): "
              f"{torch['img_per_s']:.0f} img/s, {torch['gflop_per_s']:.0f} GFLOP/s = {torch['of_peak']:.0%} of its "
              f"{torch['bf16_matmul_peak']:.0f} GFLOP/s bf16 matmul peak")
        for policy, throughput in results.items():
            print(f"TF {policy} / PyTorch bf16: {throughput / torch['img_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
