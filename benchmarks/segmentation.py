"""Semantic segmentation on the offline fashion-scenes demo: edgetl's FPN decoder vs torchvision's own LR-ASPP
head on the same backbone (MobileNetV2, the same offline ImageNet weights), the same data, augmentation, optimizer
and budget, over seeds; then INT8 (ONNX Runtime CPU, through the gate on mIoU) vs FP32: mIoU, and speed at
batch 1 model-only and end to end (a 640x480 JPEG through `Predictor.predict`: decode, resize, model, class map
back at the frame's size), interleaved in one run.

    python benchmarks/segmentation.py [--seeds 2] [--epochs 8] [--runs-dir /tmp/edgetl-seg-bench] [--skip-speed]

Trained runs are reused when present (training is the slow part; mIoU does not depend on machine load, the speed
ratios do: run the speed part on a quiet machine). Writes benchmarks/results/segmentation.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_common import REPO, ensure_run, latency, machine, md_table, write_json  # noqa: E402


def recipe(decoder: str, epochs: int, limit_train: int | None) -> dict:
    d = yaml.safe_load((REPO / "recipes" / "segment.yaml").read_text())
    d["tasks"][0]["decoder"] = decoder
    d["train"]["epochs"] = epochs
    if limit_train:
        d["data"]["split"]["limit_train"] = limit_train
    return d


def test_miou(run_dir: Path) -> dict:
    from edgetl.runs.evaluate import evaluate_run

    m = evaluate_run(run_dir, "pytorch", "test")["tasks"]["seg"]
    return {"miou": m["miou"], "pixel_accuracy": m["pixel_accuracy"], "per_class_iou": m.get("per_class_iou")}


def frame_latency(bundles: dict[str, tuple[Path, str]], frame: Path, rounds: int, threads: int) -> dict:
    """Interleaved rounds of Predictor.predict(frame) per (bundle, artifact): p50 ms each, paired ratio vs the first."""
    from edgetl.runtime import Predictor

    preds = {k: Predictor.load(b, artifact=a, intra_op_threads=threads) for k, (b, a) in bundles.items()}
    for p in preds.values():
        for _ in range(5):
            p.predict(str(frame))
    ms: dict[str, list[float]] = {k: [] for k in preds}
    for _ in range(rounds):
        for k, p in preds.items():
            t0 = time.perf_counter_ns()
            p.predict(str(frame))
            ms[k].append((time.perf_counter_ns() - t0) / 1e6)
    base = next(iter(preds))
    ratios = {k: statistics.median(a / b for a, b in zip(ms[base], ms[k])) for k in preds}
    return {"p50_ms": {k: statistics.median(v) for k, v in ms.items()}, "ratio_vs_" + base: ratios, "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--runs-dir", default="/tmp/edgetl-seg-bench")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    runs = Path(args.runs_dir)
    out: dict = {"machine": machine(), "epochs": args.epochs, "seeds": args.seeds, "heads": {}}
    for decoder in ("fpn", "lraspp"):
        per_seed = []
        for seed in range(args.seeds):
            run, secs = ensure_run(
                f"seg-{decoder}-s{seed}",
                [f"train.seed={seed}", "data.split.seed=0"],
                runs,
                base=recipe(decoder, args.epochs, args.limit_train),
            )
            per_seed.append({"seed": seed, "train_s": round(secs, 1), **test_miou(run.dir)})
        out["heads"][decoder] = {
            "runs": per_seed,
            "miou_mean": statistics.mean(r["miou"] for r in per_seed),
            "params": None,
        }
    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.runs.loaded import load_run

    for decoder in ("fpn", "lraspp"):
        loaded = load_run(runs / f"seg-{decoder}-s0", with_data=False)
        head = loaded.model.heads["seg"]
        out["heads"][decoder]["params"] = int(sum(p.numel() for p in head.parameters()))
    bundles = {}
    for decoder in ("fpn", "lraspp"):
        d = runs / f"seg-{decoder}-s0"
        if not (d / "export" / "manifest.json").is_file():
            export_run(d, ExportOptions(int8=True, target="cpu", progress=False))
        bundles[decoder] = d / "export"
    import json

    man = json.loads((bundles["fpn"] / "manifest.json").read_text())
    arts = man["artifacts"]
    out["int8"] = {
        "fp32_test_miou": arts["fp32"]["test_metrics"]["seg"]["miou"],
        "int8_test_miou": arts["int8-ort"]["test_metrics"]["seg"]["miou"],
        "gate": arts["int8-ort"]["quantization"]["gate"],
        "default_artifact": man["default_artifact"],
    }
    out["int8"]["drop_points"] = 100 * (out["int8"]["fp32_test_miou"] - out["int8"]["int8_test_miou"])
    if not args.skip_speed:
        import numpy as np

        from edgetl.bench.harness import camera_frame

        models = {
            "fpn-fp32": bundles["fpn"] / arts["fp32"]["file"],
            "fpn-int8": bundles["fpn"] / arts["int8-ort"]["file"],
            "lraspp-fp32": bundles["lraspp"] / "model.fp32.onnx",
        }
        x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
        out["model_only"] = latency(models, {"input": x}, threads=args.threads)
        from edgetl.data.scenes import load_fashion_scenes

        with camera_frame(load_fashion_scenes().images[-1]) as frame:
            out["end_to_end"] = frame_latency(
                {
                    "fpn-fp32": (bundles["fpn"], "fp32"),
                    "fpn-int8": (bundles["fpn"], "int8-ort"),
                    "lraspp-fp32": (bundles["lraspp"], "fp32"),
                },
                frame,
                rounds=200,
                threads=args.threads,
            )
    path = write_json("segmentation", out)
    rows = [
        [d, f"{100 * h['miou_mean']:.2f}", " / ".join(f"{100 * r['miou']:.2f}" for r in h["runs"]), h["params"]]
        for d, h in out["heads"].items()
    ]
    print(md_table(["head", "test mIoU (mean)", "per seed", "head params"], rows))
    i8 = out["int8"]
    print(
        f"INT8 (ORT CPU) test mIoU {100 * i8['int8_test_miou']:.2f} vs FP32 {100 * i8['fp32_test_miou']:.2f} "
        f"(drop {i8['drop_points']:.2f} points), default artifact {i8['default_artifact']}"
    )
    if "model_only" in out:
        mo, e2e = out["model_only"], out["end_to_end"]
        print(md_table(
            ["artifact", "model-only p50 ms", "x fpn-fp32", "frame p50 ms", "x fpn-fp32"],
            [
                [k, f"{mo['ms'][k]['p50']:.2f}", f"{mo['speedup_vs_fpn-fp32'][k]:.2f}",
                 f"{e2e['p50_ms'][k]:.2f}", f"{e2e['ratio_vs_fpn-fp32'][k]:.2f}"]
                for k in mo["ms"]
            ],
        ))  # fmt: skip
    print(f"machine: {out['machine']}; wrote {path}")


if __name__ == "__main__":
    main()
