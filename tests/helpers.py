"""Helpers several test files share (fixtures shared by many live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the real console entry point in-process; returns (exit code, stdout, stderr)."""
    from edgetl import cli

    monkeypatch.setattr(sys, "argv", ["edgetl", *map(str, args)])
    monkeypatch.setitem(cli._STATE, "debug", False)
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def image_input(size=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), scale: float = 1 / 255) -> dict:
    """The `input` section of a bundle manifest: an NCHW float32 RGB image, squashed to `size`."""
    return {
        "kind": "image",
        "name": "input",
        "layout": "NCHW",
        "dtype": "float32",
        "image_size": list(size),
        "channels": 3,
        "resize": "bilinear",
        "scale": scale,
        "mean": list(mean),
        "std": list(std),
    }


def onnx_artifact(path, precision: str = "fp32", **extra) -> dict:
    """A manifest `artifacts` entry for the ONNX file at `path` (its real sha256 and size), plus `extra` fields."""
    from edgetl.runtime.manifest import sha256_file

    return {
        "file": path.name,
        "format": "onnx",
        "precision": precision,
        "target": "any",
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        **extra,
    }


def edgetl_cli(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m edgetl ARGS` in a child process from the repository root: the real console entry point."""
    cmd = [sys.executable, "-m", "edgetl", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)


def one_error_line(p: subprocess.CompletedProcess) -> str:
    """The command failed with exactly one line on stderr (no traceback); returns that line."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1, p.stderr
    return lines[0]


def text_input(max_length: int) -> dict:
    """The `input` section of a text bundle's manifest: int64 ids and mask from the bundle's tokenizer.json."""
    return {
        "kind": "text",
        "names": ["input_ids", "attention_mask"],
        "dtype": "int64",
        "tokenizer": "tokenizer/tokenizer.json",
        "max_length": max_length,
        "padding": "longest",
    }


def fake_engine(engine, content: bytes = b"not really an engine", **fields):
    """A file standing for a TensorRT engine (not a real plan) and its sidecar manifest, by default built with
    TensorRT 10.3.0 on an Orin (8.7) from an FP16 model: `fields` override any manifest field."""
    from edgetl.runtime.engine_manifest import EngineManifest, sha256_file

    engine.write_bytes(content)
    defaults = dict(
        engine_file=engine.name,
        engine_sha256=sha256_file(engine),
        onnx_file="model.fp16.onnx",
        onnx_sha256="0" * 64,
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
        precision="fp16",
        strongly_typed=False,
    )
    EngineManifest(**{**defaults, **fields}).write(engine)
    return engine


def export_text_onnx(model, path) -> None:
    """Export an (input_ids, attention_mask) -> topic model to ONNX: opset 17, batch and sequence dynamic."""
    import warnings

    import torch

    ids = torch.ones(2, 5, dtype=torch.int64)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids)),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input_ids", "attention_mask"],
            output_names=["topic"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "topic": {0: "batch"},
            },
        )
