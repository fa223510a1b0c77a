"""The benchmark scripts that need hardware we rarely have still run: their CPU smoke mode, end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_train_throughput_smoke_runs_both_sides_on_cpu():
    """benchmarks/gpu_train_throughput.py is run only when a GPU is lent: its --smoke mode (CPU, 48 images) runs
    the hand-written loop and `edgetl train` for both configurations, so a broken script shows up here first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_train_throughput.py"), "--smoke"],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for arch in ("resnet50", "mobilenet_v2"):
        row = re.search(rf"^{arch}\s+32\s+8\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", r.stdout, re.M)
        assert row, r.stdout
        hand, ours = int(row.group(1)), int(row.group(2))
        assert hand > 0 and ours > 0
    assert "not a measurement" in r.stdout
    assert not (REPO / "benchmarks/results/gpu_train_throughput.json").exists()  # a smoke run records nothing
