"""Feature visualisation a person can recognise: images optimised to excite a class or a channel,
in a decorrelated parameterisation with transformation robustness (Olah, Mordvintsev & Schubert,
*Feature Visualization*, Distill 2017; tensorflow/lucid's `optvis.param.spatial`, `color`,
`transform`), written with `tf.GradientTape` because tf-keras-vis optimises raw pixels only.

Why each piece (lucid's reasons, and ours):
- **Fourier parameterisation**: the image is the inverse FFT of a spectrum whose coefficients are
  scaled by 1 / frequency, so a gradient step changes low frequencies as easily as high ones.
  Pixel-space optimisation (tf-keras-vis, `features.activation_maximization`) is dominated by the
  high frequencies the gradient is largest in, and at 32x32 gives grey noise.
- **Colour decorrelation**: the three channels are optimised in the decorrelated basis of natural
  images' colours (lucid's measured square root of the colour covariance), then mapped back and
  squashed into 0..255 by a sigmoid: colours stay photographic instead of saturated.
- **Transformation robustness**: every step sees the image padded, jittered, scaled and rotated
  at random, so only what survives small changes, structure rather than adversarial texture, is
  kept.
- **A larger canvas**: the network is fully convolutional with a GAP head and takes any size; a
  48x48 canvas (`CANVAS`) shows an object at the scale the network saw in training, with room
  around it, where a 32x32 canvas fills every pixel with the class's texture.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.explain.inputs import ExplanationError, check_model, class_id, resolve_layer
from cifar_xai.models import LOGITS_LAYER

CANVAS = 48            # px: see above
STEPS = 128
LEARNING_RATE = 0.05   # Adam on the spectrum, lucid's default
DECAY_POWER = 1.0      # spectrum scaled by 1 / f ** DECAY_POWER (lucid's fft_image)
# lucid's square root of natural images' colour covariance (optvis/param/color.py), normalised.
_COLOUR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOUR_BASIS = _COLOUR_SQRT / np.max(np.linalg.norm(_COLOUR_SQRT, axis=0))
# lucid's standard transforms, scaled to a 48-px canvas: pad, jitter, scale, rotate, jitter.
PAD = 6
JITTER = 4
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
MAX_ROTATION = 10.0    # degrees


def _frequencies(size: int) -> np.ndarray:
    """|f| of each coefficient of a real 2-D FFT of a size x size image."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    return np.sqrt(fx * fx + fy * fy)


class FourierImage:
    """`count` images [count, size, size, 3] in 0..255 from a trainable spectrum."""

    def __init__(self, count: int, size: int, seed: int = 0, sd: float = 0.01):
        rng = np.random.default_rng(seed)
        freqs = _frequencies(size)
        shape = (count, 3, *freqs.shape, 2)
        self.size = size
        self.spectrum = tf.Variable(rng.normal(0, sd, shape).astype(np.float32))
        # 1/f scaling; the zero frequency is kept at the smallest non-zero frequency's weight.
        scale = 1.0 / np.maximum(freqs, 1.0 / size) ** DECAY_POWER
        self.scale = tf.constant((scale * size)[None, None, :, :].astype(np.float32))

    def __call__(self) -> tf.Tensor:
        spectrum = tf.complex(self.spectrum[..., 0], self.spectrum[..., 1]) * tf.cast(self.scale, tf.complex64)
        decorrelated = tf.signal.irfft2d(spectrum, fft_length=[self.size, self.size])   # [n, 3, h, w]
        decorrelated = tf.transpose(decorrelated, [0, 2, 3, 1]) / 4.0
        rgb = tf.einsum("nhwc,dc->nhwd", decorrelated, tf.constant(COLOUR_BASIS))
        return 255.0 * tf.sigmoid(rgb)


def _robust(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """lucid's transformation robustness: pad, jitter, random scale and rotation, jitter."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    size = tf.shape(images)[1]
    images = tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]], mode="REFLECT")

    def jitter(x, s):
        crop = tf.shape(x)[1] - JITTER
        offset = tf.random.stateless_uniform([2], s, 0, JITTER + 1, dtype=tf.int32)
        return x[:, offset[0]:offset[0] + crop, offset[1]:offset[1] + crop, :]

    images = jitter(images, seeds[0])
    scale = tf.gather(tf.constant(SCALES, tf.float32),
                      tf.random.stateless_uniform([], seeds[1], 0, len(SCALES), dtype=tf.int32))
    side = tf.cast(tf.round(tf.cast(tf.shape(images)[1], tf.float32) * scale), tf.int32)
    images = tf.image.resize(images, [side, side], method="bilinear")
    angle = tf.random.stateless_uniform([], seeds[2], -MAX_ROTATION, MAX_ROTATION) * np.pi / 180
    centre = (tf.cast(side, tf.float32) - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    transform = tf.stack([cos, -sin, centre - cos * centre + sin * centre,
                          sin, cos, centre - sin * centre - cos * centre, 0.0, 0.0])
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.tile(transform[None], [tf.shape(images)[0], 1]),
        output_shape=tf.shape(images)[1:3], fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    images = jitter(images, seeds[3])
    # Back to about the canvas size, so the objective sees the scale it was asked for.
    return tf.image.resize(images, [size, size], method="bilinear")


def visualise(
    model: keras.Model,
    targets: Sequence[int | str] | None = None,
    layer: str | None = None,
    channels: Sequence[int] | None = None,
    steps: int = STEPS,
    size: int = CANVAS,
    seed: int = 0,
) -> np.ndarray:
    """Images (uint8 [K, size, size, 3]) that excite class logits (`targets`) or the mean
    activation of conv channels (`layer`, `channels`), optimised as described above.

    The objective is the target's logit (a class) or the channel's mean over the map (lucid's
    `channel` objective); every image of the batch is optimised for its own target at once.
    """
    check_model(model)
    if (targets is None) == (channels is None):
        raise ExplanationError("feature visualisation takes classes or channels (with their layer), not both")
    if channels is None:
        indices = [class_id(t) for t in targets]
        tap = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output)
    else:
        layer = resolve_layer(model, layer)
        tap = keras.Model(model.input, model.get_layer(layer).output)
        count = tap.output.shape[-1]
        indices = [int(c) for c in channels]
        bad = [c for c in indices if not 0 <= c < count]
        if bad:
            raise ExplanationError(f"channel {bad[0]} is out of range for {layer}; valid: 0-{count - 1}")
    if not indices:
        return np.zeros((0, size, size, 3), np.uint8)
    target = tf.constant(indices, tf.int32)
    image = FourierImage(len(indices), size, seed)
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE)

    @tf.function
    def step(number):
        with tf.GradientTape() as tape:
            output = tf.cast(tap(_robust(image(), tf.stack([tf.constant(seed, tf.int64), number])),
                                 training=False), tf.float32)
            if len(output.shape) == 4:
                output = tf.reduce_mean(output, axis=[1, 2])
            loss = -tf.reduce_sum(tf.gather(output, target, axis=1, batch_dims=1))
        gradient = tape.gradient(loss, image.spectrum)
        optimizer.apply_gradients([(gradient, image.spectrum)])

    for number in range(steps):
        step(tf.constant(number, tf.int64))
    return np.round(np.clip(image().numpy(), 0, 255)).astype(np.uint8)
