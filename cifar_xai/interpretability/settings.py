"""How much of the test set each explanation metric reads: the full suite, and the quick look."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_METHODS = ("cam", "gradcam", "gradcam++", "layercam", "scorecam_fast", "saliency", "smoothgrad",
                   "integrated_gradients", "prototypes")


@dataclass(frozen=True)
class Settings:
    test_images: int = 10000
    grids: int = 500              # per grid size
    grid_sizes: tuple[int, ...] = (2, 3)
    confidence: float = 0.9       # grid cells: correct and at least this confident
    faithfulness_images: int = 1000
    faithfulness_steps: int = 8   # 1024 pixels / 8 = 128 pixels per step
    road_images: int = 500        # ROAD: 5 shares x 2 orders of sparse solves per method
    sanity_images: int = 100
    # The corruption benchmark on the first N test images (0: skipped): 75 sets of N images.
    corruption_images: int = 1000
    methods: tuple[str, ...] = DEFAULT_METHODS
    # Cheaper than the interactive defaults (20 samples, 64 steps), so the whole suite fits in
    # 10 minutes on 2 CPU cores: the gradient-path methods dominate its cost.
    method_options: dict = field(default_factory=lambda: {"smoothgrad": {"samples": 4},
                                                          "integrated_gradients": {"steps": 8}})
    # Steps of the class visualisations (cifar_xai.explain.visualise) in "Inside the network".
    visualisation_steps: int = 128
    seed: int = 0


FULL = Settings()
QUICK = Settings(test_images=1000, grids=50, faithfulness_images=100, road_images=100, sanity_images=20,
                 corruption_images=200)
