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


def conv_flops(model, size: int = 32) -> float:
    """Forward FLOPs (2 per multiply-add) of the conv and dense layers for one size x size image."""
    import keras
    import numpy as np

    weighted = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)]
    shapes = keras.Model(model.input, [layer.output for layer in weighted])(np.zeros((1, size, size, 3), "float32"))
    flops = 0.0
    for layer, output in zip(weighted, shapes, strict=True):
        positions = int(np.prod(output.shape[1:-1])) if len(output.shape) == 4 else 1
        flops += 2 * positions * int(np.prod(layer.kernel.shape))
    return flops


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


# Op types of a training step, grouped by what they do (the names TensorFlow's CPU kernels report).
OP_GROUPS = {
    "convolutions": ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "_FusedConv2D", "_MklConv2D",
                     "_MklNativeConv2D", "_MklNativeConv2DBackpropInput", "_MklNativeConv2DBackpropFilter",
                     "_MklNativeFusedConv2D", "_MklFusedConv2D"),
    "BatchNorm": ("FusedBatchNormV3", "FusedBatchNormGradV3", "_MklFusedBatchNormV3", "_MklFusedBatchNormGradV3",
                  "_MklNativeFusedBatchNormV3", "_MklNativeFusedBatchNormGradV3"),
    "pooling": ("MaxPool", "MaxPoolGrad", "_MklMaxPool", "_MklMaxPoolGrad", "_MklNativeMaxPool",
                "_MklNativeMaxPoolGrad", "AvgPool", "AvgPoolGrad"),
    "ReLU": ("Relu", "ReluGrad", "_MklRelu", "_MklReluGrad"),
    "casts (bfloat16 <-> float32)": ("Cast",),
    "dense head, loss, softmax": ("MatMul", "_MklMatMul", "BiasAdd", "BiasAddGrad", "Softmax", "LogSoftmax",
                                  "SoftmaxCrossEntropyWithLogits", "_MklSoftmax"),
    "optimizer and variables": ("ResourceApplyKerasMomentum", "ResourceApplyMomentum", "AssignVariableOp",
                                "AssignSubVariableOp", "AssignAddVariableOp", "ReadVariableOp", "ResourceGather"),
    "input (next batch)": ("IteratorGetNext", "IteratorGetNextAsOptional"),
}


def op_seconds(trace_dir) -> dict[str, float]:
    """Seconds per op type, summed over the host's threads, from the profiler's XSpace files.

    TensorFlow's executor records each kernel as "<op name>:<op type>" (with "#key=value#"
    metadata after it); events without a type (function calls, the step marker) contain kernels,
    so only typed events count, and none is counted twice."""
    from pathlib import Path

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: dict[str, float] = {}
    for path in Path(trace_dir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name.split("#")[0]
                    if ":" not in name or name.startswith("__"):
                        continue
                    op_type = name.rsplit(":", 1)[1].strip()
                    if op_type and op_type[0].isupper() or op_type.startswith("_"):
                        totals[op_type] = totals.get(op_type, 0.0) + event.duration_ps * 1e-12
    return totals


def profile_step(model, dataset, steps: int, flops_per_step: float, peak: float) -> None:
    """Trace `steps` training steps and print where the time goes, by op group."""
    import tempfile

    import tensorflow as tf

    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)   # traced and warm before the profile
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        wall = (time.perf_counter() - start) / steps
        tf.profiler.experimental.stop()
        per_op = {op: seconds / steps for op, seconds in op_seconds(trace_dir).items()}
    if not per_op:
        print("\nThe profiler recorded no kernels (this TensorFlow build names them differently).")
        return
    grouped = {group: sum(per_op.pop(op, 0.0) for op in ops) for group, ops in OP_GROUPS.items()}
    others = sorted(per_op.items(), key=lambda item: -item[1])
    grouped["everything else"] = sum(seconds for _, seconds in others)
    total = sum(grouped.values())
    print(f"\nStep profile ({steps} steps on prepared tensors, TensorFlow profiler; op time summed over "
          f"threads: {1000 * total:.0f} ms per step against {1000 * wall:.0f} ms of wall time, ratio "
          f"{total / wall:.2f})")
    print("\n| op group | ms per step | share of op time |")
    print("|---|---|---|")
    for group, seconds in sorted(grouped.items(), key=lambda item: -item[1]):
        print(f"| {group} | {1000 * seconds:.1f} | {seconds / total:.1%} |")
    print("everything else, largest: " + ", ".join(f"{op} {1000 * s:.1f} ms" for op, s in others[:6]))
    conv = grouped["convolutions"]
    if conv:
        print(f"convolutions: {flops_per_step / conv / 1e9:.0f} GFLOP/s while they run = "
              f"{flops_per_step / conv / 1e9 / peak:.0%} of the conv peak; the whole step "
              f"{flops_per_step / wall / 1e9:.0f} GFLOP/s = {flops_per_step / wall / 1e9 / peak:.0%}")


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", default="default")
    parser.add_argument("--policies", default="float32,mixed_bfloat16")
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
    print("\n| width | policy | train img/s (prepared tensors) | GFLOP/s | of conv peak | "
          "real pipeline / prepared |")
    print("|---|---|---|---|---|---|")
    results = {}
    for policy in args.policies.split(","):
        keras.mixed_precision.set_global_policy(policy)
        with batchnorm_layer(models, keras.layers.BatchNormalization if args.keras_batchnorm else None):
            model = build_model("interpretable_cnn", args.width)
        model.compile(optimizer=make_optimizer(config, 100),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                      jit_compile=args.xla)
        on_prepared = seconds_per_step(model, prepared, args.steps, args.repeats)
        on_real = seconds_per_step(model, real, args.steps, args.repeats)
        throughput = args.batch_size / on_prepared
        results[policy] = throughput
        gflops = 3 * conv_flops(model) * throughput / 1e9  # backward ~ 2x forward
        peak = peaks["bfloat16" if "bfloat16" in policy else "float32"]
        print(f"| {args.width} | {policy} | {throughput:.0f} | {gflops:.0f} | {gflops / peak:.0%} | "
              f"{on_real / on_prepared:.3f} |")
        print(f"(forward pass: {conv_flops(model) / 1e9:.3f} GFLOP per image)", file=sys.stderr)
    if args.profile:
        profile_step(model, prepared, args.steps, 3 * conv_flops(model) * args.batch_size, peak)
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
