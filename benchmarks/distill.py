"""Distillation on the demo: a cheap student with and without a stronger teacher, same budget, several seeds.

    python benchmarks/distill.py [--teacher /tmp/edgetl-transfer/finetuned] [--seeds 3] [--train 2000] [--val 500]

Teacher: MobileNetV2 fine-tuned at 64 px (recipes/distill-teacher.yaml; trained here unless --teacher names a
finished run with the same subset). Student: MobileNetV2 at 32 px (a quarter of the pixels), recipes/distill.yaml,
trained three ways with the same data, epochs and optimizer:
  none           no teacher (distill=null)
  logit          KD on the logits only (distill.feature=none)
  logit+feature  KD on the logits + cosine feature distillation through a training-only projection (the recipe)
for each seed; scored on the same 1,000 Fashion-MNIST test rows. Paired differences per seed, mean and spread,
and the teacher/student inference cost (PyTorch CPU, batch 32, measured side by side) are printed and written
to benchmarks/results/distill.json.
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

VARIANTS = {"none": ["distill=null"], "logit": ["distill.feature=none"], "logit+feature": []}


def forward_ms(run_dir: Path, reps: int = 5) -> float:
    """Median ms per batch-32 forward of a run's model (PyTorch CPU, eval mode)."""
    import numpy as np
    import torch

    from edgetl.evaluate.torch_eval import model_inputs
    from edgetl.runs.loaded import load_run

    loaded = load_run(run_dir)
    x = model_inputs(loaded.prep, loaded.splits.test, np.arange(32))
    times = []
    with torch.no_grad():
        loaded.model(x)
        for _ in range(reps):
            t = time.perf_counter_ns()
            loaded.model(x)
            times.append((time.perf_counter_ns() - t) / 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=None, help="a finished run of recipes/distill-teacher.yaml (same subset)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--runs-dir", default="/tmp/edgetl-distill")
    args = ap.parse_args()

    import torch

    from edgetl.recipe import load_recipe
    from edgetl.reports.transfer import summarize_run
    from edgetl.runs.layout import open_run
    from edgetl.train.loop import train

    torch.set_num_threads(2)
    runs_dir = Path(args.runs_dir)
    subset = [f"data.split.limit_train={args.train}", f"data.split.limit_val={args.val}", "data.split.limit_test=1000"]
    t_all = time.perf_counter()
    if args.teacher:
        teacher = open_run(args.teacher)
    else:
        teacher = train(
            load_recipe(REPO / "recipes/distill-teacher.yaml", subset),
            name="teacher",
            runs_dir=runs_dir,
            progress=False,
        )
    t_sum = summarize_run(teacher.dir)
    t_acc = t_sum.scores["category"].value
    print(f"teacher {teacher.dir}: test accuracy {100 * t_acc:.2f}", flush=True)

    scores: dict[str, list[float]] = {v: [] for v in VARIANTS}
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    dirs: dict[str, list[str]] = {v: [] for v in VARIANTS}
    for seed in range(args.seeds):
        for variant, extra in VARIANTS.items():
            over = subset + [f"distill.teacher={teacher.dir}", f"train.seed={seed}", *extra]
            t0 = time.perf_counter()
            run = train(
                load_recipe(REPO / "recipes/distill.yaml", over),
                name=f"student-{variant}-s{seed}",
                runs_dir=runs_dir,
                progress=False,
            )
            seconds[variant].append(time.perf_counter() - t0)
            acc = summarize_run(run.dir).scores["category"].value
            scores[variant].append(acc)
            dirs[variant].append(str(run.dir))
            print(
                f"seed {seed} {variant:<14} test accuracy {100 * acc:.2f}  ({seconds[variant][-1]:.0f} s)", flush=True
            )

    def paired(v):
        return [100 * (a - b) for a, b in zip(scores[v], scores["none"])]

    n_test = t_sum.scores["category"].n
    se_single = 100 * (2 * 0.85 * 0.15 / n_test) ** 0.5  # SE of one paired difference at ~85 % accuracy
    t_ms, s_ms = forward_ms(teacher.dir), forward_ms(Path(dirs["none"][0]))
    summary = {
        "setup": {
            "teacher": "mobilenet_v2 @64px fine-tuned",
            "student": "mobilenet_v2 @32px",
            "train": args.train,
            "val": args.val,
            "test": n_test,
            "epochs": 3,
            "seeds": args.seeds,
            "temperature": 4.0,
            "alpha": 0.7,
        },
        "teacher_test_accuracy": t_acc,
        "student_test_accuracy": scores,
        "mean": {v: statistics.mean(s) for v, s in scores.items()},
        "paired_delta_points": {v: paired(v) for v in VARIANTS if v != "none"},
        "se_one_difference_points": se_single,
        "train_seconds": seconds,
        "forward_ms_batch32": {"teacher": t_ms, "student": s_ms, "student_speedup": t_ms / s_ms},
        "runs": dirs,
        "total_seconds": time.perf_counter() - t_all,
    }
    out = REPO / "benchmarks" / "results" / "distill.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print("| student (32 px) | test accuracy per seed | mean | vs no teacher (paired, points) | train s (mean) |")
    print("|---|---|---|---|---|")
    for v in VARIANTS:
        d = paired(v)
        ds = "-" if v == "none" else f"{statistics.mean(d):+.2f} (per seed {', '.join(f'{x:+.2f}' for x in d)})"
        print(
            f"| {v} | {', '.join(f'{100 * s:.2f}' for s in scores[v])} | {100 * statistics.mean(scores[v]):.2f} | "
            f"{ds} | {statistics.mean(seconds[v]):.0f} |"
        )
    print(
        f"\nteacher (64 px) test accuracy {100 * t_acc:.2f}; one paired difference has SE ~{se_single:.2f} points "
        f"on {n_test} test rows; forward batch 32: teacher {t_ms:.0f} ms, student {s_ms:.0f} ms "
        f"({t_ms / s_ms:.1f}x faster)"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
