"""Feature cache: epoch time of a linear probe with the frozen backbone's features cached vs recomputed.

    python benchmarks/feature_cache.py [--train 2000] [--epochs 3] [--image-size 64] [--runs-dir /tmp/edgetl-fc]

MobileNetV2 (offline ImageNet weights) linear probe on a Fashion-MNIST subset, trained twice in this one
process with the same recipe: `train.feature_cache=memory` and `train.feature_cache=off`. The figure compared
is the median training-epoch time (the loop over batches, from metrics.jsonl); the one-off cache build and the
whole-run wall time (validation included) are printed too, so the amortised gain is visible. The on/off pair
runs --repeats times alternately (on, off, on, off) so a change in machine load hits both. Both must reach
the same validation accuracy: the cache changes speed, not results.
Writes benchmarks/results/feature_cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def recipe(args, cache: str):
    from edgetl.recipe import recipe_from_dict

    return recipe_from_dict(
        {
            "name": f"fc-{cache}",
            "backbone": {"name": "mobilenet_v2", "weights": "offline"},
            "input": {"kind": "image", "image_size": args.image_size},
            "tasks": [{"name": "category", "column": "label"}],
            "data": {
                "source": "fashion-mnist",
                "split": {"limit_train": args.train, "limit_val": args.val, "limit_test": args.val},
            },
            "train": {
                "epochs": args.epochs,
                "batch_size": 64,
                "lr": 0.003,
                "seed": 0,
                "schedule": "constant",
                "freeze": {"policy": "linear_probe"},
                "feature_cache": cache,
            },
        },
        "feature_cache.py",
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--runs-dir", default="/tmp/edgetl-fc")
    ap.add_argument(
        "--repeats", type=int, default=2, help="on/off pairs, run alternately (A B A B): load drift hits both"
    )
    args = ap.parse_args()

    import torch

    from edgetl.train.loop import train

    torch.set_num_threads(2)
    results: dict[str, dict] = {}
    for rep in range(args.repeats):
        for cache in ("memory", "off"):
            t0 = time.perf_counter()
            run = train(recipe(args, cache), runs_dir=Path(args.runs_dir), progress=False)
            wall = time.perf_counter() - t0
            rows = run.metrics()
            info = run.info()
            r = results.setdefault(cache, {"runs": [], "epoch_seconds": [], "cache_build_s": [], "train_wall_s": []})
            r["runs"].append(str(run.dir))
            r["epoch_seconds"] += [x["epoch_seconds"] for x in rows]
            r["cache_build_s"].append(info.get("cache_build_seconds", 0.0))
            r["train_wall_s"].append(wall)
            r["cached"] = [x["cached"] for x in rows]
            r["val_accuracy"] = [x["val"]["category"]["accuracy"] for x in rows]
            print(
                f"[{rep + 1}/{args.repeats}] {cache:>6}: epochs {[f'{x:.2f}' for x in r['epoch_seconds'][-len(rows) :]]} s, "
                f"cache build {r['cache_build_s'][-1]:.1f} s, run wall {wall:.1f} s, val acc {r['val_accuracy']}",
                flush=True,
            )
    for r in results.values():
        r["median_epoch_s"] = statistics.median(r["epoch_seconds"])
        r["median_cache_build_s"] = statistics.median(r["cache_build_s"])
        r["median_train_wall_s"] = statistics.median(r["train_wall_s"])

    on, off = results["memory"], results["off"]
    speedup = off["median_epoch_s"] / on["median_epoch_s"]
    amortised = off["median_train_wall_s"] / on["median_train_wall_s"]
    same = max(abs(a - b) for a, b in zip(on["val_accuracy"], off["val_accuracy"]))
    summary = {
        "setup": {
            "backbone": "mobilenet_v2 (offline ImageNet)",
            "policy": "linear_probe",
            "dataset": "fashion-mnist",
            "train": args.train,
            "val": args.val,
            "image_size": args.image_size,
            "epochs": args.epochs,
            "batch_size": 64,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "load_average_at_end": list(os.getloadavg()),
        },
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
    print(
        f"| cache on (memory) | {on['median_epoch_s']:.3f} | {on['median_cache_build_s']:.1f} | "
        f"{on['median_train_wall_s']:.1f} | {on['val_accuracy'][-1]:.4f} |"
    )
    print(
        f"| cache off (recompute) | {off['median_epoch_s']:.3f} | - | {off['median_train_wall_s']:.1f} | "
        f"{off['val_accuracy'][-1]:.4f} |"
    )
    print(
        f"\nper-epoch speedup {speedup:.0f}x (goal >= 10x: {'met' if speedup >= 10 else 'MISSED'}); "
        f"whole {args.epochs}-epoch run {amortised:.1f}x; max val-accuracy difference {same:.4f}"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
