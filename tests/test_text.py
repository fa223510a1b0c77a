"""Text backbones (MiniLM, offline): train with frozen/cached or partially frozen encoders, export ONNX with
input_ids/attention_mask (dynamic batch and sequence, verified vs PyTorch), INT8, and the runtime Predictor."""

import json

import numpy as np
import pytest
import yaml
from conftest import set_dotted
from helpers import edgetl_cli, one_error_line

from edgetl.errors import EdgetlError
from edgetl.recipe import recipe_from_dict


def text_recipe_dict(**over) -> dict:
    d = {
        "name": "tiny-text",
        "backbone": {"name": "minilm", "weights": "offline", "pooling": "mean"},
        "input": {"kind": "text", "max_length": 32},
        "tasks": [{"name": "topic", "column": "label"}],
        "data": {"source": "bbc-news", "split": {"limit_train": 40, "limit_val": 20, "limit_test": 20}},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "lr": 0.01,
            "seed": 0,
            "num_threads": 2,
            "freeze": {"policy": "linear_probe"},
        },
        "export": {"calibration": {"size": 16}, "verify_samples": 20},
    }
    set_dotted(d, over)
    return d


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    from edgetl.train.loop import train

    return train(recipe_from_dict(text_recipe_dict()), runs_dir=tmp_path_factory.mktemp("text"), progress=False)


def test_linear_probe_text_run_is_cached(text_run):
    rows = text_run.metrics()
    assert [r["frozen_stages"] for r in rows] == [7, 7] and all(r["cached"] for r in rows)
    assert rows[-1]["val"]["topic"]["n"] == 20
    assert rows[-1]["val"]["topic"]["accuracy"] > 0.4  # 5 topics: chance is 0.2; frozen MiniLM separates them


def test_partial_text_freeze_trains_only_the_top_layer(tmp_path):
    import torch

    from edgetl.data import load_splits
    from edgetl.runs.layout import Run
    from edgetl.train.loop import Trainer

    rec = recipe_from_dict(
        text_recipe_dict(
            **{
                "train.freeze": {"policy": "first_k", "stages": 6},
                "train.epochs": 1,
                "data.split": {"limit_train": 16, "limit_val": 8, "limit_test": 8},
            }
        )
    )
    run = Run(tmp_path / "r")
    (run.dir / "checkpoints").mkdir(parents=True)
    tr = Trainer(rec, run, load_splits(rec), progress=False)
    enc = tr.model.backbone.model
    emb0 = enc.embeddings.word_embeddings.weight.detach().clone()
    l4 = {k: v.clone() for k, v in enc.encoder.layer[4].state_dict().items()}
    l5 = {k: v.clone() for k, v in enc.encoder.layer[5].state_dict().items()}
    tr.fit()
    assert tr.k == 6 and tuple(tr.cache["train"].shape) == (16, 32, 385)  # hidden states + mask, padded to 32
    assert torch.equal(emb0, enc.embeddings.word_embeddings.weight)
    assert all(torch.equal(v, enc.encoder.layer[4].state_dict()[k]) for k, v in l4.items())
    assert any(not torch.equal(v, enc.encoder.layer[5].state_dict()[k]) for k, v in l5.items())
    assert not ({id(p) for p in tr.optimizer.state} & {id(p) for p in enc.encoder.layer[4].parameters()})


def test_text_student_distils_from_text_teacher(text_run, tmp_path):
    from edgetl.train.loop import train

    rec = recipe_from_dict(
        text_recipe_dict(
            **{
                "name": "text-student",
                "train.epochs": 1,
                "backbone.pooling": "cls",
                "distill": {"teacher": str(text_run.dir), "feature": "cosine", "alpha": 0.5},
            }
        )
    )
    run = train(rec, runs_dir=tmp_path, progress=False)
    row = run.metrics()[-1]
    assert run.info()["status"] == "completed" and np.isfinite(row["train_loss"]) and row["cached"]
    assert (run.checkpoints / "last.distill.safetensors").is_file()


