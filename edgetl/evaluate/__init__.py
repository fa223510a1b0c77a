"""Per-task metrics, evaluation of checkpoints and exported artifacts, and the transfer report."""
