"""Backbone registry, discovered stages, safe weight loading, multi-task heads."""

import pytest
import torch

from edgetl.errors import EdgetlError
from edgetl.models import create_backbone, get_backbone_entry, list_backbones
from edgetl.models.registry import BackboneEntry, register_backbone
from edgetl.models.weights import load_state_dict_file
from edgetl.recipe import BackboneSpec


def test_registry_lists_required_backbones():
    names = {e.name for e in list_backbones()}
    assert {
        "mobilenet_v2",
        "resnet18",
        "resnet50",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "efficientnet_lite0",
        "minilm",
    } <= names


def test_unknown_backbone_lists_known():
    with pytest.raises(EdgetlError, match="unknown backbone 'nope'; known: .*mobilenet_v2"):
        get_backbone_entry("nope")


def test_duplicate_registration_is_an_error():
    e = get_backbone_entry("resnet18")
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone(BackboneEntry(name="resnet18", family="x", kind="image", build=e.build, offline=False))


@pytest.mark.parametrize(
    "name, stages, dim",
    [("mobilenet_v2", 5, 1280), ("resnet18", 5, 512), ("efficientnet_b0", 5, 1280), ("mobilenet_v3_small", 5, 576)],
)
def test_stages_and_feature_dim_are_discovered(name, stages, dim):
    bb = create_backbone(BackboneSpec(name=name, weights="none")).eval()  # eval: no stochastic depth
    assert bb.num_stages == stages and bb.feature_dim == dim
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = bb(x)
        split = bb.forward_suffix(bb.forward_prefix(x, 2), 2)
    assert full.shape == (2, dim)
    assert torch.allclose(full, split, atol=1e-5)


def test_offline_mobilenet_v2_weights_classify_a_real_photo():
    """The shipped ImageNet weights are real: scikit-image's cat photo is an Egyptian cat (285)."""
    import torchvision
    from skimage import data

    from edgetl.data.transforms import ImagePreprocess
    from edgetl.models.torchvision_models import offline_mobilenet_v2_path

    m = torchvision.models.mobilenet_v2()
    m.load_state_dict(load_state_dict_file(offline_mobilenet_v2_path()))
    x = ImagePreprocess((224, 224))(data.chelsea()[None])
    with torch.no_grad():
        assert int(m.eval()(x).argmax()) == 285


def test_offline_lite0_weights_match_timm_layout():
    from skimage import data

    from edgetl.data.transforms import ImagePreprocess

    bb = create_backbone(BackboneSpec(name="efficientnet_lite0", weights="offline"))
    assert bb.cfg.mean == [0.5, 0.5, 0.5] and "efficientnet-lite0" in bb.cfg.source
    import timm

    full = timm.create_model("tf_efficientnet_lite0")
    from edgetl.models.timm_models import offline_lite0_state

    full.load_state_dict(offline_lite0_state(full)[0])
    x = ImagePreprocess((224, 224), mean=[0.5] * 3, std=[0.5] * 3)(data.coffee()[None])
    with torch.no_grad():
        assert int(full.eval()(x).argmax()) == 967  # espresso


def test_pickle_with_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    p.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(EdgetlError, match="refused to load"):
        load_state_dict_file(p)


def test_local_weights_file_round_trip(tmp_path):
    from safetensors.torch import save_file

    bb = create_backbone(BackboneSpec(name="resnet18", weights="none"))
    p = tmp_path / "bb.safetensors"
    save_file({k: v.contiguous() for k, v in bb.state_dict().items()}, str(p))
    bb2 = create_backbone(BackboneSpec(name="resnet18", weights=str(p)))
    assert all(torch.equal(a, b) for a, b in zip(bb.state_dict().values(), bb2.state_dict().values()))
    with pytest.raises(EdgetlError, match="does not fit mobilenet_v2"):
        create_backbone(BackboneSpec(name="mobilenet_v2", weights=str(p)))


def test_offline_weights_only_where_shipped():
    with pytest.raises(EdgetlError, match="no offline weights ship for 'resnet18'"):
        create_backbone(BackboneSpec(name="resnet18", weights="offline"))


def test_stage_discovery_leaves_pretrained_batchnorm_statistics_alone():
    """Discovering stages runs a probe through the network; it must not update BatchNorm running stats."""
    import torchvision

    from edgetl.models.torchvision_models import offline_mobilenet_v2_path

    ref = torchvision.models.mobilenet_v2()
    ref.load_state_dict(load_state_dict_file(offline_mobilenet_v2_path()))
    bb = create_backbone(BackboneSpec(name="mobilenet_v2", weights="offline"))
    ours = [v for k, v in bb.state_dict().items() if "running_mean" in k or "running_var" in k]
    theirs = [v for k, v in ref.state_dict().items() if "running_mean" in k or "running_var" in k]
    assert len(ours) == len(theirs) == 104
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
