"""cifar-xai: an interpretable, CAM-native CNN for CIFAR-10 and the tools to explain it."""

__version__ = "0.1.0"

# Label order of the CIFAR-10 binary files (batches.meta.txt) and of tfds' `cifar10`.
CLASS_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASS_NAMES)
