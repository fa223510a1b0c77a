"""INT8 on CPU for fine-tuned CNNs: accuracy drop and speed of plain PTQ vs the accuracy gate, vs FP32.

    python benchmarks/int8_cnn.py [--runs-dir runs/bench] [--models mobilenet_v2,efficientnet_lite0,resnet18]
                                  [--budget-s 8]

Per model, fine-tuned on Fashion-MNIST at 64 px (trained once into --runs-dir; later runs reuse the run):
  mobilenet_v2       recipes/quickstart.yaml as is (ImageNet weights, 3 epochs x 4000 images), gate budget 0.5
  efficientnet_lite0 the same recipe with backbone efficientnet_lite0, 2 epochs x 2000, gate budget 1.0
  resnet18           the same with backbone resnet18 from random init (no offline ImageNet weights for it),
                     2 epochs x 2000, gate budget 0.3
then `export_run(int8=True, target=cpu, max_drop=budget)` -- the real export: ORT static Q/DQ (U8 activations,
S8 per-channel weights, minmax on 256 stratified training images) + the gate -- and, from the same calibration,
the plain all-INT8 model (the gate's first try). Accuracy: the 1000-image test split (the gate itself only
looks at the validation split). Latency: batch 1, ORT intra_op_num_threads=2 (and 1), FP32 / plain INT8 /
gated INT8 interleaved in rounds so machine load hits all three alike; speedups are medians of per-round
ratios, with the ratio of p10s beside them.
Writes benchmarks/results/int8_cnn.json (int8_cnn_<models>.json for a subset) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from int8_common import REPO, ensure_run, latency, machine, md_table, write_json

SPECS = {
    "mobilenet_v2": ([], 0.5),
    "efficientnet_lite0": (["backbone.name=efficientnet_lite0", "train.epochs=2", "data.split.limit_train=2000"], 1.0),
    "resnet18": (
        [
            "backbone.name=resnet18",
            "backbone.weights=none",
            "train.epochs=2",
            "data.split.limit_train=2000",
            "train.lr=0.002",
        ],
        0.3,
    ),
}


def one(name: str, runs_dir: Path, budget_s: float) -> dict:
    from edgetl.bundle.pipeline import ExportOptions, calibration_feeds, export_run
    from edgetl.evaluate.metrics import primary_score
    from edgetl.evaluate.onnx_eval import evaluate_onnx, feeds_for
    from edgetl.quantize.ort_int8 import OrtStaticQuantizer
    from edgetl.runs.loaded import load_run

    overrides, max_drop = SPECS[name]
    run, train_s = ensure_run(f"int8-{name}", overrides, runs_dir)
    t0 = time.perf_counter()
    log: list[str] = []
    bundle = export_run(
        run.dir, ExportOptions(int8=True, target="cpu", max_drop=max_drop, progress=False, threads=2, log=log)
    )
    export_s = time.perf_counter() - t0
    for line in log:
        print(f"  [{name}] {line}")
    manifest = json.loads((bundle / "manifest.json").read_text())
    q = manifest["artifacts"]["int8-ort"]["quantization"]
    gate = q["gate"]

    loaded = load_run(run.dir)
    feeds, _ = calibration_feeds(loaded, q["calibration"]["size"])
    plain = bundle / "bench.int8-plain.onnx"
    st = OrtStaticQuantizer(bundle / "model.fp32.onnx", feeds, method=q["calibration"]["method"])
    st.quantize(plain)
    task = loaded.recipe.tasks[0].name
    kind = loaded.kinds[task]
    acc = {
        k: 100 * primary_score(kind, evaluate_onnx(p, loaded, "test")[task])
        for k, p in (("fp32", bundle / "model.fp32.onnx"), ("plain", plain), ("gated", bundle / "model.int8-ort.onnx"))
    }
    x = feeds_for(loaded.prep, loaded.splits.test, np.arange(1))
    models = {"fp32": bundle / "model.fp32.onnx", "plain": plain, "gated": bundle / "model.int8-ort.onnx"}
    lat2 = latency(models, x, threads=2, budget_s=budget_s)
    lat1 = latency(models, x, threads=1, budget_s=budget_s / 2)
    plain.unlink()
    return {
        "model": name,
        "image_size": loaded.recipe.input.image_size,
        "max_drop": max_drop,
        "train_seconds": round(train_s, 1),
        "export_seconds": round(export_s, 1),
        "test_accuracy": acc,
        "test_drop": {k: acc["fp32"] - v for k, v in acc.items()},
        "val_drop_plain": gate["tries"][0]["drop"][task],
        "val_drop_gated": gate["drop"][task],
        "gate_passed": gate["passed"],
        "excluded_nodes": gate["excluded_nodes"],
        "gate_tries": len(gate["tries"]),
        "gate_seconds": gate["seconds"],
        "sensitivity": gate.get("sensitivity"),
        "gate_latency": gate.get("latency"),
        "default_artifact": manifest["default_artifact"],
        "latency_threads2": lat2,
        "latency_threads1": lat1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "bench")
    ap.add_argument("--models", default=",".join(SPECS))
    ap.add_argument("--budget-s", type=float, default=8.0, help="timed seconds per latency comparison")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    rows = [one(m, args.runs_dir, args.budget_s) for m in args.models.split(",")]
    headers = [
        "model",
        "px",
        "FP32 acc",
        "plain INT8 drop (val / test)",
        "gate budget",
        "gated drop (val / test)",
        "kept float",
        "plain INT8 x (2 thr)",
        "gated INT8 x (2 thr)",
        "gated x (1 thr)",
        "p10 ratio gated (2 thr)",
    ]
    table = []
    for r in rows:
        s2, s1 = r["latency_threads2"]["speedup_vs_fp32"], r["latency_threads1"]["speedup_vs_fp32"]
        table.append(
            [
                r["model"],
                r["image_size"],
                f"{r['test_accuracy']['fp32']:.2f}",
                f"{r['val_drop_plain']:+.2f} / {r['test_drop']['plain']:+.2f}",
                r["max_drop"],
                f"{r['val_drop_gated']:+.2f} / {r['test_drop']['gated']:+.2f}"
                + ("" if r["gate_passed"] else " FAILED"),
                len(r["excluded_nodes"]),
                f"{s2['plain']:.2f}",
                f"{s2['gated']:.2f}",
                f"{s1['gated']:.2f}",
                f"{r['latency_threads2']['p10_speedup_vs_fp32']['gated']:.2f}",
            ]
        )
    md = md_table(headers, table)
    print(md)
    for r in rows:
        if r["excluded_nodes"]:
            print(f"\n{r['model']}: kept in float ({len(r['excluded_nodes'])}): {', '.join(r['excluded_nodes'])}")
    models = args.models.split(",")
    name = "int8_cnn" if models == list(SPECS) else "int8_cnn_" + "_".join(models)
    out = write_json(
        name, {"machine": machine(), "seconds": round(time.perf_counter() - t0, 1), "rows": rows, "table_md": md}
    )
    print(f"\nwrote {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
