"""Every recipe in recipes/ runs through the real CLI as a user runs it: progress bars on (no -q), quickstart on a
pseudo-terminal and the others with output to a pipe, train -> export --int8 -> bench, with only budget overrides
(epochs, row limits). The list comes from the folder, so a new recipe is exercised the day it is added.

Guards the class of bug where a progress-bar column crashed every feature-cache run (KeyError: 'info') while
the tests trained with progress=False.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from yourdata import data_for_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
LIMITS = {"limit_train": 96, "limit_val": 48, "limit_test": 48}
ON_A_TERMINAL = {"quickstart.yaml"}
EXPORT_FLAGS = {"quickstart.yaml": ["--qat"]}  # the headline recipe also goes through quantization-aware training

pytestmark = pytest.mark.slow


def budget_overrides(recipe: dict) -> list[str]:
    """epochs=1 and row limits on every dataset the recipe reads (its own and each extra_data entry)."""
    over = ["train.epochs=1"]
    prefixes = ["data"] + [f"extra_data.{k}" for k in (recipe.get("extra_data") or {})]
    over += [f"{p}.split.{k}={v}" for p in prefixes for k, v in LIMITS.items()]
    if ((recipe.get("distill") or {}).get("unlabeled") or {}).get("limit"):
        over.append(f"distill.unlabeled.limit={LIMITS['limit_train']}")
    return over


def run_cli(args: list[str], cwd: Path, terminal: bool, timeout: int = 600) -> tuple[int, str]:
    """`python -m edgetl ARGS` with stdout+stderr on a pseudo-terminal (rich draws live bars) or a pipe."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    cmd = [sys.executable, "-m", "edgetl", *args]
    if not terminal:
        p = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return p.returncode, p.stdout
    leader, follower = pty.openpty()
    p = subprocess.Popen(
        cmd, cwd=cwd, env={**env, "TERM": "xterm-256color"}, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return p.wait(timeout=timeout), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A user's working directory: runs/ lands here, and relative teacher paths (runs/<teacher>) resolve here."""
    return tmp_path_factory.mktemp("user")


def _train(recipe_path: Path, workdir: Path) -> Path:
    recipe = yaml.safe_load(recipe_path.read_text())
    data_for_recipe(recipe, workdir)  # starter recipes for a user's own data read data/... under the cwd
    teacher = (recipe.get("distill") or {}).get("teacher")
    if teacher and not Path(teacher).is_absolute() and not (workdir / teacher).is_dir():
        source = next(r for r in RECIPES if yaml.safe_load(r.read_text())["name"] == Path(teacher).name)
        _train(source, workdir)  # the recipe that makes this teacher, as its comment says to run first
    name = recipe["name"]
    run = workdir / "runs" / name
    if run.is_dir():
        return run
    rc, out = run_cli(
        ["train", str(recipe_path), *budget_overrides(recipe), "--name", name],
        workdir,
        terminal=recipe_path.name in ON_A_TERMINAL,
    )
    assert rc == 0, f"{recipe_path.name}: train failed\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    if recipe_path.name in ON_A_TERMINAL:
        assert "\x1b[" in out, "rich drew no live progress bar on the terminal"
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    return run


@pytest.mark.parametrize("recipe_path", RECIPES, ids=[r.name for r in RECIPES])
def test_shipped_recipe_trains_exports_and_benches_with_progress_on(recipe_path, workdir):
    run = _train(recipe_path, workdir)
    terminal = recipe_path.name in ON_A_TERMINAL
    flags = EXPORT_FLAGS.get(recipe_path.name, [])
    rc, out = run_cli(["export", str(run), "--int8", "--target", "cpu", *flags], workdir, terminal)
    assert rc == 0 and "Traceback" not in out, f"{recipe_path.name}: export failed\n{out[-3000:]}"
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert {"fp32", "int8-ort"} <= set(manifest["artifacts"])
    if "--qat" in flags:
        assert "int8-qat" in manifest["artifacts"]
    rc, out = run_cli(["bench", str(run), "--device", "cpu", "--batch", "1", "--budget", "0.2"], workdir, terminal)
    assert rc == 0 and "Traceback" not in out, f"{recipe_path.name}: bench failed\n{out[-3000:]}"
    report = json.loads((run / "bench.json").read_text())
    assert {r["artifact"] for r in report["rows"]} >= {"fp32", "int8-ort"}


def test_every_recipe_is_exercised_and_budgeted():
    """The parametrization above is the folder itself; each recipe's budget reaches every dataset it reads."""
    assert len(RECIPES) >= 13
    for r in RECIPES:
        recipe = yaml.safe_load(r.read_text())
        over = budget_overrides(recipe)
        assert "train.epochs=1" in over and "data.split.limit_train=96" in over
        for extra in recipe.get("extra_data") or {}:
            assert f"extra_data.{extra}.split.limit_train=96" in over
