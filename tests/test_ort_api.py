"""edgetl.quantize.ort_api: every way of driving ONNX Runtime writes the same bytes, and a new keyword in a
private helper (as ORT 1.30 added `block_size`) is absorbed or falls back, never a TypeError.

The reference is ORT's public `quantize_static` / `quantize_dynamic` with no memo; the faster paths
("cache": public calibration cache, "quantizer": QDQQuantizer from fixed ranges) and the weight memo must
match it byte for byte, on whatever ORT release is installed (CI's pinned lane and its newest lane).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgetl.quantize import ort_api
from edgetl.quantize.ort_int8 import OrtDynamicQuantizer, OrtStaticQuantizer

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from test_quantize import TinyEncoder, _export, _images, cnn  # noqa: E402,F401,F811  (the same tiny models and fixture)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("enc") / "enc.onnx"
    return _export(
        TinyEncoder().eval(), (torch.zeros(2, 5, 32),), p, ["x"], ["cls"], {"x": {0: "b", 1: "s"}, "cls": {0: "b"}}
    )


def _static(cnn: Path, out: Path, path: str, memoize: bool, exclude: int | None = None, method: str = "minmax"):
    q = OrtStaticQuantizer(
        cnn, [{"input": _images(8, 0)}, {"input": _images(8, 1)}], method=method, path=path, memoize=memoize
    )
    names = [n for n, op in q.candidates() if op == "Conv"]
    excluded = [names[exclude]] if exclude is not None else []
    q.quantize(out, excluded)
    q.quantize(out, excluded)  # a second call reads the memo (and the cache file) filled by the first
    assert q.ort_path == (path if path != "auto" else ort_api.static_paths()[0])
    return out.read_bytes(), q


@pytest.mark.parametrize("exclude", [None, 1])
def test_every_static_path_with_or_without_memo_writes_the_public_bytes(cnn, tmp_path, exclude):
    ref, _ = _static(cnn, tmp_path / "public.onnx", "public", memoize=False, exclude=exclude)
    assert len(ref) > 1000 and b"QuantizeLinear" in ref
    for path in ort_api.static_paths():
        for memo in (False, True):
            got, q = _static(cnn, tmp_path / f"{path}-{memo}.onnx", path, memoize=memo, exclude=exclude)
            assert got == ref, f"path {path} memo {memo} differs from ORT's public quantize_static"
            assert bool(q._weight_cache) == memo


def test_percentile_calibration_matches_the_public_path_too(cnn, tmp_path):
    ref, _ = _static(cnn, tmp_path / "p.onnx", "public", memoize=False, method="percentile")
    got, _ = _static(cnn, tmp_path / "f.onnx", "auto", memoize=True, method="percentile")
    assert got == ref


def test_dynamic_memo_writes_the_public_bytes(encoder, tmp_path):
    outs = []
    for memo in (False, True):
        q = OrtDynamicQuantizer(encoder, memoize=memo)
        q.quantize(tmp_path / f"d{memo}.onnx", ["/out/Gemm"])
        q.quantize(tmp_path / f"d{memo}.onnx", ["/out/Gemm"])
        outs.append((tmp_path / f"d{memo}.onnx").read_bytes())
        assert bool(q._weight_cache) == memo
    assert outs[0] == outs[1]


def test_memo_absorbs_a_keyword_a_new_release_adds(monkeypatch, cnn, tmp_path):
    """ORT 1.30 called quantize_onnx_initializer(..., block_size=...); the old fixed-signature wrapper raised
    TypeError. Stand in a helper with yet another new keyword: called with it, through the memo, the result is
    the helper's own; and a whole quantization with the stub installed still writes the reference bytes."""
    import onnxruntime.quantization.qdq_quantizer as qdq

    original = qdq.quantize_onnx_initializer
    calls = []

    def future_helper(
        weight, quant_type, zero_point, scale, axis=None, quant_weight_name=None, block_size=0, future_option=None
    ):
        calls.append(future_option)
        return original(weight, quant_type, zero_point, scale, axis, quant_weight_name)

    ref, _ = _static(cnn, tmp_path / "ref.onnx", "public", memoize=False)
    monkeypatch.setattr(qdq, "quantize_onnx_initializer", future_helper)
    cache: dict = {}
    wrapped = ort_api.memoized(future_helper, cache, "t")
    w = onnx.numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w")
    args = (w, onnx.TensorProto.INT8, np.zeros(3, np.int8), np.full(3, 0.1, np.float32))
    a = wrapped(*args, axis=0, block_size=0, future_option="x")
    b = wrapped(*args, axis=0, block_size=0, future_option="x")
    c = wrapped(*args, axis=0, future_option="y")  # another value of the new keyword: another entry
    assert a == b == c == original(*args, 0) and len(cache) == 2 and calls == ["x", "y"]
    got, _ = _static(cnn, tmp_path / "stub.onnx", "auto", memoize=True)
    assert got == ref and calls[2:], "the stub must have been called through the memo"
    assert qdq.quantize_onnx_initializer is future_helper  # restored after the quantization


