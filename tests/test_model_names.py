"""Backbones by the names users already know: any timm model (`timm:<name>`) and any Hugging Face encoder
(`hf:<name or dir>`) go through the same registry, with their own pre-processing configs. Online weight
sources are exercised with local files here (no downloads in tests)."""

import pytest
import torch

from edgetl.errors import EdgetlError
from edgetl.models import create_backbone
from edgetl.recipe import BackboneSpec


def test_timm_name_with_its_pretrained_config():
    pytest.importorskip("timm")
    bb = create_backbone(BackboneSpec(name="timm:tf_efficientnet_lite0", weights="none")).eval()
    assert bb.cfg.mean == [0.5, 0.5, 0.5] and bb.cfg.std == [0.5, 0.5, 0.5]  # timm's pretrained_cfg, not ImageNet's
    assert bb.num_stages >= 4 and bb.feature_dim == 1280
    with torch.no_grad():
        assert bb(torch.randn(1, 3, 64, 64)).shape == (1, 1280)


def test_timm_generic_architecture_and_local_weights(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    src = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    bb = create_backbone(BackboneSpec(name="timm:resnet18", weights=str(path))).eval()
    ref = timm.create_model("resnet18", pretrained=False, num_classes=0)
    ref.load_state_dict({k: v for k, v in src.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(bb(x), ref.eval()(x), atol=1e-5)


def test_unknown_timm_name_is_one_line():
    pytest.importorskip("timm")
    with pytest.raises(EdgetlError, match="timm has no model 'no_such_net'"):
        create_backbone(BackboneSpec(name="timm:no_such_net", weights="none"))


def test_hf_encoder_from_a_local_directory_with_its_tokenizer():
    from edgetl.models.hf_text import load_tokenizer, offline_minilm_dir

    d = offline_minilm_dir()
    bb = create_backbone(BackboneSpec(name=f"hf:{d}", weights="hub", pooling="mean")).eval()
    assert bb.kind == "text" and bb.feature_dim == 384 and bb.num_stages == 7  # embeddings + 6 layers
    tok = load_tokenizer(bb.cfg.tokenizer_path)
    enc = tok(["edge devices run small models"], return_tensors="pt")
    with torch.no_grad():
        out = bb(enc["input_ids"], enc["attention_mask"])
    assert out.shape == (1, 384)