def test_text_prefix_suffix_equals_full_encoder():
    import torch

    from edgetl.models import create_backbone
    from edgetl.models.hf_text import load_tokenizer
    from edgetl.recipe import BackboneSpec

    bb = create_backbone(BackboneSpec(name="minilm", pooling="mean")).eval()
    tok = load_tokenizer(bb.cfg.tokenizer_path)
    enc = tok(
        ["short", "a longer sentence about interest rates and the central bank", "mid length"],
        padding="longest",
        return_tensors="pt",
    )
    x = {k: enc[k] for k in bb.input_names}
    with torch.no_grad():
        ref = bb(**x)
        for k in (1, 3, 6):
            h = bb.forward_prefix(x, k)
            padded = torch.nn.functional.pad(h, (0, 0, 0, 40 - h.shape[1]))  # as cached: right-padded rows
            torch.testing.assert_close(bb.forward_suffix(padded, k), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_text_export_int8_and_runtime_predictor(text_run):
    import onnxruntime as ort

    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.evaluate.torch_eval import predict_torch
    from edgetl.runs.loaded import load_run
    from edgetl.runtime import Predictor

    bundle = export_run(text_run.dir, ExportOptions(int8=True, target="cpu", progress=False))
    m = json.loads((bundle / "manifest.json").read_text())
    names = m["input"]["names"]
    assert m["input"]["kind"] == "text" and names[:2] == ["input_ids", "attention_mask"]
    assert names[2:] in ([], ["token_type_ids"])  # BERT with 2 token types (MiniLM) takes token_type_ids too
    assert (bundle / "tokenizer" / "tokenizer.json").is_file()
    assert set(m["artifacts"]) == {"fp32", "int8-ort"}
    v = m["artifacts"]["fp32"]["verification"]
    assert v["passed"] and v["top1_agreement"]["topic"] == 1.0
    # dynamic batch and sequence axes
    sess = ort.InferenceSession(str(bundle / "model.fp32.onnx"), providers=["CPUExecutionProvider"])
    for b, seq in ((1, 7), (3, 20)):
        feeds = {
            "input_ids": np.full((b, seq), 1000, dtype=np.int64),
            "attention_mask": np.ones((b, seq), dtype=np.int64),
        }
        feeds["input_ids"][:, 0], feeds["input_ids"][:, -1] = 101, 102
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros((b, seq), dtype=np.int64)
        (out,) = sess.run(None, feeds)
        assert out.shape == (b, 5)
    # the device runtime on the bundle (tokenizer.json, no torch) agrees with the PyTorch checkpoint
    loaded = load_run(text_run.dir)
    texts = loaded.splits.test.texts[:6]
    ref = predict_torch(loaded.model, loaded.prep, loaded.splits.test.take(np.arange(6)))["topic"]
    pred = Predictor.load(bundle, artifact="fp32")
    got = pred.predict(texts)
    assert [r["topic"].index for r in got] == ref.argmax(1).tolist()
    int8 = Predictor.load(bundle, artifact="int8-ort").predict(texts)
    assert sum(a["topic"].index == b["topic"].index for a, b in zip(int8, got)) >= 5


def test_text_recipe_on_image_data_is_one_line_error(tmp_path):
    d = text_recipe_dict(**{"data.source": "fashion-mnist"})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(d))
    line = one_error_line(edgetl_cli("train", path, "--runs-dir", tmp_path / "runs", "-q"))
    assert "input.kind is 'text' but data.source 'fashion-mnist' holds images" in line, line


def test_text_backbone_with_image_input_is_error():
    from edgetl.train.checks import check_recipe

    d = text_recipe_dict(**{"input": {"kind": "image", "image_size": 32}, "data.source": "digits"})
    with pytest.raises(EdgetlError, match="backbone.name: 'minilm' takes text input but input.kind is 'image'"):
        check_recipe(recipe_from_dict(d))
