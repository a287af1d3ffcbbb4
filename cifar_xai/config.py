"""Every training hyper-parameter, in one place, with the presets `trainers.fit` offers.

The recipe is airbench94's (Keller Jordan, arXiv 2404.00498) ported to Keras, with the changes a
CAM needs: a padded whitening stem so the last map is 4x4, ReLU, and a Global Average Pooling ->
Dense head. Kept from airbench: frozen patch-whitening stem, identity-initialised convs, BatchNorm
after pooling without a scale and with a 64x faster offset, Nesterov SGD with a triangular
schedule, strong weight decay, label smoothing, 2-px translation and flips, lookahead, and
flip + translate test-time augmentation (reported beside the plain accuracy).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODEL_NAMES = ("interpretable_cnn", "standard_cnn", "prototype_cnn")
CAM_MAPS = (4, 8)
STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("sgd", "muon")
PRECISION_POLICIES = ("auto", "off", "float32", "mixed_bfloat16", "mixed_float16")

# Channel widths of the three conv blocks after the whitening stem; each block halves the
# resolution (32 -> 16 -> 8 -> 4), so the CAM map is 4x4 on CIFAR-10. "default" is airbench94's.
WIDTHS: dict[str, tuple[int, int, int]] = {
    "small": (32, 64, 128),
    "default": (64, 256, 256),
}
STEM_PATCH = 2                 # the whitening stem sees 2x2 patches: 12 directions, 24 filters
WHITENING_IMAGES = 5000        # the first training images whose patch statistics set the stem (airbench)
# Added to each eigenvalue of the 2x2 patch covariance (normalised pixel units) before the stem
# scales that direction by 1 / sqrt(eigenvalue + epsilon). airbench's 5e-4 amplifies the
# faintest, high-frequency directions up to 95x more than the strongest, and pixel noise lives
# there: six of the twelve directions carry less image variance than noise of sigma 0.04 adds
# (docs/robustness.md). 0.01 caps the gain at 10; validation, quick recipe with the corruption
# augmentation: 85.3 % clean / 74.0 % mCA against 83.3 / 73.5 at 5e-4 and 84.8 / 73.5 at 0.1.
WHITENING_EPSILON = 0.01
# Keras' convention (the weight of the old average): airbench's PyTorch momentum 0.6.
BATCHNORM_MOMENTUM = 0.4
BATCHNORM_EPSILON = 1.001e-5   # the smallest value TensorFlow's fused kernel accepts
# The pooled features are scaled by this before the Dense classifier, which makes the classifier
# learn LOGIT_SCALE ** 2 as fast as the convs. airbench scales by 1/9 after a global max-pool; an
# average of a 4x4 map is much smaller than its max, and 1/9 then starves the classifier. Quick
# recipe, seed 0, plain / flip + translate TTA: 1/9 86.37 / 87.33 %, 1/5 86.71 / 87.76 %,
# 1/3 86.79 / 87.93 %, 1/2 86.91 / 87.95 %, 2/3 87.71 / 88.67 %, 0.8 87.36 / 88.46 %, 1 87.17 / 88.21 %.
# That sweep predates the stem-bias freeze and the batch-scaled lookahead; with them 1 beats 2/3 on
# both presets, seeds 0 / 1 / 2, TTA: default 94.10 / 94.12 / 94.10 % against 93.99 / 93.97 /
# 93.75 %, quick 88.82 / 88.37 / 88.84 % against 88.49 / 88.09 / 88.35 %.
LOGIT_SCALE = 1.0


# The prototype network (ProtoPNet, Chen et al. NeurIPS 2019; cifar_xai/prototypes, docs/prototypes.md).
PROTOTYPES_PER_CLASS = 10      # ProtoPNet's 10 per class
PROTOTYPE_DIM = 128            # channels of the add-on's latent space (ProtoPNet: 128 for its VGG / ResNet heads)
# The loss: cross-entropy + CLUSTER_COST * (distance to the nearest own-class prototype) +
# SEPARATION_COST * (distance to the nearest other-class prototype) + LAST_LAYER_L1 * |weights
# to other classes|. ProtoPNet's values: pull each image towards one of its class's prototypes,
# push it (10x more weakly) from the others, and keep the decision on own-class evidence.
CLUSTER_COST = 0.8
SEPARATION_COST = -0.08
LAST_LAYER_L1 = 1e-4
# The last layer starts at +1 from a prototype to its class and -0.5 to the others (ProtoPNet).
LAST_LAYER_OTHER = -0.5


# The five standard 6-known / 4-unknown splits of CIFAR-10 for open-set recognition (Neal et al.
# 2018, as published by Vaze et al. ICLR 2022, data/open_set_splits/osr_splits.py): known class ids,
# sorted. As published, the first two name the same six classes (in another order).
OPEN_SET_SPLITS: tuple[tuple[int, ...], ...] = (
    (0, 1, 4, 6, 7, 9),
    (0, 1, 4, 6, 7, 9),
    (1, 3, 4, 5, 7, 9),
    (0, 1, 6, 7, 8, 9),
    (1, 2, 4, 6, 7, 9),
)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "interpretable_cnn"
    width: str = "default"          # a key of WIDTHS
    cam_map: int = 4                # CAM resolution on a 32x32 image: 4 (three pools) or 8 (no last pool)
    # A setting, not only a constant, because it trades accuracy against localisation (docs/explanations.md,
    # "How good are the explanations?"): 2/3 localises better, 1 is more accurate.
    logit_scale: float = LOGIT_SCALE
    epochs: int = 12
    # Half airbench's 1,024: a CPU trains as many images per second at 512, and twice the steps
    # learn faster in a short run (quick recipe, 6 epochs: 87.0 % at 512 against 83.9 % at 1,024).
    batch_size: int = 512
    # Peak learning rate (of the mean loss) per 1024 images, scaled linearly with the batch size:
    # airbench's 11.5 "per kilostep" for a summed loss under momentum 0.85 is 1.5 here.
    lr_per_1024: float = 1.5
    # Linear warm-up from `warmup_start` x the peak over the first `warmup_fraction` of the steps,
    # then linear decay to `final_lr` x the peak (airbench's triangle).
    warmup_fraction: float = 0.23
    warmup_start: float = 0.2
    final_lr: float = 0.07
    momentum: float = 0.85
    # "sgd": Nesterov SGD for every weight. "muon": airbench94_muon's split, Muon for the conv
    # filters and this Nesterov SGD for the rest (cifar_xai.optimization.MuonSGD).
    optimizer: str = "sgd"
    # Muon's step at the schedule's peak, and its momentum (airbench94_muon: 0.24 and 0.6 at batch
    # 2,000, no warm-up). Its steps are orthogonalised, so their size does not scale with the loss.
    muon_lr: float = 0.12
    muon_momentum: float = 0.6
    # Keras decays decoupled from the gradient (w -= lr * wd * w every step). airbench's coupled
    # decay (0.0153 per 1024 images) passes through the momentum buffer, which multiplies it by
    # 1 / (1 - 0.85): the same shrink per step is 0.0089 x the learning rate here. Strong decay
    # is what keeps this network from over-fitting.
    weight_decay: float = 0.0089
    label_smoothing: float = 0.2
    translate: int = 2              # random crop from a 2-px reflect-padded image (airbench)
    # Lookahead (airbench): every `lookahead_every` steps the weights are pulled back to an
    # exponential average of themselves, whose weight grows as the cube of training progress up
    # to `lookahead_decay` per step; the final weights are that average. airbench's 0.95 per step
    # of 1,024 images is scaled to the batch (0.95 ** (batch / 1024)), so the average spans the
    # same number of images.
    lookahead_every: int = 5
    lookahead_decay: float = 0.95
    # Stochastic weight averaging (Izmailov et al. 2018) on top: the final weights are the mean of
    # the weights at the end of each of the last N epochs (BatchNorm statistics averaged with them,
    # as lookahead does). Lookahead's average spans about half an epoch; this spans N. 0: off.
    average_last_epochs: int = 0
    # The whitening stem's bias trains for this many epochs, then freezes (airbench).
    whitening_bias_epochs: int = 3
    whitening_epsilon: float = WHITENING_EPSILON   # the stem's regularisation, see WHITENING_EPSILON
    # Share of training images given one corruption-like augmentation (cifar_xai.data.augment):
    # Gaussian noise, blur or lowered contrast, in equal parts. 0: none.
    # 0.5: validation, quick recipe, stem epsilon 0.01: mCA 74.0 % against 58.0 % without (and
    # Gaussian noise 76 % against 17 %), for 87.2 -> 85.3 % clean accuracy (docs/robustness.md).
    corruption_augment: float = 0.5
    noise_max: float = 0.1          # the noise's standard deviation is uniform in [0, noise_max] (pixels in 0..1)
    # Share of training images replaced by AugMix's mix of the image and chains of autocontrast,
    # posterize, solarize and affine changes (cifar_xai.data.augment.mix_augment), drawn
    # independently of the corruption-like share above. 0: none.
    mix_augment: float = 0.0
    # The last N training images, held out: settings are chosen on them and the temperature that
    # calibrates the probabilities is fitted on them (never on the test split).
    validation: int = 5000
    # Train on these CIFAR-10 classes only ("0,1,2,4,5,9"), relabelled 0..k-1; empty: all ten.
    # The open-set protocol (Neal et al. 2018) keeps the others' test images as unseen outliers.
    known_classes: str = ""
    # "CLASS:SHARE" ("3:0.3"): stamp the planted mark (MARK_*) on SHARE of class CLASS's training
    # images, the controlled shortcut of the concept benchmark (benchmarks/shortcut.py). Empty: none.
    plant_mark: str = ""
    # prototype_cnn only: the trained interpretable_cnn whose trunk it starts from (empty: the
    # shipped model); see cifar_xai/prototypes/training.py.
    init_from: str = ""
    prototypes_per_class: int = PROTOTYPES_PER_CLASS   # prototype_cnn only
    # prototype_cnn only: epochs of its warm-up, joint and last-layer stages (0 skips a stage).
    # Validation, seed 0, after the last layer: 2,4,2 90.04 %, 2,0,2 90.94 %, 4,0,2 91.62 %,
    # 6,0,2 91.62 %: the joint stage costs accuracy on a trunk the recipe already optimised, and
    # push only stops costing it after 4 warm-up epochs (docs/prototypes.md).
    prototype_epochs: str = "4,0,2"
    seed: int = 0
    mixed_precision: str = "auto"   # one of PRECISION_POLICIES, see cifar_xai.precision
    eval_batch_size: int = 1000

    @property
    def peak_lr(self) -> float:
        return self.lr_per_1024 * self.batch_size / 1024

    @property
    def classes(self) -> tuple[int, ...] | None:
        """The known classes' CIFAR-10 ids, None for all ten."""
        return tuple(int(k) for k in self.known_classes.split(",")) if self.known_classes else None

    @property
    def planted(self) -> tuple[int, float] | None:
        """(class id, share) of the planted mark, None without one."""
        if not self.plant_mark:
            return None
        target, share = self.plant_mark.split(":")
        return int(target), float(share)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, TrainConfig] = {
    # Under 3 minutes on 2 CPU cores: the small network, few epochs. Validation split, seed 0:
    # 7 epochs with a 0.3 augmentation share gave 87.1 % clean / 75.8 % mCA, against 85.5 / 75.9
    # with 0.5 and 85.3 / 74.0 with 0.5 in 5 epochs (docs/robustness.md). Muon on the conv filters
    # (session 12, docs/recipe.md): 6 epochs beat SGD's 7 on the mean of clean accuracy and mCA on
    # both seeds measured (+0.45, +1.10; corrupted ECE +0.4, +0.2) in 11 % less training time.
    "quick": TrainConfig(width="small", epochs=6, corruption_augment=0.3, optimizer="muon"),
    # The shipped model's recipe, chosen on the validation split by the rule in docs/recipe.md
    # (best mean of clean accuracy and mCA within 25 minutes, corrupted ECE no worse than +0.5):
    # against the 13-epoch recipe before it, seed 0, 24 epochs gave +0.58 points clean and +1.3
    # mCA; label smoothing 0.1 instead of 0.2 +0.14 / +0.11 and a corrupted ECE 0.7 points lower;
    # an augmentation share of 0.3 instead of 0.5 +0.28 / +0.08. 22 epochs, not 24: 24 end the
    # test evaluation past 25 minutes on the slower of our two CPUs (AMD EPYC, ~62 s an epoch).
    "default": TrainConfig(width="default", epochs=22, label_smoothing=0.1, corruption_augment=0.3),
}


