"""regression: one number per input; headline MAE (lower is better, shown in the target's units)."""

from __future__ import annotations

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks.base import TaskKind, TaskPrediction, is_missing, rows_of


class Regression(TaskKind):
    name = "regression"
    headline = "mae"
    metrics_selectable = ("mae", "rmse")
    has_labels = False
    table_label = "MAE"
    recipe_fields = frozenset()
    describe = "one number per input"

    def encode(self, values, labels, task, column):
        out = np.full(len(values), np.nan, dtype=np.float32)
        for i, v in enumerate(values):
            if is_missing(v):
                continue
            try:
                out[i] = float(v)
            except (TypeError, ValueError, OverflowError):
                raise EdgetlError(
                    f"task {task!r}: value {str(v)[:40]!r} in column {column!r} is not a number (or is beyond "
                    "float range)"
                ) from None
        return out

    def present(self, target):
        return ~np.isnan(target)

    def output_size(self, n_labels):
        return 1

    def metrics(self, output, target, labels, full=False):
        keep = self.present(target)
        err = output.reshape(-1)[keep] - target[keep]
        return {
            "n": int(keep.sum()),
            "mae": float(np.abs(err).mean()) if len(err) else float("nan"),
            "rmse": float(np.sqrt((err**2).mean())) if len(err) else float("nan"),
        }

    def eval_line(self, m):
        return f"MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}"

    def damage(self, ref, got):
        """Mean squared error divided by the variance of the reference."""
        ref, got = rows_of(ref), rows_of(got)
        return float(((ref - got) ** 2).mean() / (ref.var() + 1e-12))

    def decode(self, task, out, labels, sizes=None, options=None):
        out = rows_of(out)
        return [TaskPrediction(task, self.name, value=row[0] if len(row) == 1 else row) for row in out.tolist()]

    def train_description(self, target, labels):
        vals = target[~np.isnan(target)]
        return {
            "train_values": {
                "n": int(len(vals)),
                "mean": float(vals.mean()) if len(vals) else None,
                "min": float(vals.min()) if len(vals) else None,
                "max": float(vals.max()) if len(vals) else None,
            }
        }

    def summary_text(self, entry):
        v = entry["train_values"]
        return f"{v['n']} train values" + (f", {v['min']:.3g}..{v['max']:.3g}" if v["n"] else "")
