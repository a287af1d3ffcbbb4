"""The list of explanation methods: each method module registers itself here with `@register`.

This module imports no method, so a method can import it without a circle; importing
`cifar_xai.explain.methods` loads the built-in ones. A method is a function
`(probe, images, classes, **options) -> [N, h, w]` float32 map (any resolution, any range);
everything else (validation, class choice, batching, casts, upsampling, normalisation) happens
once, in `cifar_xai.explain.core.explain`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras

from cifar_xai.models import has_gap_head, is_prototype_model


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    compute: Callable
    needs_gap_head: bool = False
    batch_size: int = 256      # images per call; lower for methods that multiply the batch
    defaults: dict = field(default_factory=dict)
    needs_prototypes: bool = False   # prototype_cnn's own map (cifar_xai/explain/prototypes.py)


METHODS: dict[str, Method] = {}


def register(name: str, title: str, needs_gap_head: bool = False, batch_size: int = 256,
             needs_prototypes: bool = False, **defaults) -> Callable:
    """Add the decorated function to `METHODS` under `name`; a name registered twice is an error,
    never a silent replacement of the first method."""
    def decorate(compute: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"an explanation method named {name!r} is already registered "
                             f"({METHODS[name].compute.__module__}); choose another name")
        METHODS[name] = Method(name, title, compute, needs_gap_head, batch_size, defaults, needs_prototypes)
        return compute

    return decorate


# The methods shown side by side wherever one overview is wanted (TensorBoard during training,
# the report's galleries): exact, gradient-based, input-gradient, and a prototype network's own.
OVERVIEW_METHODS = ("cam", "gradcam", "saliency", "prototypes")


def why_not(model: keras.Model, method: str) -> str | None:
    """Why `model` cannot run `method` (one line that says what would work), None when it can:
    CAM without a GAP head (standard_cnn), prototype maps without prototypes."""
    spec = METHODS[method]
    if spec.needs_gap_head and not has_gap_head(model):
        return (f"{spec.title} needs a Global-Average-Pooling head (interpretable_cnn); this model has none, "
                "use gradcam instead")
    if spec.needs_prototypes and not is_prototype_model(model):
        return f"{spec.title} needs a prototype network (prototype_cnn); this model has no prototypes"
    return None


def applicable_methods(model: keras.Model, methods: Sequence[str] = OVERVIEW_METHODS) -> list[str]:
    """`methods` without those the model cannot run (`why_not`)."""
    return [name for name in methods if why_not(model, name) is None]
