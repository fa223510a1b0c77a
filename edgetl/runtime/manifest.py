"""The bundle manifest (docs/bundle.md): read, validate, verify file hashes, write atomically.

This is the only contract between the export side and a device: the runtime trusts nothing else in the
bundle directory. Validation is by hand (no pydantic on devices) and every problem is one line that names
the manifest, the field and the value at fault.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from edgetl.errors import EdgetlError
from edgetl.runtime.atomic import atomic_write_text
from edgetl.runtime.limits import MAX_MANIFEST_BYTES, read_limited
from edgetl.runtime.tasks import get_kind, kind_names

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "Artifact",
    "ImageInput",
    "Manifest",
    "Task",
    "TextInput",
    "bundle_file_hashes",
    "files_for_artifacts",
    "onnx_external_data",
    "parse_manifest",
    "read_manifest",
    "resolve_in_bundle",
    "sha256_file",
    "verify_files",
    "write_manifest",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"  # detached signature of manifest.json (edgetl.runtime.trust): never listed

TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ImageInput:
    """How to turn pixels into the model's NCHW float input (the training side's pre-processing)."""

    name: str
    image_size: tuple[int, int]  # (height, width)
    channels: int
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "bilinear"  # squash to image_size; or "shorter_crop" (edgetl.runtime.crop) with crop_pct
    crop_pct: float = 0.875
    layout: str = "NCHW"
    dtype: str = "float32"
    kind: str = "image"


@dataclass(frozen=True)
class TextInput:
    """How to turn strings into token arrays: tokenizer file, model input names, truncation, padding."""

    names: tuple[str, ...]
    tokenizer: str  # path relative to the bundle
    max_length: int
    padding: str = "longest"
    dtype: str = "int64"
    kind: str = "text"


@dataclass(frozen=True)
class Task:
    """One model head: its ONNX output and how to read it."""

    name: str
    kind: str  # a registered task kind (edgetl.runtime.tasks)
    labels: tuple[str, ...]
    output: str
    # segmentation: "classmap" (uint8 argmax in the graph) or "logits"; detection: "nms" (in the graph) or "raw"
    output_format: str | None = None
    # the kind's own settings from the manifest (detection: score_threshold, iou_threshold, max_detections...)
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Artifact:
    """One model file in the bundle; `raw` keeps the informational fields (accuracy, quantization...)."""

    name: str
    file: str
    format: str  # onnx | tensorrt
    precision: str | None = None
    target: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest.json; `raw` is the parsed JSON for the fields the runtime does not need."""

    schema_version: int
    input: ImageInput | TextInput
    tasks: tuple[Task, ...]
    artifacts: Mapping[str, Artifact]
    files: Mapping[str, str]
    default_artifact: str | None = None
    backbone: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


# ------------------------------------------------------------------------------------------ hashing


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (model files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def bundle_file_hashes(bundle_dir: str | os.PathLike[str]) -> dict[str, str]:
    """`files` for a manifest: every file under the bundle but manifest.json, its signature and hidden temp files."""
    root = Path(bundle_dir)
    out: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in (MANIFEST_NAME, SIGNATURE_NAME) or any(part.startswith(".") for part in PurePosixPath(rel).parts):
            continue
        out[rel] = sha256_file(path)
    return out


# ------------------------------------------------------------------------------------------- paths


def resolve_in_bundle(bundle_dir: str | os.PathLike[str], rel: object, what: str) -> Path:
    """Join a manifest path onto the bundle, refusing anything that would leave it (`..`, absolute, links)."""
    where = Path(bundle_dir) / MANIFEST_NAME
    if not isinstance(rel, str) or not rel.strip():
        raise EdgetlError(f"{where}: {what} must be a non-empty relative path, got {_short(rel)}")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in rel):
        raise EdgetlError(f"{where}: {what} {_short(rel)} contains control characters")
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in rel.split("/")):
        raise EdgetlError(f"{where}: {what} {_short(rel)} has a name longer than 255 bytes")
    posix = PurePosixPath(rel)
    if "\\" in rel or posix.is_absolute() or re.match(r"^[A-Za-z]:", rel) or ".." in posix.parts:
        raise EdgetlError(
            f"{where}: {what} {rel!r} must stay inside the bundle (relative, '/'-separated, no '..', not absolute)"
        )
    try:
        root = Path(bundle_dir).resolve()
        path = (root / posix).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # name too long, symlink loop...
        raise EdgetlError(f"{where}: {what} {_short(rel)} cannot be resolved ({exc})") from None
    if path != root and root not in path.parents:
        raise EdgetlError(f"{where}: {what} {rel!r} resolves outside the bundle (symbolic link?)")
    return path


