"""The CLI: help lists verbs with examples; user mistakes are one line on stderr + non-zero exit, no traceback."""

import subprocess
import sys

import pytest
import yaml
from conftest import REPO, tiny_recipe_dict


def edgetl(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "edgetl", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=300
    )


def test_help_lists_verbs_with_examples():
    r = edgetl("--help")
    assert r.returncode == 0
    for verb in ("train", "export", "bench", "eval", "predict", "devices"):
        assert verb in r.stdout
    assert r.stdout.count("edgetl ") >= 6  # an example per verb


def _assert_one_line_error(r, needle):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]


def _write(tmp_path, d):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_missing_recipe_file(tmp_path):
    _assert_one_line_error(edgetl("train", str(tmp_path / "missing.yaml")), "recipe file not found")


def test_unknown_key(tmp_path):
    _assert_one_line_error(
        edgetl("train", str(_write(tmp_path, tiny_recipe_dict())), "train.epocs=2"), "train.epocs: unknown key"
    )


def test_wrong_type(tmp_path):
    d = tiny_recipe_dict()
    d["train"]["batch_size"] = "many"
    _assert_one_line_error(edgetl("train", str(_write(tmp_path, d))), "train.batch_size")


def test_missing_dataset_directory(tmp_path):
    d = tiny_recipe_dict()
    d["data"] = {"source": "imagefolder", "path": str(tmp_path / "no-such-dir")}
    _assert_one_line_error(
        edgetl("train", str(_write(tmp_path, d)), "--runs-dir", str(tmp_path / "runs")), "image folder not found"
    )


def test_unknown_backbone(tmp_path):
    d = tiny_recipe_dict()
    d["backbone"]["name"] = "mobilenet_v9"
    _assert_one_line_error(
        edgetl("train", str(_write(tmp_path, d)), "--runs-dir", str(tmp_path / "runs")),
        "unknown backbone 'mobilenet_v9'",
    )


def test_empty_class_folder(tmp_path):
    import numpy as np
    from PIL import Image

    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "a" / "x.png")
    d = tiny_recipe_dict()
    d["data"] = {"source": "imagefolder", "path": str(root)}
    _assert_one_line_error(
        edgetl("train", str(_write(tmp_path, d)), "--runs-dir", str(tmp_path / "runs")), "class folder has no images"
    )


def test_unknown_device_lists_known(tmp_path):
    r = edgetl("bench", str(tmp_path), "--device", "jetson-nope")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_debug_shows_traceback(tmp_path):
    r = edgetl("--debug", "train", str(tmp_path / "missing.yaml"))
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize(
    "args", [("export", "/nonexistent/run"), ("eval", "/nonexistent/run"), ("predict", "/nonexistent/bundle", "x.png")]
)
def test_missing_run_or_bundle(args):
    r = edgetl(*args)
    _assert_one_line_error(r, "not")


def test_runs_listing_never_truncates_when_not_a_terminal(tmp_path):
    """`edgetl runs > file`: one whole line per run (names, errors, bundles), however narrow the console."""
    import io
    import json

    from rich.console import Console

    from edgetl.runs.layout import list_runs, print_runs

    error = "EdgetlError: " + "a long reason that names the file, the field and the value " * 3
    for i in range(4):
        d = tmp_path / f"student-alone-for-the-same-steps-seed-{i}"
        d.mkdir()
        info = {"status": "failed" if i == 3 else "completed", "best_score": 0.9, "backbone": "mobilenet_v2"}
        (d / "run.json").write_text(json.dumps({**info, "error": error} if i == 3 else info))
    out = io.StringIO()
    print_runs(list_runs(tmp_path), Console(file=out, width=40))  # a file: not a terminal
    lines = out.getvalue().splitlines()
    assert lines[0].split("\t") == ["run", "status", "best score", "epoch", "backbone", "bundle"]
    names = sorted(line.split("\t")[0] for line in lines[1:])
    assert names == [f"student-alone-for-the-same-steps-seed-{i}" for i in range(4)]
    assert any(line.split("\t")[1] == "failed: " + " ".join(error.split()) for line in lines)
    assert "…" not in out.getvalue()

    tty = io.StringIO()  # on a terminal: a table whose cells fold instead of ending in "…"
    print_runs(list_runs(tmp_path), Console(file=tty, width=60, force_terminal=True, color_system=None))
    assert "…" not in tty.getvalue() and "seed-3" in tty.getvalue()
