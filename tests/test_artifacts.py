"""The artifact catalogue (edgetl.runtime.artifacts) and the export options resolved once over the recipe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from edgetl.errors import EdgetlError
from edgetl.runtime import artifacts as cat

REPO = Path(__file__).resolve().parents[1]


def test_every_artifact_has_one_entry_with_its_file_named_after_it():
    for name, k in cat.ARTIFACT_KINDS.items():
        assert k.name == name and k.file.startswith(f"model.{name}.")
        assert k.format in ("onnx", "tensorrt") and k.precision in ("fp32", "fp16", "int8")
        assert k.file.endswith(".onnx" if k.format == "onnx" else ".engine")


def test_engines_are_built_from_onnx_artifacts_per_tensorrt_major():
    assert {k.name for k in cat.engine_kinds()} == {"trt-fp32", "trt-fp16", "trt-int8"}
    assert cat.engine_source("trt-fp16", 10) == "fp32"  # TensorRT 10: FP16 from the FP32 model (builder flag)
    assert cat.engine_source("trt-fp16", 11) == "fp16"  # TensorRT 11 dropped implicit FP16: the FP16 ONNX model
    assert cat.engine_source("trt-int8", 11) == "int8-modelopt"
    for k in cat.engine_kinds():
        for major in (10, 11, 12):
            assert cat.ARTIFACT_KINDS[cat.engine_source(k.name, major)].format == "onnx"
    with pytest.raises(KeyError):
        cat.engine_source("trt-fp32", 8)


def test_default_choices_follow_the_ranks():
    assert cat.default_fallback({"fp32": {}, "int8-ort": {}}) == "int8-ort"
    assert cat.default_fallback({"fp32": {}, "fp16": {}}) == "fp32"
    assert cat.default_fallback({"fp16": {}}) is None
    assert cat.deepstream_choice({"fp32": {}, "trt-fp32": {}, "trt-int8": {}}) == "trt-int8"
    assert cat.deepstream_choice({"fp32": {}, "int8-ort": {}}) == "fp32"
    assert cat.int8_artifact_for("cpu").name == "int8-ort"
    assert cat.int8_artifact_for("tensorrt").name == "int8-modelopt"


def test_headline_metric_per_task_kind():
    m = {"accuracy": 0.9, "macro_f1": 0.8}
    assert cat.headline_value(m, "classification") == 0.9 and cat.headline_score("classification", m) == 0.9
    assert cat.headline_value({"micro_f1": 0.7, "subset_accuracy": 0.5}, "multilabel") == 0.7
    assert cat.headline_score("regression", {"mae": 0.25, "rmse": 0.3}) == -0.25  # higher is better
    assert cat.headline_value({"mae": 0.25}) == 0.25 and cat.infer_kind({"mae": 0.25}) == "regression"
    assert cat.headline_value({"accuracy": float("nan")}, "classification") is None
    assert cat.format_headline("classification", 0.904) == "90.40"
    assert cat.format_headline("regression", 0.1234, unit=True) == "0.123 MAE"
    assert cat.format_headline("multilabel", None) == "-"


def test_primary_score_and_drops_read_the_catalogue():
    from edgetl.evaluate.metrics import primary_score, task_drops

    assert primary_score("regression", {"mae": 2.0}) == -2.0
    d = task_drops({"a": {"accuracy": 0.9}, "r": {"mae": 1.0}}, {"a": {"accuracy": 0.88}, "r": {"mae": 1.5}},
                   {"a": "classification", "r": "regression"})  # fmt: skip
    assert d == pytest.approx({"a": 2.0, "r": 0.5})


def test_no_other_module_keeps_its_own_artifact_table():
    """Artifact file names and the engine preference order are written in the catalogue only."""
    offenders = []
    for path in (REPO / "edgetl").rglob("*.py"):
        if path.name == "artifacts.py":
            continue
        text = path.read_text()
        for needle in ('"model.fp32.onnx"', '"model.int8-ort.onnx"', '"model.trt-', '("trt-int8", "trt-fp16"'):
            if needle in text:
                offenders.append(f"{path.relative_to(REPO)}: {needle}")
        if 'm.get("accuracy", m.get(' in text:
            offenders.append(f"{path.relative_to(REPO)}: re-derives the headline metric")
    assert not offenders, offenders


# ------------------------------------------------------------------------------ ExportOptions.resolved(recipe)
def test_resolved_fills_in_the_recipe_and_keeps_the_command_line(tiny_recipe):
    from edgetl.bundle.pipeline import ExportOptions

    rec = tiny_recipe(**{"export.target": "cpu", "export.max_drop": 0.5, "export.calibration.method": "entropy"})
    r = ExportOptions(int8=True).resolved(rec)
    assert (r.target, r.max_drop, r.calibration_method, r.calibration_size) == ("cpu", 0.5, "entropy", 64)
    assert r.qat_spec == rec.export.qat
    r = ExportOptions(int8=True, target="all", max_drop=2.0, calibration_size=16).resolved(rec)
    assert (r.target, r.max_drop, r.calibration_method, r.calibration_size) == ("all", 2.0, "entropy", 16)
    opts = ExportOptions()
    assert opts.resolved(rec).log is opts.log  # progress messages still reach the caller's list


@pytest.mark.parametrize(
    "over, needle",
    [
        ({"target": "gpu"}, "--target 'gpu'"),
        ({"max_drop": 101.0}, "--max-drop 101.0"),
        ({"calibration_method": "kl"}, "--calibration 'kl'"),
        ({"calibration_size": 0}, "--calibration-size 0"),
        ({"threads": 0}, "--threads 0"),
        ({"qat": True, "int8": False}, "--qat needs --int8"),
    ],
)
def test_resolved_refuses_bad_options_in_one_line(tiny_recipe, over, needle):
    from edgetl.bundle.pipeline import ExportOptions

    with pytest.raises(EdgetlError) as e:
        ExportOptions(**{"int8": True, **over}).resolved(tiny_recipe())
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_recipe_export_target_cpu_makes_a_cpu_bundle_even_where_tensorrt_would_be_chosen(
    trained_run, tmp_path, monkeypatch
):
    """`export.target: cpu` in the recipe, no --target: the CPU INT8 model, though `auto` would pick TensorRT."""
    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.runtime import trt_support

    monkeypatch.setattr(trt_support, "trt_available", lambda: (True, "pretend TensorRT is here"))
    run = tmp_path / "run"
    shutil.copytree(trained_run.dir, run, ignore=shutil.ignore_patterns("export"))
    rec = yaml.safe_load((run / "recipe.yaml").read_text())
    rec.setdefault("export", {})["target"] = "cpu"
    (run / "recipe.yaml").write_text(yaml.safe_dump(rec))
    opts = ExportOptions(int8=True, progress=False, gate_latency=False)
    assert opts.target is None  # what `edgetl export RUN --int8` passes
    bundle = export_run(run, opts)
    import json

    arts = json.loads((bundle / "manifest.json").read_text())["artifacts"]
    assert "int8-ort" in arts and arts["int8-ort"]["target"] == "cpu" and "int8-modelopt" not in arts


def test_auto_target_follows_tensorrt_availability(monkeypatch):
    """The control for the test above: with the recipe's default (auto), TensorRT would have been chosen."""
    from edgetl.bundle.pipeline import resolve_targets
    from edgetl.runtime import trt_support

    monkeypatch.setattr(trt_support, "trt_available", lambda: (True, "pretend"))
    assert resolve_targets("auto") == ["tensorrt"]
    monkeypatch.setattr(trt_support, "trt_available", lambda: (False, "none"))
    assert resolve_targets("auto") == ["cpu"]
