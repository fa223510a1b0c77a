"""Issue 12 acceptance: `edgetl train` on CUDA vs a hand-written PyTorch loop, training images per second.

    python benchmarks/gpu_train_throughput.py [--images 10000] [--epochs 2]
    python benchmarks/gpu_train_throughput.py --smoke    # CPU, tiny: checks the script itself (a test runs it)

Needs one NVIDIA GPU and torch/torchvision; downloads nothing. Two configurations: ResNet-50 at 224 px, batch
128, and MobileNetV2 at 64 px, batch 32, on 10,000 Fashion-MNIST training images (28x28 grey, uint8). Both sides
train the same torchvision architecture from random init (`weights=None`: no weights to fetch), AdamW, AMP
autocast (fp16 + GradScaler), and time the last epoch after a warm-up epoch:

- edgetl: `train()` with train.device=cuda (uint8 batches moved to the GPU, resized and normalised there),
  with train.deterministic true (the default) and false;
- hand-written: the whole uint8 dataset already on the GPU; per batch: index, float, repeat to 3 channels,
  bilinear resize, normalise, forward/backward/step.

Fashion-MNIST comes from the Debian package or $EDGETL_FASHION_MNIST_DIR; when neither exists, random 28x28
IDX files are written to a temporary folder (throughput does not depend on the pixels). Prints img/s and the
ratio per configuration (target >= 0.85), writes benchmarks/results/gpu_train_throughput.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONFIGS = [("resnet50", 224, 128), ("mobilenet_v2", 64, 32)]


def ensure_fashion_mnist(n: int) -> str:
    """The dataset's folder; random IDX files of the same shapes when it is not installed."""
    from edgetl.data.builtin import FASHION_DIRS

    env = os.environ.get("EDGETL_FASHION_MNIST_DIR")
    for d in ([Path(env)] if env else []) + list(FASHION_DIRS):
        if (d / "train-images-idx3-ubyte.gz").is_file():
            return "real"
    d = Path(tempfile.mkdtemp(prefix="fmnist-synthetic-"))
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n + 2000), ("t10k", 2000)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        header = (2051).to_bytes(4, "big") + count.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (d / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
        lab_header = (2049).to_bytes(4, "big") + count.to_bytes(4, "big")
        (d / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab_header + labels.tobytes()))
    os.environ["EDGETL_FASHION_MNIST_DIR"] = str(d)
    return f"synthetic ({d})"


def run_edgetl(
    arch: str, size: int, batch: int, n: int, epochs: int, deterministic: bool, runs: Path, device: str = "cuda"
) -> float:
    from edgetl.recipe import recipe_from_dict
    from edgetl.train.loop import train

    recipe = recipe_from_dict(
        {
            "name": f"gpu-{arch}",
            "backbone": {"name": arch, "weights": "none"},
            "input": {"kind": "image", "image_size": size},
            "tasks": [{"name": "category", "kind": "classification", "column": "label"}],
            "data": {
                "source": "fashion-mnist",
                "split": {"val_fraction": 0.1, "limit_train": n, "limit_val": 500, "limit_test": 500},
            },
            "train": {
                "epochs": epochs,
                "batch_size": batch,
                "device": device,
                "amp": device == "cuda",
                "deterministic": deterministic,
                "schedule": "constant",
                "feature_cache": "off",
            },
        }
    )
    run = train(recipe, name=f"{arch}-{'det' if deterministic else 'fast'}", runs_dir=runs, progress=False)
    return n / run.metrics()[-1]["epoch_seconds"]


def run_handwritten(arch: str, size: int, batch: int, n: int, epochs: int, device: str = "cuda") -> float:
    import torch
    import torch.nn.functional as F
    import torchvision

    from edgetl.data.builtin import FASHION_CLASSES, load_fashion_mnist

    raw = load_fashion_mnist()
    rows = np.flatnonzero(raw.split == "train")[:n]
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    x_all = torch.from_numpy(raw.images[rows]).to(dev).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 1, 28, 28]
    names = {c: i for i, c in enumerate(FASHION_CLASSES)}
    y_all = torch.as_tensor([names[raw.columns["label"][i]] for i in rows], dtype=torch.int64, device=dev)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=10).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)
    model.train()
    seconds = 0.0
    for epoch in range(epochs):
        perm = torch.randperm(n, device=dev, generator=torch.Generator(device=dev).manual_seed(epoch))
        sync()
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            idx = perm[s : s + batch]
            xb = x_all[idx].float().expand(-1, 3, -1, -1)
            xb = F.interpolate(xb, size=(size, size), mode="bilinear", align_corners=False)
            xb = (xb / 255.0 - mean) / std
            with torch.autocast(dev.type, enabled=cuda):
                loss = F.cross_entropy(model(xb).float(), y_all[idx])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        sync()
        seconds = time.perf_counter() - t0
    return n / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=2, help="the last one is timed (the first warms up)")
    ap.add_argument(
        "--smoke", action="store_true", help="CPU, 48 images at 32 px, batch 8: the script runs (no figure)"
    )
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        raise SystemExit("gpu_train_throughput: torch is not installed") from None
    device, configs = "cuda", CONFIGS
    if args.smoke:
        device, configs, args.images, args.epochs = "cpu", [(a, 32, 8) for a, _, _ in CONFIGS], 48, 1
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_train_throughput: no CUDA device (this benchmark needs one NVIDIA GPU)")
    data = ensure_fashion_mnist(args.images)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke run: not a measurement)"
    out = {"device": name, "torch": torch.__version__, "data": data, "rows": []}
    runs = Path(tempfile.mkdtemp(prefix="edgetl-gpu-runs-"))
    print(f"{out['device']}, torch {out['torch']}, data: {data}")
    print(f"{'model':<14}{'px':>5}{'batch':>7}{'hand img/s':>12}{'edgetl img/s':>14}{'ratio':>7}{'(det=false)':>13}")
    for arch, size, batch in configs:
        hand = run_handwritten(arch, size, batch, args.images, args.epochs, device)
        det = run_edgetl(arch, size, batch, args.images, args.epochs, True, runs, device)
        fast = run_edgetl(arch, size, batch, args.images, args.epochs, False, runs, device)
        row = {"model": arch, "image_size": size, "batch": batch, "handwritten_img_s": hand,
               "edgetl_img_s": det, "edgetl_nondeterministic_img_s": fast,
               "ratio": det / hand, "ratio_nondeterministic": fast / hand}  # fmt: skip
        out["rows"].append(row)
        print(f"{arch:<14}{size:>5}{batch:>7}{hand:>12.0f}{det:>14.0f}{det / hand:>7.2f}{fast / hand:>13.2f}")
    if args.smoke:
        print("smoke run: the script works; the figures above are not a measurement")
        return
    dest = REPO / "benchmarks/results/gpu_train_throughput.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"target: ratio >= 0.85 on both; wrote {dest}")


if __name__ == "__main__":
    main()
