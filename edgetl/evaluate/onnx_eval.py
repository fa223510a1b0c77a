"""Scoring an exported ONNX artifact on a split, exactly like a checkpoint (same metrics code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.evaluate.metrics import all_task_metrics
from edgetl.runtime.batching import predict_in_batches


def ort_session(path: Path, threads: int | None = None, providers=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])


def feeds_for(prep, examples, idx) -> dict[str, np.ndarray]:
    x = prep(examples.inputs(idx))
    return {k: v.numpy() for k, v in x.items()} if isinstance(x, dict) else {"input": x.numpy()}


def onnx_outputs(sess, prep, examples, batch_size: int = 64, tasks=None) -> dict[str, np.ndarray]:
    """Outputs by name; with `tasks` ((name, kind, output, output_format) per task), one array per task
    (`edgetl.runtime.tasks.task_outputs`: a detector's four outputs joined)."""
    from edgetl.runtime.tasks import task_outputs

    names = [o.name for o in sess.get_outputs()]

    def run(idx):
        named = dict(zip(names, sess.run(None, feeds_for(prep, examples, idx))))
        return named if tasks is None else task_outputs(tasks, named)

    return predict_in_batches(run, len(examples), batch_size)


def evaluate_onnx(path: Path, loaded, split: str = "test", full: bool = False, sess=None) -> dict[str, dict]:
    ex = getattr(loaded.splits, split)
    outputs = onnx_outputs(sess or ort_session(path), loaded.prep, ex, tasks=loaded.model.output_tasks())
    return all_task_metrics(outputs, ex.targets, loaded.kinds, loaded.splits.labels, full)
