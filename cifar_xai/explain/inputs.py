"""What a request to explain is made of, checked once for every method: the model, the images,
the classes and the layer. Each problem is one `ExplanationError` that says what would work."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import CLASS_NAMES, NUM_CLASSES
from cifar_xai.models import CAM_LAYER, LOGITS_LAYER, layer_names
from cifar_xai.probes import predict, spatial_layers


class ExplanationError(ValueError):
    """The request cannot be explained as asked; the message says what would work."""


def check_model(model: object) -> keras.Model:
    if not isinstance(model, keras.Model) or not {CAM_LAYER, LOGITS_LAYER} <= layer_names(model):
        raise ExplanationError(
            f"this model is not a cifar-xai model (it needs layers named {CAM_LAYER!r} and {LOGITS_LAYER!r}); "
            "train one with python -m trainers.fit"
        )
    return model


def resolve_layer(model: keras.Model, layer: str | None) -> str:
    if layer is None:
        return CAM_LAYER
    names = {item.name: item for item in model.layers}
    if layer not in names or len(names[layer].output.shape) != 4:
        raise ExplanationError(f"unknown conv layer {layer!r}; valid: {', '.join(spatial_layers(model))}")
    return layer


def class_id(value: int | str | np.integer) -> int:
    """A class id from an id or a name (case-insensitive); a clear error otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text.lstrip("+-").isdigit():
            value = int(text)
        elif text in CLASS_NAMES:
            return CLASS_NAMES.index(text)
        else:
            raise ExplanationError(f"unknown class {value!r}; valid: 0-{NUM_CLASSES - 1} or {', '.join(CLASS_NAMES)}")
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= int(value) < NUM_CLASSES:
        raise ExplanationError(f"class id {value!r} is out of range; valid: 0-{NUM_CLASSES - 1} or a class name")
    return int(value)


def as_image_batch(images) -> tf.Tensor:
    """Raw RGB pixels as float32 [N, H, W, 3]; anything else is one ExplanationError, never a
    silent wrong answer (NaN pixels would give NaN probabilities, 0..1 floats a black image)."""
    try:
        array = np.asarray(images)
    except (ValueError, TypeError) as err:   # ragged lists and the like
        raise ExplanationError(f"images must be an array [N, H, W, 3] of raw pixels ({err})") from None
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ExplanationError(f"expected RGB images [N, H, W, 3] or one [H, W, 3], got shape {array.shape}")
    if min(array.shape[1:3]) < 1:
        raise ExplanationError(f"images of {array.shape[2]}x{array.shape[1]} pixels have nothing to explain")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
        raise ExplanationError(f"pixels must be real numbers 0-255, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ExplanationError("images contain NaN or infinite pixels; pass raw pixels 0-255")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise ExplanationError(f"pixels must be raw values 0-255, got {low:g} to {high:g}; "
                               "rescale images normalised to other ranges")
    return tf.convert_to_tensor(array.astype(np.float32), dtype=tf.float32)


def target_classes(model: keras.Model, images: tf.Tensor, classes) -> tf.Tensor:
    """One class id per image: the predicted class (None), one id or name for all, or one each."""
    count = images.shape[0]
    if classes is None:
        return tf.cast(tf.argmax(predict(model, images), axis=1), tf.int32)
    if isinstance(classes, str | int | np.integer):
        return tf.fill([count], class_id(classes))
    ids = [class_id(value) for value in classes]
    if len(ids) != count:
        raise ExplanationError(f"{len(ids)} classes for {count} images; give one class, or one per image")
    return tf.constant(ids, tf.int32)
