"""Issue 12 acceptance: does augmentation help, and does the eval resize matter, on the quickstart data?

    python benchmarks/augment_eval.py [--seeds 0 1] [--epochs 3] [--limit-train N]

recipes/quickstart.yaml (MobileNetV2, offline ImageNet weights, Fashion-MNIST 4,000 train images at 64 px),
same budget (epochs, batch, LR schedule) for every arm, each arm with two seeds (train.seed: the split is the
same, the initial head, the order and the augmentation draws differ):

- augment: none  vs  [random_resized_crop (scale 0.35-1), hflip]   (input.resize: squash, as before)
- input.resize: squash (the square bilinear resize of before)  vs  shorter_crop (crop_pct 0.875)

Reports test accuracy (the held-out split, PyTorch model) per arm: mean, the two seeds, and their spread, and
writes benchmarks/results/augment_eval.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARMS = {
    "augment_none": ["data.augment=none", "input.resize=squash"],
    "augment_rrc_hflip": ["data.augment=[{random_resized_crop: {scale: [0.35, 1.0]}}, hflip]", "input.resize=squash"],
    "resize_shorter_crop": ["data.augment=none", "input.resize=shorter_crop", "input.crop_pct=0.875"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit-train", type=int, default=None, help="fewer training images (same for every arm)")
    args = ap.parse_args()
    extra = [f"data.split.limit_train={args.limit_train}"] if args.limit_train else []

    from edgetl.recipe import load_recipe
    from edgetl.runs.evaluate import evaluate_run
    from edgetl.train.loop import train

    runs = Path(tempfile.mkdtemp(prefix="edgetl-augeval-"))
    out: dict = {
        "recipe": "recipes/quickstart.yaml",
        "epochs": args.epochs,
        "limit_train": args.limit_train,
        "arms": {},
    }
    for arm, over in ARMS.items():
        accs = []
        for seed in args.seeds:
            recipe = load_recipe(
                REPO / "recipes/quickstart.yaml", [*over, *extra, f"train.seed={seed}", f"train.epochs={args.epochs}"]
            )
            run = train(recipe, name=f"{arm}-s{seed}", runs_dir=runs, progress=False)
            res = evaluate_run(run.dir, "pytorch", "test")
            acc = next(iter(res["tasks"].values()))["accuracy"]
            accs.append(acc)
            print(f"  {arm} seed {seed}: test accuracy {acc:.4f}", flush=True)
        out["arms"][arm] = {"overrides": over, "test_accuracy": accs, "mean": float(np.mean(accs)),
                            "spread": float(np.max(accs) - np.min(accs))}  # fmt: skip
    print(f"\n{'arm':<22}{'mean':>8}{'seeds':>20}{'spread':>9}")
    for arm, r in out["arms"].items():
        print(f"{arm:<22}{r['mean']:>8.4f}{' / '.join(f'{a:.4f}' for a in r['test_accuracy']):>20}{r['spread']:>9.4f}")
    dest = REPO / "benchmarks/results/augment_eval.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
