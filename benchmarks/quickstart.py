"""Issue 2 acceptance on this machine: the quickstart end to end, timed, plus fine-tuned vs from-scratch.

    python benchmarks/quickstart.py [--skip-scratch] [--runs-dir /tmp/qs-bench]

Runs recipes/quickstart.yaml (train -> export FP32 + INT8 -> bench --device cpu) with wall-clock times per
step, then the same recipe with `backbone.weights=none` (same budget) to show that transfer works. Prints a
table and writes benchmarks/results/quickstart.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs-dir", default="/tmp/edgetl-qs-bench")
    ap.add_argument("--skip-scratch", action="store_true")
    ap.add_argument("--budget", type=float, default=3.0)
    args = ap.parse_args()

    from edgetl.bench.harness import bench
    from edgetl.bench.report import print_table
    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.recipe import load_recipe
    from edgetl.train.loop import train

    runs = Path(args.runs_dir)
    out: dict = {"recipe": "recipes/quickstart.yaml"}
    t0 = time.perf_counter()
    run = train(load_recipe(REPO / "recipes/quickstart.yaml"), runs_dir=runs, progress=False)
    t1 = time.perf_counter()
    bundle = export_run(run.dir, ExportOptions(int8=True, target="cpu", progress=False))
    t2 = time.perf_counter()
    report = bench(run.dir, "cpu", budget_s=args.budget)
    t3 = time.perf_counter()
    print_table(report)
    m = json.loads((bundle / "manifest.json").read_text())
    rows = {r["artifact"]: r for r in report["rows"]}
    out["seconds"] = {"train": t1 - t0, "export": t2 - t1, "bench": t3 - t2, "total": t3 - t0}
    out["fp32_verification"] = m["artifacts"]["fp32"]["verification"]
    out["accuracy_test"] = {a: e["accuracy"] for a, e in m["artifacts"].items()}
    out["latency_p50_ms"] = {a: r["latency_ms"]["p50_ms"] for a, r in rows.items() if "latency_ms" in r}
    out["int8_speedup_vs_fp32"] = rows["int8-ort"].get("speedup_vs_fp32")
    out["int8_drop_points"] = rows["int8-ort"].get("drop_vs_fp32")

    if not args.skip_scratch:
        scratch = train(
            load_recipe(REPO / "recipes/quickstart.yaml", ["backbone.weights=none"]),
            name="quickstart-scratch",
            runs_dir=runs,
            progress=False,
        )
        out["transfer"] = {
            "imagenet_finetuned_val": run.info()["best_score"],
            "scratch_val": scratch.info()["best_score"],
        }

    print(
        f"\nquickstart: train {out['seconds']['train']:.0f} s, export {out['seconds']['export']:.0f} s, "
        f"bench {out['seconds']['bench']:.0f} s, total {out['seconds']['total']:.0f} s"
    )
    v = out["fp32_verification"]
    print(
        f"ONNX FP32 vs PyTorch: max|diff| {max(v['max_abs_diff'].values()):.2e}, "
        f"top-1 agreement {min(v['top1_agreement'].values()):.2%} on {v['samples']} validation images"
    )
    print(f"INT8 vs FP32 at batch 1: {out['int8_speedup_vs_fp32']:.2f}x, drop {out['int8_drop_points']} points")
    if "transfer" in out:
        t = out["transfer"]
        print(
            f"transfer: ImageNet fine-tuned {t['imagenet_finetuned_val']:.3f} vs from scratch {t['scratch_val']:.3f} "
            "(validation accuracy, same recipe and budget)"
        )
    res = REPO / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "quickstart.json").write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
