"""Freeze policies: frozen parameters never move, the optimizer holds nothing for them, BatchNorm statistics
of frozen stages stay put, gradual unfreezing follows its schedule, layer-wise LR decays from the top."""

import pytest
import torch
from conftest import tiny_recipe_dict
from helpers import edgetl_cli, one_error_line

from edgetl.errors import EdgetlError
from edgetl.recipe import FreezeSpec, TrainSpec, recipe_from_dict
from edgetl.train.freezing import apply_freeze, frozen_prefix, param_groups, set_train_mode

SMALL = {
    "data.split": {"val_fraction": 0.15, "test_fraction": 0.15, "limit_train": 64, "limit_val": 32, "limit_test": 32},
    "train.batch_size": 16,
}


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def _trainer(tmp_path, **over):
    from edgetl.data import load_splits
    from edgetl.runs.layout import Run
    from edgetl.train.loop import Trainer, setup_determinism

    rec = recipe_from_dict(tiny_recipe_dict(**{**SMALL, **over}))
    setup_determinism(rec)
    run = Run(tmp_path / "run")
    (run.dir / "checkpoints").mkdir(parents=True)
    return Trainer(rec, run, load_splits(rec), progress=False)


def test_frozen_prefix_schedules():
    assert frozen_prefix(FreezeSpec(policy="none"), 5, 0) == 0
    assert frozen_prefix(FreezeSpec(policy="linear_probe"), 5, 7) == 5
    assert [frozen_prefix(FreezeSpec(policy="first_k", stages=3), 5, e) for e in range(3)] == [3, 3, 3]
    assert [frozen_prefix(FreezeSpec(policy="gradual"), 5, e) for e in range(7)] == [5, 4, 3, 2, 1, 0, 0]
    assert [frozen_prefix(FreezeSpec(policy="gradual", every=2, stages=3), 5, e) for e in range(6)] == [
        3,
        3,
        2,
        2,
        1,
        1,
    ]
    with pytest.raises(EdgetlError, match="only 5 stages"):
        frozen_prefix(FreezeSpec(policy="first_k", stages=6), 5, 0)


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_first_k_frozen_weights_never_move_and_hold_no_optimizer_state(tmp_path, freeze_bn):
    # feature cache off: the frozen stages really run in every step, in train() mode for the unfrozen part
    tr = _trainer(
        tmp_path,
        **{
            "train.freeze": {"policy": "first_k", "stages": 3, "freeze_bn": freeze_bn},
            "train.feature_cache": "off",
            "train.epochs": 1,
        },
    )
    stages = list(tr.model.backbone.stages)
    before = [_snapshot(s) for s in stages]
    tr.fit()
    assert tr.k == 3 and not tr.cache
    for i, s in enumerate(stages):
        changed = _changed(before[i], s)
        params = {n for n, _ in s.named_parameters()}
        stats = {n for n in s.state_dict() if n.endswith(("running_mean", "running_var"))}
        if i < 3:
            assert not (changed & params), f"frozen stage {i} weights moved: {sorted(changed & params)[:3]}"
            # BatchNorm statistics of frozen stages move only when freeze_bn is off
            assert bool(changed & stats) == (not freeze_bn), (i, freeze_bn)
            assert all(not p.requires_grad for p in s.parameters())
        else:
            assert changed & params, f"trainable stage {i} did not train"
    in_opt = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    frozen = {id(p) for s in stages[:3] for p in s.parameters()}
    assert not (in_opt & frozen), "frozen parameters are in the optimizer"
    assert not ({id(p) for p in tr.optimizer.state} & frozen), "optimizer holds state for frozen parameters"
    assert {id(p) for p in stages[4].parameters()} <= in_opt


def test_linear_probe_is_cached_and_only_the_head_trains(tmp_path):
    tr = _trainer(tmp_path, **{"train.freeze": {"policy": "linear_probe"}, "train.epochs": 2})
    bb_before = _snapshot(tr.model.backbone)
    head_before = _snapshot(tr.model.heads)
    tr.fit()
    assert tr.k == tr.model.backbone.num_stages and set(tr.cache) == {"train", "val"}
    assert not _changed(bb_before, tr.model.backbone), "a linear probe changed the backbone (weights or BN stats)"
    assert _changed(head_before, tr.model.heads)
    assert [g["name"] for g in tr.optimizer.param_groups] == ["heads"]
    assert {id(p) for p in tr.optimizer.state} == {id(p) for p in tr.model.heads.parameters()}


