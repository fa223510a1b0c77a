"""The INT8 accuracy gate: finds the layers whose quantization hurts, keeps them in float, records the search.

A synthetic network makes the answer known in advance: one hidden tensor carries a huge, useless channel, so
per-tensor activation quantization of that tensor destroys the informative channels. Keeping it float means
keeping its producer (G3) and its consumer (G4) in float; nothing else matters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgetl.quantize.gate import Evaluator, gate_search
from edgetl.quantize.ort_int8 import OrtStaticQuantizer

ort = pytest.importorskip("onnxruntime")


def _mlp(path: Path, heads: int = 1) -> Path:
    """x(8) -> G1 -> G2 -> G3 (+ a 300.0 channel) -> G4 (ignores it) -> G5 -> logits(4) [-> G6 -> second head]."""
    rng = np.random.default_rng(0)
    dims = [8, 16, 16, 16, 16, 4]
    nodes, inits, x = [], [], "x"
    for i in range(5):
        w = (rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32)
        b = np.zeros(dims[i + 1], np.float32)
        if i == 2:
            b[0] = 300.0
        if i == 3:
            w[0, :] = 0.0
        inits += [numpy_helper.from_array(w, f"W{i + 1}"), numpy_helper.from_array(b, f"B{i + 1}")]
        out = "cls" if i == 4 else f"h{i + 1}_pre"
        nodes.append(helper.make_node("Gemm", [x, f"W{i + 1}", f"B{i + 1}"], [out], name=f"G{i + 1}"))
        if i < 4:
            nodes.append(helper.make_node("Relu", [out], [f"h{i + 1}"], name=f"R{i + 1}"))
            x = f"h{i + 1}"
    outputs = [helper.make_tensor_value_info("cls", TensorProto.FLOAT, ["n", 4])]
    if heads == 2:  # a second, harmless head straight from the input
        w = rng.standard_normal((8, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, "W6"))
        nodes.append(helper.make_node("MatMul", ["x", "W6"], ["aux"], name="G6"))
        outputs.append(helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["n", 3]))
    g = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])], outputs, inits
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("gate")
    model = _mlp(d / "mlp.onnx", heads=2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 8)).astype(np.float32)
    z, aux = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    def margin(logits):
        top2 = np.sort(logits, 1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    keep = (margin(z) > np.percentile(margin(z), 50)) & (margin(aux) > np.percentile(margin(aux), 20))  # clear
    x, z, aux = x[keep][:600], z[keep][:600], aux[keep][:600]
    targets = {"cls": z.argmax(1), "aux": aux.argmax(1)}  # FP32 is 100% right by construction
    kinds = {"cls": "classification", "aux": "classification"}
    labels = {"cls": list("abcd"), "aux": list("xyz")}

    def evaluator():
        return Evaluator(lambda idx: {"x": x[idx]}, len(x), targets, kinds, labels, model, subset=200)

    return model, x, evaluator, d


def _quantizer(model, x):
    q = OrtStaticQuantizer(model, [{"x": x[:200]}])
    q.calibrate()
    return q


def test_gate_keeps_exactly_the_harmful_tensor_in_float(setup, tmp_path):
    model, x, evaluator, _ = setup
    ev = evaluator()
    assert ev.fp32_metrics["cls"]["accuracy"] == 1.0
    out = tmp_path / "int8.onnx"
    r = gate_search(_quantizer(model, x), out, ev, max_drop=1.0, latency=True, latency_budget_s=0.5, say=lambda m: None)
    g = r["gate"]
    first = g["tries"][0]
    assert first["excluded"] == [] and first["drop"]["cls"] > 20 and not first["passed"]
    assert first["drop"]["aux"] <= 1.0  # the second head was never the problem
    assert g["sensitivity"]["tasks"] == ["cls"]
    top = g["sensitivity"]["units"][0]
    assert top["anchor"] == "G3" and top["nodes"] == ["G3", "G4"] and top["gain"] > 0
    assert g["passed"] and sorted(g["excluded_nodes"]) == ["G3", "G4"]
    assert all(v <= 1.0 for v in g["drop"].values())
    assert r["val"]["cls"]["accuracy"] >= 0.99
    # the final model on disk is the one recorded: G3/G4 float, the others INT8
    m = onnx.load(str(out))
    prod = {o: n.op_type for n in m.graph.node for o in n.output}
    weight_src = {n.name: prod.get(n.input[1]) for n in m.graph.node if n.op_type in ("Gemm", "MatMul")}
    assert weight_src["G3"] is None and weight_src["G4"] is None
    assert weight_src["G1"] == weight_src["G2"] == weight_src["G5"] == "DequantizeLinear"
    # every try is timed against FP32, side by side
    lat = g["latency"]
    assert lat["batch"] == 1 and lat["fp32_ms"] > 0 and lat["int8_ms"] > 0 and lat["int8_all_ms"] > 0
    assert g["slower_than_fp32"] == (lat["speedup_vs_fp32"] < 1.0)
    assert all("latency_ms" in t and "speedup_vs_fp32" in t for t in g["tries"])
    lo, hi = lat["speedup_interval"]  # the ratio's spread, for `edgetl bench` to compare its own against
    assert lo <= lat["speedup_vs_fp32"] <= hi and isinstance(lat["spread_known"], bool)
    json.dumps(g)  # manifest-ready


def test_gate_without_search_reports_the_failure(setup, tmp_path):
    model, x, evaluator, _ = setup
    r = gate_search(
        _quantizer(model, x),
        tmp_path / "q.onnx",
        evaluator(),
        max_drop=1.0,
        search=False,
        latency=False,
        say=lambda m: None,
    )
    g = r["gate"]
    assert not g["passed"] and g["excluded_nodes"] == [] and len(g["tries"]) == 1 and not g["searched"]
    assert g["drop"]["cls"] > 20 and "latency" not in g
    assert (tmp_path / "q.onnx").is_file()


def test_gate_that_runs_out_of_tries_fails_with_its_best_try(setup, tmp_path):
    model, x, evaluator, _ = setup
    msgs: list[str] = []
    r = gate_search(
        _quantizer(model, x),
        tmp_path / "q.onnx",
        evaluator(),
        max_drop=0.0,
        latency=False,
        max_tries=1,
        say=msgs.append,
    )
    g = r["gate"]
    assert not g["passed"] and g["searched"] and len(g["tries"]) == 1
    assert any("no try met the budget" in m for m in msgs)


def test_zero_budget_is_met_by_keeping_enough_in_float(setup, tmp_path):
    model, x, evaluator, _ = setup
    r = gate_search(
        _quantizer(model, x), tmp_path / "q.onnx", evaluator(), max_drop=0.0, latency=False, say=lambda m: None
    )
    g = r["gate"]
    assert g["passed"] and all(v <= 0.0 for v in g["drop"].values())
    assert {"G3", "G4"} <= set(g["excluded_nodes"])
    sizes = [t["n_excluded"] for t in g["tries"]]
    assert len(set(map(tuple, (sorted(t["excluded"]) for t in g["tries"])))) == len(sizes)  # no try repeated


# ------------------------------------------------------------------------------------------------ bundle
def test_default_artifact_falls_back_to_fp32():
    from edgetl.bundle.pipeline import default_artifact

    def arts(**gate):
        return {"fp32": {}, "int8-ort": {"quantization": {"gate": gate}}}

    assert default_artifact(arts(passed=True, slower_than_fp32=False)) == "int8-ort"
    assert default_artifact(arts(passed=True)) == "int8-ort"  # not timed (--no-gate-latency)
    assert default_artifact(arts(passed=False, slower_than_fp32=False)) == "fp32"
    assert default_artifact(arts(passed=True, slower_than_fp32=True)) == "fp32"
    assert default_artifact({"fp32": {}}) == "fp32"


def test_exported_bundle_records_the_gate(exported_run):
    m = json.loads((exported_run.dir / "export" / "manifest.json").read_text())
    q = m["artifacts"]["int8-ort"]["quantization"]
    assert q["backend"] == "onnxruntime" and q["mode"] == "static" and q["per_channel"] is True
    cal = q["calibration"]
    assert cal["source"].startswith("train split") and cal["size"] == len(cal["rows"]) > 0
    train_rows = set(json.loads((exported_run.dir / "splits.json").read_text())["indices"]["train"])
    assert set(cal["rows"]) <= train_rows  # never the test split
    g = q["gate"]
    assert g["max_drop"] == 1.0 and g["metric_split"] == "validation" and g["tries"][0]["excluded"] == []
    assert set(g["drop"]) == {"digit", "parity"} and g["passed"] == all(v <= 1.0 for v in g["drop"].values())
    lat = g["latency"]
    assert lat["batch"] == 1 and lat["speedup_vs_fp32"] > 0
    expected = "int8-ort" if g["passed"] and not g["slower_than_fp32"] else "fp32"
    assert m["default_artifact"] == expected


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--max-drop", "-1"], "--max-drop -1.0"),
        (["--max-drop", "101"], "--max-drop 101.0"),
        (["--calibration", "kl"], "--calibration 'kl'"),
        (["--calibration-size", "0"], "--calibration-size 0"),
        (["--threads", "0"], "--threads 0"),
    ],
)
def test_export_gate_options_are_checked(tmp_path, args, needle):
    """Checked once, over the run's recipe, before the model loads (the checkpoint here is no model at all);
    main() prints EdgetlError as one `error:` line, see test_cli."""
    import yaml
    from conftest import tiny_recipe_dict
    from typer.testing import CliRunner

    from edgetl.cli import app
    from edgetl.errors import EdgetlError

    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_dict()))
    (tmp_path / "splits.json").write_text("{}")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.safetensors").write_bytes(b"")
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--int8", *args])
    assert isinstance(result.exception, EdgetlError) and needle in str(result.exception)
    assert "\n" not in str(result.exception)