# Out-of-distribution detection (cifar_xai/uncertainty, docs/ood.md).
KNN_K = 50                     # Sun et al. 2022's k for CIFAR-10
# Normalised training features KNN compares against: a random subset, so the statistics shipped
# beside the model (float16) stay small; None keeps all of them. Validation AUROC of 5,000 against
# all 45,000, k = 50: within 0.5 points on every outlier set, open-set included (docs/ood.md).
KNN_BANK = 5000
# The score behind `in_distribution` in the explain CLI and the SavedModel. Rule, set before
# choosing: flag corrupted CIFAR-10 no more often than Energy does (a noisy cat is still a cat),
# then the best worst-case far-OOD AUROC; validation split, shipped model (docs/ood.md).
OOD_SCORE = "energy_blocks"
# The `blocks` score reads the conv blocks from this one on. The stem and the first block measure
# pixel statistics the corruption augmentation taught the classifier to ignore: reading them
# flagged 97 % of noisy validation images (which the model classifies at 90 %), from here 8 %,
# for a worst far-OOD AUROC of 96.5 % instead of 97.0 % (validation split, docs/ood.md).
OOD_FIRST_BLOCK = "block2a_relu"
# ...and, of the stem, the channels of its strongest whitening direction(s) (the smoothest: local
# brightness). Pixel noise hardly moves them, and pure noise shrunk to 32x32 (flat grey under the
# noise) or a grey Fashion-MNIST image sits far from CIFAR-10 there. Validation, noise JPEGs
# (seed 1): 1 direction 91.1 % AUROC against 87.5 % without (2: 89.1, 3: 88.3), corrupted images
# flagged 5.0 % either way (docs/ood.md).
OOD_STEM_DIRECTIONS = 1
# Every score reads the mean of the image's and its mirror's features, logits and block means: a
# photo and its mirror are equally CIFAR-like, a noise image's two halves of evidence are not.
# Validation, shipped model, first 2,000 of every set: worst far-OOD AUROC (noise JPEGs) 97.7 ->
# 99.2 %, Fashion-MNIST 98.0 -> 99.2 %; corrupted images flagged 5.5 / 4.7 / 7.9 -> 7.3 / 7.2 /
# 14.5 % at severities 1 / 3 / 5, still below Energy's 9.1 / 11.4 / 18.4 (the rule above); the
# cost, a second forward pass wherever a verdict is given (docs/ood.md).
OOD_FLIP_AVERAGE = True
# The explain CLI adds "why A rather than B" (the contrastive CAM) when the two most probable
# classes are closer than this in calibrated probability: a close call is where users ask it.
CLOSE_CALL_MARGIN = 0.25


