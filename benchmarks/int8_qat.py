"""INT8 on CPU for fine-tuned CNNs: post-training quantization (PTQ) vs quantization-aware training (QAT).

    python benchmarks/int8_qat.py [--models mobilenet_v2,efficientnet_lite0] [--qs-run runs/qs]
                                  [--runs-dir runs/bench] [--epochs 2] [--lr 1e-4] [--max-steps N] [--budget-s 8]

Models, fine-tuned on Fashion-MNIST at 64 px (the runs of benchmarks/int8_cnn.py, same budgets):
  mobilenet_v2        the quickstart run (`--qs-run`, if it is a completed run of recipes/quickstart.yaml;
                      otherwise trained once into --runs-dir), gate budget 0.5
  efficientnet_lite0  the quickstart recipe with efficientnet_lite0, 2 epochs x 2000 images, gate budget 1.0
                      (plain PTQ loses 1.3-1.5 points there)
Per model, the real export `export_run(int8=True, target=cpu, qat=True)` into <run>/export-qat-bench (the run's
own bundle is left alone):
  PTQ   edgetl's ORT static Q/DQ (U8 activations, S8 per-channel weights, minmax on 256 stratified training
        images) + the accuracy gate; also the plain all-INT8 model from the same calibration (the gate's try 0);
  QAT   modelopt torch INT8 from the best checkpoint (BatchNorm folded, calibrated on the same 256 images),
        fine-tuned --epochs at --lr with the recipe's losses and batch size, exported as Q/DQ in the layout
        ORT fuses (int8-qat).
Control: the FP32 model (BatchNorm folded the same way) fine-tuned with the same epochs, LR and steps but no
quantizers, so the gain of extra training can be told apart from the gain of quantization-aware training.
Accuracy: drops vs FP32 on the 1000-image validation split (what the gate sees) and the 1000-image test
split. Latency: batch 1, ORT intra_op_num_threads=2, FP32 / PTQ plain / PTQ gated / QAT interleaved in rounds;
speedups are medians of per-round ratios (ratio of p10s beside them). Writes benchmarks/results/int8_qat.json
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from int8_cnn import SPECS
from int8_common import REPO, ensure_run, latency, machine, md_table, write_json


def pick_run(name: str, qs_run: Path, runs_dir: Path):
    """The quickstart run for mobilenet_v2 when it is there (same recipe apart from export settings), else the
    run int8_cnn.py trains."""
    from edgetl.recipe import load_recipe
    from edgetl.runs.layout import open_run

    if name == "mobilenet_v2" and (qs_run / "run.json").is_file():
        want = load_recipe(REPO / "recipes/quickstart.yaml").model_dump(exclude={"name", "description", "export"})
        run = open_run(qs_run)
        done = json.loads((qs_run / "run.json").read_text()).get("status") == "completed"
        if done and run.recipe().model_dump(exclude={"name", "description", "export"}) == want:
            print(f"[{name}] reusing the quickstart run {qs_run}")
            return run, 0.0
    return ensure_run(f"int8-{name}", SPECS[name][0], runs_dir)


def fp32_control(loaded, spec, feeds, out: Path) -> Path:
    """The FP32 model fine-tuned exactly like QAT (same folding, epochs, LR, steps, data order), no quantizers."""
    import copy

    import torch

    from edgetl.export.onnx_export import export_onnx
    from edgetl.quantize.qat import finetune, fold_batchnorm

    torch.manual_seed(loaded.recipe.train.seed)
    model = copy.deepcopy(loaded.model).eval()
    fold_batchnorm(model, torch.from_numpy(feeds[0]["input"][:2]))
    finetune(model, loaded, spec, say=lambda _m: None)
    return export_onnx(loaded, out, opset=loaded.recipe.export.opset, model=model)


def one(name: str, args) -> dict:
    from edgetl.bundle.pipeline import ExportOptions, calibration_feeds, export_run
    from edgetl.evaluate.metrics import primary_score
    from edgetl.evaluate.onnx_eval import evaluate_onnx, feeds_for
    from edgetl.quantize.ort_int8 import OrtStaticQuantizer
    from edgetl.recipe import QatSpec
    from edgetl.runs.loaded import load_run

    run, train_s = pick_run(name, args.qs_run, args.runs_dir)
    max_drop = SPECS[name][1]
    log: list[str] = []
    spec = QatSpec(mode="always", epochs=args.epochs, lr=args.lr, max_steps=args.max_steps)
    te = time.perf_counter()
    bundle = export_run(
        run.dir,
        ExportOptions(
            int8=True,
            target="cpu",
            qat=True,
            qat_spec=spec,
            max_drop=max_drop,
            out_dir=run.dir / "export-qat-bench",
            threads=2,
            progress=False,
            log=log,
        ),
    )
    export_s = time.perf_counter() - te
    for line in log:
        print(f"  [{name}] {line}")
    m = json.loads((bundle / "manifest.json").read_text())
    arts = m["artifacts"]
    ptq, qat = arts["int8-ort"]["quantization"], arts["int8-qat"]["quantization"]

    loaded = load_run(run.dir)
    task = loaded.recipe.tasks[0].name
    kind = loaded.kinds[task]
    feeds, _ = calibration_feeds(loaded, ptq["calibration"]["size"])
    plain = bundle / "bench.int8-plain.onnx"
    OrtStaticQuantizer(bundle / "model.fp32.onnx", feeds, method=ptq["calibration"]["method"]).quantize(plain)
    files = {
        "fp32": bundle / "model.fp32.onnx",
        "ptq_plain": plain,
        "ptq_gated": bundle / "model.int8-ort.onnx",
        "qat": bundle / "model.int8-qat.onnx",
    }
    control = fp32_control(loaded, spec, feeds, bundle / "bench.fp32-more.onnx")
    acc = {
        split: {
            k: 100 * primary_score(kind, evaluate_onnx(p, loaded, split)[task])
            for k, p in {**files, "fp32_more": control}.items()
        }
        for split in ("val", "test")
    }
    control.unlink()
    drop = {split: {k: acc[split]["fp32"] - v for k, v in a.items()} for split, a in acc.items()}
    x = feeds_for(loaded.prep, loaded.splits.test, np.arange(1))
    lat = latency(files, x, threads=2, budget_s=args.budget_s)
    plain.unlink()
    return {
        "model": name,
        "run": str(run.dir),
        "image_size": loaded.recipe.input.image_size,
        "max_drop": max_drop,
        "train_seconds": round(train_s, 1),
        "export_seconds": round(export_s, 1),
        "accuracy": acc,
        "drop_vs_fp32": drop,
        "latency_threads2": lat,
        "ptq_gate": {k: ptq["gate"].get(k) for k in ("passed", "drop", "excluded_nodes", "seconds", "latency")},
        "qat": {
            **qat["qat"],
            "gate": qat["gate"],
            "ort_ops": qat["ort_ops"],
            "ort_layout": qat["ort_layout"],
            "reduce_range": qat["reduce_range"],
            "bn_folded": qat["bn_folded"],
            "unsigned_inputs": qat["unsigned_inputs"],
            "quantized_modules": qat["quantized_modules"],
            "verification": arts["int8-qat"]["verification"],
        },
        "default_artifact": m["default_artifact"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    ap.add_argument("--qs-run", type=Path, default=REPO / "runs" / "qs")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "bench")
    ap.add_argument("--epochs", type=int, default=2, help="QAT epochs (export.qat.epochs)")
    ap.add_argument("--lr", type=float, default=1e-4, help="QAT learning rate (export.qat.lr)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap on QAT optimizer steps")
    ap.add_argument("--budget-s", type=float, default=8.0, help="timed seconds per latency comparison")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    rows = [one(name, args) for name in args.models.split(",")]
    table = []
    for r in rows:
        a, d = r["accuracy"], r["drop_vs_fp32"]
        s, p10 = r["latency_threads2"]["speedup_vs_fp32"], r["latency_threads2"]["p10_speedup_vs_fp32"]
        ops = r["qat"]["ort_ops"]
        convs = ops.get("QLinearConv", 0) + ops.get("Conv", 0) + ops.get("FusedConv", 0)
        labels = {
            "ptq_plain": "PTQ all INT8",
            "ptq_gated": f"PTQ + gate ({r['max_drop']})",
            "qat": f"QAT ({r['qat']['epochs_run']} ep, {r['qat']['steps']} steps)",
        }
        table.append(
            [r["model"], "FP32", f"{a['val']['fp32']:.2f}", f"{a['test']['fp32']:.2f}", "-", "-", "1.00", "1.00", "-"]
        )
        table.append(
            [
                "",
                "FP32 + the same fine-tune (control)",
                f"{a['val']['fp32_more']:.2f}",
                f"{a['test']['fp32_more']:.2f}",
                f"{d['val']['fp32_more']:+.2f}",
                f"{d['test']['fp32_more']:+.2f}",
                "-",
                "-",
                "-",
            ]
        )
        for k, label in labels.items():
            flt = {
                "ptq_plain": "0",
                "ptq_gated": str(len(r["ptq_gate"]["excluded_nodes"]))
                + ("" if r["ptq_gate"]["passed"] else " (FAILED)"),
                "qat": f"{convs - ops.get('QLinearConv', 0)} of {convs} convs float in ORT",
            }[k]
            table.append(
                [
                    "",
                    label,
                    f"{a['val'][k]:.2f}",
                    f"{a['test'][k]:.2f}",
                    f"{d['val'][k]:+.2f}",
                    f"{d['test'][k]:+.2f}",
                    f"{s[k]:.2f}",
                    f"{p10[k]:.2f}",
                    flt,
                ]
            )
    md = md_table(
        [
            "model",
            "variant",
            "val acc",
            "test acc",
            "val drop",
            "test drop",
            "x vs FP32 (paired p50)",
            "x (p10)",
            "layers in float",
        ],
        table,
    )
    print(md)
    p = write_json(
        "int8_qat",
        {
            "machine": machine(),
            "settings": {"epochs": args.epochs, "lr": args.lr, "max_steps": args.max_steps},
            "rows": rows,
            "table_md": md,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    print(f"\nwrote {p} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
