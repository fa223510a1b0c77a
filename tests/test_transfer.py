"""Transfer recipes and the transfer report.

Every recipe in recipes/ trains offline on a tiny subset (overrides only); the report pairs runs correctly
(scratch / linear probe / multi-task / distilled / export precision), flags negative transfer and noise, and
writes markdown + JSON + PNG, from Python and from `edgetl report`.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from edgetl.errors import EdgetlError
from edgetl.reports.transfer import RunSummary, TaskScore, compare, render_markdown

RECIPES = sorted(p.name for p in (REPO / "recipes").glob("*.yaml") if p.name != "quickstart.yaml")


def _summary(
    name, role, tasks, scores, n=1000, backbone="mobilenet_v2", weights="offline", teacher=None, exports=None, rows="r1"
):
    policy = {"linear-probe": "linear_probe"}.get(role, "none")
    return RunSummary(
        name=name,
        dir=f"/runs/{name}",
        role=role,
        variant="",
        backbone=backbone,
        weights=weights,
        input="image 64px",
        tasks={t: "classification" for t in tasks},
        task_keys={t: f"key-{t}" for t in tasks},
        epochs=3,
        train_seconds=10.0,
        teacher=teacher,
        scores={t: TaskScore("accuracy", v, n, rows) for t, v in scores.items()},
        exports=exports or {},
        policy=policy,
    )


def test_compare_pairs_runs_by_role_and_flags_negative_transfer():
    runs = [
        _summary(
            "ft",
            "fine-tuned",
            ["category"],
            {"category": 0.90},
            exports={"fp32": {"category": 0.90}, "int8-ort": {"category": 0.885}},
        ),
        _summary("scratch", "scratch", ["category"], {"category": 0.70}, weights="none"),
        _summary("probe", "linear-probe", ["category"], {"category": 0.80}),
        _summary("multi", "fine-tuned", ["category", "group"], {"category": 0.895, "group": 0.97}),
        _summary("group", "fine-tuned", ["group"], {"group": 0.95}),
        _summary("teacher", "fine-tuned", ["category"], {"category": 0.92}, backbone="efficientnet_lite0"),
        _summary("student", "distilled", ["category"], {"category": 0.91}, teacher="/runs/teacher"),
        _summary("other-rows", "scratch", ["category"], {"category": 0.60}, weights="none", backbone="resnet18"),
    ]
    c = compare(runs)
    gain = {(d["run"], d["baseline"]): d for d in c["transfer_gain"]}
    assert gain[("ft", "scratch")]["delta"] == pytest.approx(20.0)
    assert gain[("probe", "scratch")]["delta"] == pytest.approx(10.0)
    assert ("student", "scratch") not in gain and ("teacher", "scratch") not in gain  # other backbone / distilled
    assert not any(d["baseline"] == "other-rows" for d in c["transfer_gain"])
    assert [(d["run"], d["baseline"]) for d in c["finetune_vs_linear_probe"]] == [("ft", "probe")]
    mt = {d["task"]: d for d in c["multitask_vs_single"]}
    assert mt["category"]["baseline"] == "ft" and mt["category"]["negative_transfer"]
    assert mt["category"]["within_noise"]  # -0.5 points on 1000 rows: well inside 2 SE (about 2.7 points)
    assert mt["group"]["delta"] == pytest.approx(2.0) and not mt["group"]["negative_transfer"]
    dist = c["distill"]
    assert (
        [d["baseline"] for d in dist] == ["ft"]
        and dist[0]["delta"] == pytest.approx(1.0)
        and dist[0]["teacher_score"] == pytest.approx(0.92)
    )
    ep = {d["artifact"]: d for d in c["export_precision"]}
    assert ep["int8-ort"]["drop"] == pytest.approx(1.5) and ep["fp32"]["drop"] == 0
    md = render_markdown(runs, c, "test")
    assert "NEGATIVE TRANSFER (within noise)" in md and "+20.00" in md
    assert "## Summary" in md and "favour the pretrained" in md


def test_different_test_rows_are_flagged():
    a = _summary("ft", "fine-tuned", ["category"], {"category": 0.9})
    b = _summary("scratch", "scratch", ["category"], {"category": 0.7}, weights="none", rows="r2")
    (d,) = compare([a, b])["transfer_gain"]
    assert not d["same_test_rows"] and "[different test rows]" in render_markdown([a, b], compare([a, b]), "test")


def test_report_needs_two_runs_sharing_a_task(tmp_path):
    from edgetl.reports.transfer import transfer_report

    with pytest.raises(EdgetlError, match="at least two runs"):
        transfer_report([str(tmp_path)], tmp_path / "out")
    with pytest.raises(EdgetlError, match="run directory not found"):
        transfer_report([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out")


def tiny_overrides(path: Path, teacher: str | None = None, data_root: Path | None = None) -> list[str]:
    """Overrides that make any recipe in recipes/ train in seconds (image: 32 px, 48 rows; text: 24 tokens);
    recipes for a user's own data get generated data under `data_root`."""
    import yaml
    from yourdata import data_for_recipe

    d = yaml.safe_load(path.read_text())
    text = d.get("input", {}).get("kind") == "text"
    o = ["train.epochs=2", "train.batch_size=16", "train.num_threads=2"]
    if text:
        o += ["input.max_length=24", "data.split.limit_train=30", "data.split.limit_val=15", "data.split.limit_test=15"]
    else:
        o += ["input.image_size=32", "data.split.limit_train=48", "data.split.limit_val=24", "data.split.limit_test=24"]
        if "distill" in d:
            o.append("input.image_size=24")  # the student stays smaller than the (tiny) teacher
            if d["distill"].get("unlabeled"):
                o.append("distill.unlabeled.limit=48")
    for name in d.get("extra_data", {}):
        o += [
            f"extra_data.{name}.split.limit_train=24",
            f"extra_data.{name}.split.limit_val=12",
            f"extra_data.{name}.split.limit_test=12",
        ]
    if teacher:
        o.append(f"distill.teacher={teacher}")
    if data_root is not None and (made := data_for_recipe(d, data_root)) is not None:
        o.append(f"data.path={made}")
    return o


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory):
    """Every recipe, tiny; plus the baselines the report needs (scratch, single-task group, undistilled student)."""
    from edgetl.recipe import load_recipe
    from edgetl.train.loop import train

    runs_dir = tmp_path_factory.mktemp("recipes")
    out = {}

    def go(recipe_file, name, extra=(), teacher=None):
        path = REPO / "recipes" / recipe_file
        rec = load_recipe(path, tiny_overrides(path, teacher, data_root=runs_dir) + list(extra))
        out[name] = train(rec, name=name, runs_dir=runs_dir, progress=False)
        return out[name]

    teacher = go("distill-teacher.yaml", "distill-teacher")
    for f in RECIPES:
        if f != "distill-teacher.yaml":
            go(f, f.removesuffix(".yaml"), teacher=str(teacher.dir) if f == "distill.yaml" else None)
    go("distill-teacher.yaml", "scratch", ["backbone.weights=none"])
    go("distill-teacher.yaml", "group-only", ["tasks.0.name=group", "tasks.0.column=group"])
    go("distill.yaml", "student-undistilled", ["distill=null"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_trains_offline_tiny(recipe_runs, recipe):
    run = recipe_runs[recipe.removesuffix(".yaml")]
    info = run.info()
    rows = run.metrics()
    assert info["status"] == "completed" and len(rows) == 2
    rec = run.recipe()
    for t in rec.tasks:
        assert rows[-1]["val"][t.name]["n"] > 0
    if rec.train.freeze.policy == "gradual":
        assert [r["frozen_stages"] for r in rows] == [5, 4]
    if rec.train.freeze.policy in ("linear_probe", "first_k"):
        assert all(r["cached"] for r in rows)
    if rec.distill is not None and rec.distill.feature != "none":  # the training-only projection, kept for resume
        assert (run.checkpoints / "last.distill.safetensors").is_file()
    if rec.distill is not None and rec.distill.unlabeled is not None:
        assert info["summary"]["data"]["unlabeled_rows"] == rec.distill.unlabeled.limit


@pytest.mark.slow
def test_transfer_report_end_to_end(recipe_runs, tmp_path):
    from edgetl.bundle.pipeline import ExportOptions, export_run

    export_run(recipe_runs["distill-teacher"].dir, ExportOptions(int8=True, target="cpu", progress=False))
    names = ["distill-teacher", "scratch", "linear-probe", "multitask", "group-only", "distill", "student-undistilled"]
    dirs = [str(recipe_runs[n].dir) for n in names]
    p = subprocess.run(
        [sys.executable, "-m", "edgetl", "report", *dirs, "--out", str(tmp_path / "rep")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    roles = {r["name"]: r["role"] for r in rep["runs"]}
    assert roles == {
        "distill-teacher": "fine-tuned",
        "scratch": "scratch",
        "linear-probe": "linear-probe",
        "multitask": "fine-tuned",
        "group-only": "fine-tuned",
        "distill": "distilled",
        "student-undistilled": "partial-freeze",  # recipes/distill.yaml's student: first 3 stages frozen
    }
    c = rep["comparisons"]
    assert {(d["run"], d["baseline"]) for d in c["transfer_gain"]} >= {
        ("distill-teacher", "scratch"),
        ("linear-probe", "scratch"),
    }
    assert all(d["same_test_rows"] for d in c["transfer_gain"])
    assert {(d["run"], d["baseline"], d["task"]) for d in c["multitask_vs_single"]} == {
        ("multitask", "distill-teacher", "category"),
        ("multitask", "group-only", "group"),
    }
    assert [(d["run"], d["baseline"]) for d in c["distill"]] == [("distill", "student-undistilled")]
    assert {d["artifact"] for d in c["export_precision"]} == {"fp32", "int8-ort"}
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Transfer gain" in md and "## Multi-task vs single-task" in md and "| distill |" in md
    png = (tmp_path / "rep" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # eval.json of each run was written and is reused by a second report (no re-evaluation)
    assert all((Path(d) / "eval.json").is_file() for d in dirs)
