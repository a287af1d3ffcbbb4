"""cifar-xai: an interpretable, CAM-native CNN for CIFAR-10 and the tools to explain it."""

__version__ = "0.1.0"

# Label order of the CIFAR-10 binary files (batches.meta.txt) and of tfds' `cifar10`.
CLASS_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASS_NAMES)


def class_names(classes=None) -> tuple[str, ...]:
    """The names of `classes` (CIFAR-10 ids, a model's outputs in order), all ten for None."""
    return CLASS_NAMES if classes is None else tuple(CLASS_NAMES[k] for k in classes)

# The side of a CIFAR-10 image: what the data holds, the serving signatures take and a user's
# photo is resized to (the GAP network itself takes any size).
IMAGE_SIZE = 32
