"""The transfer report: what transfer learning bought, per task, across runs of the same tasks.

`transfer_report([run dirs], out_dir)` scores every run's best checkpoint on its held-out split (reusing
`eval.json` when it is up to date), works out what each run is from its recipe, and compares runs that share
a task (same name, kind and labels):

- transfer gain: each pretrained run vs the same backbone trained from scratch (`backbone.weights: none`);
  and fine-tuned vs linear probe (what unfreezing bought);
- multi-task vs single-task: the same task with and without other heads on the backbone (a loss is flagged
  as negative transfer);
- distilled vs undistilled: the same student recipe with and without a teacher;
- export precision: each exported artifact's accuracy vs the FP32 export, from the bundles' manifests.

Every difference comes with its standard error on the test rows (binomial, for accuracies) and is marked
"within noise" when smaller than two of them. Runs scored on different test rows are compared but flagged.
Writes report.json, report.md and report.png (accuracy per task per run) to the output directory.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgetl.errors import EdgetlError
from edgetl.runtime.artifacts import headline_metric, in_points
from edgetl.runtime.tasks import LOWER_IS_BETTER


@dataclass
class TaskScore:
    metric: str  # accuracy | micro_f1 | mae
    value: float
    n: int
    test_rows: str  # digest of the rows it was scored on (comparability)


@dataclass
class RunSummary:
    name: str
    dir: str
    role: str  # scratch | linear-probe | partial-freeze | gradual-unfreeze | fine-tuned | distilled
    variant: str  # human description: policy, layer decay, teacher ...
    backbone: str
    weights: str
    input: str  # "image 64px" / "text 128 tokens"
    tasks: dict[str, str]  # name -> kind
    task_keys: dict[str, str]  # name -> digest of (name, kind, labels): what "the same task" means
    epochs: int
    train_seconds: float | None
    teacher: str | None
    scores: dict[str, TaskScore] = field(default_factory=dict)
    policy: str = "none"  # train.freeze.policy (+ stages): "the same recipe" for distilled/multi-task pairs
    exports: dict[str, dict[str, float]] = field(default_factory=dict)  # artifact -> task -> metric value
    split: str = "test"

    @property
    def multitask(self) -> bool:
        return len(self.tasks) > 1


# ------------------------------------------------------------------------------------------------ summaries
def describe_recipe(recipe) -> tuple[str, str]:
    """(role, variant) of a run from its recipe alone."""
    f = recipe.train.freeze
    bits = []
    if recipe.backbone.weights == "none":
        role = "scratch"
    elif recipe.distill is not None:
        role = "distilled"
    elif f.policy == "linear_probe":
        role = "linear-probe"
    elif f.policy == "first_k":
        role = "partial-freeze"
    elif f.policy == "gradual":
        role = "gradual-unfreeze"
    else:
        role = "fine-tuned"
    if f.policy == "first_k":
        bits.append(f"first {f.stages} stages frozen")
    elif f.policy == "gradual":
        bits.append(f"gradual unfreeze every {f.every} epoch(s)")
    elif f.policy == "linear_probe":
        bits.append("backbone frozen")
    else:
        bits.append("all layers train")
    if recipe.train.layer_decay:
        bits.append(f"layer-wise LR decay {recipe.train.layer_decay}")
    if recipe.distill is not None:
        t = recipe.distill.teacher
        tname = t if isinstance(t, str) else f"{t.name} ({t.weights})"
        bits.append(
            f"teacher {Path(tname).name if isinstance(t, str) else tname}, T={recipe.distill.temperature}, "
            f"alpha={recipe.distill.alpha}"
            + (f", feature {recipe.distill.feature}" if recipe.distill.feature != "none" else "")
        )
    if recipe.backbone.weights == "none":
        bits.append("random init")
    if len(recipe.tasks) > 1:
        bits.append(f"{len(recipe.tasks)} tasks")
    return role, ", ".join(bits)


def _policy(recipe) -> str:
    f = recipe.train.freeze
    return (
        f.policy
        + (f":{f.stages}" if f.policy in ("first_k", "gradual") else "")
        + (f":ld{recipe.train.layer_decay}" if recipe.train.layer_decay else "")
    )


def _task_key(task, labels: list[str]) -> str:
    return hashlib.sha1(json.dumps([task.name, task.kind, labels]).encode()).hexdigest()[:12]


def _test_rows_digest(split_def: dict, split: str, task_name: str) -> str:
    """Digest of the source rows a task is scored on: (source, local row) pairs, order-free."""
    rows = split_def["indices"][split] or split_def["indices"]["val"]
    datasets = split_def.get("datasets")
    if datasets:
        pairs = []
        for d in datasets:
            if task_name not in d["tasks"]:
                continue
            lo, hi = d["rows"]
            pairs += [f"{d['source']}:{r - lo}" for r in rows if lo <= r < hi]
    else:
        pairs = [f"{split_def.get('source')}:{r}" for r in rows]
    return hashlib.sha1("\n".join(sorted(pairs)).encode()).hexdigest()[:12]


def _primary(kind: str, m: dict) -> tuple[str, float]:
    return headline_metric(kind), float(m[headline_metric(kind)])


def _cached_eval(run, split: str) -> dict | None:
    p = run.dir / "eval.json"
    ck = run.checkpoint("best")
    if not p.is_file() or not ck.is_file() or p.stat().st_mtime < ck.stat().st_mtime:
        return None
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError:
        return None
    return data if data.get("split") == split and data.get("artifact") == "pytorch" else None


def summarize_run(path, split: str = "test", evaluate: bool = True) -> RunSummary:
    from edgetl.runs.layout import open_run

    run = open_run(path)
    recipe = run.recipe()
    split_def = run.splits()
    labels = split_def["labels"]
    info = run.info()
    if not run.checkpoint("best").is_file() and not run.checkpoint("last").is_file():
        raise EdgetlError(f"{run.dir}: no checkpoint (did training finish? see {run.dir / 'run.json'})")
    role, variant = describe_recipe(recipe)
    inp = (
        f"image {recipe.input.image_size}px"
        if recipe.input.kind == "image"
        else f"text {recipe.input.max_length} tokens"
    )
    teacher = None
    if recipe.distill is not None:
        t = recipe.distill.teacher
        teacher = str(t) if isinstance(t, str) else f"{t.name} ({t.weights})"
    s = RunSummary(
        name=run.name,
        dir=str(run.dir),
        role=role,
        variant=variant,
        backbone=recipe.backbone.name,
        weights=recipe.backbone.weights,
        input=inp,
        tasks={t.name: t.kind for t in recipe.tasks},
        task_keys={t.name: _task_key(t, labels[t.name]) for t in recipe.tasks},
        epochs=int(info.get("epochs_done", recipe.train.epochs)),
        train_seconds=info.get("train_seconds"),
        teacher=teacher,
        split=split,
        policy=_policy(recipe),
    )
    result = _cached_eval(run, split)
    if result is None and evaluate:
        from edgetl.runs.evaluate import evaluate_run

        result = evaluate_run(run.dir, "pytorch", split)
    if result is not None:
        for t, m in result["tasks"].items():
            metric, value = _primary(m["kind"], m)
            s.scores[t] = TaskScore(metric, value, int(m["n"]), _test_rows_digest(split_def, split, t))
    manifest = run.export_dir / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        for art, entry in m.get("artifacts", {}).items():
            if entry.get("metrics_split", "test") == split and entry.get("accuracy"):
                s.exports[art] = {t: float(v) for t, v in entry["accuracy"].items() if v is not None}
    return s


# ------------------------------------------------------------------------------------------------ comparing
def _se_points(a: TaskScore, b: TaskScore) -> float | None:
    """Standard error of the difference, in points (accuracy-like metrics only)."""
    if a.metric in LOWER_IS_BETTER:
        return None
    var = sum(p * (1 - p) / max(n, 1) for p, n in ((a.value, a.n), (b.value, b.n)))
    return 100 * math.sqrt(var)


def _delta(run: RunSummary, base: RunSummary, task: str) -> dict:
    a, b = run.scores[task], base.scores[task]
    if a.metric in LOWER_IS_BETTER:
        d = b.value - a.value  # positive = better (lower error)
        unit = "MAE"
    else:
        d = 100 * (a.value - b.value)
        unit = "points"
    se = _se_points(a, b)
    return {
        "task": task,
        "run": run.name,
        "baseline": base.name,
        "run_score": a.value,
        "baseline_score": b.value,
        "delta": d,
        "unit": unit,
        "se": se,
        "within_noise": se is not None and abs(d) < 2 * se,
        "same_test_rows": a.test_rows == b.test_rows,
        "metric": a.metric,
        "budget": {
            "run_epochs": run.epochs,
            "baseline_epochs": base.epochs,
            "run_train_s": run.train_seconds,
            "baseline_train_s": base.train_seconds,
        },
    }


def _same_task(a: RunSummary, b: RunSummary, task: str) -> bool:
    return task in a.scores and task in b.scores and a.task_keys.get(task) == b.task_keys.get(task)


def _same_student(a: RunSummary, b: RunSummary) -> bool:
    return a.backbone == b.backbone and a.input == b.input


def compare(runs: list[RunSummary]) -> dict:
    out = {
        "transfer_gain": [],
        "finetune_vs_linear_probe": [],
        "multitask_vs_single": [],
        "distill": [],
        "export_precision": [],
    }
    for r in runs:
        for t in r.scores:
            # transfer gain: pretrained (any policy, not distilled) vs the same backbone from scratch
            if r.role != "scratch":
                for b in runs:
                    if (
                        b is not r
                        and b.role == "scratch"
                        and _same_task(r, b, t)
                        and _same_student(r, b)
                        and b.multitask == r.multitask
                        and b.teacher is None
                        and r.teacher is None
                    ):
                        out["transfer_gain"].append({**_delta(r, b, t), "role": r.role})
            if r.role in ("fine-tuned", "partial-freeze", "gradual-unfreeze"):
                for b in runs:
                    if (
                        b.role == "linear-probe"
                        and _same_task(r, b, t)
                        and _same_student(r, b)
                        and b.multitask == r.multitask
                    ):
                        out["finetune_vs_linear_probe"].append({**_delta(r, b, t), "role": r.role})
            if r.multitask:
                for b in runs:
                    if (
                        not b.multitask
                        and _same_task(r, b, t)
                        and _same_student(r, b)
                        and b.role == r.role
                        and b.weights == r.weights
                        and b.teacher == r.teacher
                        and b.policy == r.policy
                    ):
                        d = _delta(r, b, t)
                        d["negative_transfer"] = d["delta"] < 0
                        out["multitask_vs_single"].append(d)
            if r.role == "distilled":
                for b in runs:
                    if (
                        b.teacher is None
                        and b.role != "scratch"
                        and _same_task(r, b, t)
                        and _same_student(r, b)
                        and b.weights == r.weights
                        and b.multitask == r.multitask
                        and b.policy == r.policy
                    ):
                        out["distill"].append(
                            {
                                **_delta(r, b, t),
                                "teacher": r.teacher,
                                "teacher_score": _teacher_score(runs, r.teacher, t),
                            }
                        )
        if "fp32" in r.exports:
            for art, acc in r.exports.items():
                for t, v in acc.items():
                    base = r.exports["fp32"].get(t)
                    if base is None:
                        continue
                    kind = r.tasks.get(t)
                    points = kind is None or in_points(kind)
                    drop = 100 * (base - v) if points else (base - v)
                    out["export_precision"].append(
                        {
                            "run": r.name,
                            "artifact": art,
                            "task": t,
                            "value": v,
                            "fp32": base,
                            "drop": drop,
                            "unit": "points" if points else headline_metric(kind).upper(),
                        }
                    )
    from edgetl.reports.distill import distill_verdicts

    out["distill_paid"] = distill_verdicts(runs)
    return out


def _teacher_score(runs: list[RunSummary], teacher: str | None, task: str) -> float | None:
    if not teacher:
        return None
    for r in runs:
        if Path(r.dir).resolve() == Path(teacher).resolve() or r.name == Path(teacher).name:
            s = r.scores.get(task)
            return s.value if s else None
    return None


# ------------------------------------------------------------------------------------------------ writing
def _fmt_score(s: TaskScore | None) -> str:
    if s is None:
        return "-"
    return f"{s.value:.4f} {s.metric.upper()}" if s.metric in LOWER_IS_BETTER else f"{100 * s.value:.2f}"


def _fmt_delta(d: dict) -> str:
    se = f" ± {d['se']:.2f}" if d["se"] is not None else ""
    note = " (within noise)" if d["within_noise"] else ""
    rows = "" if d["same_test_rows"] else " [different test rows]"
    return f"{d['delta']:+.2f}{se}{note}{rows}"


def render_markdown(runs: list[RunSummary], comp: dict, split: str) -> str:
    tasks = sorted({t for r in runs for t in r.scores})
    L = [f"# Transfer report ({len(runs)} runs, {split} split)", ""]
    L.append(
        "Scores: accuracy in % (micro-F1 for multilabel, MAE for regression) of each run's best checkpoint. "
        "Differences in points with their standard error; 'within noise' = smaller than 2 SE."
    )
    L += [
        "",
        "## Runs",
        "",
        "| run | role | backbone | weights | input | epochs | train s | " + " | ".join(tasks) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(tasks),
    ]
    for r in runs:
        ts = f"{r.train_seconds:.0f}" if r.train_seconds else "-"
        L.append(
            f"| {r.name} | {r.role} | {r.backbone} | {r.weights} | {r.input} | {r.epochs} | {ts} | "
            + " | ".join(_fmt_score(r.scores.get(t)) for t in tasks)
            + " |"
        )
    L += ["", "Variants: " + "; ".join(f"**{r.name}**: {r.variant}" for r in runs), ""]

    def table(title, rows, extra=None, empty="no comparable pair among these runs"):
        L.extend([f"## {title}", ""])
        if not rows:
            L.extend([f"_{empty}_", ""])
            return
        hdr = "| task | run | vs | run score | baseline | delta |" + (f" {extra[0]} |" if extra else "")
        L.extend([hdr, "|---|---|---|---|---|---|" + ("---|" if extra else "")])
        for d in rows:
            sc = (lambda v: f"{v:.4f}") if d["metric"] in LOWER_IS_BETTER else (lambda v: f"{100 * v:.2f}")
            L.append(
                f"| {d['task']} | {d['run']} | {d['baseline']} | {sc(d['run_score'])} | {sc(d['baseline_score'])} | "
                f"{_fmt_delta(d)} |" + (f" {extra[1](d)} |" if extra else "")
            )
        L.append("")

    table(
        "Transfer gain (pretrained vs same backbone from scratch)",
        comp["transfer_gain"],
        ("role", lambda d: d["role"]),
        "no from-scratch run (backbone.weights=none) with the same backbone and tasks",
    )
    table("Fine-tuning vs linear probe", comp["finetune_vs_linear_probe"], ("role", lambda d: d["role"]))
    table(
        "Multi-task vs single-task",
        comp["multitask_vs_single"],
        (
            "verdict",
            lambda d: (
                "NEGATIVE TRANSFER" + (" (within noise)" if d["within_noise"] else "")
                if d["negative_transfer"]
                else "positive transfer" + (" (within noise)" if d["within_noise"] else "")
            ),
        ),
    )
    table(
        "Distilled vs undistilled (same student)",
        comp["distill"],
        (
            "teacher",
            lambda d: (
                f"{Path(d['teacher']).name if d['teacher'] else '-'}"
                + (f" ({100 * d['teacher_score']:.2f})" if d.get("teacher_score") is not None else "")
            ),
        ),
    )
    from edgetl.reports.distill import render as render_distill

    L.extend(render_distill(comp.get("distill_paid", [])))
    L.extend(["## Accuracy cost of each exported precision (vs the FP32 export)", ""])
    if comp["export_precision"]:
        L.extend(["| run | artifact | task | score | fp32 | drop |", "|---|---|---|---|---|---|"])
        for d in comp["export_precision"]:
            if d["unit"] == "MAE":
                L.append(
                    f"| {d['run']} | {d['artifact']} | {d['task']} | {d['value']:.4f} | {d['fp32']:.4f} | {d['drop']:+.4f} |"
                )
            else:
                L.append(
                    f"| {d['run']} | {d['artifact']} | {d['task']} | {100 * d['value']:.2f} | {100 * d['fp32']:.2f} | "
                    f"{d['drop']:+.2f} |"
                )
    else:
        L.append("_no exported bundle among these runs (edgetl export <run>)_")
    L.append("")
    L.extend(summary_lines(comp))
    return "\n".join(L) + "\n"


def summary_lines(comp: dict) -> list[str]:
    """Plain-language conclusions, numbers included."""
    L = ["## Summary", ""]
    g = comp["transfer_gain"]
    if g:
        ft = [d for d in g if d["role"] in ("fine-tuned", "partial-freeze", "gradual-unfreeze", "linear-probe")]
        worse = [d for d in ft if d["delta"] <= 0]
        L.append(
            f"- Transfer: {len(ft) - len(worse)}/{len(ft)} pretrained-vs-scratch comparisons favour the pretrained "
            f"weights (gain {min(d['delta'] for d in ft):+.2f} to {max(d['delta'] for d in ft):+.2f} points)."
            if ft
            else "- Transfer: no pretrained-vs-scratch pair."
        )
    m = comp["multitask_vs_single"]
    if m:
        neg = [d for d in m if d["negative_transfer"]]
        L.append(
            f"- Multi-task vs single-task: {len(neg)} of {len(m)} task comparisons show negative transfer"
            + (
                ": "
                + ", ".join(
                    f"{d['task']} {d['delta']:+.2f}{' (within noise)' if d['within_noise'] else ''}" for d in neg
                )
                if neg
                else ""
            )
            + "; "
            + ", ".join(f"{d['task']} {d['delta']:+.2f}" for d in m if not d["negative_transfer"])
            + "."
        )
    dd = comp["distill"]
    if dd:
        L.append(
            "- Distillation: "
            + ", ".join(
                f"{d['task']} {d['delta']:+.2f} ± {d['se']:.2f}" + (" (within noise)" if d["within_noise"] else "")
                for d in dd
            )
            + "."
        )
    for d in comp.get("distill_paid", []):
        L.append(f"- {d['task']}, {d['student']}, {d['setting']}: {d['verdict']}.")
    e = [d for d in comp["export_precision"] if d["artifact"] != "fp32"]
    if e:
        L.append(
            "- Export: " + ", ".join(f"{d['run']}/{d['artifact']} {d['task']} drop {d['drop']:+.2f}" for d in e) + "."
        )
    return L + [""]


def plot(runs: list[RunSummary], path: Path) -> None:
    """Grouped bars: one group per task, one bar (fixed colour) per run that has the task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t for r in runs for t, s in r.scores.items() if s.metric not in LOWER_IS_BETTER})
    cmap = plt.get_cmap("tab20")
    colour = {r.name: cmap(i % 20) for i, r in enumerate(runs)}
    width = 0.8
    x, ticks, labelled = 0.0, [], set()
    fig, ax = plt.subplots(figsize=(min(4 + 0.55 * sum(len(r.scores) for r in runs), 18), 4.8))
    for t in tasks or ["(no accuracy tasks)"]:
        members = [r for r in runs if t in r.scores]
        start = x
        for r in members:
            v = 100 * r.scores[t].value
            ax.bar(x, v, width, color=colour[r.name], label=None if r.name in labelled else f"{r.name} ({r.role})")
            labelled.add(r.name)
            ax.text(x, v + 0.5, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
            x += 1
        ticks.append(((start + x - 1) / 2, t))
        x += 1.2  # gap between tasks
    ax.set_xticks([c for c, _ in ticks], [t for _, t in ticks])
    ax.set_ylabel("accuracy / micro-F1 (%)")
    ax.set_ylim(0, 105)
    ax.set_title("test accuracy per task per run")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def transfer_report(run_paths, out_dir, split: str = "test", evaluate: bool = True) -> dict:
    """Summarise, compare and write report.{json,md,png} to out_dir; returns the report dict."""
    from edgetl.runtime.atomic import atomic_write_text

    if split not in ("test", "val"):
        raise EdgetlError(f"--split {split!r}: allowed test, val")
    paths = list(run_paths)
    if len(paths) < 2:
        raise EdgetlError(
            "edgetl report needs at least two runs to compare (got "
            f"{len(paths)}): edgetl report runs/a runs/b ... --out DIR"
        )
    runs = [summarize_run(p, split, evaluate) for p in paths]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # e.g. a/run and b/run: qualify by parent
        for r in runs:
            r.name = f"{Path(r.dir).parent.name}/{r.name}"
    shared = set.union(*(set(r.task_keys.values()) for r in runs))
    if not any(sum(k in r.task_keys.values() for r in runs) > 1 for k in shared):
        raise EdgetlError("these runs share no task (same name, kind and labels): nothing to compare")
    comp = compare(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "split": split,
        "runs": [{**asdict(r), "multitask": r.multitask} for r in runs],
        "comparisons": comp,
        "files": {
            "json": str(out / "report.json"),
            "markdown": str(out / "report.md"),
            "chart": str(out / "report.png"),
        },
    }
    atomic_write_text(out / "report.md", render_markdown(runs, comp, split))
    plot(runs, out / "report.png")
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=float) + "\n")
    return report
