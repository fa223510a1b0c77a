"""`edgetl report`: did distillation pay? Students with vs without a teacher, compared like with like.

Runs are grouped by their recipe with the name, description, export settings, `train.seed`, `train.epochs`
and `distill` left out: two runs of a group trained the same student the same way, on the same data, except
for the teacher (and `distill.unlabeled`) and for how long. Each distilled run is paired, seed by seed, with
an undistilled control of its group: one whose optimizer steps (run.json `optimizer_steps`) are within
`MATCH_TOL` of its own when there is one (compute-matched: a teacher with 3,000 unlabeled images also means
7x the steps, and the student alone for those steps is the fair control), otherwise the closest, and then the
verdict gives both budgets and says that it is not compute-matched. A distilled run with no control is named
with the keys in which the nearest undistilled run differs.

Per task the mean paired difference and its standard error (the spread of the differences over seeds; with
one seed, the binomial SE of the two test scores) give the verdict: "paid" when the mean gain exceeds 2 SE
(the report's noise threshold), otherwise "did not pay".
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

VERDICT_SE = 2.0  # a gain counts when it exceeds this many standard errors of the difference
MATCH_TOL = 0.10  # a control is compute-matched when its optimizer steps are within 10% of the distilled run's
_IGNORED = ("name", "description", "distill", "export")  # what may differ between a distilled run and its control


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _student_dict(recipe) -> dict:
    """The recipe as dotted keys, less what a control may change (the teacher, the epochs, the seed)."""
    d = _flat(recipe.model_dump(mode="json", exclude=set(_IGNORED)))
    d.pop("train.epochs", None)
    return d


def _student_key(recipe) -> str:
    d = _student_dict(recipe)
    d.pop("train.seed", None)
    return json.dumps(d, sort_keys=True, default=str)


def _differing_keys(a, b) -> list[str]:
    """The recipe keys (dotted) in which control `b` differs from distilled run `a`, with both values."""
    da, db = _student_dict(a), _student_dict(b)
    return [f"{k} ({da.get(k)!r} vs {db.get(k)!r})" for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]


def _distill_key(recipe) -> str:
    return json.dumps(recipe.distill.model_dump(mode="json"), sort_keys=True)


def _describe(recipe) -> str:
    d = recipe.distill
    t = d.teacher if isinstance(d.teacher, str) else f"{d.teacher.name} ({d.teacher.weights})"
    u = d.unlabeled
    extra = f", +{u.limit or 'all'} unlabeled ({u.source})" if u is not None else ""
    return f"teacher {Path(t).name if isinstance(d.teacher, str) else t}, T={d.temperature}, alpha={d.alpha}{extra}"


def _budget(run, recipe) -> dict:
    """What a run spent: optimizer steps and examples seen (run.json; None for runs of an older edgetl)."""
    from edgetl.runs.layout import open_run

    info = open_run(run.dir).info()
    return {"steps": info.get("optimizer_steps"), "examples": info.get("examples_seen"), "epochs": recipe.train.epochs}


def _matched(a: dict, b: dict) -> bool:
    return bool(a["steps"]) and b["steps"] is not None and abs(b["steps"] - a["steps"]) <= MATCH_TOL * a["steps"]


def _pick_control(budget: dict, controls: list, budgets: dict):
    """(control, compute-matched?): the control within MATCH_TOL of the run's steps, closest first; otherwise
    the one with the run's epochs, else the closest in steps."""
    matched = [c for c in controls if _matched(budget, budgets[c.dir])]
    if matched:
        return min(matched, key=lambda c: abs(budgets[c.dir]["steps"] - budget["steps"])), True
    same = [c for c in controls if budgets[c.dir]["epochs"] == budget["epochs"]]
    if same:
        return same[0], False
    known = [c for c in controls if budgets[c.dir]["steps"] is not None and budget["steps"] is not None]
    if known:
        return min(known, key=lambda c: abs(budgets[c.dir]["steps"] - budget["steps"])), False
    return controls[0], False


def _side(budgets: list[dict]) -> str:
    steps = [b["steps"] for b in budgets]
    if any(s is None for s in steps):
        return "steps not recorded"
    ex = [b["examples"] for b in budgets]
    lo, hi = min(steps), max(steps)
    s = f"{lo:,} steps" if lo == hi else f"{lo:,}-{hi:,} steps"
    if all(e is not None for e in ex):
        s += f", {min(ex):,} examples" if min(ex) == max(ex) else f", {min(ex):,}-{max(ex):,} examples"
    return s + f", {budgets[0]['epochs']} epochs"


