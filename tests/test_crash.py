"""Internal errors are reported, not dumped: one line naming the step, the exception and the loaded library
versions, the traceback in a crash log (in the run dir when there is one), exit 1; --debug shows the traceback.
A training run that dies says so in run.json; one that never started leaves no run dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_recipe_dict

from edgetl.crash import failing_step, report_crash
from edgetl.errors import EdgetlError
from edgetl.recipe import recipe_from_dict
from edgetl.runs.layout import Run

REPO = Path(__file__).resolve().parents[1]


def test_report_names_step_exception_versions_and_writes_the_log(tmp_path):
    import numpy  # noqa: F401  (a loaded library: its version is named)

    from edgetl.data.transforms import flip_mask

    try:
        flip_mask("not a size", None)
    except Exception as e:  # noqa: BLE001 - any internal error
        exc = e
    line, log = report_crash(exc, "train", tmp_path)
    assert line.startswith("internal error in edgetl train (edgetl.data.transforms:flip_mask): ")
    assert type(exc).__name__ in line and "numpy " in line and str(log) in line and "\n" not in line
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "flip_mask" in log.read_text()
    assert failing_step(exc) == "edgetl.data.transforms:flip_mask"


def test_report_without_a_run_dir_goes_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    line, log = report_crash(RuntimeError("x"), "bench", None)
    assert log.parent == tmp_path / "edgetl" / "crashes" and log.is_file()


INJECT = """
import sys
import edgetl.cli as cli
import edgetl.bundle.pipeline as pipeline

def broken(run, opts):
    raise ZeroDivisionError("boom in a dependency")

pipeline.export_run = broken
sys.argv = ["edgetl", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_cli_internal_error_is_one_line_with_a_crash_log_in_the_run_dir(tmp_path, debug):
    run = tmp_path / "run"
    run.mkdir()
    args = [sys.executable, "-c", INJECT, *(["--debug"] if debug else []), "export", str(run)]
    p = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 1
    logs = list(run.glob("crash-export-*.log"))
    if debug:
        assert "Traceback" in p.stderr and "ZeroDivisionError: boom" in p.stderr and not logs
        return
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: internal error in edgetl export (edgetl.cli:export): ZeroDivisionError: boom")
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert "Traceback" in text and "broken" in text and "command line:" in text


def _recipe():
    return recipe_from_dict(
        tiny_recipe_dict(
            **{
                "data.split.limit_train": 64,
                "data.split.limit_val": 32,
                "data.split.limit_test": 32,
                "train.batch_size": 16,
            }
        )
    )


def test_a_run_that_fails_before_training_leaves_no_run_dir(tmp_path, monkeypatch):
    import edgetl.train.loop as loop

    def bad_data(*a, **k):
        raise EdgetlError("data.path: no such folder")

    monkeypatch.setattr(loop, "load_splits", bad_data)
    with pytest.raises(EdgetlError, match="no such folder"):
        loop.train(_recipe(), name="bad", runs_dir=tmp_path, progress=False)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "exc, status", [(RuntimeError("cuda went away"), "failed"), (KeyboardInterrupt(), "interrupted")]
)
def test_a_run_that_dies_while_training_says_so_in_run_json(tmp_path, monkeypatch, exc, status):
    import edgetl.train.loop as loop

    def dies(self, *a, **k):
        raise exc

    monkeypatch.setattr(loop.Trainer, "evaluate", dies)  # after the first epoch's training steps
    with pytest.raises(type(exc)) as e:
        loop.train(_recipe(), name="dies", runs_dir=tmp_path, progress=True)
    info = Run(tmp_path / "dies").info()
    assert info["status"] == status and info["finished_utc"]
    if status == "failed":
        assert info["error"] == "RuntimeError: cuda went away"
    else:
        assert info["error"] is None
    assert e.value.edgetl_run_dir == tmp_path / "dies"
