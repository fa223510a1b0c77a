"""edgetl.quantize.qat / qdq_cpu: QAT with modelopt's torch quantization, exported as Q/DQ ONNX for ORT CPU.

A small MobileNet-like CNN checks the pieces (BatchNorm folding, modelopt quantizers, the ONNX rewrites, ORT
fusion, torch-vs-ORT agreement); one tiny run goes through `edgetl export --int8 --qat` end to end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REPO, tiny_recipe_dict

from edgetl.bundle.pipeline import default_artifact, qat_reason
from edgetl.errors import EdgetlError
from edgetl.recipe import recipe_from_dict

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("modelopt")

# ORT's fused integer kernels re-round conv outputs where the fake-quant model rounds at the next layer's input
# quantizer: at most a few quantization steps of the logits. Tolerance: 5% of the logit range, and top-1
# agreement of at least 95%.
REL_TOL, TOP1 = 0.05, 0.95


class SmallCNN(torch.nn.Module):
    """The MobileNetV2 pattern: stem (signed input), inverted residual (depthwise + ReLU6, linear pointwise,
    skip Add), a 1x1 conv with ReLU6, pooling, linear head."""

    def __init__(self):
        super().__init__()
        c = 16
        nn, bn = torch.nn, torch.nn.BatchNorm2d
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), bn(c), nn.ReLU6())
        self.block = nn.Sequential(
            nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), bn(c), nn.ReLU6()),
            nn.Conv2d(c, c, 1, bias=False),
            bn(c),
        )
        self.last = nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), bn(2 * c), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * c, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)
        return self.head(torch.flatten(self.pool(self.last(x)), 1))


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    m = SmallCNN().eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
    return m


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32))


def _export(model, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (_images(2, 0),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["cls"],
            dynamic_axes={"input": {0: "b"}, "cls": {0: "b"}},
        )
    return path


def _ops(model: onnx.ModelProto) -> dict[str, int]:
    ops: dict[str, int] = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


@pytest.fixture(scope="module")
def qat_cnn(tmp_path_factory):
    """SmallCNN folded, quantized by modelopt (7-bit weights, as on CPUs without VNNI), a few QAT steps,
    widened to 8-bit for export, exported and rewritten for ORT CPU."""
    from edgetl.quantize.qat import fold_batchnorm, quantize_model, widen_weight_quantizers
    from edgetl.quantize.qdq_cpu import to_ort_cpu_layout

    m = _cnn()
    x = _images(64, 1)
    ref = m(x).detach()
    folded = fold_batchnorm(m, x[:2])
    after_fold = m(x).detach()
    calib = [_images(32, s) for s in range(2)]
    info = quantize_model(m, calib, weight_bits=7)
    opt = torch.optim.SGD([p for p in m.parameters()], lr=1e-3)
    y = torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(m(_images(32, 5)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        before_widen = m(x)
        widened = widen_weight_quantizers(m)
        fake = m(x)
    d = tmp_path_factory.mktemp("qat")
    raw = _export(m, d / "raw.onnx")
    path = d / "qat.onnx"
    shutil.copy(raw, path)
    counts = to_ort_cpu_layout(path, [{"input": b.numpy()} for b in calib])
    return {
        "ref": ref,
        "after_fold": after_fold,
        "folded": folded,
        "info": info,
        "fake": fake.numpy(),
        "before_widen": before_widen,
        "widened": widened,
        "raw": raw,
        "path": path,
        "counts": counts,
        "x": x,
        "dir": d,
    }


# ------------------------------------------------------------------------------------------ pieces
def test_batchnorm_folding_keeps_outputs(qat_cnn):
    assert qat_cnn["folded"] == 4
    torch.testing.assert_close(qat_cnn["after_fold"], qat_cnn["ref"], atol=1e-5, rtol=1e-5)


def test_quantizers_unsigned_after_relu_and_7bit_widening_is_exact(qat_cnn):
    info = qat_cnn["info"]
    assert info["quantized_modules"] == 6  # 4 convs, pooling, head
    assert info["unsigned_inputs"] == 4  # all but the image and the residual sum (both signed)
    assert qat_cnn["widened"] == 5
    # the same quantized weights up to float rounding of the scale (amax/63 vs (amax*127/63)/127): a rare
    # weight on a rounding boundary moves one step
    fake, before = qat_cnn["fake"], qat_cnn["before_widen"].numpy()
    assert np.abs(fake - before).max() <= 0.01 * float(before.max() - before.min())
    assert (np.abs(fake - before).max(axis=1) < 1e-6).mean() >= 0.9


def test_onnx_has_qdq_and_int8_weights(qat_cnn):
    raw_ops = _ops(onnx.load(str(qat_cnn["raw"])))
    assert raw_ops.get("QuantizeLinear", 0) >= 6 and raw_ops.get("DequantizeLinear", 0) >= 11
    m = onnx.load(str(qat_cnn["path"]))
    ops = _ops(m)
    c = qat_cnn["counts"]
    assert c == {"weights_folded": 5, "biases_int32": 5, "activations_uint8": 2, "residual_convs_quantized": 1}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    for conv in (n for n in m.graph.node if n.op_type == "Conv"):
        w_dq, b_dq = producers[conv.input[1]], producers[conv.input[2]]
        w = inits[w_dq.input[0]]
        assert w.dtype == np.int8 and np.abs(w).max() <= 63  # 7-bit values in int8
        assert inits[b_dq.input[0]].dtype == np.int32
    q_zps = [inits[q.input[2]] for q in m.graph.node if q.op_type == "QuantizeLinear"]
    assert q_zps and all(z.dtype == np.uint8 for z in q_zps)  # activations all uint8 (weights are folded)
    assert ops.get("QuantizeLinear", 0) == 6 + 1  # one per quantized input, one on the residual conv's output
    assert ops.get("QuantizeLinear") <= raw_ops["QuantizeLinear"]


def test_ort_fuses_every_conv_and_matches_torch(qat_cnn):
    from edgetl.quantize.ort_int8 import ort_fused_ops

    ops = ort_fused_ops(qat_cnn["path"])
    assert ops.get("QLinearConv", 0) == 4 and "Conv" not in ops and "FusedConv" not in ops
    assert ops.get("QLinearAdd", 0) == 1 and "Add" not in ops
    x = qat_cnn["x"].numpy()
    fake = qat_cnn["fake"]
    tol = REL_TOL * float(fake.max() - fake.min())
    for path in (qat_cnn["raw"], qat_cnn["path"]):  # as exported, and rewritten + fused by ORT
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        assert np.abs(got - fake).max() <= tol, (path.name, np.abs(got - fake).max(), tol)
        assert (got.argmax(1) == fake.argmax(1)).mean() >= TOP1
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(str(qat_cnn["raw"]), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(plain - fake).max() <= 1e-3 * float(fake.max() - fake.min())  # unfused Q/DQ: the same numbers


def test_timm_same_padded_conv_is_quantized_and_fused(tmp_path):
    """timm's Conv2dSame (EfficientNet-Lite0's stem and stride-2 depthwise convs) overrides forward, so
    modelopt skips it unless registered; registered, it fuses like any Conv."""
    conv2d_same = pytest.importorskip("timm.layers.conv2d_same")
    from edgetl.quantize.ort_int8 import ort_fused_ops
    from edgetl.quantize.qat import fold_batchnorm, quantize_model, widen_weight_quantizers
    from edgetl.quantize.qdq_cpu import to_ort_cpu_layout

    torch.manual_seed(0)
    nn = torch.nn
    m = nn.Sequential(
        conv2d_same.Conv2dSame(3, 8, 3, stride=2, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 1),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()
    calib = [_images(16, s) for s in range(2)]
    assert fold_batchnorm(m, calib[0][:2]) == 1
    info = quantize_model(m, calib, weight_bits=7)
    assert "input_quantizer" in dict(m[0].named_children()) and info["quantized_modules"] == 4
    widen_weight_quantizers(m)
    with torch.no_grad():
        fake = m(calib[0]).numpy()
    path = _export(m, tmp_path / "same.onnx")
    import onnxslim  # as export_onnx does: with a fixed image size the 'same' padding folds into the Conv

    onnx.save(onnxslim.slim(str(path)), str(path))
    assert "Pad" not in _ops(onnx.load(str(path)))
    to_ort_cpu_layout(path, [{"input": b.numpy()} for b in calib])
    ops = ort_fused_ops(path)
    assert ops.get("QLinearConv", 0) == 2 and "Conv" not in ops and "FusedConv" not in ops, ops
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": calib[0].numpy()})[0]
    assert np.abs(got - fake).max() <= REL_TOL * float(fake.max() - fake.min())


# ------------------------------------------------------------------------------------------ recipe + decisions
@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("export.qat.mode", "sometimes", "export.qat.mode: must be one of"),
        ("export.qat.epochs", 0, "export.qat.epochs"),
        ("export.qat.lr", -1.0, "export.qat.lr"),
        ("export.qat.max_steps", 0, "export.qat.max_steps"),
        ("export.qat.lr_schedule", "cosine", "unknown key (allowed keys here: mode, epochs, lr, max_steps)"),
    ],
)
def test_bad_qat_recipe_values_are_one_line_errors(key, value, needle):
    with pytest.raises(EdgetlError) as e:
        recipe_from_dict(tiny_recipe_dict(**{key: value}))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_qat_defaults_and_reason():
    r = recipe_from_dict(tiny_recipe_dict())
    assert r.export.qat.mode == "never" and r.export.qat.max_steps is None
    said = []
    ok = {"int8-ort": {"quantization": {"gate": {"passed": True, "excluded_nodes": []}}}}
    floaty = {"int8-ort": {"quantization": {"gate": {"passed": True, "excluded_nodes": ["a", "b"]}}}}
    failed = {"int8-ort": {"quantization": {"gate": {"passed": False, "excluded_nodes": ["a"]}}}}
    assert qat_reason(None, "auto", ok, "image", said.append) is None
    assert (
        qat_reason(None, "auto", floaty, "image", said.append) == "auto: int8-ort met it only with 2 layer(s) in float"
    )
    assert qat_reason(None, "auto", failed, "image", said.append) == "auto: int8-ort missed the budget"
    assert qat_reason(None, "never", failed, "image", said.append) is None and "--qat" in said[-1]
    assert qat_reason(True, "never", ok, "image", said.append) == "forced (--qat)"
    assert qat_reason(None, "always", ok, "image", said.append) == "export.qat.mode=always"
    assert qat_reason(None, "auto", failed, "text", said.append) is None
    qat_ok = {"int8-qat": {"quantization": {"gate": {"passed": True, "slower_than_fp32": False}}}}
    assert default_artifact({**failed, **qat_ok}) == "int8-qat"  # PTQ failed, QAT passed
    assert default_artifact({**ok, **qat_ok}) == "int8-ort"
    qat_slow = {"int8-qat": {"quantization": {"gate": {"passed": True, "slower_than_fp32": True}}}}
    assert default_artifact({**failed, **qat_slow}) == "fp32"


def test_missing_modelopt_torch_is_one_line_error(monkeypatch):
    import builtins

    from edgetl.quantize.qat import require_mtq

    real = builtins.__import__

    def fake(name, *a, **kw):
        if name.startswith("modelopt.torch"):
            raise ImportError("No module named 'requests'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(EdgetlError, match=r"QAT needs nvidia-modelopt\[torch\]: pip install") as e:
        require_mtq()
    assert "requests" in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------ end to end
def _edgetl(*args):
    return subprocess.run(
        [sys.executable, "-m", "edgetl", *args], capture_output=True, text=True, cwd=REPO, timeout=600
    )


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_cli_qat_needs_int8(tmp_path):
    r = _edgetl("export", str(tmp_path), "--qat")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-task tiny run (1 epoch, 160 training images) with a short QAT recipe section."""
    from edgetl.train.loop import train

    d = tiny_recipe_dict(
        **{
            "data.split.limit_train": 160,
            "data.split.limit_val": 96,
            "data.split.limit_test": 96,
            "export.qat": {"epochs": 1, "lr": 1e-4, "max_steps": 3},
        }
    )
    return train(recipe_from_dict(d), runs_dir=tmp_path_factory.mktemp("qat-runs"), progress=False)


