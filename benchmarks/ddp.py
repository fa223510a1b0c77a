"""DDP vs single process on the quickstart model: the same recipe, the same global batch, side by side.

    python benchmarks/ddp.py [--train 2000] [--val 500] [--epochs 2] [--runs-dir /tmp/edgetl-ddp]

For two policies of recipes/quickstart.yaml (MobileNetV2, offline ImageNet weights, Fashion-MNIST at 64 px):
  linear probe   (`train.freeze.policy=linear_probe`: the frozen backbone's features are cached once, shared
                  by both ranks; only the head trains)
  full fine-tune (`train.freeze.policy=none`: every layer trains; BatchNorm statistics are per rank)
each recipe runs twice: `edgetl train` in one process (2 threads) and
`torchrun --nproc_per_node=2 -m edgetl train` (Gloo, 1 thread per rank), with the same global batch
(train.batch_size is global: each rank takes half). Reports validation accuracy / loss per epoch, the test
accuracy of the best checkpoint, and wall time. On 2 cores DDP cannot be faster than one 2-thread process;
the point is that it trains to the same place. Writes benchmarks/results/ddp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POLICIES = {"linear-probe": "linear_probe", "fine-tune": "none"}


def _train(cmd_prefix: list[str], overrides: list[str], runs_dir: Path, threads: int) -> tuple[float, Path]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    cmd = [
        *cmd_prefix,
        "-m",
        "edgetl",
        "train",
        str(REPO / "recipes/quickstart.yaml"),
        *overrides,
        "--runs-dir",
        str(runs_dir),
        "--name",
        "qs",
        "-q",
        "--logger",
        "none",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, runs_dir / "qs"


def _summary(run_dir: Path, wall: float) -> dict:
    from edgetl.runs.evaluate import evaluate_run

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    info = json.loads((run_dir / "run.json").read_text())
    test = evaluate_run(run_dir, split="test")
    return {
        "wall_s": wall,
        "world_size": info.get("world_size", 1),
        "val_accuracy": [r["val"]["category"]["accuracy"] for r in rows],
        "val_loss": [r.get("val_loss") for r in rows],
        "train_loss": [r["train_loss"] for r in rows],
        "test_accuracy": test["tasks"]["category"]["accuracy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--runs-dir", default="/tmp/edgetl-ddp")
    args = ap.parse_args()

    base = Path(args.runs_dir)
    shutil.rmtree(base, ignore_errors=True)
    common = [
        f"data.split.limit_train={args.train}",
        f"data.split.limit_val={args.val}",
        f"data.split.limit_test={args.test}",
        f"train.epochs={args.epochs}",
    ]
    out: dict = {
        "setup": {
            "recipe": "recipes/quickstart.yaml",
            "train": args.train,
            "val": args.val,
            "test": args.test,
            "epochs": args.epochs,
            "global_batch": 32,
            "single": "1 process x 2 threads",
            "ddp": "torchrun 2 ranks x 1 thread, Gloo",
        },
        "results": {},
    }
    for label, policy in POLICIES.items():
        ov = [*common, f"train.freeze.policy={policy}", "train.num_threads=2"]
        w1, d1 = _train([sys.executable], ov, base / label / "single", threads=2)
        ov_ddp = [*common, f"train.freeze.policy={policy}", "train.num_threads=1"]
        w2, d2 = _train(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541"],
            ov_ddp,
            base / label / "ddp",
            threads=1,
        )
        one, ddp = _summary(d1, w1), _summary(d2, w2)
        res = {
            "single": one,
            "ddp": ddp,
            "val_accuracy_diff_points": [100 * (b - a) for a, b in zip(one["val_accuracy"], ddp["val_accuracy"])],
            "test_accuracy_diff_points": 100 * (ddp["test_accuracy"] - one["test_accuracy"]),
        }
        out["results"][label] = res
        print(
            f"{label:13s} single: val {one['val_accuracy']} test {one['test_accuracy']:.3f} {w1:.0f} s | "
            f"ddp x2: val {ddp['val_accuracy']} test {ddp['test_accuracy']:.3f} {w2:.0f} s | "
            f"test diff {res['test_accuracy_diff_points']:+.1f} points"
        )
    res_dir = REPO / "benchmarks" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "ddp.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
