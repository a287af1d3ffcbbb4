"""Robustness: CIFAR-10-C-style corruptions generated locally, and the benchmark that runs a model on them."""

from cifar_xai.robustness.corruptions import APPROXIMATED, CORRUPTIONS, SEVERITIES, corrupt

__all__ = ["APPROXIMATED", "CORRUPTIONS", "SEVERITIES", "corrupt"]
