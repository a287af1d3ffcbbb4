"""Inside the network, channel by channel: every conv block's activations in one forward pass, the
channels that respond most to an image, each channel's statistics over a data set (its dataset
examples), and under a GAP head what a CAM channel votes for.

Under a GAP head the class logit is exact arithmetic over the CAM map's channels:
logit_k = s * sum_c mean_xy(A_c) * W[c, k] + b_k (s the logit scale), so a channel's vote for class
k is s * W[c, k] per unit of mean activation, and its share of this image's logit is
s * mean_xy(A_c) * W[c, k].
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.explain.inputs import ExplanationError, as_image_batch, check_model
from cifar_xai.models import CAM_LAYER, LOGITS_LAYER, has_gap_head, logit_scale
from cifar_xai.probes import spatial_layers

_TAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def block_layers(model: keras.Model) -> list[str]:
    """The conv blocks' outputs, from the stem to the CAM map (the order a reader follows)."""
    return spatial_layers(model)[::-1]


def _forward(model: keras.Model):
    """images -> every block's activations (float32), traced once per model."""
    if model not in _TAPS:
        tap = keras.Model(model.input, [model.get_layer(name).output for name in block_layers(model)])
        signature = [tf.TensorSpec([None, None, None, 3], tf.float32)]
        _TAPS[model] = tf.function(lambda images: [tf.cast(x, tf.float32) for x in tap(images, training=False)],
                                   input_signature=signature)
    return _TAPS[model]


def block_activations(model: keras.Model, images) -> dict[str, np.ndarray]:
    """Every block's activations for raw images: layer -> float32 [N, h, w, C]."""
    check_model(model)
    batch = tf.convert_to_tensor(as_image_batch(images), tf.float32)
    return {name: out.numpy() for name, out in zip(block_layers(model), _forward(model)(batch), strict=True)}


def check_channel(model: keras.Model, layer: str, channel: int) -> int:
    """The channel count of `layer`, or a one-line error for an unknown layer or channel."""
    layers = block_layers(model)
    if layer not in layers:
        raise ExplanationError(f"unknown layer {layer!r}; valid: {', '.join(layers)}")
    count = int(model.get_layer(layer).output.shape[-1])
    if not 0 <= channel < count:
        raise ExplanationError(f"channel {channel} is out of range for {layer}; valid: 0-{count - 1}")
    return count


def top_channels(activations: np.ndarray, k: int) -> np.ndarray:
    """The `k` channels of one image's map [h, w, C] with the highest mean activation, highest first
    (the mean: what the next layer's pooling and, at the CAM map, the GAP head read)."""
    means = activations.mean(axis=(0, 1))
    return np.argsort(-means, kind="stable")[:k]


@dataclass(frozen=True)
class ChannelStatistics:
    """Each image's mean activation of every channel of every block: layer -> float16 [N, C]."""

    means: dict[str, np.ndarray]

    def examples(self, layer: str, channel: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` images (indices, mean activations) that excite the channel most."""
        values = self.means[layer][:, channel].astype(np.float32)
        order = np.argsort(-values, kind="stable")[:k]
        return order, values[order]


def channel_statistics(model: keras.Model, images: np.ndarray, batch_size: int = 200) -> ChannelStatistics:
    """`ChannelStatistics` over `images` (uint8 [N, 32, 32, 3]) in one pass; the maps themselves are
    never kept (the stem's alone would be ~1 GB over the test split)."""
    check_model(model)
    forward = _forward(model)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in block_layers(model)}
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
        for name, out in zip(parts, forward(batch), strict=True):
            parts[name].append(tf.reduce_mean(out, axis=[1, 2]).numpy().astype(np.float16))
    return ChannelStatistics({name: np.concatenate(found) for name, found in parts.items()})


def channel_votes(model: keras.Model, channel: int) -> np.ndarray | None:
    """Under a GAP head, a CAM channel's weight for every class (s * W[c, :], per unit of its mean
    activation); None for any other network, whose head is not a sum over channels."""
    if not has_gap_head(model):
        return None
    weights = np.asarray(model.get_layer(LOGITS_LAYER).kernel, np.float64)
    return logit_scale(model) * weights[channel]


def logit_shares(model: keras.Model, cam_map: np.ndarray, class_index: int) -> np.ndarray:
    """Each CAM channel's exact share of one image's class logit (the bias excluded): [C]; they
    add up to the logit minus its bias."""
    weights = np.asarray(model.get_layer(LOGITS_LAYER).kernel, np.float64)[:, class_index]
    return logit_scale(model) * cam_map.mean(axis=(0, 1)) * weights


def votes_apply(model: keras.Model, layer: str) -> bool:
    """Whether a channel of `layer` votes for classes directly: the CAM map under a GAP head."""
    return layer == CAM_LAYER and has_gap_head(model)
