"""Each decision taken once (issue 25): a calibration method a backend lacks is refused, never swapped; a run's
recipe.yaml is read once per export, per resume and per distillation teacher; one table of data sources; the
`edgetl export` command and `export_run(...)` give the same bundle; the CLI only wires."""

from __future__ import annotations

import ast
import json
import shutil

import pytest
from conftest import REPO, tiny_recipe_dict
from helpers import run_cli

from edgetl import recipe as recipe_mod
from edgetl.errors import EdgetlError


@pytest.fixture
def recipe_reads(monkeypatch):
    """Every recipe file parsed from here on (the one reader under load_recipe), by resolved path."""
    reads: list[str] = []
    real = recipe_mod.read_yaml

    def counting(path):
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(recipe_mod, "read_yaml", counting)
    return reads


# ------------------------------------------------------------------------------------ 1. calibration methods
def test_calibration_method_the_tensorrt_backend_lacks_is_refused_not_swapped(tiny_recipe):
    from edgetl.bundle.pipeline import ExportOptions

    for target in ("tensorrt", "all"):
        with pytest.raises(EdgetlError) as e:
            ExportOptions(int8=True, target=target, calibration_method="percentile").resolved(tiny_recipe())
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("--calibration 'percentile': INT8 for the tensorrt target"), msg
        assert "(int8-modelopt) calibrates with minmax, entropy only" in msg, msg
    # the same method from the recipe names the recipe's field
    with pytest.raises(EdgetlError, match=r"^export.calibration.method 'percentile': INT8 for the tensorrt"):
        ExportOptions(int8=True, target="tensorrt").resolved(tiny_recipe(**{"export.calibration.method": "percentile"}))
    # what each backend has runs under its own name
    r = ExportOptions(int8=True, target="cpu", calibration_method="percentile").resolved(tiny_recipe())
    assert (r.calibration_method, r.int8_targets) == ("percentile", ["cpu"])
    r = ExportOptions(int8=True, target="all", calibration_method="entropy").resolved(tiny_recipe())
    assert (r.calibration_method, r.int8_targets) == ("entropy", ["cpu", "tensorrt"])


def test_cli_export_percentile_for_tensorrt_is_one_line(trained_run, monkeypatch, capsys):
    args = ("export", str(trained_run.dir), "--int8", "--target", "tensorrt", "--calibration", "percentile", "-q")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    assert "'percentile'" in err and "tensorrt" in err and "minmax, entropy" in err, err


def test_each_quantizer_knows_exactly_the_catalogue_methods():
    """The catalogue is the one list: ORT's and modelopt's translations cover it exactly, nothing else."""
    from edgetl.quantize.modelopt_int8 import MODELOPT_METHOD
    from edgetl.quantize.ort_int8 import METHODS
    from edgetl.runtime.artifacts import int8_artifact_for

    assert set(MODELOPT_METHOD) == set(int8_artifact_for("tensorrt").calibration) == {"minmax", "entropy"}
    assert METHODS == int8_artifact_for("cpu").calibration == ("minmax", "entropy", "percentile")


# ---------------------------------------------------------------------------------- 2. export reads once
def test_export_resolves_options_once_and_reads_the_recipe_once(trained_run, tmp_path, monkeypatch, recipe_reads):
    from edgetl.bundle import pipeline

    resolved = []
    real = pipeline.ExportOptions.resolved
    monkeypatch.setattr(pipeline.ExportOptions, "resolved", lambda self, r: resolved.append(r) or real(self, r))
    pipeline.export_run(trained_run.dir, pipeline.ExportOptions(out_dir=tmp_path / "b", progress=False))
    assert recipe_reads == [str(trained_run.recipe_path)]
    assert len(resolved) == 1 and resolved[0] is not None  # over the run's recipe, not a throw-away default pass


# ----------------------------------------------------------------------------------- 3. resume reads once
def test_resume_reads_the_runs_recipe_once(trained_run, tmp_path, monkeypatch, capsys, recipe_reads):
    run = tmp_path / "run"
    shutil.copytree(trained_run.dir, run, ignore=shutil.ignore_patterns("export"))
    code, _, err = run_cli(monkeypatch, capsys, "train", "--resume", str(run), "-q")
    assert code == 0, err
    assert recipe_reads == [str(run / "recipe.yaml")]