def _budget_note(matched: bool, mine: list[dict], theirs: list[dict]) -> tuple[str, str | None]:
    """(the verdict's budget clause, a warning or None)."""
    if matched:
        return f"compute-matched: distilled {_side(mine)}; control {_side(theirs)}", None
    if any(b["steps"] is None for b in mine + theirs):
        return (
            f"distilled {_side(mine)}; control {_side(theirs)}",
            "budgets not recorded (runs of an older edgetl): cannot tell whether the comparison is compute-matched",
        )
    want = statistics.mean(b["steps"] for b in mine)
    have = statistics.mean(b["steps"] for b in theirs)
    epochs = max(1, round(theirs[0]["epochs"] * want / max(have, 1)))
    more = (
        f"the distilled run took {want / max(have, 1):.1f}x the control's optimizer steps, so the gain includes "
        "the extra training"
        if want > have
        else f"the control took {have / max(want, 1):.1f}x the distilled run's optimizer steps"
    )
    return (
        f"distilled {_side(mine)}; control {_side(theirs)}",
        f"not compute-matched: {more}; train the student alone for about {round(want):,} steps "
        f"(train.epochs={epochs}) and report again",
    )


def _refusal(run, recipe, others: list, recipes: dict) -> dict:
    """A distilled run without a control: name the undistilled run that comes closest and the keys that differ."""
    near = [(len(_differing_keys(recipe, recipes[o.dir])), o) for o in others]
    if not near:
        why = f"no control for {run.name}: no undistilled run among the runs given"
    else:
        _, best = min(near, key=lambda x: x[0])
        keys = _differing_keys(recipe, recipes[best.dir])
        why = f"no control for {run.name}: the nearest undistilled run, {best.name}, differs in " + ", ".join(keys)
    return {
        "task": ", ".join(sorted(run.scores)) or "-",
        "student": f"{run.backbone} {run.input}",
        "setting": _describe(recipe),
        "runs": [run.name],
        "paid": None,
        "refused": True,
        "verdict": why,
    }


def distill_verdicts(runs) -> list[dict]:
    """One entry per (distillation setting, task) with its controls paired by seed (see the module doc), and one
    `refused` entry per distilled run that has no control, naming the keys that differ."""
    from edgetl.errors import EdgetlError
    from edgetl.runs.layout import open_run

    recipes, budgets = {}, {}
    for r in runs:
        try:
            recipes[r.dir] = open_run(r.dir).recipe()
        except EdgetlError:  # a summary without its run dir (e.g. built by hand): nothing to group it by
            continue
        budgets[r.dir] = _budget(r, recipes[r.dir])
    known = [r for r in runs if r.dir in recipes]
    undistilled = [r for r in known if recipes[r.dir].distill is None]
    groups: dict[str, list] = {}
    for r in known:
        groups.setdefault(_student_key(recipes[r.dir]), []).append(r)
    out = []
    for members in groups.values():
        controls: dict[int, list] = {}
        for r in members:
            if recipes[r.dir].distill is None:
                controls.setdefault(recipes[r.dir].train.seed, []).append(r)
        settings: dict[str, list] = {}
        for r in members:
            if recipes[r.dir].distill is not None:
                settings.setdefault(_distill_key(recipes[r.dir]), []).append(r)
        for runs_d in settings.values():
            pairs: dict[bool, list] = {True: [], False: []}
            for r in runs_d:
                mine = controls.get(recipes[r.dir].train.seed)
                if not mine:
                    out.append(_refusal(r, recipes[r.dir], undistilled, recipes))
                    continue
                c, matched = _pick_control(budgets[r.dir], mine, budgets)
                pairs[matched].append((r, c))
            matched = bool(pairs[True])
            chosen = pairs[True] or pairs[False]  # compute-matched pairs when any seed has one
            if chosen:
                out += _task_verdicts(chosen, matched, recipes, budgets)
    return out


def _task_verdicts(pairs: list, matched: bool, recipes: dict, budgets: dict) -> list[dict]:
    out = []
    for task in sorted({t for r, _ in pairs for t in r.scores}):
        ok = [(a, b) for a, b in pairs if task in a.scores and task in b.scores]
        if not ok:
            continue
        if ok[0][0].scores[task].metric == "mae":
            sign, scale, unit = -1.0, 1.0, "MAE"
        else:
            sign, scale, unit = 1.0, 100.0, "points"
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
        clause, warning = _budget_note(matched, [budgets[a.dir] for a, _ in ok], [budgets[b.dir] for _, b in ok])
        line += f" ({clause})" + (f"; warning: {warning}" if warning else "")
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
                "compute_matched": matched,
                "budgets": {
                    "distilled": [budgets[a.dir] for a, _ in ok],
                    "control": [budgets[b.dir] for _, b in ok],
                },
                "warning": warning,
                "verdict": line,
            }
        )
    return out


def render(rows: list[dict]) -> list[str]:
    """The report's markdown section."""
    L = [
        "## Did distillation pay? (same student with vs without the teacher, paired by seed, compute-matched "
        "when a control of the same budget exists)",
        "",
    ]
    if not rows:
        return L + ["_no distilled run with an undistilled run of the same student (same recipe but the teacher)_", ""]
    L += ["| task | student | distillation | per seed | verdict |", "|---|---|---|---|---|"]
    for d in rows:
        per = ", ".join(f"{x:+.2f}" for x in d.get("per_seed", [])) or "-"  # a refusal has none
        L.append(f"| {d['task']} | {d['student']} | {d['setting']} | {per} | {d['verdict']} |")
    return L + [""]
