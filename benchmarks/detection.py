"""Object detection on the offline fashion-detect demo: edgetl's FCOS head vs torchvision's own FCOS
(`torchvision.models.detection.FCOS`) on the same backbone (MobileNetV2 with the same offline ImageNet weights, the
same stages at strides 8/16/32 through an FPN), the same rows, input size (96 px), augmentation (hflip),
optimizer (AdamW, lr, weight decay, cosine), batch size and epochs; both scored by the same COCO evaluator
(`edgetl.runtime.tasks.detection.coco_metrics`, pycocotools) on the test split, with the same NMS settings
(score > 0.05, IoU 0.6, 100 per image). Then INT8 (ONNX Runtime CPU, through the gate on mAP) vs FP32, the
exported ONNX vs PyTorch (same detections, mAP to 3 decimals), and speed at batch 1, model-only and end to end
(a 640x480 JPEG: decode, resize, normalise, model, decoding + NMS, boxes back in frame pixels).

    python benchmarks/detection.py [--epochs 8] [--runs-dir /tmp/edgetl-det-bench] [--skip-speed]

The edgetl run is reused when present with the same recipe; the peer is retrained (its loop is here). Speed
ratios depend on machine load: run the speed part on a quiet machine. Writes benchmarks/results/detection.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_common import REPO, ensure_run, latency, machine, md_table, write_json  # noqa: E402


def recipe(epochs: int, limit_train: int | None) -> dict:
    d = yaml.safe_load((REPO / "recipes" / "detect.yaml").read_text())
    d["train"]["epochs"] = epochs
    if limit_train:
        d["data"]["split"]["limit_train"] = limit_train
    return d


class PeerBackbone:
    """torchvision FCOS's backbone contract (`out_channels`, an OrderedDict of maps) over edgetl's own MobileNetV2
    module and the same FPN edgetl's head uses (P3-P5)."""

    @staticmethod
    def build(recipe_dict: dict):
        import torch
        from torchvision.ops import FeaturePyramidNetwork

        from edgetl.models.registry import create_backbone
        from edgetl.recipe import recipe_from_dict
        from edgetl.tasks.segmentation import pick_stages

        rec = recipe_from_dict(recipe_dict, "peer")
        body = create_backbone(rec.backbone)
        levels = pick_stages(body.stage_info, (8, 16, 32))

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = body
                self.fpn = FeaturePyramidNetwork([body.stage_info[i].channels for i in levels], 64)
                self.out_channels = 64

            def forward(self, x):
                maps = self.body.forward_maps(x)
                return self.fpn(OrderedDict((str(i), maps[i]) for i in levels))

        return Net(), rec


def train_peer(recipe_dict: dict, run_dir: Path, epochs: int, lr: float | None = None, say=print):
    """torchvision FCOS trained on the edgetl run's own train rows with the recipe's optimizer and budget
    (`lr`: another learning rate for the peer, to check it is not the recipe's rate that holds it back)."""
    import torch
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    from edgetl.runs.loaded import load_run

    loaded = load_run(run_dir)
    torch.manual_seed(0)
    backbone, rec = PeerBackbone.build(recipe_dict)
    labels = loaded.splits.labels["det"]
    size = rec.input.image_size
    mean, std = [float(v) for v in loaded.prep.mean], [float(v) for v in loaded.prep.std]
    model = FCOS(
        backbone,
        num_classes=len(labels) + 1,  # torchvision counts class 0 (unused by FCOS's sigmoid head)
        min_size=size,
        max_size=size,
        image_mean=mean,
        image_std=std,
        anchor_generator=AnchorGenerator(((8,), (16,), (32,)), ((1.0,),) * 3),
        score_thresh=0.05,
        nms_thresh=0.6,
        detections_per_img=100,
    )
    lr = lr or rec.train.lr
    saved = run_dir.parent / f"peer-fcos-e{epochs}-lr{lr:g}.safetensors"
    if saved.is_file():  # trained before on these rows with this budget: reuse (safetensors, no pickle)
        from safetensors.torch import load_model

        load_model(model, str(saved))
        return model.eval(), float("nan"), loaded
    tr = loaded.splits.train
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=rec.train.weight_decay)
    bs = rec.train.batch_size
    steps = epochs * math.ceil(len(tr) / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(tr))
        losses = []
        for s in range(0, len(order), bs):
            idx = order[s : s + bs]
            ims = torch.from_numpy(np.ascontiguousarray(tr.inputs(idx))).permute(0, 3, 1, 2).float() / 255
            flip = rng.random(len(idx)) < 0.5
            targets = []
            for j, i in enumerate(idx):
                t = tr.targets["det"][i]
                t = t[t[:, 0] >= 0]
                boxes = torch.from_numpy(t[:, 1:5].copy())
                if flip[j]:
                    ims[j] = ims[j].flip(-1)
                    boxes = torch.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], 1)
                targets.append({"boxes": boxes, "labels": torch.from_numpy(t[:, 0].astype(np.int64) + 1)})
            loss = sum(model(list(ims), targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        say(f"peer epoch {epoch + 1}/{epochs}: loss {statistics.mean(losses):.4f}")
    from safetensors.torch import save_model

    save_model(model, str(saved))
    return model.eval(), time.perf_counter() - t0, loaded


def peer_packed(model, images: np.ndarray) -> np.ndarray:
    """torchvision FCOS detections -> edgetl's packed [N, 100, 6] (x1, y1, x2, y2, score, class)."""
    import torch

    out = np.zeros((len(images), 100, 6), np.float32)
    out[..., 5] = -1
    with torch.no_grad():
        for s in range(0, len(images), 64):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + 64])).permute(0, 3, 1, 2).float() / 255
            for j, d in enumerate(model(list(x))):
                n = len(d["boxes"])
                out[s + j, :n, :4] = d["boxes"].numpy()
                out[s + j, :n, 4] = d["scores"].numpy()
                out[s + j, :n, 5] = d["labels"].numpy() - 1
    return out