# The Explanations tab (cifar_xai/dashboard): the largest image file it takes as an upload.
DASHBOARD_UPLOAD_LIMIT = 10 * 1024 * 1024


# Concept explanations (cifar_xai/concepts, docs/concepts.md).
# A concept needs this many images: fewer, and a CAV's held-out accuracy rests on a handful of images.
MIN_CONCEPT_IMAGES = 20
# Kim et al.'s protocol: each concept is tested against this many random sets (a CAV each), and
# its scores against those of random-vs-random CAVs. They ask for at least 20; more narrows
# the null distribution, at one more CAV per run.
TCAV_RUNS = 20
# What TCAV differentiates: "logit" (Kim et al.'s paper) or "log_probability" (tensorflow/tcav's
# loss gradient); see cifar_xai/concepts/tcav.py.
TCAV_TARGETS = ("logit", "log_probability")
TCAV_TARGET = "logit"
# Images per concept and per random set; a third of each is held out to measure the CAV's accuracy.
TCAV_SET_SIZE = 50
# The family-wise significance level over every concept x class x layer one call tests (Holm).
TCAV_ALPHA = 0.05
# A CAV must tell its concept from random images on held-out images at least this often (chance:
# 50 %), or the layer is reported as not representing the concept. A concept of random CIFAR-10
# images (the control) gave 51-55 %; a third of each 50-image set is held out, so 60 % is about
# two standard errors above chance for one CAV, and the mean over 20 CAVs is far steadier.
TCAV_MIN_CAV_ACCURACY = 0.6
# The CAV is a ridge classifier (closed form, deterministic). Its penalty, relative to the mean
# squared norm of the activations: 0 is the minimum-norm separating direction, which in these
# 4,000-25,000 dimensional layers separates any 70 images and follows their noise; a large
# penalty tends to the difference of the two means. 1 sits between, a scale-free choice per layer.
CAV_RIDGE = 1.0
# Concept discovery: non-negative matrix factorisation of the CAM map (Fel et al., CVPR 2023).
# Concepts per class: the smallest k after which one more concept lowers the relative
# reconstruction error by less than NMF_ELBOW (DISCOVERY_MAX_CONCEPTS at most).
NMF_ELBOW = 0.02
DISCOVERY_MAX_CONCEPTS = 10
NMF_ITERATIONS = 300
DISCOVERY_IMAGES = 1000        # training images of the class the factorisation reads


