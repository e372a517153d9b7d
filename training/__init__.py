"""Model configs, training loops and checkpoints (no dagster imports). Filled by the training issue."""
