"""Does distillation pay? A deployable student alone, with a stronger teacher, and with unlabeled images too.

    python benchmarks/distill.py [--seeds 3] [--train 2000] [--unlabeled 10000] [--test 2000] [--runs-dir DIR]

Fashion-MNIST demo, one labelled subset of `--train` rows (+ `--val` for checkpoint selection, `--test` rows of
the official test split), fixed by `data.split.seed=0` so that every seed and the teacher see the same rows.

- teacher: recipes/distill-teacher-96.yaml (a stronger model: another resolution / architecture), trained once on
  the labelled subset; its test accuracy is printed and must be >= 5 points above the student's;
- (a) `alone`: recipes/distill.yaml without a teacher (distill=null);
- (b) `kd`: + logit KD from the teacher, on the labelled rows only;
- (c) `kd+unlabeled`: + `--unlabeled` Fashion-MNIST training rows outside the labelled/val/test rows, learnt
  from through the teacher's soft targets only;
- (d) `alone-long` (`--compute-matched N`, first N seeds): the student alone for as many optimizer steps as
  (c), a control for (c)'s extra steps.

Budget: every variant trains `train.epochs` epochs of the recipe, an epoch being one pass over its training
rows; (a), (b) and (d) therefore see each labelled row equally often, (c) adds one pass over the unlabeled
rows per epoch (more steps: reported, and controlled by (d)). Same optimizer, LR schedule and batch size.
Each seed changes the student's initialisation of the head and its data order, never the rows.

Scored on the same test rows: mean +- standard error of the paired per-seed differences (b-a), (c-a), (c-b),
(c-d); whether (c) beats (a) by more than 3 SE; and the INT8 export (ORT CPU) of (a) and (c). `edgetl report`'s
verdicts over the same student runs (`edgetl.reports.distill.distill_verdicts`) are recorded beside them, and
(c)'s must equal (c-d) when the control exists, else (c-a) with a not-compute-matched warning. Finished runs
are reused (by name), so an interrupted benchmark continues. Writes benchmarks/results/distill.json (`--out`).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def variants(teacher: str, unlabeled: int, long_epochs: int | None) -> dict[str, list[str]]:
    v = {
        "alone": ["distill=null"],
        "kd": [f"distill.teacher={teacher}", "distill.unlabeled=null"],
        "kd+unlabeled": [
            f"distill.teacher={teacher}",
            "distill.unlabeled.source=fashion-mnist",
            f"distill.unlabeled.limit={unlabeled}",
        ],
    }
    if long_epochs:
        v["alone-long"] = ["distill=null", f"train.epochs={long_epochs}"]
    return v


def paired(a: list[float], b: list[float]) -> dict:
    """Mean and standard error (sample SD / sqrt(n)) of the per-seed differences a - b, in points."""
    d = [100 * (x - y) for x, y in zip(a, b)]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"per_seed": d, "mean": statistics.mean(d), "se": se, "n": len(d)}


def finished(run_dir: Path) -> bool:
    p = run_dir / "run.json"
    return p.is_file() and json.loads(p.read_text()).get("status") == "completed"


def int8_accuracy(run_dir: Path, task: str) -> dict:
    """`edgetl export RUN --int8` (CPU target): test accuracy of the FP32 and INT8 ONNX exports."""
    from edgetl.bundle.pipeline import ExportOptions, export_run

    manifest = run_dir / "export" / "manifest.json"
    if not manifest.is_file():
        export_run(run_dir, ExportOptions(int8=True, target="cpu", progress=False))
    m = json.loads(manifest.read_text())
    return {art: (e.get("accuracy") or {}).get(task) for art, e in m.get("artifacts", {}).items()}


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        lscpu = ""
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in lscpu.splitlines() if ln.startswith("Flags")), [])
    return {
        "cpu": model,
        "vnni": any("vnni" in f for f in flags),
        "amx": any(f.startswith("amx") for f in flags),
        "python": platform.python_version(),
    }


def report_agreement(dirs: dict[str, list[str]], diffs: dict) -> dict:
    """`edgetl report`'s verdict for (c) over the same student runs, and whether its mean paired gain is the
    benchmark's compute-matched (c-d) (or (c-a) when there is no control (d), then flagged not compute-matched)."""
    from edgetl.reports.distill import distill_verdicts
    from edgetl.reports.transfer import summarize_run

    summaries = [summarize_run(d) for v in ("alone", "kd+unlabeled", "alone-long") for d in dirs.get(v, [])]
    row = next(r for r in distill_verdicts(summaries) if "unlabeled" in r["setting"] and not r.get("refused"))
    key = "kd+unlabeled - alone-long" if "kd+unlabeled - alone-long" in diffs else "kd+unlabeled - alone"
    want = diffs[key]
    agrees = (
        row["compute_matched"] == (key == "kd+unlabeled - alone-long")
        and len(row["per_seed"]) == want["n"]
        and all(abs(a - b) < 1e-6 for a, b in zip(row["per_seed"], want["per_seed"]))
    )
    return {
        "verdict": row["verdict"],
        "per_seed": row["per_seed"],
        "compute_matched": row["compute_matched"],
        "benchmark_difference": f"({key}) {want['mean']:+.2f} points over {want['n']} seed(s)",
        "agrees": agrees,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--unlabeled", type=int, default=10000)
    ap.add_argument(
        "--compute-matched", type=int, default=0, help="(d), the student alone for (c)'s steps, on the first N seeds"
    )
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--runs-dir", default="/tmp/edgetl-distill")
    ap.add_argument("--set", action="append", default=[], help="extra student override (tuning)")
    ap.add_argument("--teacher-set", action="append", default=[], help="extra teacher override (tuning)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "distill.json"))
    args = ap.parse_args()

    import torch

    from edgetl.recipe import load_recipe
    from edgetl.reports.transfer import summarize_run
    from edgetl.runs.layout import Run
    from edgetl.train.loop import train

    torch.set_num_threads(1)  # the runs' steps are small: on 2 busy cores, 2 threads measured 6x slower than 1
    runs_dir = Path(args.runs_dir)
    subset = [
        f"data.split.limit_train={args.train}",
        f"data.split.limit_val={args.val}",
        f"data.split.limit_test={args.test}",
        "data.split.seed=0",
    ]
    t_all = time.perf_counter()
    timings: dict[str, float] = {}

    def run_once(recipe_file: str, over: list[str], name: str) -> Run:
        d = runs_dir / name
        if finished(d):
            return Run(d)
        t0 = time.perf_counter()
        run = train(load_recipe(REPO / recipe_file, over), name=name, runs_dir=runs_dir, progress=False, exist_ok=True)
        timings[name] = time.perf_counter() - t0
        return run

    teacher = run_once("recipes/distill-teacher-96.yaml", subset + args.teacher_set, "teacher")
    t_acc = summarize_run(teacher.dir).scores["category"].value
    t_recipe = teacher.recipe()
    print(
        f"teacher {t_recipe.backbone.name} @{t_recipe.input.image_size}px: test accuracy {100 * t_acc:.2f}", flush=True
    )

    student = load_recipe(REPO / "recipes/distill.yaml", subset + args.set)
    steps = math.ceil(args.train / student.train.batch_size)
    steps_c = math.ceil((args.train + args.unlabeled) / student.train.batch_size)
    long_epochs = round(student.train.epochs * steps_c / steps) if args.compute_matched else None
    vs = variants(str(teacher.dir), args.unlabeled, long_epochs)
    n_seeds = {v: args.compute_matched if v == "alone-long" else args.seeds for v in vs}
    scores: dict[str, list[float]] = {v: [] for v in vs}
    dirs: dict[str, list[str]] = {v: [] for v in vs}
    seconds: dict[str, list[float | None]] = {v: [] for v in vs}
    rows: dict[str, dict] = {}
    for seed in range(args.seeds):
        for v, extra in vs.items():
            if seed >= n_seeds[v]:
                continue
            name = f"{v}-s{seed}"
            run = run_once("recipes/distill.yaml", subset + args.set + [f"train.seed={seed}", *extra], name)
            acc = summarize_run(run.dir).scores["category"].value
            scores[v].append(acc)
            dirs[v].append(str(run.dir))
            seconds[v].append(run.info().get("train_seconds"))
            rows[v] = run.info().get("summary", {}).get("data", {})
            print(f"seed {seed} {v:<13} test accuracy {100 * acc:.2f}  ({seconds[v][-1] or 0:.0f} s)", flush=True)

    diffs = {"kd - alone": paired(scores["kd"], scores["alone"])}
    diffs["kd+unlabeled - alone"] = paired(scores["kd+unlabeled"], scores["alone"])
    diffs["kd+unlabeled - kd"] = paired(scores["kd+unlabeled"], scores["kd"])
    if "alone-long" in vs:
        diffs["kd+unlabeled - alone-long"] = paired(scores["kd+unlabeled"], scores["alone-long"])
        diffs["alone-long - alone"] = paired(scores["alone-long"], scores["alone"])
    c_a = diffs["kd+unlabeled - alone"]
    paid = c_a["mean"] > 3 * c_a["se"]
    report = report_agreement(dirs, diffs)

    exports: dict[str, list[dict]] = {}
    if not args.no_export:
        for v in ("alone", "kd+unlabeled"):
            exports[v] = []
            for d in dirs[v]:
                t0 = time.perf_counter()
                exports[v].append(int8_accuracy(Path(d), "category"))
                timings[f"export {Path(d).name}"] = time.perf_counter() - t0
                print(f"export {Path(d).name}: {exports[v][-1]}", flush=True)
    int8 = {}
    if exports:
        art = next((a for a in exports["alone"][0] if "int8" in a), None)
        if art:
            a = [e[art] for e in exports["alone"]]
            c = [e[art] for e in exports["kd+unlabeled"]]
            int8 = {"artifact": art, "alone": a, "kd+unlabeled": c, "kd+unlabeled - alone": paired(c, a)}

    s_acc = statistics.mean(scores["alone"])
    summary = {
        "command": "python benchmarks/distill.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "setup": {
            "teacher": f"{t_recipe.backbone.name} @{t_recipe.input.image_size}px, {t_recipe.train.epochs} epochs",
            "student": f"{student.backbone.name} @{student.input.image_size}px, {student.train.epochs} epochs",
            "distill": student.distill.model_dump(mode="json", exclude={"teacher"}) if student.distill else None,
            "labelled_train": args.train,
            "val": args.val,
            "test": args.test,
            "unlabeled": args.unlabeled,
            "seeds": args.seeds,
            "budget": "same epochs over each variant's training rows; (c) adds the unlabeled rows to each epoch",
            "steps_per_epoch": {"labelled only": steps, "with unlabeled": steps_c},
            "rows_per_variant": rows,
        },
        "teacher_test_accuracy": t_acc,
        "teacher_minus_student_points": 100 * (t_acc - s_acc),
        "test_accuracy": scores,
        "mean": {v: statistics.mean(s) for v, s in scores.items()},
        "paired_differences_points": diffs,
        "kd+unlabeled_beats_alone_by_3se": paid,
        "edgetl_report": report,
        "int8": int8,
        "exports": exports,
        "train_seconds": seconds,
        "timings": timings,
        "runs": dirs,
        "total_seconds": time.perf_counter() - t_all,
    }
    out = Path(args.out)
    out.write_text(json.dumps(summary, indent=2) + "\n")

    print()
    print(f"teacher test accuracy {100 * t_acc:.2f} ({100 * (t_acc - s_acc):+.2f} points over the student alone)")
    print("| student | test accuracy per seed | mean | train s (mean) |")
    print("|---|---|---|---|")
    for v in vs:
        secs = [s for s in seconds[v] if s]
        print(
            f"| {v} | {', '.join(f'{100 * s:.2f}' for s in scores[v])} | {100 * statistics.mean(scores[v]):.2f} | "
            f"{statistics.mean(secs) if secs else float('nan'):.0f} |"
        )
    print()
    print("| paired difference | per seed | mean +- SE (points) |")
    print("|---|---|---|")
    for k, d in diffs.items():
        print(f"| {k} | {', '.join(f'{x:+.2f}' for x in d['per_seed'])} | {d['mean']:+.2f} +- {d['se']:.2f} |")
    if int8:
        d = int8["kd+unlabeled - alone"]
        print(
            f"\nINT8 ({int8['artifact']}): alone {', '.join(f'{100 * x:.2f}' for x in int8['alone'])}; "
            f"kd+unlabeled {', '.join(f'{100 * x:.2f}' for x in int8['kd+unlabeled'])}; "
            f"difference {d['mean']:+.2f} +- {d['se']:.2f}"
        )
    print(f"\nedgetl report on the same runs, (c): {report['verdict']}")
    print(f"agrees with the benchmark's {report['benchmark_difference']}: {report['agrees']}")
    verdict = "PAID" if paid else "did NOT pay"
    print(f"\n(c) kd+unlabeled vs (a) alone: {c_a['mean']:+.2f} +- {c_a['se']:.2f} points -> {verdict} (> 3 SE)")
    print(f"wrote {out} ({summary['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
