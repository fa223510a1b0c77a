"""Training: the loop, freezing schedules, feature cache, distillation, checkpoints and resume."""
