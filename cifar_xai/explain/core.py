"""One calling convention for every explanation method, in the spirit of tf-keras-vis and Captum.

    heatmaps = explain(model, images, method="gradcam", classes=None, layer=None)

- `images`: raw pixels (0..255), [N, H, W, 3] or one [H, W, 3] image; any numeric dtype.
- `classes`: None (each image's predicted class), one id or name for all, or one per image.
- `layer`: the conv layer the CAM family reads (default `cam_features`, the map under the GAP).
- returns float32 [N, H, W] in [0, 1]: maps computed at the layer's resolution are upsampled
  bilinearly to the input size, then min-max normalised per image; a constant map is all zeros.

A method is a function `(probe, images, classes, **options) -> [N, h, w]` float32 map (any
resolution, any range) registered with `@register`. Everything else (validation, class choice,
batching, mixed-precision casts, upsampling, normalisation) happens here, once, for all methods.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import CLASS_NAMES, NUM_CLASSES
from cifar_xai.models import CAM_LAYER, DISTANCES_LAYER, LOGITS_LAYER, compiled_forward, has_gap_head


class ExplanationError(ValueError):
    """The request cannot be explained as asked; the message says what would work."""


class Probe:
    """A model opened at one layer: returns that layer's activations and the logits, in float32.

    Sub-models and their compiled functions are built once per (model, layer) and reused.
    """

    def __init__(self, model: keras.Model, layer: str):
        # A weak reference: probes are cached per model, and must not keep their model alive.
        self._model = weakref.ref(model)
        self.layer = layer
        self.has_gap_head = has_gap_head(model)
        self._taps = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer(LOGITS_LAYER).output])
        self._compiled: dict = {}

    @property
    def model(self) -> keras.Model:
        model = self._model()
        if model is None:
            raise ExplanationError("the model of this probe has been deleted")
        return model

    def raw_outputs(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The layer's activations in the model's compute dtype (bfloat16 under mixed precision)."""
        return self._taps(images, training=False)

    def features_and_logits(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features, logits = self.raw_outputs(images)
        return tf.cast(features, tf.float32), tf.cast(logits, tf.float32)

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        return self.features_and_logits(images)[1]

    def compiled(self, key, build: Callable[[], Callable]) -> Callable:
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layer_activations(model: keras.Model, images, layer: str, batch_size: int = 250) -> np.ndarray:
    """A layer's activations for raw images, in batches, float32 [N, H, W, C]: what CAVs, concept
    discovery and prototype push read."""
    probe = probe_for(model, layer)
    images = np.asarray(images)
    return np.concatenate([
        probe.features_and_logits(tf.convert_to_tensor(images[i:i + batch_size], tf.float32))[0].numpy()
        for i in range(0, len(images), batch_size)
    ])


def probe_for(model: keras.Model, layer: str) -> Probe:
    per_model = _PROBES.setdefault(model, {})
    if layer not in per_model:
        per_model[layer] = Probe(model, layer)
    return per_model[layer]


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    compute: Callable
    needs_gap_head: bool = False
    batch_size: int = 256      # images per call; lower for methods that multiply the batch
    defaults: dict = field(default_factory=dict)
    needs_prototypes: bool = False   # prototype_cnn's own map (cifar_xai/prototypes/explain.py)


METHODS: dict[str, Method] = {}


def register(name: str, title: str, needs_gap_head: bool = False, batch_size: int = 256,
             needs_prototypes: bool = False, **defaults) -> Callable:
    def decorate(compute: Callable) -> Callable:
        METHODS[name] = Method(name, title, compute, needs_gap_head, batch_size, defaults, needs_prototypes)
        return compute

    return decorate


# The three methods shown side by side wherever one overview is wanted (TensorBoard during
# training, the report's galleries): exact, gradient-based and input-gradient.
OVERVIEW_METHODS = ("cam", "gradcam", "saliency", "prototypes")


def applicable_methods(model: keras.Model, methods: Sequence[str] = OVERVIEW_METHODS) -> list[str]:
    """`methods` without those the model cannot run: CAM without a GAP head (standard_cnn),
    prototype maps without prototypes."""
    gap, prototypes = has_gap_head(model), DISTANCES_LAYER in {layer.name for layer in model.layers}
    return [name for name in methods if (gap or not METHODS[name].needs_gap_head)
            and (prototypes or not METHODS[name].needs_prototypes)]


def spatial_layers(model: keras.Model) -> list[str]:
    """Names of the layers the CAM family can read: every conv block's output, deepest first."""
    names = [layer.name for layer in model.layers if isinstance(layer, keras.layers.ReLU)
             and len(layer.output.shape) == 4]
    return names[::-1]


def check_model(model: object) -> keras.Model:
    if not isinstance(model, keras.Model) or not {CAM_LAYER, LOGITS_LAYER} <= {layer.name for layer in model.layers}:
        raise ExplanationError(
            f"this model is not a cifar-xai model (it needs layers named {CAM_LAYER!r} and {LOGITS_LAYER!r}); "
            "train one with python -m trainers.fit"
        )
    return model


def resolve_method(name: str) -> Method:
    if name not in METHODS:
        raise ExplanationError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


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
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ExplanationError(f"expected RGB images [N, H, W, 3] or one [H, W, 3], got shape {array.shape}")
    return tf.convert_to_tensor(array, dtype=tf.float32)


NON_FINITE = "explanation map has NaN or infinite values"


def normalize_maps(maps: tf.Tensor) -> tf.Tensor:
    """Min-max per map into [0, 1]; a constant map becomes zeros, never NaN."""
    low = tf.reduce_min(maps, axis=[1, 2], keepdims=True)
    span = tf.reduce_max(maps, axis=[1, 2], keepdims=True) - low
    return tf.math.divide_no_nan(maps - low, span)


def upsample(maps: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


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
    if spec.needs_gap_head and not probe.has_gap_head:
        raise ExplanationError(
            f"{spec.title} needs a Global-Average-Pooling head (interpretable_cnn); this model has none, "
            "use gradcam instead"
        )
    if spec.needs_prototypes and spec.name not in applicable_methods(model, [spec.name]):
        raise ExplanationError(f"{spec.title} needs a prototype network (prototype_cnn); this model has no prototypes")
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


def finish_maps(raw: tf.Tensor, size: Sequence[int], normalize: bool = True) -> tf.Tensor:
    """Raw maps at any resolution -> float32 maps at `size`, normalised into [0, 1] unless asked not to.

    A NaN or infinite value is an error (InvalidArgumentError, in a graph too), never a map of zeros."""
    maps = upsample(tf.debugging.assert_all_finite(tf.cast(raw, tf.float32), NON_FINITE), size)
    return normalize_maps(maps) if normalize else maps


def target_classes(model: keras.Model, images: tf.Tensor, classes) -> tf.Tensor:
    count = images.shape[0]
    if classes is None:
        return tf.cast(tf.argmax(predict(model, images), axis=1), tf.int32)
    if isinstance(classes, str | int | np.integer):
        return tf.fill([count], class_id(classes))
    ids = [class_id(value) for value in classes]
    if len(ids) != count:
        raise ExplanationError(f"{len(ids)} classes for {count} images; give one class, or one per image")
    return tf.constant(ids, tf.int32)


def predict(model: keras.Model, images: tf.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities, float32, in batches, through the model's one traced forward pass."""
    forward = compiled_forward(model)
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape[0] == 0:  # TensorFlow's CPU convolution mishandles an empty batch: skip the model
        return np.zeros((0, *model.output.shape[1:]), np.float32)
    return np.concatenate([
        np.asarray(tf.cast(forward(images[i:i + batch_size]), tf.float32))
        for i in range(0, images.shape[0], batch_size)
    ])


def class_scores(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """logits[i, classes[i]] for each image: the score every gradient method differentiates."""
    return tf.gather(logits, classes, axis=1, batch_dims=1)


# The built-in methods register themselves on import; kept last because they import this module.
from cifar_xai.explain import cam_family, gradients  # noqa: E402, F401
from cifar_xai.prototypes import explain as prototype_explanations  # noqa: E402, F401
