"""Resume is exact (in-process, fast): a run stopped mid-epoch and resumed ends with the metrics and weights
of an uninterrupted one; non-finite training stops with the step and the last good checkpoint; broken
checkpoints are one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_recipe_dict
from helpers import run_cli
from safetensors.numpy import load_file

from edgetl.errors import EdgetlError
from edgetl.recipe import recipe_from_dict
from edgetl.runs import checkpoint as ckpt
from edgetl.runs.layout import Run
from edgetl.train.loop import train

SMALL = {
    "data.split.limit_train": 64,
    "data.split.limit_val": 40,
    "data.split.limit_test": 40,
    "train.batch_size": 16,
    "train.num_threads": 1,
    "train.epochs": 2,
}
ATOL = 1e-6  # observed: bit-identical on CPU with train.deterministic (the default)


def _recipe(**over):
    return recipe_from_dict(tiny_recipe_dict(**{**SMALL, **over}))


def _numbers(rows):
    return [(r["train_loss"], r["val_loss"], r["score"]) for r in rows]


def _assert_same_run(a: Run, b: Run):
    ma, mb = a.metrics(), b.metrics()
    assert len(ma) == len(mb) == 2
    np.testing.assert_allclose(_numbers(ma), _numbers(mb), rtol=0, atol=ATOL)
    for which in ("last", "best"):
        wa, wb = load_file(str(a.checkpoint(which))), load_file(str(b.checkpoint(which)))
        assert wa.keys() == wb.keys()
        for k in wa:
            np.testing.assert_allclose(wa[k], wb[k], rtol=0, atol=ATOL, err_msg=f"{which}:{k}")
    assert a.info()["best_epoch"] == b.info()["best_epoch"]
    budget = ("optimizer_steps", "examples_seen")  # the budget `edgetl report` matches controls by
    assert [a.info()[k] for k in budget] == [b.info()[k] for k in budget]
    assert a.info()["test"]["headline"] == b.info()["test"]["headline"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs, one per configuration, shared by the tests below."""
    root = tmp_path_factory.mktemp("ref")
    cache = {}

    def get(key, **over):
        if key not in cache:
            cache[key] = train(_recipe(**over), name=key, runs_dir=root, progress=False)
        return cache[key]

    return get


HFLIP = {"data.augment": "hflip", "train.checkpoint_every_steps": 1}


def test_mid_epoch_resume_with_hflip_is_exact(reference, tmp_path):
    """The augmentation generator is re-seeded per epoch; a mid-epoch resume must continue its draws, and the
    epoch's train loss must include the batches done before the stop."""
    ref = reference("hflip", **HFLIP)
    stopped = train(_recipe(**HFLIP), name="b", runs_dir=tmp_path, progress=False, stop_after_steps=6)
    meta = ckpt.read_training_meta(stopped.checkpoints / "last.state.safetensors")
    assert meta["epoch"] == 1 and meta["step_in_epoch"] == 2  # 4 steps per epoch: stopped inside epoch 2
    resumed = train(_recipe(), resume=Run(stopped.dir), progress=False)  # the run's own recipe is used
    _assert_same_run(ref, resumed)
    assert resumed.info()["resumes"] == 1 and resumed.info()["resumed_from_step"] == 6


def test_resume_across_gradual_unfreeze_with_feature_cache_is_exact(reference, tmp_path):
    """Gradual unfreezing changes the optimizer's groups and the cached prefix between epochs."""
    over = {"train.freeze.policy": "gradual", "train.freeze.stages": 5, "train.checkpoint_every_steps": 1}
    ref = reference("gradual", **over)
    assert ref.metrics()[0]["cached"] and ref.metrics()[0]["frozen_stages"] == 5
    assert ref.metrics()[1]["frozen_stages"] == 4
    stopped = train(_recipe(**over), name="g", runs_dir=tmp_path, progress=False, stop_after_steps=5)
    assert ckpt.read_training_meta(stopped.checkpoints / "last.state.safetensors")["k"] == 4
    resumed = train(_recipe(), resume=Run(stopped.dir), progress=False)
    _assert_same_run(ref, resumed)


