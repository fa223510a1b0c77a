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
