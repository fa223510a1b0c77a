"""Feature cache: epoch time of a linear probe with the frozen backbone's features cached vs recomputed.

    python benchmarks/feature_cache.py [--train 2000] [--epochs 3] [--image-size 64] [--runs-dir /tmp/edgetl-fc]

MobileNetV2 (offline ImageNet weights) linear probe on a Fashion-MNIST subset, trained twice in this one
process with the same recipe: `train.feature_cache=memory` and `train.feature_cache=off`. The figure compared
is the median training-epoch time (the loop over batches, from metrics.jsonl); the one-off cache build and the
whole-run wall time (validation included) are printed too, so the amortised gain is visible. Both runs must
reach the same validation accuracy: the cache changes speed, not results.
Writes benchmarks/results/feature_cache.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def recipe(args, cache: str):
    from edgetl.recipe import recipe_from_dict

    return recipe_from_dict({
        "name": f"fc-{cache}",
        "backbone": {"name": "mobilenet_v2", "weights": "offline"},
        "input": {"kind": "image", "image_size": args.image_size},
        "tasks": [{"name": "category", "column": "label"}],
        "data": {"source": "fashion-mnist", "split": {"limit_train": args.train, "limit_val": args.val,
                                                       "limit_test": args.val}},
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": 0.003, "seed": 0, "schedule": "constant",
                  "freeze": {"policy": "linear_probe"}, "feature_cache": cache},
    }, "feature_cache.py")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--runs-dir", default="/tmp/edgetl-fc")
    args = ap.parse_args()

    import torch

    from edgetl.train.loop import train

    torch.set_num_threads(2)
    results = {}
    for cache in ("memory", "off"):
        t0 = time.perf_counter()
        run = train(recipe(args, cache), runs_dir=Path(args.runs_dir), progress=False)
        wall = time.perf_counter() - t0
        rows = run.metrics()
        info = run.info()
        results[cache] = {
            "run": str(run.dir),
            "epoch_seconds": [r["epoch_seconds"] for r in rows],
            "median_epoch_s": statistics.median(r["epoch_seconds"] for r in rows),
            "cached": [r["cached"] for r in rows],
            "cache_build_s": info.get("cache_build_seconds", 0.0),
            "train_wall_s": wall,
            "val_accuracy": [r["val"]["category"]["accuracy"] for r in rows],
        }
        print(f"{cache:>6}: epochs {[f'{s:.2f}' for s in results[cache]['epoch_seconds']]} s, "
              f"cache build {results[cache]['cache_build_s']:.1f} s, run wall {wall:.1f} s, "
              f"val acc {results[cache]['val_accuracy']}", flush=True)

    on, off = results["memory"], results["off"]
    speedup = off["median_epoch_s"] / on["median_epoch_s"]
    amortised = off["train_wall_s"] / on["train_wall_s"]
    same = max(abs(a - b) for a, b in zip(on["val_accuracy"], off["val_accuracy"]))
    summary = {
        "setup": {"backbone": "mobilenet_v2 (offline ImageNet)", "policy": "linear_probe", "dataset": "fashion-mnist",
                  "train": args.train, "val": args.val, "image_size": args.image_size, "epochs": args.epochs,
                  "batch_size": 64, "threads": torch.get_num_threads()},
        "runs": results,
        "epoch_speedup": speedup,
        "whole_run_speedup": amortised,
        "max_val_accuracy_difference": same,
        "goal": ">= 10x per epoch",
        "met": speedup >= 10,
    }
    out = REPO / "benchmarks" / "results" / "feature_cache.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print("| | median train epoch (s) | cache build (s) | whole run incl. val (s) | final val acc |")
    print("|---|---|---|---|---|")
    print(f"| cache on (memory) | {on['median_epoch_s']:.3f} | {on['cache_build_s']:.1f} | {on['train_wall_s']:.1f} | "
          f"{on['val_accuracy'][-1]:.4f} |")
    print(f"| cache off (recompute) | {off['median_epoch_s']:.3f} | - | {off['train_wall_s']:.1f} | "
          f"{off['val_accuracy'][-1]:.4f} |")
    print(f"\nper-epoch speedup {speedup:.0f}x (goal >= 10x: {'met' if speedup >= 10 else 'MISSED'}); "
          f"whole {args.epochs}-epoch run {amortised:.1f}x; max val-accuracy difference {same:.4f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