def test_resume_at_epoch_boundary_and_from_a_state_file_only(reference, tmp_path):
    """The state file alone is enough (it holds its own weights): a stale last.safetensors cannot leak in."""
    ref = reference("plain")
    # no mid-epoch checkpoints: the last commit is the end of epoch 1 (4 steps per epoch)
    stopped = train(_recipe(), name="p", runs_dir=tmp_path, progress=False, stop_after_steps=6)
    meta = ckpt.read_training_meta(stopped.checkpoints / "last.state.safetensors")
    assert (meta["epoch"], meta["step_in_epoch"], meta["global_step"]) == (1, 0, 4)
    # as if killed after last.safetensors of a later step was renamed but before its state commit
    from safetensors.numpy import save_file

    w = load_file(str(stopped.checkpoint("last")))
    save_file({k: v + 1 if v.dtype.kind == "f" else v for k, v in w.items()}, str(stopped.checkpoint("last")))
    resumed = train(_recipe(), resume=Run(stopped.dir), progress=False)
    _assert_same_run(ref, resumed)


def test_resume_when_killed_before_splits_and_first_checkpoint(reference, tmp_path):
    """A kill right after the run dir was created: no splits.json, no checkpoint, stale temp files."""
    ref = reference("plain")
    stopped = train(_recipe(), name="s", runs_dir=tmp_path, progress=False, stop_after_steps=1)
    for p in stopped.checkpoints.iterdir():
        p.unlink()
    (stopped.dir / "splits.json").unlink()
    (stopped.dir / "metrics.jsonl").unlink(missing_ok=True)
    stale = stopped.checkpoints / ".last.state.safetensors.x1y2.tmp"
    stale.write_bytes(b"\0" * 100)
    resumed = train(_recipe(), resume=Run(stopped.dir), progress=False)
    assert not stale.exists()
    assert resumed.splits()["indices"] == ref.splits()["indices"]
    _assert_same_run(ref, resumed)


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path, monkeypatch):
    import edgetl.train.loop as loop

    calls = {"n": 0}
    real = loop.task_loss

    def poisoned(kind, y, target, smoothing, *spec):
        calls["n"] += 1
        loss = real(kind, y, target, smoothing, *spec)
        return loss * float("nan") if calls["n"] == 3 else loss  # 3rd training batch

    monkeypatch.setattr(loop, "task_loss", poisoned)
    with pytest.raises(EdgetlError) as e:
        train(_recipe(**{"train.checkpoint_every_steps": 1}), name="nan", runs_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert "loss is nan at epoch 1 step 3" in msg and "training stopped" in msg
    last = tmp_path / "nan" / "checkpoints" / "last.safetensors"
    assert f"last good checkpoint: {last}" in msg and "\n" not in msg
    meta = ckpt.read_training_meta(last.with_name("last.state.safetensors"))
    assert meta["global_step"] == 2  # the checkpoint named holds the last finite step
    assert all(np.isfinite(v).all() for v in load_file(str(last)).values())


def test_nan_before_any_checkpoint_says_none_yet(tmp_path, monkeypatch):
    import edgetl.train.loop as loop

    monkeypatch.setattr(loop, "task_loss", lambda kind, y, target, smoothing, *spec: y.sum() * float("inf"))
    with pytest.raises(EdgetlError, match=r"loss is -?(nan|inf) at epoch 1 step 1: .*last good checkpoint: none yet"):
        train(_recipe(), name="inf", runs_dir=tmp_path, progress=False)


def test_diverging_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """BatchNorm statistics that blow up while the loss stays finite (training mode normalises with the batch's own
    statistics) must never reach a checkpoint. The blow-up is injected at the 3rd training step, so the outcome
    does not depend on this CPU's floating-point kernels (SGD at lr=10 diverged on one CPU and not on another)."""
    import edgetl.train.loop as loop

    real_build = loop.build_model

    def build_with_exploding_bn(*a, **k):
        model = real_build(*a, **k)
        bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]  # trainable, never cached
        calls = {"n": 0}

        def explode(module, args, out):
            if module.training:
                calls["n"] += 1
                if calls["n"] == 3:
                    module.running_var = torch.full_like(
                        module.running_var, float("inf")
                    )  # not in place: autograd saved it

        bn.register_forward_hook(explode)
        return model

    monkeypatch.setattr(loop, "build_model", build_with_exploding_bn)
    rec = _recipe(**{"train.checkpoint_every_steps": 1})
    with pytest.raises(
        EdgetlError,
        match=r"weights became non-finite .*running_var.* by epoch 1 step 3 .*"
        r"last good checkpoint: .*last\.safetensors",
    ):
        train(rec, name="lr", runs_dir=tmp_path, progress=False)
    saved = list((tmp_path / "lr" / "checkpoints").glob("*.safetensors"))
    assert saved  # steps 1 and 2 were checkpointed, and hold finite weights only
    for p in saved:
        assert all(np.isfinite(v).all() for v in load_file(str(p)).values() if v.dtype.kind == "f"), p.name
    info = Run(tmp_path / "lr").info()
    assert info["status"] == "failed" and "weights became non-finite" in info["error"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return train(_recipe(**{"train.epochs": 1}), name="d", runs_dir=tmp_path_factory.mktemp("dmg"), progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_state", "bad_json", "wrong_model"])
def test_damaged_state_file_is_one_line_error(finished_run, tmp_path, damage):
    run = Run(tmp_path / "d")
    shutil.copytree(finished_run.dir, run.dir)
    st = run.checkpoints / "last.state.safetensors"
    if damage == "truncate":
        st.write_bytes(st.read_bytes()[:1000])
    elif damage == "garbage":
        st.write_bytes(b"\xff" * 64)
    elif damage == "not_state":
        shutil.copy(run.checkpoint("last"), st)
    elif damage == "bad_json":
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(st), metadata={"format": "edgetl-train-state", "json": "{nope"})
    else:  # the run's recipe edited to another head count
        text = run.recipe_path.read_text()
        assert text.count("column: label") == 1
        run.recipe_path.write_text(text.replace("column: label", "column: parity"))  # 10 -> 2 classes
    with pytest.raises(EdgetlError) as e:
        train(_recipe(), resume=run, progress=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert "last.state.safetensors" in msg, msg
    if damage == "wrong_model":
        assert "does not match the recipe's model: shape of heads.digit" in msg and "(2, " in msg, msg


# --------------------------------------------------------------------------------------------- the CLI
def test_cli_resume_last_continues_the_newest_run(reference, tmp_path, monkeypatch, capsys):
    import yaml

    ref = reference("plain")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(**SMALL)))
    runs = tmp_path / "runs"
    code, _, err = run_cli(monkeypatch, capsys, "train", str(recipe), "--runs-dir", str(runs), "--resume", "last")
    assert code == 2 and err.strip() == f"error: --resume last: no earlier run of 'tiny' in {runs}", err
    stopped = train(_recipe(), runs_dir=runs, progress=False, stop_after_steps=6)
    assert stopped.dir == runs / "tiny"
    code, _, err = run_cli(
        monkeypatch, capsys, "train", str(recipe), "train.epochs=5", "--runs-dir", str(runs), "--resume", "last"
    )
    assert code == 2 and "overrides are not allowed" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(
        monkeypatch, capsys, "train", str(recipe), "--runs-dir", str(runs), "--resume", str(tmp_path / "nope")
    )
    assert code == 2 and "run directory not found" in err, err
    code, out, err = run_cli(
        monkeypatch, capsys, "train", str(recipe), "--runs-dir", str(runs), "--resume", "last", "--quiet"
    )
    assert code == 0, err
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]  # continued in place, no tiny-2
    resumed = Run(runs / "tiny")
    assert resumed.info()["status"] == "completed" and resumed.info()["resumes"] == 1
    _assert_same_run(ref, resumed)
