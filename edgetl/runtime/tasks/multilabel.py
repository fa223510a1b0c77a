"""multilabel: any number of labels per input (one sigmoid per label); headline micro-F1."""

from __future__ import annotations

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks.base import TaskKind, TaskPrediction, is_missing, rows_of


def split_labels(v) -> list[str]:
    """A multilabel cell: a list, or names separated by '|' or ';'."""
    if isinstance(v, (list, tuple)):
        return [str(x).strip() for x in v if str(x).strip()]
    return [p.strip() for p in str(v).replace(";", "|").split("|") if p.strip()]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * z)  # without exp overflow warnings


class Multilabel(TaskKind):
    name = "multilabel"
    headline = "micro_f1"
    metrics_selectable = ("micro_f1", "subset_accuracy", "label_accuracy")
    deepstream_network_type = 1  # classifier (one output layer, thresholded per label)
    describe = "any number of labels per input (one sigmoid each)"

    def label_names_in(self, value):
        return split_labels(value)

    def encode(self, values, labels, task, column):
        pos = {lab: i for i, lab in enumerate(labels)}
        out = np.zeros((len(values), len(labels)), dtype=np.float32)
        for i, v in enumerate(values):
            if is_missing(v):
                out[i] = np.nan
                continue
            for key in split_labels(v):
                if key not in pos:
                    raise EdgetlError(f"task {task!r}: label {key!r} is not in the declared labels")
                out[i, pos[key]] = 1.0
        return out

    def present(self, target):
        return ~np.isnan(target).any(axis=1)

    def metrics(self, output, target, labels, full=False):
        keep = self.present(target)
        y = target[keep] > 0.5
        pred = output[keep] > 0.0
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        m = {
            "n": int(keep.sum()),
            "micro_f1": float(2 * tp / max(2 * tp + fp + fn, 1)),
            "subset_accuracy": float((pred == y).all(1).mean()) if len(y) else float("nan"),
            "label_accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        }
        if full:
            m["per_label"] = {
                lab: {"f1": float(2 * (pred[:, i] & y[:, i]).sum() / max(pred[:, i].sum() + y[:, i].sum(), 1))}
                for i, lab in enumerate(labels)
            }
        return m

    def eval_line(self, m):
        return f"micro-F1 {m['micro_f1']:.4f}  subset acc {m['subset_accuracy']:.4f}"

    def damage(self, ref, got):
        """Mean binary KL of the sigmoids."""
        ref, got = rows_of(ref), rows_of(got)
        pa = np.clip(1 / (1 + np.exp(-ref)), 1e-7, 1 - 1e-7)
        pb = np.clip(1 / (1 + np.exp(-got)), 1e-7, 1 - 1e-7)
        return float((pa * np.log(pa / pb) + (1 - pa) * np.log((1 - pa) / (1 - pb))).mean())

    def decode(self, task, out, labels, sizes=None, options=None):
        out = rows_of(out)
        probs = _sigmoid(out)
        return [
            TaskPrediction(task, self.name, labels=[labels[j] for j, p in enumerate(row) if p > 0.5], scores=row)
            for row in probs.tolist()
        ]

    def train_description(self, target, labels):
        ok = ~np.isnan(target[:, 0])
        counts = {lab: int(c) for lab, c in zip(labels, target[ok].sum(axis=0).astype(int))}
        return {"classes": list(labels), "train_counts": counts}

    def summary_text(self, entry):
        counts = entry["train_counts"]
        shown = ", ".join(f"{k} {c}" for k, c in list(counts.items())[:12])
        return f"{len(entry['classes'])} classes (train: {shown}{', ...' if len(counts) > 12 else ''})"
