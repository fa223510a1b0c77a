"""Never execute what is loaded: recipes, device profiles, weight files and checkpoints can neither import
nor run code, and the source never reaches for an unsafe loader."""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, tiny_recipe_dict

from edgetl.errors import EdgetlError

PACKAGE = REPO / "edgetl"


class _Evil:
    """Unpickling this runs os.system(...): what a malicious .pt/.pth/.bin would carry."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _payloads(sentinel: Path) -> list[str]:
    s = str(sentinel)
    return [
        f"!!python/object/apply:os.system ['touch {s}']",
        f"!!python/object/apply:subprocess.check_output [['touch', '{s}']]",
        f"!!python/object/new:subprocess.Popen [['touch', '{s}']]",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!python/object:collections.OrderedDict {}",
        f'!!python/object/apply:builtins.exec [\'open("{s}", "w")\']',
        "!!python/tuple [1, 2]",
    ]


@pytest.mark.parametrize("i", range(8))
def test_recipe_python_tags_never_construct_objects(tmp_path, i):
    sentinel = tmp_path / "pwned"
    payload = _payloads(sentinel)[i]
    from edgetl.recipe import load_recipe

    text = yaml.safe_dump(tiny_recipe_dict())
    for place in (
        f"name: {payload}\n" + text.split("\n", 1)[1],  # a value
        text + f"extra: {payload}\n",  # an unknown key's value
        text.replace("train:\n", f"train:\n  lr: {payload}\n", 1),
    ):  # nested
        p = tmp_path / "evil.yaml"
        p.write_text(place)
        with pytest.raises(EdgetlError) as e:
            load_recipe(p)
        assert "\n" not in str(e.value)
        assert not sentinel.exists()


@pytest.mark.parametrize("i", range(8))
def test_override_values_with_python_tags_stay_strings(tmp_path, i):
    """`key=value` overrides are YAML too: a tag is never constructed (the text is kept, then validated)."""
    from edgetl.recipe import load_recipe, parse_override

    sentinel = tmp_path / "pwned"
    payload = _payloads(sentinel)[i]
    assert parse_override(f"name={payload}")[1] == payload
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(tiny_recipe_dict()))
    with pytest.raises(EdgetlError, match="name"):
        load_recipe(p, [f"name={payload}"])
    r = load_recipe(p, [f"description={payload}"])  # a free-text field: kept verbatim, inert
    assert r.description == payload
    assert not sentinel.exists()


def test_device_profiles_are_loaded_safely(tmp_path, monkeypatch):
    from edgetl.bench import devices

    sentinel = tmp_path / "pwned"
    for payload in _payloads(sentinel):
        p = tmp_path / "evil.yaml"
        p.write_text(f"name: {payload}\ndisplay: x\n")
        with pytest.raises(EdgetlError) as e:
            devices.load_profile_file(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)
    # also through the registry (EDGETL_DEVICES_DIR)
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "evil.yaml").write_text(f"name: {_payloads(sentinel)[0]}\n")
    monkeypatch.setenv("EDGETL_DEVICES_DIR", str(d))
    for attr in ("cache_clear",):
        for fn in vars(devices).values():
            if hasattr(fn, attr):
                fn.cache_clear()
    with pytest.raises(EdgetlError, match="evil.yaml"):
        devices.list_device_profiles()
    assert not sentinel.exists()


# ------------------------------------------------------------------------------------------ weight files
def _torch_save(obj, path: Path) -> Path:
    torch.save(obj, str(path))
    return path


def test_malicious_pickles_are_refused_and_never_run(tmp_path):
    from edgetl.models.weights import load_state_dict_file

    sentinel = tmp_path / "pwned"
    cmd = f"touch {sentinel}"
    files = [
        _torch_save({"w": torch.zeros(2), "evil": _Evil(cmd)}, tmp_path / "zip_format.pt"),  # torch.save zip
        _torch_save({"state_dict": {"w": _Evil(cmd)}}, tmp_path / "nested.pth"),
    ]
    raw = tmp_path / "raw_pickle.bin"  # a bare pickle stream (legacy format)
    raw.write_bytes(pickle.dumps({"w": _Evil(cmd)}, protocol=2))
    files.append(raw)
    ckpt = tmp_path / "old.ckpt"
    ckpt.write_bytes(pickle.dumps(_Evil(cmd)))
    files.append(ckpt)
    for f in files:
        with pytest.raises(EdgetlError) as e:
            load_state_dict_file(f)
        msg = str(e.value)
        assert f.name in msg and "refused" in msg and "\n" not in msg, msg
        assert not sentinel.exists(), f"{f.name} executed code"


def test_plain_state_dict_pickles_are_accepted_and_converted(tmp_path):
    from edgetl.models.weights import load_state_dict_file, save_state_dict_safetensors

    sd = {"a.weight": torch.randn(3, 2), "a.bias": torch.zeros(3)}
    for name, obj in (("plain.pt", sd), ("wrapped.pth", {"state_dict": sd, "epoch": 3}), ("w.bin", sd)):
        got = load_state_dict_file(_torch_save(obj, tmp_path / name))
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    out = tmp_path / "converted.safetensors"
    save_state_dict_safetensors(got, out, {"source": "w.bin"})
    again = load_state_dict_file(out)
    assert all(torch.equal(again[k], sd[k]) for k in sd)


@pytest.mark.parametrize(
    "name,content,needle",
    [
        ("w.pkl", None, "unsupported weights format '.pkl'"),
        ("w.npz", None, "unsupported weights format '.npz'"),
        ("w.onnx", None, "unsupported weights format"),
        ("w.pt", ["not", "a", "dict"], "expected a mapping of tensor names to tensors"),
        ("w.pt", {"a": 1, "b": "x"}, "expected a mapping of tensor names to tensors"),
        ("w.safetensors", b"\x80\x04garbage", "not a valid safetensors file"),
        ("w.pt", b"", "refused to load"),
        ("missing.pt", "MISSING", "weights file not found"),
    ],
)
def test_other_weight_files_are_refused_with_one_line(tmp_path, name, content, needle):
    from edgetl.models.weights import load_state_dict_file

    p = tmp_path / name
    if content == "MISSING":
        pass
    elif content is None:
        p.write_bytes(pickle.dumps({"w": [1.0]}))
    elif isinstance(content, bytes):
        p.write_bytes(content)
    else:
        _torch_save(content, p)
    with pytest.raises(EdgetlError) as e:
        load_state_dict_file(p)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_recipe_pointing_at_a_malicious_pickle_is_refused(tmp_path):
    """backbone.weights: a local file goes through the same refusing loader."""
    from edgetl.models import build_model
    from edgetl.recipe import recipe_from_dict

    sentinel = tmp_path / "pwned"
    evil = _torch_save({"features.0.0.weight": _Evil(f"touch {sentinel}")}, tmp_path / "mobilenet.pth")
    rec = recipe_from_dict(tiny_recipe_dict(**{"backbone.weights": str(evil)}))
    with pytest.raises(EdgetlError, match=r"mobilenet\.pth: refused to load"):
        build_model(rec, {"digit": [str(i) for i in range(10)]})
    assert not sentinel.exists()


def test_checkpoints_are_safetensors_only(tmp_path):
    """A pickle dropped in place of a run's checkpoint is never unpickled."""
    from edgetl.runs.checkpoint import load_model, load_training_state, read_training_meta

    sentinel = tmp_path / "pwned"
    model = torch.nn.Linear(2, 2)
    for name in ("best.safetensors", "last.state.safetensors"):
        p = _torch_save({"weight": _Evil(f"touch {sentinel}")}, tmp_path / name)
        with pytest.raises(EdgetlError, match="corrupt or not a safetensors checkpoint"):
            load_model(model, p)
        with pytest.raises(EdgetlError, match="corrupt or not a safetensors checkpoint"):
            read_training_meta(p)
        with pytest.raises(EdgetlError, match="corrupt or not a safetensors checkpoint"):
            load_training_state(p, None, model=model)
    assert not sentinel.exists()


