"""TensorBoard summaries beyond Keras' scalars: images rendered by cifar_xai.plots."""

from __future__ import annotations

import tensorflow as tf


def write_png(writer: tf.summary.SummaryWriter, tag: str, png: bytes | list[bytes], step: int,
              description: str | None = None) -> None:
    """Write one or more PNG images as an image summary (decoded, as tf.summary.image wants)."""
    pngs = [png] if isinstance(png, bytes) else png
    images = tf.stack([tf.image.decode_png(p, channels=3) for p in pngs])
    with writer.as_default():
        tf.summary.image(tag, images, step=step, max_outputs=len(pngs), description=description)
    writer.flush()

