"""INT8 for a text encoder on CPU: all-MiniLM-L6-v2 topic classifier on BBC News, FP32 vs INT8 variants.

    python benchmarks/int8_text.py [--runs-dir runs/bench] [--budget-s 10]

The model: all-MiniLM-L6-v2 (offline weights, mean pooling, frozen encoder) + a linear head trained on 1000
BBC News articles (feature cache; trained once into --runs-dir, later runs reuse it); max_length 128.
Exported with `export_run(int8=True, target=cpu)` (the gate at the default 1-point budget), then compared
on the test split (425 articles; the gate only looks at the 213 validation ones):
  ORT dynamic, defaults   quantize_dynamic() as most tutorials call it: per-tensor weights, full 8-bit range
  ORT static Q/DQ         OrtStaticQuantizer (per-channel S8 weights, U8 activations, minmax on 128 training
                          articles): what a CNN gets
  edgetl dynamic          per-channel INT8 weights, 7-bit on CPUs without VNNI: the gate's first try
  gated (budget 1.0)      the bundle's int8-ort artifact
  gated (budget 0.0)      the same gate forced to search (leave-one-out over the 37 MatMuls)
Latency: batch 1 on one real article (its true token count), ORT intra_op_num_threads=2, every variant
interleaved with FP32 in rounds; speedups are medians of per-round ratios (ratio of p10s beside them).
Writes benchmarks/results/int8_text.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from int8_common import REPO, ensure_run, latency, machine, md_table, write_json

RECIPE = {
    "name": "int8-minilm-bbc",
    "backbone": {"name": "minilm", "weights": "offline", "pooling": "mean"},
    "input": {"kind": "text", "max_length": 128},
    "tasks": [{"name": "topic", "kind": "classification", "column": "label"}],
    "data": {"source": "bbc-news", "split": {"val_fraction": 0.1, "test_fraction": 0.2, "limit_train": 1000}},
    "train": {
        "epochs": 30,
        "batch_size": 32,
        "lr": 0.003,
        "schedule": "cosine",
        "seed": 0,
        "freeze": {"policy": "linear_probe"},
    },
    "export": {"calibration": {"size": 128}, "verify_samples": 64},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "bench")
    ap.add_argument("--budget-s", type=float, default=10.0)
    args = ap.parse_args()
    import torch

    from edgetl.bundle.pipeline import ExportOptions, calibration_feeds, export_run
    from edgetl.evaluate.onnx_eval import evaluate_onnx, feeds_for
    from edgetl.quantize.gate import quantize_cpu_with_gate
    from edgetl.quantize.ort_int8 import OrtStaticQuantizer, preprocess_model
    from edgetl.runs.loaded import load_run

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    run, train_s = ensure_run("int8-minilm-bbc", [], args.runs_dir, base=RECIPE)
    log: list[str] = []
    bundle = export_run(run.dir, ExportOptions(int8=True, target="cpu", progress=False, threads=2, log=log))
    for line in log:
        print(f"  [export] {line}")
    manifest = json.loads((bundle / "manifest.json").read_text())
    gate1 = manifest["artifacts"]["int8-ort"]["quantization"]["gate"]
    loaded = load_run(run.dir)
    fp32 = bundle / "model.fp32.onnx"
    work = bundle / "bench-int8-text"
    work.mkdir(exist_ok=True)

    from onnxruntime.quantization import QuantType, quantize_dynamic

    pre = preprocess_model(fp32, work / "pre.onnx", text=True)
    quantize_dynamic(
        str(pre),
        str(work / "ort_dynamic_default.onnx"),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
    )
    feeds, _ = calibration_feeds(loaded, 128)
    OrtStaticQuantizer(fp32, feeds, text=True).quantize(work / "ort_static_qdq.onnx")
    from edgetl.quantize.ort_int8 import OrtDynamicQuantizer

    OrtDynamicQuantizer(fp32).quantize(work / "edgetl_dynamic.onnx")
    tight_log: list[str] = []
    tight = quantize_cpu_with_gate(
        loaded, fp32, work / "gated_tight.onnx", feeds, method="minmax", max_drop=0.0, say=tight_log.append, threads=2
    )
    for line in tight_log:
        print(f"  [gate 0.0] {line}")
    variants = {
        "FP32": fp32,
        "ORT dynamic, defaults": work / "ort_dynamic_default.onnx",
        "ORT static Q/DQ": work / "ort_static_qdq.onnx",
        "edgetl dynamic (all INT8)": work / "edgetl_dynamic.onnx",
        "gated, budget 1.0 (bundle)": bundle / "model.int8-ort.onnx",
        "gated, budget 0.0": work / "gated_tight.onnx",
    }
    acc = {}
    for k, p in variants.items():
        acc[k] = {s: 100 * evaluate_onnx(p, loaded, s)["topic"]["accuracy"] for s in ("val", "test")}
    x = feeds_for(loaded.prep, loaded.splits.test, np.arange(1))
    seq = int(x["input_ids"].shape[1])
    lat = latency(variants, x, threads=2, budget_s=args.budget_s, inner=2)
    rows = []
    for k, p in variants.items():
        rows.append(
            {
                "variant": k,
                "val_acc": acc[k]["val"],
                "test_acc": acc[k]["test"],
                "val_drop": acc["FP32"]["val"] - acc[k]["val"],
                "test_drop": acc["FP32"]["test"] - acc[k]["test"],
                "ms_p50": lat["ms"][k]["p50"],
                "speedup": lat["speedup_vs_FP32"][k],
                "p10_speedup": lat["p10_speedup_vs_FP32"][k],
                "size_mb": p.stat().st_size / 1e6,
            }
        )
    md = md_table(
        ["variant", "val acc", "test acc", "test drop", "p50 ms", "x vs FP32 (paired)", "x (p10)", "MB"],
        [
            [
                r["variant"],
                f"{r['val_acc']:.2f}",
                f"{r['test_acc']:.2f}",
                f"{r['test_drop']:+.2f}",
                f"{r['ms_p50']:.1f}",
                f"{r['speedup']:.2f}",
                f"{r['p10_speedup']:.2f}",
                f"{r['size_mb']:.1f}",
            ]
            for r in rows
        ],
    )
    print(md)
    tg = tight["gate"]
    print(f"\nbudget 0.0: kept in float {tg['excluded_nodes']} ({len(tg['tries'])} tries, {tg['seconds']} s)")
    out = write_json(
        "int8_text",
        {
            "machine": machine(),
            "seq_len": seq,
            "train_seconds": round(train_s, 1),
            "seconds": round(time.perf_counter() - t0, 1),
            "rows": rows,
            "gate_budget_1": gate1,
            "gate_budget_0": tg,
            "table_md": md,
        },
    )
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s; sequence length {seq})")


if __name__ == "__main__":
    main()
