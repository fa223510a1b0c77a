"""The task-kind registry: every kind decides its own rules, nobody else branches on a kind's name."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks import get_kind, kind_names, register_kind

ROOT = Path(__file__).resolve().parents[1] / "edgetl"
REGISTRY_DIRS = (ROOT / "tasks", ROOT / "runtime" / "tasks")


def _kind_literals(node: ast.AST, names: set[str]) -> list[str]:
    if isinstance(node, ast.Constant) and node.value in names:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
    return []


def kind_branches(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each comparison with a kind name, dict keyed by kind names, or match case on one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += [(node.lineno, f"compares with {v!r}") for v in _kind_literals(operand, names)]
        elif isinstance(node, ast.Dict):
            found += [
                (node.lineno, f"dict keyed by {k.value!r}")
                for k in node.keys
                if k is not None and _kind_literals(k, names)
            ]
        elif isinstance(node, ast.MatchValue):
            found += [(node.lineno, f"match case {v!r}") for v in _kind_literals(node.value, names)]
    return found


def test_no_module_outside_the_registry_branches_on_a_task_kind_name():
    names = set(kind_names())
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if any(d in path.parents for d in REGISTRY_DIRS):
            continue
        for line, what in kind_branches(path.read_text(), names):
            offenders.append(f"{path.relative_to(ROOT.parent)}:{line}: {what}")
    assert not offenders, "ask edgetl.runtime.tasks.get_kind / edgetl.tasks.get_task_kind instead:\n" + "\n".join(
        offenders
    )


def test_the_branch_finder_can_fail():
    names = {"classification", "regression"}
    src = (
        "if kind == 'regression':\n    pass\n"
        "x = k in ('classification', 'other')\n"
        "M = {'classification': 1}\n"
        "match kind:\n    case 'regression':\n        pass\n"
    )
    assert [line for line, _ in kind_branches(src, names)] == [1, 3, 4, 6]
    assert kind_branches("x = {'kind': 'classification'}\nif a.kind == b:\n    pass\n", names) == []


def test_unknown_kind_is_one_line_with_a_suggestion():
    with pytest.raises(EdgetlError) as e:
        get_kind("clasification")
    msg = str(e.value)
    assert "\n" not in msg and "'classification'" in msg and "known kinds" in msg


def test_a_kind_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_kind(get_kind("classification"))


def test_every_kind_has_both_halves_and_a_selectable_headline():
    from edgetl.tasks import get_task_kind

    for name in kind_names():
        kind = get_kind(name)
        assert get_task_kind(name).runtime is kind
        assert kind.headline in kind.metrics_selectable


def test_recipe_with_an_unknown_kind_is_one_line_naming_the_field(tmp_path):
    from edgetl.recipe import load_recipe

    p = tmp_path / "r.yaml"
    p.write_text(
        "name: x\nbackbone: {name: mobilenet_v2, weights: none}\ninput: {kind: image, image_size: 32}\n"
        "data: {source: digits}\ntasks: [{name: t, kind: segmentaton}]\n"
    )
    with pytest.raises(EdgetlError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert "\n" not in msg and "tasks" in msg and "segmentaton" in msg and "known kinds" in msg


@pytest.mark.parametrize(
    ("kind", "ref", "got"),
    [
        ("classification", [[2.0, 0.0, -1.0]], [[1.5, 0.2, -1.0]]),
        ("multilabel", [[2.0, -3.0]], [[1.0, -2.5]]),
        ("regression", [[1.0], [2.0], [3.0]], [[1.1], [2.0], [2.7]]),
    ],
)
def test_gate_damage_is_zero_on_identical_outputs_and_positive_otherwise(kind, ref, got):
    k = get_kind(kind)
    a, b = np.array(ref), np.array(got)
    assert k.damage(a, a) == pytest.approx(0.0, abs=1e-12)
    assert k.damage(a, b) > 0


def test_decode_follows_the_kind():
    out = np.array([[0.0, 3.0], [2.0, -2.0]], dtype=np.float32)
    cls = get_kind("classification").decode("t", out.copy(), ("a", "b"))
    assert [p.label for p in cls] == ["b", "a"] and abs(sum(cls[0].scores) - 1) < 1e-6
    ml = get_kind("multilabel").decode("t", out.copy(), ("a", "b"))
    assert [p.labels for p in ml] == [["b"], ["a"]]
    reg = get_kind("regression").decode("t", out[:, :1].copy(), ())
    assert [p.value for p in reg] == [0.0, 2.0]
    with pytest.raises(EdgetlError, match="gives 2 scores"):
        get_kind("classification").check_output_width("t", 2, ("a", "b", "c"), "manifest.json")


# ------------------------------------------------------------------------------------- feature maps (dense heads)
def _image_backbone(name: str):
    from edgetl.models.registry import create_backbone
    from edgetl.recipe import BackboneSpec

    return create_backbone(BackboneSpec(name=name, weights="none"))


@pytest.mark.parametrize(
    ("name", "strides"),
    [("mobilenet_v2", [2, 4, 8, 16, 32]), ("resnet18", [2, 4, 8, 16, 32]), ("efficientnet_lite0", [2, 4, 8, 16, 32])],
)
def test_image_backbones_declare_stride_and_channels_and_hand_over_maps(name, strides):
    import torch

    pytest.importorskip("timm") if name.startswith("efficientnet_lite") else None
    bb = _image_backbone(name).eval()
    assert [s.stride for s in bb.stage_info] == strides
    assert bb.stage_info[-1].channels == bb.feature_dim
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        maps = bb.forward_maps(x)
        pooled = bb(x)
    assert [m.shape[1] for m in maps] == [s.channels for s in bb.stage_info]
    assert [96 // m.shape[-1] for m in maps] == strides
    torch.testing.assert_close(bb.pool_maps(maps), pooled)


def test_timm_stage_info_agrees_with_timm_feature_info():
    """edgetl's probed stages of EfficientNet-Lite0 against timm's own features_only contract."""
    timm = pytest.importorskip("timm")
    ours = _image_backbone("efficientnet_lite0").stage_info
    fi = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True).feature_info
    assert [s.stride for s in ours] == fi.reduction()
    # the last stage also holds the 1x1 head conv (1280 channels), so compare the others
    assert [s.channels for s in ours[:-1]] == fi.channels()[:-1]
