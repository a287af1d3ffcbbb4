"""Where pixel noise takes over: the stem's per-direction gain, and how far Gaussian noise moves
each layer's activations, relative to the distance between two different images.

    python -m benchmarks.noise_diagnosis --model saved_models/interpretable_cnn.keras [--sigma 0.04]

For each layer (the stem's ReLU and every block's output) it prints
    noise / signal = mean ||f(x + noise) - f(x)|| / mean ||f(x) - f(x')||
over validation images x and shuffled partners x': 1.0 means the noise moves the features as far
as swapping the image for another one. It also prints the stem's 12 patch eigenvalues, the gain
1 / sqrt(eigenvalue + epsilon) the stem applies to each, and the noise's variance in that direction.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from cifar_xai.cli import OneLineParser, load_tensorflow, positive_int

LAYERS = ("stem_relu", "block1b_relu", "block2b_relu", "cam_features", "logits")


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m benchmarks.noise_diagnosis", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a .keras model (repeatable; default: the shipped one)")
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.01, 0.02, 0.04, 0.08],
                        help="noise standard deviations, pixels in 0..1")
    parser.add_argument("--images", type=positive_int, default=500)
    parser.add_argument("--validation", type=positive_int, default=5000)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    load_tensorflow()
    import keras
    import tensorflow as tf

    from cifar_xai.data.pipeline import Splits, split_arrays
    from cifar_xai.model_io import load_model
    from cifar_xai.models import STEM_LAYER

    images = split_arrays(args.data_dir, Splits.holding_out(args.validation).validation, args.images)[0]
    images = tf.cast(images, tf.float32)
    partners = tf.roll(images, 1, axis=0)
    rng = np.random.default_rng(0)
    for path in args.model or [None]:
        model = load_model(path)
        taps = keras.Model(model.input, [model.get_layer(name).output for name in LAYERS])
        clean = [np.asarray(t, np.float32) for t in taps(images)]
        other = [np.asarray(t, np.float32) for t in taps(partners)]
        print(f"\n{path or 'shipped model'}")
        print("| sigma | " + " | ".join(LAYERS) + " |\n" + "|---" * (len(LAYERS) + 1) + "|")
        for sigma in args.sigma:
            noisy = tf.clip_by_value(images + rng.normal(0, sigma * 255, images.shape).astype(np.float32), 0, 255)
            moved = [np.asarray(t, np.float32) for t in taps(noisy)]
            ratios = [
                np.linalg.norm((m - c).reshape(len(c), -1), axis=1).mean()
                / np.linalg.norm((o - c).reshape(len(c), -1), axis=1).mean()
                for c, m, o in zip(clean, moved, other, strict=True)
            ]
            print(f"| {sigma:g} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
        # The stem's kernel columns are eigenvectors / sqrt(eigenvalue + epsilon): their norms are the gains.
        kernel = np.asarray(model.get_layer(STEM_LAYER).kernel).reshape(-1, model.get_layer(STEM_LAYER).filters)
        gains = np.linalg.norm(kernel[:, : kernel.shape[1] // 2], axis=0)
        std = np.mean([0.24703223, 0.24348513, 0.26158784])
        print("stem gain per direction (strongest first): " + ", ".join(f"{g:.2f}" for g in gains))
        print(f"noise variance per direction at sigma 0.04: {(0.04 / std) ** 2:.4f} (normalised units); "
              f"eigenvalues (1 / gain^2, epsilon included): " + ", ".join(f"{1 / g**2:.4f}" for g in gains))
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
