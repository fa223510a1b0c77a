"""`edgetl report`: did distillation pay? Students with vs without a teacher, same budget, paired by seed.

Runs are grouped by their recipe with the name, description, export settings, `train.seed` and `distill`
left out: two runs of a group trained the same student the same way, on the same data, except for the
teacher (and `distill.unlabeled`). Within a group each distillation setting is paired, seed by seed, with
the runs that had no teacher; per task the mean paired difference and its standard error (the spread of the
differences over seeds; with one seed, the binomial SE of the two test scores) give the verdict:
"paid" when the mean gain exceeds 2 SE (the report's noise threshold), otherwise "did not pay".
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

VERDICT_SE = 2.0  # a gain counts when it exceeds this many standard errors of the difference


def _student_key(recipe) -> str:
    d = recipe.model_dump(mode="json", exclude={"name", "description", "distill", "export"})
    d["train"].pop("seed", None)
    return json.dumps(d, sort_keys=True)


def _distill_key(recipe) -> str:
    return json.dumps(recipe.distill.model_dump(mode="json"), sort_keys=True)


def _describe(recipe) -> str:
    d = recipe.distill
    t = d.teacher if isinstance(d.teacher, str) else f"{d.teacher.name} ({d.teacher.weights})"
    u = d.unlabeled
    extra = f", +{u.limit or 'all'} unlabeled ({u.source})" if u is not None else ""
    return f"teacher {Path(t).name if isinstance(d.teacher, str) else t}, T={d.temperature}, alpha={d.alpha}{extra}"


def distill_verdicts(runs) -> list[dict]:
    """One entry per (distillation setting, task) that has undistilled runs of the same student to pair with."""
    from edgetl.errors import EdgetlError
    from edgetl.runs.layout import open_run

    recipes = {}
    for r in runs:
        try:
            recipes[r.dir] = open_run(r.dir).recipe()
        except EdgetlError:  # a summary without its run dir (e.g. built by hand): nothing to group it by
            continue
    groups: dict[str, list] = {}
    for r in (r for r in runs if r.dir in recipes):
        groups.setdefault(_student_key(recipes[r.dir]), []).append(r)
    out = []
    for members in groups.values():
        base = {recipes[r.dir].train.seed: r for r in members if recipes[r.dir].distill is None}
        settings: dict[str, list] = {}
        for r in members:
            if recipes[r.dir].distill is not None:
                settings.setdefault(_distill_key(recipes[r.dir]), []).append(r)
        for runs_d in settings.values():
            pairs = [(r, base[recipes[r.dir].train.seed]) for r in runs_d if recipes[r.dir].train.seed in base]
            if not pairs:
                continue
            for task in sorted({t for r, _ in pairs for t in r.scores}):
                ok = [(a, b) for a, b in pairs if task in a.scores and task in b.scores]
                if not ok or ok[0][0].scores[task].metric == "mae":
                    sign, scale, unit = -1.0, 1.0, "MAE"
                else:
                    sign, scale, unit = 1.0, 100.0, "points"
                if not ok:
                    continue
                diffs = [sign * scale * (a.scores[task].value - b.scores[task].value) for a, b in ok]
                mean = statistics.mean(diffs)
                if len(diffs) > 1:
                    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
                elif unit == "points":
                    sa, sb = ok[0][0].scores[task], ok[0][1].scores[task]
                    se = 100 * math.sqrt(sum(p * (1 - p) / max(n, 1) for p, n in ((sa.value, sa.n), (sb.value, sb.n))))
                else:
                    se = float("nan")
                paid = mean > VERDICT_SE * se if se == se else False
                n = len(diffs)
                seeds = f"{n} seed{'s' if n != 1 else ''}"
                line = (
                    f"distillation paid: {mean:+.1f} ± {se:.1f} {unit} over {seeds}"
                    if paid
                    else f"distillation did not pay: {mean:+.1f} ± {se:.1f} {unit} over {seeds}"
                    + (" (within noise)" if abs(mean) <= VERDICT_SE * se else " (worse)" if mean < 0 else "")
                )
                out.append(
                    {
                        "task": task,
                        "student": f"{ok[0][1].backbone} {ok[0][1].input}",
                        "setting": _describe(recipes[ok[0][0].dir]),
                        "runs": [a.name for a, _ in ok],
                        "baselines": [b.name for _, b in ok],
                        "seeds": [recipes[a.dir].train.seed for a, _ in ok],
                        "per_seed": diffs,
                        "mean": mean,
                        "se": se,
                        "unit": unit,
                        "paid": paid,
                        "verdict": line,
                    }
                )
    return out


def render(rows: list[dict]) -> list[str]:
    """The report's markdown section."""
    L = ["## Did distillation pay? (same student with vs without the teacher, paired by seed)", ""]
    if not rows:
        return L + ["_no distilled run with an undistilled run of the same student (same recipe but the teacher)_", ""]
    L += ["| task | student | distillation | per seed | verdict |", "|---|---|---|---|---|"]
    for d in rows:
        per = ", ".join(f"{x:+.2f}" for x in d["per_seed"])
        L.append(f"| {d['task']} | {d['student']} | {d['setting']} | {per} | {d['verdict']} |")
    return L + [""]
