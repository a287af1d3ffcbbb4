"""Command-line entry points for training (`python -m trainers.fit`)."""
