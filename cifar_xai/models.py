"""The networks: a CAM-native GAP CNN and the same trunk with a fully-connected head as baseline.

Both take raw pixels (0..255, any batch) and return class probabilities. The layers the
explanation methods need have stable names:

- `CAM_LAYER`: the last convolutional feature map (after its ReLU), 4x4 for a 32x32 input
  (8x8 with `cam_map=8`);
- `GAP_LAYER`: global average pooling of that map (interpretable_cnn only);
- `LOGITS_LAYER`: the Dense layer whose kernel [C, 10] turns pooled features (times
  `LOGIT_SCALE`) into class scores, which makes CAM exact: CAM_k(x, y) = sum_c W[c, k] * A_c(x, y)
  and logit_k = LOGIT_SCALE * mean_xy CAM_k + b_k.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf
from keras import layers

# A run's model.keras holds its optimizer and schedule: importing this module registers every
# custom object such a file names, so keras.models.load_model can rebuild it.
import cifar_xai.optimization  # noqa: F401
from cifar_xai import IMAGE_SIZE, NUM_CLASSES
from cifar_xai.config import (
    BATCHNORM_EPSILON,
    BATCHNORM_MOMENTUM,
    CAM_MAPS,
    LAST_LAYER_OTHER,
    LOGIT_SCALE,
    MODEL_NAMES,
    PROTOTYPE_DIM,
    PROTOTYPES_PER_CLASS,
    STEM_PATCH,
    WHITENING_EPSILON,
    WIDTHS,
)
from cifar_xai.layers import BatchNorm, Whitening, dirac_, whitening_kernel

# Registers prototype_cnn's layers too, so any of our model files loads after importing this module.
from cifar_xai.prototype_layers import LogSimilarity, PrototypeDistances, prototype_identity

STEM_LAYER = "stem_conv"
STEM_RELU = "stem_relu"
SCALE_LAYER = "logit_scale"
CAM_LAYER = "cam_features"
GAP_LAYER = "gap"
# prototype_cnn's own layers: the add-on's latent map, distances and log-similarities to every
# prototype at every position, and each prototype's best similarity (what the last layer weighs).
ADDON_LAYER = "addon"
DISTANCES_LAYER = "prototype_distances"
SIMILARITY_MAPS_LAYER = "similarity_maps"
SIMILARITIES_LAYER = "similarities"
LOGITS_LAYER = "logits"
PROBABILITIES_LAYER = "probabilities"

# Published training-set channel statistics of CIFAR-10, in pixel units (0..255).
CIFAR_MEAN = (0.49139968 * 255, 0.48215841 * 255, 0.44653091 * 255)
CIFAR_STD = (0.24703223 * 255, 0.24348513 * 255, 0.26158784 * 255)



def _conv_bn_relu(x, filters: int, name: str, pool: bool = False, activation_name: str | None = None):
    conv = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")
    x = conv(x)
    dirac_(conv.kernel)
    # Pool before BatchNorm (as airbench does): normalising the 4x smaller map is cheaper and
    # the statistics are those of what the next layer actually sees.
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = BatchNorm(momentum=BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(name=activation_name or f"{name}_relu")(x)


def _trunk(inputs, widths: Sequence[int], cam_map: int = 4):
    if cam_map not in CAM_MAPS:
        raise ValueError(f"unknown CAM map size {cam_map}; valid: {', '.join(map(str, CAM_MAPS))}")
    x = layers.Normalization(
        mean=CIFAR_MEAN, variance=[s * s for s in CIFAR_STD], name="normalize"
    )(inputs)
    # airbench's stem: a fixed 2x2 patch-whitening conv (see `fit_whitening`), padded so the three
    # pools end on a 4x4 map (airbench's unpadded stem ends on 3x3, too coarse for a CAM).
    x = Whitening(2 * STEM_PATCH * STEM_PATCH * 3, STEM_PATCH, padding="same", name=STEM_LAYER)(x)
    x = layers.ReLU(name=STEM_RELU)(x)
    last = len(widths) - 1
    for block, width in enumerate(widths):
        # An 8x8 CAM keeps the last block at the resolution of the one before (4x its FLOPs).
        pool = not (block == last and cam_map == 8)
        x = _conv_bn_relu(x, width, f"block{block + 1}a", pool=pool)
        x = _conv_bn_relu(x, width, f"block{block + 1}b", activation_name=CAM_LAYER if block == last else None)
    return x


def fit_whitening(model: keras.Model, images, epsilon: float = WHITENING_EPSILON) -> None:
    """Set the stem's kernel to whiten the 2x2 patches of `images` (raw pixels [N, 32, 32, 3]).

    Whitening decorrelates the pixels of each patch before the first learned layer, which is much
    of why airbench reaches 94 % in so few epochs. The kernel stays fixed; its bias trains.
    """
    normalized = model.get_layer("normalize")(tf.cast(images, tf.float32))
    patches = tf.image.extract_patches(
        tf.cast(normalized, tf.float32), [1, STEM_PATCH, STEM_PATCH, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID"
    )
    patches = tf.reshape(patches, [-1, STEM_PATCH, STEM_PATCH, 3]).numpy()
    model.get_layer(STEM_LAYER).kernel.assign(whitening_kernel(patches, epsilon))


def _classifier(x, num_classes: int, logit_scale: float):
    # airbench's output scaling (see LOGIT_SCALE), applied to the Dense layer's input instead (the
    # same scores up to the bias), so CAM stays exact: logits = logit_scale * mean(CAM) + bias.
    x = layers.Rescaling(logit_scale, name=SCALE_LAYER)(x)
    # Logits and softmax stay float32 under mixed precision: the loss and CAM need the precision.
    x = layers.Dense(num_classes, name=LOGITS_LAYER, dtype="float32")(x)
    return layers.Activation("softmax", name=PROBABILITIES_LAYER, dtype="float32")(x)


def interpretable_cnn(
    width: str = "default", num_classes: int = NUM_CLASSES, cam_map: int = 4, logit_scale: float = LOGIT_SCALE
) -> keras.Model:
    """3x3 conv / BatchNorm / ReLU trunk, Global Average Pooling, one Dense layer, softmax.

    Spatial dimensions are left open so the same network runs on larger canvases (e.g. the
    2x2 grids of the pointing game) and its CAM stays a map of that canvas.
    """
    inputs = keras.Input(shape=(None, None, 3), name="image")
    features = _trunk(inputs, WIDTHS[width], cam_map)
    pooled = layers.GlobalAveragePooling2D(name=GAP_LAYER)(features)
    return keras.Model(inputs, _classifier(pooled, num_classes, logit_scale), name="interpretable_cnn")


def standard_cnn(
    width: str = "default", num_classes: int = NUM_CLASSES, cam_map: int = 4, logit_scale: float = LOGIT_SCALE
) -> keras.Model:
    """The same trunk with Flatten + a fully-connected hidden layer: the non-interpretable baseline.

    Grad-CAM and saliency work on it; CAM does not (there is no GAP between the map and the logits).
    """
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    features = _trunk(inputs, WIDTHS[width], cam_map)
    x = layers.Flatten(name="flatten")(features)
    x = layers.Dense(256, name="fc")(x)
    x = BatchNorm(momentum=BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPSILON, name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    return keras.Model(inputs, _classifier(x, num_classes, logit_scale), name="standard_cnn")


def prototype_cnn(
    width: str = "default", num_classes: int = NUM_CLASSES, cam_map: int = 4, logit_scale: float = LOGIT_SCALE,
    prototypes_per_class: int = PROTOTYPES_PER_CLASS, prototype_dim: int = PROTOTYPE_DIM,
) -> keras.Model:
    """"This looks like that" (ProtoPNet): the same trunk, a 1x1 add-on into a sigmoid latent space,
    `prototypes_per_class` prototypes per class compared with every latent patch, the best match
    of each (max-pooled log-similarity) and a last layer without bias, so every logit is a
    weighted sum of prototype similarities. `logit_scale` is unused (kept for one signature)."""
    if prototypes_per_class < 1:
        raise ValueError(f"prototypes per class must be at least 1, got {prototypes_per_class}")
    inputs = keras.Input(shape=(None, None, 3), name="image")
    features = _trunk(inputs, WIDTHS[width], cam_map)
    x = layers.Conv2D(prototype_dim, 1, activation="relu", name="addon_conv1")(features)
    latent = layers.Conv2D(prototype_dim, 1, activation="sigmoid", name=ADDON_LAYER, dtype="float32")(x)
    distances = PrototypeDistances(prototypes_per_class * num_classes, name=DISTANCES_LAYER)(latent)
    similarity = LogSimilarity(name=SIMILARITY_MAPS_LAYER)(distances)
    pooled = layers.GlobalMaxPooling2D(name=SIMILARITIES_LAYER, dtype="float32")(similarity)
    identity = prototype_identity(prototypes_per_class, num_classes)
    last = layers.Dense(num_classes, use_bias=False, name=LOGITS_LAYER, dtype="float32",
                        kernel_initializer=keras.initializers.Constant(identity + LAST_LAYER_OTHER * (1 - identity)))
    probabilities = layers.Activation("softmax", name=PROBABILITIES_LAYER, dtype="float32")(last(pooled))
    return keras.Model(inputs, probabilities, name="prototype_cnn")


MODELS: dict[str, Callable[..., keras.Model]] = {
    "interpretable_cnn": interpretable_cnn,
    "standard_cnn": standard_cnn,
    "prototype_cnn": prototype_cnn,
}
assert tuple(MODELS) == MODEL_NAMES


def build_model(
    name: str, width: str = "default", num_classes: int = NUM_CLASSES, cam_map: int = 4,
    logit_scale: float = LOGIT_SCALE, prototypes_per_class: int = PROTOTYPES_PER_CLASS,
) -> keras.Model:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if width not in WIDTHS:
        raise ValueError(f"unknown width {width!r}; valid: {', '.join(WIDTHS)}")
    if not (math.isfinite(logit_scale) and logit_scale > 0):
        raise ValueError(f"logit scale {logit_scale} must be a positive number (the default is {LOGIT_SCALE:g})")
    extra = {"prototypes_per_class": prototypes_per_class} if name == "prototype_cnn" else {}
    return MODELS[name](width=width, num_classes=num_classes, cam_map=cam_map, logit_scale=logit_scale, **extra)


def logit_scale(model: keras.Model) -> float:
    """The factor between the pooled features and the Dense layer, as trained into `model`
    (it may differ from today's `LOGIT_SCALE`: a run's `TrainConfig.logit_scale` sets it)."""
    return float(model.get_layer(SCALE_LAYER).scale)


_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_forward(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """`model(images, training=False)` as one traced graph for any batch and image size, one per model.

    Called eagerly, the same forward pass over the test set took 40 s in some processes and 82 s
    in others on this project's CPU; traced once, it takes 38 s every time. Cached so that callers
    that predict many small batches (the faithfulness games, the report) trace it once.
    """
    if model not in _FORWARDS:
        # A weak reference: the cached function must not keep its own key (the model) alive.
        owner = weakref.ref(model)
        signature = [tf.TensorSpec([None, None, None, 3], tf.float32)]
        _FORWARDS[model] = tf.function(lambda images: owner()(images, training=False), input_signature=signature)
    return _FORWARDS[model]


def layer_names(model: object) -> set[str]:
    """The names of a model's layers (none for an object that is not a model): how every part
    tells which kind of network it holds."""
    return {layer.name for layer in getattr(model, "layers", [])}


def has_gap_head(model: keras.Model) -> bool:
    """True when the logits are a linear function of the GAP of `CAM_LAYER` (CAM is exact)."""
    return {CAM_LAYER, GAP_LAYER, LOGITS_LAYER} <= layer_names(model)


def is_prototype_model(model: keras.Model) -> bool:
    """True for prototype_cnn: its decision is read off prototype similarities."""
    return DISTANCES_LAYER in layer_names(model)