def test_cli_export_int8_qat_end_to_end(tiny_run):
    from edgetl.runtime import Predictor

    best = tiny_run.checkpoint("best")
    before = _sha(best)
    r = _edgetl("export", str(tiny_run.dir), "--int8", "--qat", "--target", "cpu", "--no-gate", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "int8-qat" in r.stdout
    bundle = tiny_run.export_dir
    m = json.loads((bundle / "manifest.json").read_text())
    a = m["artifacts"]["int8-qat"]
    assert a["precision"] == "int8" and a["target"] == "cpu" and a["file"] == "model.int8-qat.onnx"
    assert a["sha256"] == _sha(bundle / a["file"]) == m["files"][a["file"]]
    assert 0.0 <= a["accuracy"]["digit"] <= 1.0 and a["metrics_split"] == "test"
    q = a["quantization"]
    assert q["qat"]["reason"] == "forced (--qat)" and q["qat"]["steps"] == 3 and q["qat"]["max_steps"] == 3
    assert q["gate"]["metric_split"] == "validation" and "digit" in q["gate"]["drop"]
    assert q["calibration"]["source"].startswith("train split") and q["calibration"]["size"] == 64
    assert q["ort_ops"].get("QLinearConv", 0) > 0
    assert a["verification"]["top1_agreement"]["digit"] >= 0.9
    model = onnx.load(str(bundle / a["file"]))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    assert [o.name for o in model.graph.output] == ["digit"] and model.graph.input[0].name == "input"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    # the FP32 checkpoint is untouched; QAT weights are safetensors beside it
    assert _sha(best) == before
    qat_w = tiny_run.checkpoints / "qat.safetensors"
    assert q["qat"]["weights_sha256"] == _sha(qat_w)
    from safetensors import safe_open

    with safe_open(str(qat_w), "pt") as f:
        assert f.metadata()["format"] == "edgetl-qat" and any(k.endswith("_amax") for k in f.keys())
    pred = Predictor.load(bundle, artifact="int8-qat")
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    out = pred.predict(img)
    assert out["digit"].label in m["tasks"][0]["labels"]
