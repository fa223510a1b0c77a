"""INT8 vs FP32 speed on this CPU as a function of input size, per backbone (speed only: no training).

    python benchmarks/int8_input_size.py [--models mobilenet_v2,efficientnet_lite0,resnet18,resnet50]
                                         [--sizes 64,96,128,224] [--budget-s 6]

Each backbone gets a 10-class head and is exported to ONNX at each input size (MobileNetV2 and
EfficientNet-Lite0 with their offline ImageNet weights; ResNet-18/50 randomly initialised with perturbed
BatchNorm statistics: latency does not depend on the values). INT8 is edgetl's ORT static Q/DQ
(`OrtStaticQuantizer`: U8 asymmetric activations, S8 per-channel weights, minmax), calibrated on 64 real
Fashion-MNIST training images resized to the input size. Batch 1, FP32 and INT8 interleaved in rounds,
intra_op_num_threads=2 (and 1); speedups are medians of per-round ratios, ratio of p10s beside them.
Also counts the Conv nodes ONNX Runtime fused into integer QLinearConv.
Writes benchmarks/results/int8_input_size.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from int8_common import latency, machine, md_table, write_json


def build(name: str):
    import torch

    from edgetl.models.registry import create_backbone
    from edgetl.recipe import BackboneSpec

    offline = name in ("mobilenet_v2", "efficientnet_lite0")
    bb = create_backbone(BackboneSpec(name=name, weights="offline" if offline else "none"))
    model = torch.nn.Sequential(bb, torch.nn.Linear(bb.feature_dim, 10)).eval()
    if not offline:
        g = torch.Generator().manual_seed(0)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
    return model


def calib_images(n: int = 64) -> np.ndarray:
    from edgetl.data.builtin import load_builtin

    raw = load_builtin("fashion-mnist")
    train = np.flatnonzero(raw.split == "train") if raw.split is not None else np.arange(len(raw))
    imgs = raw.images[train[np.linspace(0, len(train) - 1, n).astype(int)]].astype(np.float32)  # (n, 28, 28[, 1])
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    return imgs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0,resnet18,resnet50")
    ap.add_argument("--sizes", default="64,96,128,224")
    ap.add_argument("--budget-s", type=float, default=6.0)
    args = ap.parse_args()
    import onnx
    import torch
    import torch.nn.functional as F

    from edgetl.quantize.ort_int8 import OrtStaticQuantizer, ort_fused_ops

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    raw = torch.from_numpy(calib_images()).permute(0, 3, 1, 2).repeat(1, 3, 1, 1) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="edgetl-int8size-"))
    for name in args.models.split(","):
        model = build(name)
        for px in (int(s) for s in args.sizes.split(",")):
            x = (F.interpolate(raw, size=(px, px), mode="bilinear", align_corners=False) - mean) / std
            fp32, int8 = tmp / f"{name}_{px}.onnx", tmp / f"{name}_{px}.int8.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (x[:2],),
                    str(fp32),
                    dynamo=False,
                    opset_version=17,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}},
                )
            feeds = [{"input": x[i : i + 16].numpy()} for i in range(0, len(x), 16)]
            OrtStaticQuantizer(fp32, feeds).quantize(int8)
            ops = ort_fused_ops(int8)
            n_conv = sum(n.op_type == "Conv" for n in onnx.load(str(fp32)).graph.node)
            one = {"input": x[:1].numpy()}
            lat2 = latency({"fp32": fp32, "int8": int8}, one, threads=2, budget_s=args.budget_s)
            lat1 = latency({"fp32": fp32, "int8": int8}, one, threads=1, budget_s=args.budget_s / 2)
            row = {
                "model": name,
                "px": px,
                "convs": n_conv,
                "qlinearconv": ops.get("QLinearConv", 0),
                "fp32_ms_p50": lat2["ms"]["fp32"]["p50"],
                "int8_ms_p50": lat2["ms"]["int8"]["p50"],
                "speedup_2thr": lat2["speedup_vs_fp32"]["int8"],
                "p10_speedup_2thr": lat2["p10_speedup_vs_fp32"]["int8"],
                "speedup_1thr": lat1["speedup_vs_fp32"]["int8"],
                "p10_speedup_1thr": lat1["p10_speedup_vs_fp32"]["int8"],
                "fp32_ms_p10": lat2["ms"]["fp32"]["p10"],
                "int8_ms_p10": lat2["ms"]["int8"]["p10"],
            }
            rows.append(row)
            print(
                f"{name} {px}px: {row['qlinearconv']}/{n_conv} convs fused; x{row['speedup_2thr']:.2f} (2 thr, "
                f"p10 x{row['p10_speedup_2thr']:.2f}), x{row['speedup_1thr']:.2f} (1 thr)",
                flush=True,
            )
            for p in (fp32, int8):
                p.unlink()
    md = md_table(
        [
            "model",
            "px",
            "QLinearConv / Conv",
            "FP32 p10 ms",
            "INT8 p10 ms",
            "INT8 x (2 thr, paired p50)",
            "INT8 x (2 thr, p10)",
            "INT8 x (1 thr, paired p50)",
            "INT8 x (1 thr, p10)",
        ],
        [
            [
                r["model"],
                r["px"],
                f"{r['qlinearconv']}/{r['convs']}",
                f"{r['fp32_ms_p10']:.2f}",
                f"{r['int8_ms_p10']:.2f}",
                f"{r['speedup_2thr']:.2f}",
                f"{r['p10_speedup_2thr']:.2f}",
                f"{r['speedup_1thr']:.2f}",
                f"{r['p10_speedup_1thr']:.2f}",
            ]
            for r in rows
        ],
    )
    print(md)
    out = write_json(
        "int8_input_size",
        {"machine": machine(), "seconds": round(time.perf_counter() - t0, 1), "rows": rows, "table_md": md},
    )
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