def verify_files(
    bundle_dir: str | os.PathLike[str],
    manifest: Manifest | Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, str]:
    """Check the sha256 of `names` (default: every file the manifest lists); return {name: sha256}.

    Refuses, with one line naming the file: a path leaving the bundle, a name the manifest does not list,
    a missing file, a hash mismatch.
    """
    files = manifest.files if isinstance(manifest, Manifest) else manifest.get("files")
    where = Path(bundle_dir) / MANIFEST_NAME
    if not isinstance(files, Mapping):
        raise EdgetlError(f"{where}: field 'files' must be an object of path -> sha256, got {_short(files)}")
    checked: dict[str, str] = {}
    for name in list(files) if names is None else list(names):
        path = resolve_in_bundle(bundle_dir, name, "file")
        expected = files.get(name)
        if expected is None:
            raise EdgetlError(f"{path}: not listed in {where} 'files', so it cannot be verified")
        if not path.is_file():
            raise EdgetlError(f"{path}: listed in {MANIFEST_NAME} but missing from the bundle")
        actual = sha256_file(path)
        if actual != str(expected).lower():
            raise EdgetlError(
                f"{path}: sha256 mismatch (manifest {str(expected)[:12]}..., file {actual[:12]}...); "
                "the file was modified or corrupted"
            )
        checked[name] = actual
    return checked


def files_for_artifacts(manifest: Manifest, artifacts: Iterable[str] | None = None) -> list[str]:
    """Every file the manifest lists, less the model files (and their sidecars and external data) of artifacts
    not in `artifacts` (None: all of them): what a bench of those artifacts reads, and what a remote bench
    copies to the device."""
    if artifacts is None:
        return list(manifest.files)
    keep = set(artifacts)
    skip: set[str] = set()
    for name, entry in manifest.artifacts.items():
        own = {entry.file, f"{entry.file}.json", *(entry.raw.get("external_data") or [])}
        if name in keep:
            skip -= own
        else:
            skip |= own - {e.file for n, e in manifest.artifacts.items() if n in keep}
    return [f for f in manifest.files if f not in skip]


def onnx_external_data(path: str | os.PathLike[str]) -> list[str]:
    """The external-data files an ONNX model names (`location`s, relative to the model's folder), found by
    parsing the model with `onnx` (tensor data not loaded) when this process already loaded it (export, bench
    on the workstation); otherwise -- a device with the light install, where the runtime must not pull in
    more than numpy + onnxruntime -- by scanning the protobuf bytes for `location` entries, in either order."""
    onnx = sys.modules.get("onnx")
    if onnx is None:
        return _scan_locations(Path(path).read_bytes())
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001  (DecodeError and friends: ONNX Runtime reports the bad file when it loads)
        return _scan_locations(Path(path).read_bytes())
    found: list[str] = []

    def tensors(graph):
        yield from graph.initializer
        for sp in graph.sparse_initializer:
            yield sp.values
            yield sp.indices
        for node in graph.node:
            yield from _node_tensors(node, tensors)

    for t in (*tensors(model.graph), *(x for f in model.functions for n in f.node for x in _node_tensors(n, tensors))):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), None)
            if loc is not None and loc not in found:
                found.append(loc)
    return found


def _node_tensors(node, tensors):
    for a in node.attribute:
        if a.HasField("t"):
            yield a.t
        yield from a.tensors
        if a.HasField("sparse_tensor"):
            yield a.sparse_tensor.values
            yield a.sparse_tensor.indices
        for g in (*([a.g] if a.HasField("g") else []), *a.graphs):
            yield from tensors(g)


def _scan_locations(data: bytes) -> list[str]:
    """StringStringEntryProto {key: "location", value: <path>} in raw protobuf bytes, key first or value first."""
    found: list[str] = []
    key = b"\x0a\x08location"
    for m in re.finditer(re.escape(key), data):
        value = None
        if data[m.end() : m.end() + 1] == b"\x12":  # key, then value
            value = _varint_string(data, m.end() + 1)
        else:  # value, then key: \x12 <varint length> <value> right before the key
            for n in range(1, 4097):
                head = _varint(n)
                start = m.start() - n - len(head) - 1
                if start < 0:
                    break
                if data[start] == 0x12 and data[start + 1 : m.start() - n] == head:
                    value = _varint_string(data, start + 1)
                    break
        if value is not None and value not in found:
            found.append(value)
    return found


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _varint_string(data: bytes, pos: int) -> str | None:
    size, shift, i = 0, 0, pos
    while i < len(data) and shift < 35:
        b = data[i]
        size |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    if size == 0 or size > 4096 or i + size > len(data):
        return None
    try:
        return data[i : i + size].decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------------- read and write