def test_memo_passes_through_what_it_cannot_key():
    cache: dict = {}
    wrapped = ort_api.memoized(lambda x, *, opt=None: (x, opt), cache, "t")
    marker = object()
    assert wrapped(marker, opt=1) == (marker, 1) and not cache  # an unkeyable argument: no caching
    assert wrapped(3, opt=np.float32(2)) == (3, np.float32(2)) and len(cache) == 1


def test_a_quantizer_class_with_other_arguments_falls_back_to_the_public_path(monkeypatch, cnn, tmp_path):
    import onnxruntime.quantization as q

    if not ort_api.qdq_quantizer_usable():
        pytest.skip("this ORT's QDQQuantizer already differs; the fallback is what runs")
    ref, _ = _static(cnn, tmp_path / "ref.onnx", "public", memoize=False)

    class Renamed(q.QDQQuantizer):
        def __init__(
            self,
            model,
            per_channel,
            reduce_range,
            weight_type,
            activation_type,
            tensors_range,
            nodes_to_quantize,
            nodes_to_exclude,
            op_types_to_quantize,
            extra_options=None,
        ):
            super().__init__(
                model,
                per_channel,
                reduce_range,
                weight_type,
                activation_type,
                tensors_range,
                nodes_to_quantize,
                nodes_to_exclude,
                op_types_to_quantize,
                extra_options,
            )

    monkeypatch.setattr(q, "QDQQuantizer", Renamed)
    assert not ort_api.qdq_quantizer_usable() and "quantizer" not in ort_api.static_paths()
    got, qz = _static(cnn, tmp_path / "fallback.onnx", "auto", memoize=True)
    assert got == ref and qz.ort_path in ("cache", "public")


def test_a_failed_quantization_leaves_no_file(monkeypatch, cnn, tmp_path):
    import onnxruntime.quantization.qdq_quantizer as qdq

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(qdq, "quantize_onnx_initializer", broken)
    with pytest.raises(RuntimeError, match="boom"):
        _static(cnn, tmp_path / "x.onnx", "public", memoize=True)
    assert list(tmp_path.iterdir()) == []


# Private names of dependencies: each file that uses one is listed in docs/compatibility.md, and the quantizer
# front end (ort_int8.py) reaches ONNX Runtime's quantization package only through ort_api.
PRIVATE = re.compile(
    r"(?:from|import)\s+(onnxruntime\.quantization\.\w+|modelopt\.[\w.]*\._\w+|torch\._\w+|"
    r"transformers\.[\w.]*\._\w+)|\b(_QuantConv2d|QuantModuleRegistry|_orig_mod|_modules\b)"
)


def test_every_private_dependency_name_is_listed_in_docs_compatibility():
    doc = (REPO / "docs" / "compatibility.md").read_text()
    users = {}
    for f in sorted((REPO / "edgetl").rglob("*.py")):
        hits = {m.group(1) or m.group(2) for m in PRIVATE.finditer(f.read_text())}
        if hits:
            users[str(f.relative_to(REPO))] = hits
    assert "edgetl/quantize/ort_api.py" in users  # the scan itself sees the adapter
    for f, hits in users.items():
        assert f"`{f}`" in doc, f"{f} uses {sorted(hits)}: list it in docs/compatibility.md"
    assert not any(
        re.search(r"onnxruntime\.quantization\.\w", line)
        for line in (REPO / "edgetl/quantize/ort_int8.py").read_text().splitlines()
        if "import" in line
    ), "ort_int8.py must go through ort_api"
