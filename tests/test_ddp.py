"""`edgetl train` under PyTorch's own launcher: a real 2-process Gloo job on CPU.

It must train, write exactly one run dir (rank 0 only), and reach the single-process run's metrics with the
same global batch, within a stated tolerance: each rank sees half of every global batch, so the update is
the single-process one except for BatchNorm statistics, which each rank computes on its half (no SyncBN on
CPU) — hence a tolerance, not equality.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, tiny_recipe_dict

pytestmark = pytest.mark.slow

# Full fine-tune: BatchNorm sees half batches per rank, and 300 digits train for only 2 epochs: 10 points.
TOLERANCE_FINETUNE = 0.10
# Linear probe on the shared feature cache: no BatchNorm in the trained part, so only float summation order
# differs between 2 ranks and 1 process.
TOLERANCE_PROBE = 1e-3


def _recipe(tmp_path, **over):
    d = tiny_recipe_dict(**{"train.epochs": 2, "train.num_threads": 1, "data.split.limit_train": 256, **over})
    p = tmp_path / "ddp.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _run_both(tmp_path, recipe):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetl",
            "train",
            str(recipe),
            "--runs-dir",
            str(tmp_path / "single"),
            "-q",
            "--logger",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "edgetl",
            "train",
            str(recipe),
            "--runs-dir",
            str(tmp_path / "ddp"),
            "-q",
            "--logger",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env=env,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    load = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    return load(tmp_path / "single" / "tiny"), load(tmp_path / "ddp" / "tiny")


def test_linear_probe_on_shared_cache_matches_single_process(tmp_path):
    m_one, m_ddp = _run_both(tmp_path, _recipe(tmp_path, **{"train.freeze": {"policy": "linear_probe"}}))
    assert all(r["cached"] for r in m_ddp)
    assert len(list((tmp_path / "ddp" / "tiny" / "cache").glob("*.npy"))) == 2  # built once (train + val), shared
    for a, b in zip(m_one, m_ddp):
        assert abs(a["val"]["digit"]["accuracy"] - b["val"]["digit"]["accuracy"]) <= TOLERANCE_PROBE
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-3 * max(1.0, a["train_loss"])


def test_two_process_gloo_matches_single_process(tmp_path):
    recipe = _recipe(tmp_path)
    m_one, m_ddp = _run_both(tmp_path, recipe)
    runs = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert runs == ["tiny"], runs  # one run dir, written by rank 0 only
    d = tmp_path / "ddp" / "tiny"
    for f in ("checkpoints/best.safetensors", "checkpoints/last.state.safetensors", "metrics.jsonl", "splits.json"):
        assert (d / f).is_file(), f
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "completed" and info["world_size"] == 2
    assert len(m_ddp) == len(m_one) == 2
    # every validation row scored once, across ranks
    assert m_ddp[-1]["val"]["digit"]["n"] == m_one[-1]["val"]["digit"]["n"] == 120
    acc_ddp, acc_one = m_ddp[-1]["val"]["digit"]["accuracy"], m_one[-1]["val"]["digit"]["accuracy"]
    assert acc_ddp > 0.5  # it trained (chance is 0.1)
    assert abs(acc_ddp - acc_one) <= TOLERANCE_FINETUNE, (acc_ddp, acc_one)