# --------------------------------------------------------------------------------------- source audit
_PY_FILES = sorted(PACKAGE.rglob("*.py"))
_FORBIDDEN = [
    (re.compile(r"yaml\.(load|full_load|unsafe_load|load_all|unsafe_load_all)\("), "yaml loads only with safe_load"),
    (re.compile(r"Loader\s*=\s*yaml\.(Loader|FullLoader|UnsafeLoader)"), "no unsafe YAML loader classes"),
    (re.compile(r"^\s*(import pickle|from pickle|import dill|import cloudpickle|import joblib)", re.M), "no pickle"),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy never unpickles"),
    (re.compile(r"shell\s*=\s*True"), "subprocesses take argument vectors"),
    (re.compile(r"os\.system\(|os\.popen\("), "no shell strings"),
    (re.compile(r"trust_remote_code\s*=\s*True"), "no remote code from model repos"),
    (re.compile(r"(?<![\w.])(eval|exec)\("), "no eval/exec"),
]


def test_package_source_has_no_unsafe_loaders():
    assert len(_PY_FILES) > 30
    problems = []
    for f in _PY_FILES:
        text = f.read_text(encoding="utf-8")
        for pat, why in _FORBIDDEN:
            for m in pat.finditer(text):
                line = text[: m.start()].count("\n") + 1
                problems.append(f"{f.relative_to(REPO)}:{line}: {why}: {m.group(0).strip()}")
        for m in re.finditer(r"torch\.load\(", text):
            if "weights_only=True" not in _call_args(text, m.end()):
                problems.append(f"{f.relative_to(REPO)}: torch.load without weights_only=True")
    assert not problems, "\n".join(problems)


def _call_args(text: str, start: int) -> str:
    """The argument text of a call whose '(' ends at `start` (balanced parentheses)."""
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1]


def test_source_audit_catches_what_it_should():
    """The audit patterns are live: each flags a sample of what it forbids."""
    samples = [
        "yaml.load(text)",
        "x = yaml.load(f, Loader=yaml.Loader)",
        "import pickle",
        "np.load(p, allow_pickle=True)",
        "subprocess.run(cmd, shell=True)",
        "os.system('id')",
        "AutoModel.from_pretrained(p, trust_remote_code=True)",
        "eval(s)",
    ]
    for s, (pat, _) in zip(samples, _FORBIDDEN):
        assert pat.search(s), s
    assert not _FORBIDDEN[-1][0].search("model.eval()")
    call = "torch.load(str(path), map_location='cpu', weights_only=True)"
    assert "weights_only=True" in _call_args(call, call.index("(") + 1)
    call = "torch.load(open(p), map_location=dev(x))  # weights_only=True later"
    assert "weights_only=True" not in _call_args(call, call.index("(") + 1)


def test_torch_save_zip_is_not_trusted_by_extension(tmp_path):
    """A zip (torch.save format) renamed .safetensors is refused by the safetensors reader, not unpickled."""
    from edgetl.models.weights import load_state_dict_file

    p = _torch_save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    assert zipfile.is_zipfile(p)
    fake = tmp_path / "w.safetensors"
    fake.write_bytes(p.read_bytes())
    with pytest.raises(EdgetlError, match="not a valid safetensors file"):
        load_state_dict_file(fake)
    buf = io.BytesIO(p.read_bytes())
    assert torch.load(buf, weights_only=True)["w"].shape == (1,)  # the real file is fine through the safe path
