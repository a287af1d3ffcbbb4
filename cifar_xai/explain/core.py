"""One calling convention for every explanation method, in the spirit of tf-keras-vis and Captum.

    heatmaps = explain(model, images, method="gradcam", classes=None, layer=None)

- `images`: raw pixels (0..255), [N, H, W, 3] or one [H, W, 3] image; any numeric dtype.
- `classes`: None (each image's predicted class), one id or name for all, or one per image.
- `layer`: the conv layer the CAM family reads (default `cam_features`, the map under the GAP).
- returns float32 [N, H, W] in [0, 1]: maps computed at the layer's resolution are upsampled
  bilinearly to the input size, then min-max normalised per image; a constant map is all zeros.

A method is a function `(probe, images, classes, **options) -> [N, h, w]` float32 map (any
resolution, any range) registered with `@register` (cifar_xai/explain/registry.py). Everything
else (validation, class choice, batching, mixed-precision casts, upsampling, normalisation)
happens here, once, for all methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from cifar_xai.explain.inputs import ExplanationError, as_image_batch, check_model, resolve_layer, target_classes
from cifar_xai.explain.maps import NON_FINITE, finish_maps
from cifar_xai.explain.methods import METHODS
from cifar_xai.explain.registry import Method, why_not
from cifar_xai.models import CAM_LAYER
from cifar_xai.probes import Probe, probe_for


def resolve_method(name: str) -> Method:
    if name not in METHODS:
        raise ExplanationError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def explain(
    model: keras.Model,
    images,
    method: str = "gradcam",
    classes: int | str | Sequence[int | str] | None = None,
    layer: str | None = None,
    batch_size: int | None = None,
    normalize: bool = True,
    **options,
) -> np.ndarray:
    """Heatmaps float32 [N, H, W] in [0, 1] explaining `classes` for `images` (see module doc).

    `normalize=False` keeps each method's own non-negative scale (upsampled all the same), for
    metrics that compare amounts of attribution, such as the grid pointing game.
    """
    check_model(model)
    spec = resolve_method(method)
    layer = resolve_layer(model, layer)
    probe = probe_for(model, layer)
    reason = why_not(model, spec.name)
    if reason:
        raise ExplanationError(reason)
    if (spec.needs_gap_head or spec.needs_prototypes) and layer != CAM_LAYER:
        raise ExplanationError(f"{spec.title} reads the map under the GAP layer ({CAM_LAYER}) only; "
                               "use gradcam for other layers")
    images = as_image_batch(images)
    unknown = set(options) - set(spec.defaults)
    if unknown:
        raise ExplanationError(
            f"{method} takes no option {', '.join(sorted(unknown))}; valid: {', '.join(spec.defaults) or 'none'}"
        )
    targets = target_classes(model, images, classes)
    settings = {**spec.defaults, **options}
    step = batch_size or spec.batch_size
    try:
        maps = [heatmaps(spec, probe, images[start:start + step], targets[start:start + step], normalize, **settings)
                for start in range(0, images.shape[0], step)]
    except tf.errors.InvalidArgumentError as err:
        if NON_FINITE not in str(err):
            raise
        raise ExplanationError(f"{method} gave NaN or infinite values for these images (an overflow in the "
                               "method or NaN weights in the model); try another method") from None
    return tf.concat(maps, axis=0).numpy()


def heatmaps(spec: Method, probe: Probe, images: tf.Tensor, classes: tf.Tensor, normalize: bool = True,
             **settings) -> tf.Tensor:
    """The method's maps at the input size, normalised: the tensor core of `explain`, graph-safe."""
    return finish_maps(spec.compute(probe, images, classes, **settings), images.shape[1:3], normalize)
