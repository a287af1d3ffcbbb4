"""Input-gradient methods: maps at the input's resolution, from d score / d pixels.

Pixels are the raw 0..255 values the model takes, so gradients are per pixel unit.
"""

from __future__ import annotations

import tensorflow as tf

from cifar_xai.explain.registry import register
from cifar_xai.probes import Probe, class_scores


def _input_gradients(probe: Probe):
    def build():
        @tf.function(reduce_retracing=True)
        def run(images, classes):
            with tf.GradientTape() as tape:
                tape.watch(images)
                scores = class_scores(probe.logits(images), classes)
            return tape.gradient(scores, images), scores

        return run

    return probe.compiled("input_gradients", build)


def input_gradients(probe: Probe, images: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """d logit[class] / d pixel, float32 [N, H, W, 3]."""
    return _input_gradients(probe)(images, classes)[0]


@register("saliency", "Saliency")
def saliency(probe: Probe, images, classes):
    """Simonyan et al. 2014: the largest absolute gradient over the colour channels."""
    return tf.reduce_max(tf.abs(input_gradients(probe, images, classes)), axis=-1)


@register("smoothgrad", "SmoothGrad", batch_size=64, samples=20, noise=0.2, seed=0)
def smoothgrad(probe: Probe, images, classes, samples: int = 20, noise: float = 0.2, seed: int = 0):
    """Smilkov et al. 2017: saliency of the gradient averaged over noisy copies of the image.

    Noise std is `noise` times each image's value range (as tf-keras-vis). The noise pattern of
    sample `s` is drawn from the stateless seed (seed, s) and shared by every image of the batch,
    so an image gets the same map alone or in any batch.
    """
    low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
    sigma = noise * (tf.reduce_max(images, axis=[1, 2, 3], keepdims=True) - low)
    total = tf.zeros_like(images)
    for sample in range(samples):
        jitter = tf.random.stateless_normal(tf.shape(images)[1:], seed=[seed, sample])[None] * sigma
        total += input_gradients(probe, images + jitter, classes)
    return tf.reduce_max(tf.abs(total / samples), axis=-1)


def integrated_gradients_attributions(probe: Probe, images: tf.Tensor, classes: tf.Tensor, steps: int = 64,
                                      baseline: float = 0.0) -> tf.Tensor:
    """Sundararajan et al. 2017, trapezoid rule: (x - x0) * mean of gradients along x0 -> x.

    Completeness: the attributions sum to logit(x) - logit(x0), up to the discretisation error.
    The default baseline is a black image (pixel value 0).
    """
    start = tf.fill(tf.shape(images), tf.constant(baseline, tf.float32))
    total = tf.zeros_like(images)
    for step in range(steps + 1):
        weight = 0.5 if step in (0, steps) else 1.0
        point = start + (step / steps) * (images - start)
        total += weight * input_gradients(probe, point, classes)
    return (images - start) * total / steps


@register("integrated_gradients", "Integrated Gradients", batch_size=64, steps=64, baseline=0.0)
def integrated_gradients(probe: Probe, images, classes, steps: int = 64, baseline: float = 0.0):
    """Heatmap: the absolute attribution summed over colour channels."""
    return tf.abs(tf.reduce_sum(integrated_gradients_attributions(probe, images, classes, steps, baseline), -1))