def resolve_bundle_dir(target: str | os.PathLike[str]) -> Path:
    """A bundle dir, or a run dir (its `export/`), as `edgetl bench` accepts; a bare name may mean runs/<name>."""
    p = Path(target)
    if not p.exists() and (Path("runs") / p).is_dir():
        p = Path("runs") / p
    if (p / MANIFEST_NAME).is_file() or not (p / "recipe.yaml").is_file():
        return p
    if (p / "export" / MANIFEST_NAME).is_file():
        return p / "export"
    raise EdgetlError(f"{p} is a run without a deploy bundle yet; run `edgetl export {p} --int8` first")


def read_manifest(
    bundle_dir: str | os.PathLike[str], check_bytes: Callable[[Path, bytes], None] | None = None
) -> Manifest:
    """Read and validate `<bundle_dir>/manifest.json`. `check_bytes(path, data)` sees the exact bytes that are
    then parsed (a signature check, `edgetl.runtime.trust`), so nothing can swap the file in between."""
    path = Path(bundle_dir) / MANIFEST_NAME
    if not Path(bundle_dir).is_dir():
        what = "is a file" if Path(bundle_dir).exists() else "not found"
        raise EdgetlError(f"{bundle_dir}: {what}; pass the bundle directory that holds {MANIFEST_NAME}")
    if not os.path.lexists(path):
        raise EdgetlError(f"{path}: not found; is {bundle_dir} a deploy bundle?")
    raw = read_limited(path, "manifest", MAX_MANIFEST_BYTES)
    if check_bytes is not None:
        check_bytes(path, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgetlError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgetlError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits, absurd nesting
        raise EdgetlError(f"{path}: invalid JSON: {str(exc).split(';')[0]}") from None
    return parse_manifest(data, source=str(path), bundle_dir=bundle_dir)


def write_manifest(bundle_dir: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Validate `data` as a manifest and write `<bundle_dir>/manifest.json` atomically.

    `schema_version` defaults to this runtime's; an invalid manifest is refused before anything is written,
    so a bundle never carries one the runtime would reject.
    """
    data = {"schema_version": SCHEMA_VERSION, **dict(data)}
    path = Path(bundle_dir) / MANIFEST_NAME
    if data["schema_version"] != SCHEMA_VERSION:
        raise EdgetlError(
            f"{path}: refusing to write schema_version {_short(data['schema_version'])}; "
            f"this edgetl writes {SCHEMA_VERSION}"
        )
    parse_manifest(data, source=str(path), bundle_dir=bundle_dir)
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise EdgetlError(f"{path}: manifest data holds NaN or Infinity; write null instead") from None
    except TypeError as exc:
        raise EdgetlError(f"{path}: manifest data is not JSON-serialisable: {exc}") from None
    return atomic_write_text(path, text + "\n")


# -------------------------------------------------------------------------------------- validation


def parse_manifest(
    data: object, source: str = MANIFEST_NAME, bundle_dir: str | os.PathLike[str] | None = None
) -> Manifest:
    """Validate parsed manifest JSON. Paths are checked against `bundle_dir` when given."""
    v = _Validator(source)
    top = v.obj(data, "")
    version = v.req(top, "schema_version", int, "an integer")
    if version > SCHEMA_VERSION:
        raise EdgetlError(
            f"{source} schema_version {version} is newer than this edgetl ({SCHEMA_VERSION}); upgrade edgetl"
        )
    if version < 1:
        raise EdgetlError(f"{source}: field 'schema_version' must be >= 1, got {version}")

    inp = v.obj(v.req(top, "input", dict, "an object"), "input")
    kind = v.choice(inp, "kind", ("image", "text"), "input")
    spec = _image_input(v, inp) if kind == "image" else _text_input(v, inp)

    tasks_raw = v.req(top, "tasks", list, "a non-empty list")
    if not tasks_raw:
        v.fail("tasks", "a non-empty list", tasks_raw)
    tasks = tuple(_task(v, t, f"tasks[{i}]") for i, t in enumerate(tasks_raw))
    for attr in ("name", "output"):
        seen = [getattr(t, attr) for t in tasks]
        dup = next((x for x in seen if seen.count(x) > 1), None)
        if dup is not None:
            raise EdgetlError(f"{source}: two tasks share the {attr} {dup!r}")

    arts_raw = v.obj(v.req(top, "artifacts", dict, "a non-empty object"), "artifacts")
    if not arts_raw:
        v.fail("artifacts", "a non-empty object", arts_raw)
    artifacts = {name: _artifact(v, name, a) for name, a in arts_raw.items()}

    files_raw = v.obj(v.req(top, "files", dict, "an object of path -> sha256"), "files")
    files: dict[str, str] = {}
    for rel, digest in files_raw.items():
        if not isinstance(digest, str) or not _SHA256.match(digest.lower()):
            v.fail(f"files.{rel}", "a hex sha256 (64 characters)", digest)
        files[rel] = digest.lower()

    default = v.opt(top, "default_artifact", str, "an artifact name")
    if default is not None and default not in artifacts:
        raise EdgetlError(f"{source}: default_artifact {default!r} is not among the artifacts ({', '.join(artifacts)})")

    if bundle_dir is not None:
        for rel in files:
            resolve_in_bundle(bundle_dir, rel, "files entry")
        for art in artifacts.values():
            resolve_in_bundle(bundle_dir, art.file, f"artifacts.{art.name}.file")
        if isinstance(spec, TextInput):
            resolve_in_bundle(bundle_dir, spec.tokenizer, "input.tokenizer")

    return Manifest(
        schema_version=version,
        input=spec,
        tasks=tasks,
        artifacts=artifacts,
        files=files,
        default_artifact=default,
        backbone=v.opt(top, "backbone", str, "a string"),
        raw=top,
    )


def _image_input(v: _Validator, inp: dict) -> ImageInput:
    channels = v.req(inp, "channels", int, "1 or 3", "input")
    if channels not in (1, 3):
        v.fail("input.channels", "1 or 3", channels)
    size = v.req(inp, "image_size", list, "[height, width]", "input")
    if len(size) != 2 or not all(_is_int(s) and s > 0 for s in size):
        v.fail("input.image_size", "[height, width] of positive integers", size)
    scale = v.req(inp, "scale", float, "a positive number", "input")
    if not scale > 0:
        v.fail("input.scale", "a positive number", scale)
    mean = _numbers(v, inp, "mean", channels)
    std = _numbers(v, inp, "std", channels)
    if not all(s > 0 for s in std):
        v.fail("input.std", "positive numbers", std)
    # bundles before edgetl's shorter_crop have "bilinear" or nothing: they keep predicting as before
    resize = v.choice(inp, "resize", ("bilinear", "shorter_crop", "letterbox"), "input", default="bilinear")
    crop_pct = 0.875
    if resize == "shorter_crop":
        crop_pct = v.req(inp, "crop_pct", float, "a number in (0, 1]", "input")
        if not 0 < crop_pct <= 1:
            v.fail("input.crop_pct", "a number in (0, 1]", crop_pct)
    layout = v.choice(inp, "layout", ("NCHW",), "input", default="NCHW")
    dtype = v.choice(inp, "dtype", ("float32", "float16"), "input", default="float32")
    return ImageInput(
        name=v.req(inp, "name", str, "the ONNX input name", "input"),
        image_size=(int(size[0]), int(size[1])),
        channels=channels,
        scale=float(scale),
        mean=mean,
        std=std,
        resize=resize,
        crop_pct=float(crop_pct),
        layout=layout,
        dtype=dtype,
    )


def _text_input(v: _Validator, inp: dict) -> TextInput:
    names = v.req(inp, "names", list, "a non-empty list of input names", "input")
    if not names or not all(n in TEXT_INPUT_NAMES for n in names) or len(set(names)) != len(names):
        v.fail("input.names", f"distinct names among {', '.join(TEXT_INPUT_NAMES)}", names)
    if "input_ids" not in names:
        v.fail("input.names", "a list that includes 'input_ids'", names)
    max_length = v.req(inp, "max_length", int, "a positive integer", "input")
    if max_length < 2:
        v.fail("input.max_length", "an integer >= 2", max_length)
    return TextInput(
        names=tuple(names),
        tokenizer=v.req(inp, "tokenizer", str, "a path inside the bundle", "input"),
        max_length=max_length,
        padding=v.choice(inp, "padding", ("longest", "max_length"), "input", default="longest"),
        dtype=v.choice(inp, "dtype", ("int64",), "input", default="int64"),
    )


def _task(v: _Validator, raw: object, where: str) -> Task:
    t = v.obj(raw, where)
    kind = v.choice(t, "kind", kind_names(), where)  # the task-kind registry (edgetl.runtime.tasks)
    labels = v.req(t, "labels", list, "a list of strings", where)
    if not all(isinstance(x, str) for x in labels):
        v.fail(f"{where}.labels", "a list of strings", labels)
    if get_kind(kind).has_labels and not labels:
        v.fail(f"{where}.labels", f"a non-empty list of strings for a {kind} task", labels)
    name = v.req(t, "name", str, "a task name", where)
    output = v.req(t, "output", str, "the ONNX output name", where)
    fmts = get_kind(kind).output_formats
    want = " or ".join(repr(f) for f in fmts) or "absent"
    fmt = v.opt(t, "output_format", str, want, where)
    if fmt is not None and fmt not in fmts:
        v.fail(f"{where}.output_format", want, fmt)
    options = {k: val for k, val in t.items() if k not in ("name", "kind", "labels", "output", "output_format")}
    return Task(name=name, kind=kind, labels=tuple(labels), output=output, output_format=fmt, options=options)


def _artifact(v: _Validator, name: str, raw: object) -> Artifact:
    where = f"artifacts.{name}"
    a = v.obj(raw, where)
    digest = v.opt(a, "sha256", str, "a hex sha256", where)
    if digest is not None and not _SHA256.match(digest.lower()):
        v.fail(f"{where}.sha256", "a hex sha256 (64 characters)", digest)
    size = v.opt(a, "size_bytes", int, "a non-negative integer", where)
    return Artifact(
        name=name,
        file=v.req(a, "file", str, "a path inside the bundle", where),
        format=v.req(a, "format", str, "'onnx' or 'tensorrt'", where),
        precision=v.opt(a, "precision", str, "a string", where),
        target=v.opt(a, "target", str, "a string", where),
        sha256=digest.lower() if digest else None,
        size_bytes=size,
        raw=a,
    )


def _numbers(v: _Validator, inp: dict, key: str, n: int) -> tuple[float, ...]:
    vals = v.req(inp, key, list, f"a list of {n} numbers", "input")
    if len(vals) != n or not all(_is_number(x) for x in vals):
        v.fail(f"input.{key}", f"a list of {n} numbers (one per channel)", vals)
    return tuple(float(x) for x in vals)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an integer beyond float range
        return False


def _short(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print (over 4300 digits)
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Validator:
    """Typed field access on parsed JSON; every failure is one line naming the source and the field path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, expected: str, got: object) -> None:
        raise EdgetlError(f"{self.source}: field '{path}' must be {expected}, got {_short(got)}")

    def obj(self, value: object, path: str) -> dict:
        if not isinstance(value, dict):
            if not path:
                raise EdgetlError(f"{self.source}: must hold a JSON object, got {type(value).__name__}")
            self.fail(path, "an object", value)
        return value  # type: ignore[return-value]

    def _check(self, value: object, typ: type, expected: str, path: str) -> Any:
        if typ is int:
            ok = _is_int(value)
        elif typ is float:
            ok = _is_number(value)
        else:
            ok = isinstance(value, typ)
        if not ok:
            self.fail(path, expected, value)
        return value

    def req(self, obj: dict, key: str, typ: type, expected: str, parent: str = "") -> Any:
        path = f"{parent}.{key}" if parent else key
        if key not in obj:
            raise EdgetlError(f"{self.source}: field '{path}' is missing")
        return self._check(obj[key], typ, expected, path)

    def opt(self, obj: dict, key: str, typ: type, expected: str, parent: str = "") -> Any:
        if obj.get(key) is None:
            return None
        return self._check(obj[key], typ, expected, f"{parent}.{key}" if parent else key)

    def choice(self, obj: dict, key: str, choices: tuple[str, ...], parent: str, default: str | None = None) -> str:
        path = f"{parent}.{key}"
        if key not in obj and default is not None:
            return default
        value = self.req(obj, key, str, f"one of {', '.join(choices)}", parent)
        if value not in choices:
            self.fail(path, f"one of {', '.join(choices)}", value)
        return value
