"""classification: one label per input (softmax over the label list); headline accuracy."""

from __future__ import annotations

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks.base import TaskKind, TaskPrediction, is_missing, rows_of


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class Classification(TaskKind):
    name = "classification"
    headline = "accuracy"
    metrics_selectable = ("accuracy", "macro_f1")
    stratifies = True
    soft_labels = True
    deepstream_network_type = 1  # classifier
    describe = "one label per input (softmax)"

    def encode(self, values, labels, task, column):
        pos = {lab: i for i, lab in enumerate(labels)}
        out = np.full(len(values), -1, dtype=np.int64)
        for i, v in enumerate(values):
            if is_missing(v):
                continue
            key = str(v).strip()
            if key not in pos:
                raise EdgetlError(
                    f"task {task!r}: label {key!r} is not in the declared labels "
                    f"({', '.join(labels[:12])}{'...' if len(labels) > 12 else ''})"
                )
            out[i] = pos[key]
        return out

    def present(self, target):
        return target >= 0

    def metrics(self, output, target, labels, full=False):
        keep = self.present(target)
        y, pred = target[keep], output[keep].argmax(axis=1)
        n, k = len(y), len(labels)
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

    def eval_line(self, m):
        return f"accuracy {100 * m['accuracy']:.2f}%  macro-F1 {m['macro_f1']:.4f}"

    def damage(self, ref, got):
        """Mean KL(softmax(ref) || softmax(got))."""
        ref, got = rows_of(ref), rows_of(got)
        la, lb = log_softmax(ref), log_softmax(got)
        return float((np.exp(la) * (la - lb)).sum(axis=1).mean())

    def agreement(self, ref, got):
        return float((got.argmax(1) == ref.argmax(1)).mean())

    def decode(self, task, out, labels, sizes=None, options=None):
        out = rows_of(out)
        z = out - out.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        best = z.argmax(axis=1).tolist()
        return [
            TaskPrediction(task, self.name, label=labels[i], index=i, score=row[i], scores=row)
            for i, row in zip(best, z.tolist())
        ]

    def train_description(self, target, labels):
        t = target[target >= 0]
        counts = {labels[i]: int(c) for i, c in enumerate(np.bincount(t, minlength=len(labels)))}
        return {"classes": list(labels), "train_counts": counts}

    def summary_text(self, entry):
        counts = entry["train_counts"]
        shown = ", ".join(f"{k} {c}" for k, c in list(counts.items())[:12])
        return f"{len(entry['classes'])} classes (train: {shown}{', ...' if len(counts) > 12 else ''})"
