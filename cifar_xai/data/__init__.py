"""CIFAR-10 data: verified sources, tfds preparation and tf.data pipelines."""