# --------------------------------------------------------------------------------------- 4. data sources
def test_one_table_of_sources_declares_each_input_kind():
    from edgetl.data.eval_resize import resize_of
    from edgetl.recipe import BUILTIN_DATASETS, DATA_SOURCES, recipe_from_dict
    from edgetl.train.checks import check_recipe

    assert DATA_SOURCES["webdataset"].input_kind == "image" and DATA_SOURCES["csv"].input_kind is None
    assert set(BUILTIN_DATASETS) == {n for n, s in DATA_SOURCES.items() if not s.files}
    text = {
        "name": "t",
        "backbone": {"name": "minilm", "weights": "offline"},
        "input": {"kind": "text"},
        "tasks": [{"name": "topic"}, {"name": "scene", "dataset": "shards"}],
        "data": {"source": "bbc-news"},
        "extra_data": {"shards": {"source": "webdataset", "path": "shards/"}},
    }
    with pytest.raises(EdgetlError, match=r"^extra_data.shards.source 'webdataset' does not hold text examples"):
        check_recipe(recipe_from_dict(text))
    shards = recipe_from_dict(tiny_recipe_dict(**{"data": {"source": "webdataset", "path": "shards/"}}))
    assert resize_of(shards)[0] == "shorter_crop"  # image files: the photo resize
    assert resize_of(recipe_from_dict(tiny_recipe_dict()))[0] == "bilinear"  # a built-in array set


# --------------------------------------------------------------------------------- 5. the teacher, once
def test_distillation_teacher_recipe_is_read_and_checked_once(trained_run, tmp_path, monkeypatch, recipe_reads):
    from edgetl.recipe import recipe_from_dict
    from edgetl.train import distill
    from edgetl.train.loop import train

    teacher = tmp_path / "teacher"  # its outputs are cached in the teacher's run dir: a copy, not the shared run
    shutil.copytree(trained_run.dir, teacher, ignore=shutil.ignore_patterns("export"))
    checked = []
    real = distill.check_teacher_tasks
    monkeypatch.setattr(distill, "check_teacher_tasks", lambda *a: checked.append(a[2]) or real(*a))
    small = {"limit_train": 32, "limit_val": 16, "limit_test": 16, "val_fraction": 0.15, "test_fraction": 0.15}
    rec = recipe_from_dict(
        tiny_recipe_dict(**{"name": "student", "data.split": small, "distill": {"teacher": str(teacher)}})
    )
    train(rec, runs_dir=tmp_path / "runs", progress=False, stop_after_steps=1)
    assert recipe_reads.count(str(teacher / "recipe.yaml")) == 1, recipe_reads
    assert checked == [str(teacher)]


# ------------------------------------------------------------------------------- 6. the CLI only wires
def test_export_command_and_export_run_write_the_same_manifest(trained_run, tmp_path, monkeypatch, capsys):
    from edgetl.bundle.pipeline import ExportOptions, export_run

    a, b = tmp_path / "cli", tmp_path / "api"
    code, _, err = run_cli(monkeypatch, capsys, "export", str(trained_run.dir), "--out", str(a), "--deepstream", "-q")
    assert code == 0, err
    export_run(trained_run.dir, ExportOptions(out_dir=b, deepstream=True, progress=False))

    def comparable(bundle):
        m = json.loads((bundle / "manifest.json").read_text())
        m.pop("created_utc"), m.pop("export_seconds")  # when and how long: the only fields allowed to differ
        return m

    assert comparable(a) == comparable(b)
    ds = [(d / "deepstream" / "config_infer.txt").read_text().replace(str(d), "<bundle>") for d in (a, b)]
    assert ds[0] == ds[1] and "[property]" in ds[0]


def test_no_cli_function_is_over_40_lines():
    tree = ast.parse((REPO / "edgetl" / "cli.py").read_text())
    long = [
        f"{n.name}: {n.end_lineno - n.lineno + 1} lines"
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 40
    ]
    assert not long, long
