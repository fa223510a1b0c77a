"""Per-task metrics from raw model outputs (numpy only, so artifacts are scored exactly like checkpoints).

Targets follow `edgetl.data.examples`: missing labels (-1 / NaN) are excluded per task.
The primary score of a task is its headline metric (edgetl.runtime.artifacts), higher is better.
"""

from __future__ import annotations

import numpy as np

from edgetl.runtime.artifacts import headline_score, in_points
from edgetl.runtime.tasks import LOWER_IS_BETTER, get_kind


def task_metrics(kind: str, output: np.ndarray, target: np.ndarray, labels: list[str], full: bool = False) -> dict:
    """The kind's own metrics (its registry entry), computed with numpy alike for checkpoints and artifacts."""
    return get_kind(kind).metrics(output, target, labels, full)


def primary_score(kind: str, m: dict) -> float:
    """Higher is better; what the accuracy gate and checkpoint selection compare (the catalogue's headline)."""
    return headline_score(kind, m)


def task_drops(base: dict[str, dict], new: dict[str, dict], kinds: dict[str, str]) -> dict[str, float]:
    """Points lost per task (positive = worse): accuracy-like scores x100, regression in its own units."""
    return {
        t: float((primary_score(k, base[t]) - primary_score(k, new[t])) * (100.0 if in_points(k) else 1.0))
        for t, k in kinds.items()
    }


def all_task_metrics(
    outputs: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    kinds: dict[str, str],
    labels: dict[str, list[str]],
    full: bool = False,
) -> dict[str, dict]:
    return {t: task_metrics(kinds[t], outputs[t], targets[t], labels[t], full) for t in kinds}


def summary_score(metrics: dict[str, dict], kinds: dict[str, str], select: str = "mean_accuracy") -> float:
    """The number checkpoints are selected on: mean of primary scores, or one `<task>/<metric>`."""
    if "/" in select:
        task, key = select.split("/", 1)
        v = metrics[task][key]
        return -v if key in LOWER_IS_BETTER else v
    # the mean of the accuracy-like headlines; error metrics only when no task has one
    scores = [primary_score(kinds[t], m) for t, m in metrics.items() if in_points(kinds[t])]
    if not scores:
        scores = [primary_score(kinds[t], m) for t, m in metrics.items()]
    return float(np.mean(scores))