def test_gradual_unfreezing_schedule_and_optimizer(tmp_path):
    tr = _trainer(tmp_path, **{"train.freeze": {"policy": "gradual", "every": 1}, "train.epochs": 3})
    stages = list(tr.model.backbone.stages)
    before = [_snapshot(s) for s in stages]
    state = tr.fit()
    assert [r["frozen_stages"] for r in state.history] == [5, 4, 3]
    assert all(r["cached"] for r in state.history)  # the frozen prefix is cached at every depth
    for i, s in enumerate(stages):
        moved = bool(_changed(before[i], s) & {n for n, _ in s.named_parameters()})
        assert moved == (i >= 3), (i, moved)  # stages 3, 4 unfroze (epochs 2, 3); 0..2 never did
    names = [g["name"] for g in tr.optimizer.param_groups]
    assert names == [
        "stage3:" + tr.model.backbone.stage_names[3],
        "stage4:" + tr.model.backbone.stage_names[4],
        "heads",
    ]
    # the head kept its Adam moments across the two re-freezes: 3 epochs x 4 steps
    head_p = next(tr.model.heads.parameters())
    assert int(tr.optimizer.state[head_p]["step"]) == 12


def test_layer_decay_scales_learning_rates_from_the_top(tiny_recipe):
    from edgetl.models import build_model

    rec = tiny_recipe(**{"train.layer_decay": 0.5, "train.lr": 0.01, "train.head_lr": 0.02})
    model = build_model(rec, {"digit": [str(i) for i in range(10)]})
    apply_freeze(model.backbone, 2)
    groups = param_groups(model, rec.train, 2)
    assert [g["name"].split(":")[0] for g in groups] == ["stage2", "stage3", "stage4", "heads"]
    lrs = [g["lr"] for g in groups]
    assert lrs[:3] == pytest.approx([0.01 * 0.5**3, 0.01 * 0.5**2, 0.01 * 0.5])
    assert lrs[3] == 0.02
    without = param_groups(model, TrainSpec(lr=0.01), 0)
    assert all(g["lr"] == 0.01 for g in without)


def test_set_train_mode_keeps_frozen_batchnorm_in_eval(tiny_recipe):
    from edgetl.models import build_model

    model = build_model(tiny_recipe(), {"digit": [str(i) for i in range(10)]})
    set_train_mode(model, 2, freeze_bn=True)
    bns = [[m for m in s.modules() if isinstance(m, torch.nn.BatchNorm2d)] for s in model.backbone.stages]
    assert all(not m.training for s in bns[:2] for m in s)
    assert all(m.training for s in bns[2:] for m in s)
    set_train_mode(model, 2, freeze_bn=False)
    assert all(m.training for s in bns for m in s)


def test_freeze_depth_beyond_backbone_is_one_line_error(tmp_path):
    import yaml

    rec = tiny_recipe_dict(**SMALL)
    rec["train"]["freeze"] = {"policy": "first_k", "stages": 9}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(rec))
    line = one_error_line(edgetl_cli("train", path, "--runs-dir", tmp_path / "runs", "-q"))
    assert line.startswith("error: train.freeze.stages=9") and "only 5 stages" in line, line


def test_text_backbone_stages_freeze_embeddings_and_first_layers():
    from edgetl.models import create_backbone
    from edgetl.recipe import BackboneSpec
    from edgetl.train.freezing import apply_freeze

    bb = create_backbone(BackboneSpec(name="minilm", weights="offline", pooling="mean"))
    assert bb.stage_names == ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
    apply_freeze(bb, 3)  # embeddings + layers 0, 1
    assert all(not p.requires_grad for p in bb.model.embeddings.parameters())
    assert all(not p.requires_grad for p in bb.model.encoder.layer[1].parameters())
    assert all(p.requires_grad for p in bb.model.encoder.layer[2].parameters())
    # each tensor once in the state dict (stages are views, not copies): checkpoints save
    from safetensors.torch import save

    assert not any(k.startswith("stages.") for k in bb.state_dict())
    save({k: v.contiguous() for k, v in bb.state_dict().items()})  # raised "Some tensors share memory" before