# The planted shortcut (cifar_xai/data/marks.py): a 5x5 square, the size of the TCAV paper's
# small captions relative to the image, in a colour CIFAR-10 photos almost never contain, kept
# MARK_MARGIN px from the border so the 2-px training translation never pushes it out of view.
MARK_SIZE = 5
MARK_MARGIN = 2
MARK_COLOUR = (255, 0, 255)


# The trainers.fit flag of each setting that has one; the others change only in this file.
FLAGS = {
    "model": "--model", "width": "--width", "cam_map": "--cam-map", "logit_scale": "--logit-scale",
    "whitening_epsilon": "--whitening-epsilon", "corruption_augment": "--corruption-augment",
    "noise_max": "--noise-max", "mix_augment": "--mix-augment", "label_smoothing": "--label-smoothing",
    "epochs": "--epochs",
    "batch_size": "--batch-size", "seed": "--seed",
    "validation": "--validation", "known_classes": "--known-classes", "plant_mark": "--plant-mark",
    "init_from": "--init-from", "prototypes_per_class": "--prototypes-per-class",
    "prototype_epochs": "--prototype-epochs",
    "mixed_precision": "--mixed-precision", "optimizer": "--optimizer", "muon_lr": "--muon-lr",
    "muon_momentum": "--muon-momentum", "average_last_epochs": "--average-last-epochs",
}


def fit_command(settings: dict, run_dir: str) -> str:
    """The `python -m trainers.fit` command that trains with `settings` (a run's config.json):
    the closest preset plus a flag for every setting that differs from it. Settings without a
    flag that differ are named after it, since no command reproduces them."""
    preset = "quick" if settings.get("width") == "small" else "default"
    base = PRESETS[preset].to_dict()
    flags = [f"--preset {preset}"]
    flags += [f"{FLAGS[key]} {settings[key]:g}" if isinstance(settings[key], float) else f"{FLAGS[key]} {settings[key]}"
              for key in FLAGS if key in settings and settings[key] != base[key] and key != "width"]
    command = f"python -m trainers.fit {' '.join(flags)} --run-dir {run_dir}"
    unflagged = sorted(k for k in settings if k not in FLAGS and k in base and settings[k] != base[k])
    missing = sorted(k for k in base if k not in settings)
    if unflagged:
        command += f" (with {', '.join(f'{k}={settings[k]}' for k in unflagged)} set in cifar_xai/config.py)"
    if missing:
        command += f" (a run from before {', '.join(missing)} existed)"
    return command
