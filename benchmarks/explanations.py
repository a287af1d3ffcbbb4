"""Explanation throughput: every method in images/s, ours against tf-keras-vis, and what
activation maximisation's regularisers buy.

    python -m benchmarks.explanations [--model saved_models/interpretable_cnn.keras] [--images 10000]

Each figure is the median of --repeats timed runs after one warm-up; the ratios compare two
things timed in the same run, so machine noise largely cancels. Prints Markdown tables.

Activation maximisation (tf-keras-vis' `ActivationMaximization`, which replaced our own loop:
docs/explanations.md) with and without its regularisers, from the same seed images: per class,
the probability the model gives the image's target class, whether it is classified as that
class, and the total variation per pixel (lower: smoother, more natural).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: tracing, graph building, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .keras model (default: the shipped one)")
    parser.add_argument("--data-dir", default=None, help="tfds data dir holding cifar10")
    parser.add_argument("--images", type=int, default=10000, help="test images for CAM vs predict")
    parser.add_argument("--batch", type=int, default=64, help="batch for the per-method table and Grad-CAM")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=256, help="activation maximisation steps (both)")
    args = parser.parse_args(argv)

    from cifar_xai.cli import load_tensorflow

    load_tensorflow()
    import tensorflow as tf
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    from cifar_xai.data.pipeline import split_arrays
    from cifar_xai.explain import METHODS, explain
    from cifar_xai.explain.registry import applicable_methods
    from cifar_xai.model_io import load_model
    from cifar_xai.models import CAM_LAYER, LOGITS_LAYER, compiled_forward
    from cifar_xai.shipping import machine_description

    model = load_model(args.model)
    print(machine_description())
    images = tf.cast(split_arrays(args.data_dir, "test")[0][: args.images], tf.float32)
    print(f"model: {args.model or 'shipped'}, {images.shape[0]} test images, "
          f"median of {args.repeats} runs, {tf.config.threading.get_intra_op_parallelism_threads() or 'all'} threads")

    # 1. CAM over the test set against plain prediction, same batch size (1000) for both, both
    # traced: CAM runs as a tf.function, so the baseline is the model's one traced forward pass.
    forward = compiled_forward(model)

    def predict_all():
        for start in range(0, images.shape[0], 1000):
            forward(images[start:start + 1000]).numpy()

    classes = np.zeros(images.shape[0], np.int32)
    predict_s = median_seconds(predict_all, args.repeats)
    cam_s = median_seconds(lambda: explain(model, images, "cam", classes=classes, batch_size=1000), args.repeats)
    print(f"\npredict: {images.shape[0] / predict_s:,.0f} img/s; CAM: {images.shape[0] / cam_s:,.0f} img/s; "
          f"CAM / predict throughput = {predict_s / cam_s:.2f}x")

    # 2. Batched Grad-CAM against tf-keras-vis Gradcam on the same model, layer and batch. A float32
    # copy of the model for both: tf-keras-vis' scipy upsampling cannot take bfloat16 maps.
    import keras

    def as_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    float_model = keras.models.clone_model(model, clone_function=as_float32)
    float_model.set_weights(model.get_weights())
    batch = images[: args.batch]
    batch_classes = classes[: args.batch]
    logits_model = keras.Model(float_model.input, float_model.get_layer(LOGITS_LAYER).output)
    reference = Gradcam(logits_model, clone=False)
    ours_s = median_seconds(lambda: explain(float_model, batch, "gradcam", classes=batch_classes), args.repeats)
    theirs_s = median_seconds(lambda: reference(CategoricalScore(batch_classes.tolist()), batch.numpy(),
                                                penultimate_layer=CAM_LAYER, seek_penultimate_conv_layer=False),
                              args.repeats)
    print(f"Grad-CAM (float32 copy), batch {args.batch}: ours {args.batch / ours_s:,.0f} img/s, tf-keras-vis "
          f"{args.batch / theirs_s:,.0f} img/s; ratio = {theirs_s / ours_s:.2f}x")

    # 3. Every method, same batch, on the model as trained.
    print(f"\n| method | images/s (batch {args.batch}) |\n|---|---|")
    for name in applicable_methods(model, METHODS):   # prototypes only on a prototype network
        seconds = median_seconds(lambda n=name: explain(model, batch, n, classes=batch_classes), args.repeats)
        print(f"| {METHODS[name].title} (`{name}`) | {args.batch / seconds:,.1f} |")

    # 4. Activation maximisation: ours against tf-keras-vis, one image per class, the same seeds.
    print(f"\nActivation maximisation, one image per class, {args.steps} steps\n")
    print("| implementation | classified as target | median target probability | TV per pixel | seconds |")
    print("|---|---|---|---|---|")
    for row in activation_maximization_rows(float_model, args.steps, max(1, args.repeats // 2)):
        print("| " + " | ".join(row) + " |")
    return 0


def activation_maximization_rows(model, steps: int, repeats: int) -> list[tuple[str, ...]]:
    """The library's activation maximisation (tf-keras-vis' `ActivationMaximization` with its
    regularisers) against the same without them (plain gradient ascent with jitter): quality and
    time as table rows, from the same seed images."""
    import tensorflow as tf

    from cifar_xai import CLASS_NAMES
    from cifar_xai.explain.features import activation_maximization
    from cifar_xai.probes import predict

    targets = list(range(len(CLASS_NAMES)))
    rows = []
    for name, options in (("regularised (the library's)", {}),
                          ("unregularised", {"total_variation": 0.0, "norm": 0.0})):
        start = time.perf_counter()
        for _ in range(repeats):
            images = activation_maximization(model, targets, steps=steps, **options).astype(np.float32)
        seconds = (time.perf_counter() - start) / repeats
        probabilities = predict(model, images)
        hits = int((probabilities.argmax(1) == np.array(targets)).sum())
        target = probabilities[np.arange(len(targets)), targets]
        variation = float(np.mean(tf.image.total_variation(tf.constant(images)).numpy()) / (32 * 32 * 3))
        rows.append((name, f"{hits} / {len(targets)}", f"{np.median(target):.3f}", f"{variation:.1f}",
                     f"{seconds:.1f}"))
    return rows
