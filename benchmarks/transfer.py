"""Every transfer recipe in full (on subsets), then the transfer report over all of them.

    python benchmarks/transfer.py [--train 2000] [--val 500] [--runs-dir /tmp/edgetl-transfer] [--skip-text]

Fashion-MNIST recipes (64 px, MobileNetV2 with offline ImageNet weights) all use the same subset (--train
rows, --val rows, the same 1,000 test rows), so their test scores are directly comparable:

  finetuned          recipes/distill-teacher.yaml  (plain fine-tune; also the distillation teacher)
  scratch            the same recipe, backbone.weights=none (same budget)
  linear-probe       recipes/linear-probe.yaml     (feature cache)
  partial-freeze     recipes/partial-freeze.yaml   (first 3 stages frozen + cached)
  gradual-unfreeze   recipes/gradual-unfreeze.yaml
  layer-wise-lr      recipes/layer-wise-lr.yaml
  multitask          recipes/multitask.yaml        (category + group)
  multitask-scratch  the same, backbone.weights=none
  group-only         the fine-tune recipe with the `group` task alone (multi- vs single-task; same rows)
  distill            recipes/distill.yaml          (32 px student, teacher = finetuned)
  student            the same student without a teacher (same budget)
  multi-dataset      recipes/multi-dataset.yaml    (Fashion-MNIST + digits, 2:1)
BBC News (MiniLM): text-classify (recipes/text-classify.yaml) and text-scratch (weights=none).
Then exports (FP32 + INT8 for CPU) of finetuned and text-classify, and `edgetl report` over all runs.
Writes benchmarks/results/transfer.json and benchmarks/results/transfer/report.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=2000, help="Fashion-MNIST training rows per run")
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--runs-dir", default="/tmp/edgetl-transfer")
    ap.add_argument("--skip-text", action="store_true")
    ap.add_argument("--skip-export", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="delete --runs-dir first (default: reuse finished runs)")
    args = ap.parse_args()

    import torch

    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.recipe import load_recipe
    from edgetl.reports.transfer import transfer_report
    from edgetl.runs.layout import Run
    from edgetl.train.loop import train

    torch.set_num_threads(2)
    runs_dir = Path(args.runs_dir)
    if args.fresh and runs_dir.exists():
        shutil.rmtree(runs_dir)
    subset = [f"data.split.limit_train={args.train}", f"data.split.limit_val={args.val}", "data.split.limit_test=1000"]
    timings: dict[str, float] = {}
    runs: dict[str, Run] = {}

    def go(name: str, recipe: str, extra: list[str] = (), image: bool = True) -> Run:
        d = runs_dir / name
        if d.is_dir() and Run(d).info().get("status") == "completed":
            runs[name] = Run(d)
            timings[name] = runs[name].info().get("train_seconds", float("nan"))  # train() time of that run
            print(f"[reuse] {name} (trained earlier in {timings[name]:.0f} s)", flush=True)
            return runs[name]
        if d.exists():
            shutil.rmtree(d)
        t0 = time.perf_counter()
        rec = load_recipe(REPO / "recipes" / recipe, (subset if image else []) + list(extra))
        runs[name] = train(rec, name=name, runs_dir=runs_dir, progress=False)
        timings[name] = time.perf_counter() - t0
        info = runs[name].info()
        print(
            f"[{timings[name]:6.0f} s] {name:<18} best epoch {info['best_epoch']} val score {info['best_score']:.4f}",
            flush=True,
        )
        return runs[name]

    t_all = time.perf_counter()
    ft = go("finetuned", "distill-teacher.yaml")
    go("scratch", "distill-teacher.yaml", ["backbone.weights=none"])
    go("linear-probe", "linear-probe.yaml")
    go("partial-freeze", "partial-freeze.yaml")
    go("gradual-unfreeze", "gradual-unfreeze.yaml")
    go("layer-wise-lr", "layer-wise-lr.yaml")
    go("multitask", "multitask.yaml")
    go("multitask-scratch", "multitask.yaml", ["backbone.weights=none"])
    # stratified like the category runs (not by its own task), so it is scored on the same test rows as multitask
    go(
        "group-only",
        "distill-teacher.yaml",
        ["tasks.0.name=group", "tasks.0.column=group", "data.split.stratify=label"],
    )
    go("distill", "distill.yaml", [f"distill.teacher={ft.dir}"])
    go("student", "distill.yaml", ["distill=null"])
    go(
        "multi-dataset",
        "multi-dataset.yaml",
        [f"data.split.limit_train={args.train}", f"data.split.limit_val={args.val}", "data.split.limit_test=1000"],
        image=False,
    )
    if not args.skip_text:
        go("text-classify", "text-classify.yaml", image=False)
        go("text-scratch", "text-classify.yaml", ["backbone.weights=none"], image=False)

    if not args.skip_export:
        for name in ("finetuned", "text-classify"):
            if name in runs and not (runs[name].export_dir / "manifest.json").is_file():
                t0 = time.perf_counter()
                export_run(runs[name].dir, ExportOptions(int8=True, target="cpu", progress=False))
                timings[f"export {name}"] = time.perf_counter() - t0
                print(f"[{timings[f'export {name}']:6.0f} s] export {name} (fp32 + int8-ort)", flush=True)

    out_dir = REPO / "benchmarks" / "results" / "transfer"
    t0 = time.perf_counter()
    order = [
        "finetuned",
        "scratch",
        "linear-probe",
        "partial-freeze",
        "gradual-unfreeze",
        "layer-wise-lr",
        "multitask",
        "multitask-scratch",
        "group-only",
        "distill",
        "student",
        "text-classify",
        "text-scratch",
    ]
    report = transfer_report([runs[n].dir for n in order if n in runs], out_dir)
    timings["report"] = time.perf_counter() - t0
    # the multi-dataset run shares no task with the others (garment/digit): its own scores, from its eval
    from edgetl.reports.transfer import summarize_run

    md_run = summarize_run(runs["multi-dataset"].dir)
    summary = {
        "setup": {
            "fashion_train": args.train,
            "fashion_val": args.val,
            "fashion_test": 1000,
            "threads": 2,
            "text": None if args.skip_text else "bbc-news, recipes/text-classify.yaml as is",
        },
        "seconds": {**timings, "total": time.perf_counter() - t_all},
        "test_scores": {r["name"]: {t: s["value"] for t, s in r["scores"].items()} for r in report["runs"]},
        "multi_dataset": {t: s.value for t, s in md_run.scores.items()},
        "comparisons": report["comparisons"],
        "report": report["files"],
    }
    path = REPO / "benchmarks" / "results" / "transfer.json"
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print((out_dir / "report.md").read_text())
    print(
        "multi-dataset (garment + digit, 2:1 mix):", {t: round(100 * v, 2) for t, v in summary["multi_dataset"].items()}
    )
    print(f"total {summary['seconds']['total']:.0f} s; wrote {path} and {out_dir}/report.{{md,json,png}}")


if __name__ == "__main__":
    main()
