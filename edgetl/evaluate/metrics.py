"""Per-task metrics from raw model outputs (numpy only, so artifacts are scored exactly like checkpoints).

Targets follow `edgetl.data.examples`: missing labels (-1 / NaN) are excluded per task.
The primary score of a task is its headline metric (edgetl.runtime.artifacts), higher is better.
"""

from __future__ import annotations

import numpy as np

from edgetl.runtime.artifacts import headline_score, in_points


def _present(target: np.ndarray) -> np.ndarray:
    if target.dtype == np.int64:
        return target >= 0
    if target.ndim == 2:
        return ~np.isnan(target).any(axis=1)
    return ~np.isnan(target)


def classification_metrics(logits: np.ndarray, target: np.ndarray, labels: list[str], full: bool = False) -> dict:
    keep = _present(target)
    y, pred = target[keep], logits[keep].argmax(axis=1)
    n = len(y)
    k = len(labels)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k) if n else np.zeros((k, k), dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    prec = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(k), where=(prec + rec) > 0)
    support = cm.sum(1)
    m = {
        "n": int(n),
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[support > 0].mean()) if (support > 0).any() else float("nan"),
    }
    if full:
        m["per_class"] = {
            labels[i]: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(k)
        }
        m["confusion_matrix"] = cm.tolist()
    return m


def multilabel_metrics(logits: np.ndarray, target: np.ndarray, labels: list[str], full: bool = False) -> dict:
    keep = _present(target)
    y = target[keep] > 0.5
    pred = logits[keep] > 0.0
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    micro = float(2 * tp / max(2 * tp + fp + fn, 1))
    m = {
        "n": int(keep.sum()),
        "micro_f1": micro,
        "subset_accuracy": float((pred == y).all(1).mean()) if len(y) else float("nan"),
        "label_accuracy": float((pred == y).mean()) if len(y) else float("nan"),
    }
    if full:
        m["per_label"] = {
            lab: {"f1": float(2 * (pred[:, i] & y[:, i]).sum() / max(pred[:, i].sum() + y[:, i].sum(), 1))}
            for i, lab in enumerate(labels)
        }
    return m


def regression_metrics(pred: np.ndarray, target: np.ndarray) -> dict:
    keep = _present(target)
    err = pred.reshape(-1)[keep] - target[keep]
    return {
        "n": int(keep.sum()),
        "mae": float(np.abs(err).mean()) if len(err) else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())) if len(err) else float("nan"),
    }


def task_metrics(kind: str, output: np.ndarray, target: np.ndarray, labels: list[str], full: bool = False) -> dict:
    if kind == "classification":
        return classification_metrics(output, target, labels, full)
    if kind == "multilabel":
        return multilabel_metrics(output, target, labels, full)
    return regression_metrics(output, target)


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
        return -v if key in ("mae", "rmse", "loss") else v
    scores = [primary_score(kinds[t], m) for t, m in metrics.items() if kinds[t] != "regression"]
    if not scores:
        scores = [primary_score(kinds[t], m) for t, m in metrics.items()]
    return float(np.mean(scores))