def torch_frame_ms(fn, frame: Path, rounds: int) -> float:
    for _ in range(3):
        fn(frame)
    ms = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        fn(frame)
        ms.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(ms)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--runs-dir", default="/tmp/edgetl-det-bench")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-lr", type=float, action="append", default=None,
                    help="also train the peer at this learning rate (repeatable); the recipe's rate always runs")  # fmt: skip
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.evaluate.torch_eval import predict_torch
    from edgetl.runtime.tasks.detection import coco_metrics

    runs = Path(args.runs_dir)
    base = recipe(args.epochs, args.limit_train)
    run, secs = ensure_run("det-fcos", ["train.seed=0"], runs, base=base)
    out: dict = {"machine": machine(), "epochs": args.epochs, "heads": {}}
    peer, peer_s, loaded = train_peer(base, run.dir, args.epochs)
    test = loaded.splits.test
    labels = loaded.splits.labels["det"]
    truth = test.targets["det"]
    images = test.inputs(np.arange(len(test)))
    ours = predict_torch(loaded.model, loaded.prep, test)["det"]
    out["heads"]["edgetl-fcos"] = {"train_s": round(secs, 1), **coco_metrics(ours, truth, labels, full=True)}
    out["heads"]["edgetl-fcos"]["head_params"] = int(sum(p.numel() for p in loaded.model.heads["det"].parameters()))
    peers = {f"torchvision-fcos (lr {base['train']['lr']:g})": (peer, peer_s)}
    for lr in args.peer_lr or []:
        m, s, _ = train_peer(base, run.dir, args.epochs, lr=lr)
        peers[f"torchvision-fcos (lr {lr:g})"] = (m, s)
    for name, (m, s) in peers.items():
        out["heads"][name] = {"train_s": round(s, 1), **coco_metrics(peer_packed(m, images), truth, labels, full=True)}
        out["heads"][name]["head_params"] = int(sum(p.numel() for p in m.head.parameters()))
    peer = next(iter(peers.values()))[0]  # the timing peer (architecture and size are the same at every lr)
    bundle = run.dir / "export"
    if not (bundle / "manifest.json").is_file():
        export_run(run.dir, ExportOptions(int8=True, target="cpu", progress=False))
    man = json.loads((bundle / "manifest.json").read_text())
    arts = man["artifacts"]
    out["export_verification"] = man.get("verification") or arts["fp32"].get("verification")
    from edgetl.evaluate.onnx_eval import evaluate_onnx

    onnx_test = evaluate_onnx(bundle / arts["fp32"]["file"], loaded, "test")["det"]
    out["onnx_vs_torch"] = {"torch_map": out["heads"]["edgetl-fcos"]["map"], "onnx_map": onnx_test["map"],
                            "equal_to_3_decimals": round(onnx_test["map"], 3) == round(out["heads"]["edgetl-fcos"]["map"], 3)}  # fmt: skip
    out["int8"] = {
        "fp32_test_map": arts["fp32"]["test_metrics"]["det"]["map"],
        "int8_test_map": arts["int8-ort"]["test_metrics"]["det"]["map"],
        "gate": {k: v for k, v in arts["int8-ort"]["quantization"]["gate"].items() if k != "tries"},
        "default_artifact": man["default_artifact"],
    }
    out["int8"]["drop_points"] = 100 * (out["int8"]["fp32_test_map"] - out["int8"]["int8_test_map"])
    if not args.skip_speed:
        from edgetl.bench.harness import camera_frame
        from edgetl.runtime import Predictor

        x = np.random.default_rng(0).normal(size=(1, 3, 96, 96)).astype(np.float32)
        out["model_only_ort"] = latency(
            {"fp32": bundle / arts["fp32"]["file"], "int8": bundle / arts["int8-ort"]["file"]}, {"input": x},
            threads=args.threads,
        )  # fmt: skip
        preds = {a: Predictor.load(bundle, artifact=a, intra_op_threads=args.threads) for a in ("fp32", "int8-ort")}
        xt = torch.from_numpy(x)
        with torch.no_grad():
            ours_eager = lambda: loaded.model.eval_outputs(loaded.model(xt))  # noqa: E731
            peer_eager = lambda: peer([xt[0] * 0.5 + 0.5])  # noqa: E731
            out["model_only_pytorch_ms"] = {
                "edgetl-fcos": torch_frame_ms(lambda _f: ours_eager(), Path("."), 100),
                "torchvision-fcos": torch_frame_ms(lambda _f: peer_eager(), Path("."), 100),
            }
            from PIL import Image

            def peer_frame(f):
                im = np.asarray(Image.open(f).convert("RGB").resize((96, 96), Image.BILINEAR))
                d = peer([torch.from_numpy(im).permute(2, 0, 1).float() / 255])[0]
                return d["boxes"] * torch.tensor([640 / 96, 480 / 96, 640 / 96, 480 / 96])

            with camera_frame(images[-1]) as frame:
                out["end_to_end_ms"] = {
                    "edgetl-fcos int8-ort (runtime)": torch_frame_ms(lambda f: preds["int8-ort"].predict(str(f)), frame, 200),
                    "edgetl-fcos fp32 (runtime)": torch_frame_ms(lambda f: preds["fp32"].predict(str(f)), frame, 200),
                    "torchvision-fcos (PyTorch)": torch_frame_ms(peer_frame, frame, 100),
                }  # fmt: skip
    path = write_json("detection", out)
    rows = [[k, f"{100 * h['map']:.2f}", f"{100 * h['map50']:.2f}", f"{100 * h['recall']:.2f}", h["head_params"],
             h["train_s"]] for k, h in out["heads"].items()]  # fmt: skip
    print(md_table(["head", "test mAP@[.5:.95]", "mAP@.5", "AR@100", "head params", "train s"], rows))
    i8 = out["int8"]
    print(
        f"INT8 (ORT CPU) test mAP {100 * i8['int8_test_map']:.2f} vs FP32 {100 * i8['fp32_test_map']:.2f} "
        f"(drop {i8['drop_points']:.2f} points), default artifact {i8['default_artifact']}"
    )
    ov = out["onnx_vs_torch"]
    print(f"ONNX FP32 test mAP {100 * ov['onnx_map']:.3f} vs PyTorch {100 * ov['torch_map']:.3f}")
    if "model_only_ort" in out:
        mo = out["model_only_ort"]
        print(md_table(["ORT artifact", "model-only p50 ms", "x fp32"],
                       [[k, f"{mo['ms'][k]['p50']:.2f}", f"{mo['speedup_vs_fp32'][k]:.2f}"] for k in mo["ms"]]))  # fmt: skip
        print(md_table(["PyTorch eager, model + decoding + NMS", "p50 ms"],
                       [[k, f"{v:.2f}"] for k, v in out["model_only_pytorch_ms"].items()]))  # fmt: skip
        print(md_table(["640x480 JPEG end to end", "p50 ms"], [[k, f"{v:.2f}"] for k, v in out["end_to_end_ms"].items()]))  # fmt: skip
    print(f"machine: {out['machine']}; wrote {path}")


if __name__ == "__main__":
    main()
