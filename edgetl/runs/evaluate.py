"""`edgetl eval`: full per-task metrics of a checkpoint or an exported artifact on a split -> eval.json."""

from __future__ import annotations

import json

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks import get_kind


def evaluate_run(run_path, artifact: str = "pytorch", split: str = "test") -> dict:
    from edgetl.evaluate.metrics import all_task_metrics
    from edgetl.evaluate.onnx_eval import evaluate_onnx
    from edgetl.evaluate.torch_eval import predict_torch
    from edgetl.runs.loaded import load_run
    from edgetl.runtime.atomic import atomic_write_text

    if split not in ("train", "val", "test"):
        raise EdgetlError(f"--split {split!r}: allowed train, val, test")
    loaded = load_run(run_path)
    ex = getattr(loaded.splits, split)
    if artifact == "pytorch":
        outputs = predict_torch(loaded.model, loaded.prep, ex)
        metrics = all_task_metrics(outputs, ex.targets, loaded.kinds, loaded.splits.labels, full=True)
        source = str(loaded.run.checkpoint("best"))
    else:
        from edgetl.runtime.manifest import files_for_artifacts
        from edgetl.runtime.trust import check_bundle, read_trusted_manifest

        manifest_path = loaded.run.export_dir / "manifest.json"
        if not manifest_path.is_file():
            raise EdgetlError(f"{loaded.run.dir}: not exported yet (edgetl export {loaded.run.dir})")
        manifest = read_trusted_manifest(loaded.run.export_dir)
        arts = manifest.artifacts
        if artifact not in arts:
            raise EdgetlError(f"--artifact {artifact!r}: available pytorch, {', '.join(arts)}")
        # the check every entry point shares: the artifact's files, the labels, nothing unlisted
        check_bundle(loaded.run.export_dir, manifest, files_for_artifacts(manifest, [artifact]))
        path = loaded.run.export_dir / arts[artifact].file
        metrics = evaluate_onnx(path, loaded, split, full=True)
        source = str(path)
    result = {
        "run": str(loaded.run.dir),
        "artifact": artifact,
        "source": source,
        "split": split,
        "n": len(ex),
        "tasks": {t: {"kind": loaded.kinds[t], "labels": loaded.splits.labels[t], **m} for t, m in metrics.items()},
    }
    out = loaded.run.dir / ("eval.json" if artifact == "pytorch" else f"eval.{artifact}.json")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    result["file"] = str(out)
    return result


def print_eval(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    for task, m in result["tasks"].items():
        line = get_kind(m["kind"]).eval_line(m)
        if "per_class" not in m:  # kinds without a per-class table: one line
            c.print(f"[bold]{task}[/]: {line}  (n={m['n']})")
            continue
        t = Table(title=f"{task}: {line}  ({result['artifact']}, {result['split']}, n={m['n']})")
        for h in ("class", "precision", "recall", "f1", "support"):
            t.add_column(h, justify="right" if h != "class" else "left")
        for lab, pc in m["per_class"].items():
            t.add_row(lab, f"{pc['precision']:.3f}", f"{pc['recall']:.3f}", f"{pc['f1']:.3f}", str(pc["support"]))
        c.print(t)
    c.print(f"wrote {result['file']}")
