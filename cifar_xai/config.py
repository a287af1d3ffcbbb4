"""Every training hyper-parameter, in one place, with the presets `trainers.fit` offers.

The recipe follows airbench's lessons where they carry over to a CPU and a GAP head: batch-level
augmentation, Nesterov SGD with a short warm-up, label smoothing, weight decay kept off
BatchNorm and biases, BatchNorm after pooling.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODEL_NAMES = ("interpretable_cnn", "standard_cnn")
CAM_MAPS = (4, 8)
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISION_POLICIES = ("auto", "off", "float32", "mixed_bfloat16", "mixed_float16")

# Channel widths of the stem and the three conv blocks; each block halves the resolution
# (32 -> 16 -> 8 -> 4), so the CAM map is 4x4 on CIFAR-10.
WIDTHS: dict[str, tuple[int, int, int, int]] = {
    "small": (24, 32, 64, 128),
    "default": (32, 64, 256, 256),
}
BATCHNORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class TrainConfig:
    model: str = "interpretable_cnn"
    width: str = "default"          # a key of WIDTHS
    cam_map: int = 4                # CAM resolution on a 32x32 image: 4 (three pools) or 8 (no last pool)
    epochs: int = 12
    batch_size: int = 512
    # Peak learning rate per 512 images; scaled linearly with the batch size (Goyal et al. 2017).
    lr_per_512: float = 0.4
    warmup_epochs: float = 1.0     # linear warm-up from 10 % of the peak, then cosine decay to 0
    momentum: float = 0.9
    # Keras applies decoupled decay (w -= lr * wd * w); 5e-3 here is PyTorch's coupled 5e-4
    # under momentum 0.9 (the momentum buffer multiplies a coupled decay by 1 / (1 - 0.9)).
    weight_decay: float = 5e-3
    label_smoothing: float = 0.2
    translate: int = 4              # random crop from a 4-px reflect-padded image
    validation: int = 0             # last N training images held out for model selection
    seed: int = 0
    mixed_precision: str = "auto"   # one of PRECISION_POLICIES, see cifar_xai.precision
    eval_batch_size: int = 1000

    @property
    def peak_lr(self) -> float:
        return self.lr_per_512 * self.batch_size / 512

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, TrainConfig] = {
    # About 5 minutes on 2 CPU cores: the small network, few epochs.
    "quick": TrainConfig(width="small", epochs=7),
    # The shipped model's recipe.
    "default": TrainConfig(width="default", epochs=15),
}
