"""`export_run(run, ...) -> bundle dir`: FP32 ONNX (verified), INT8 / FP16 artifacts, manifest.

An export is a list of named steps over one `BundleBuild` (what they share): `build_fp32`, `build_int8(target)`
for each target, `maybe_qat`, `build_fp16`, `write_labels`, `write_manifest`. Which file and precision each
artifact has comes from the catalogue (edgetl.runtime.artifacts). Every artifact is scored on the same held-out
split and its figures go into the manifest, so the bundle describes itself. The bundle is built in a staging
directory and swapped in only once verified (edgetl/bundle/transaction.py): a failed or interrupted export
leaves the previous bundle as it was.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydantic

from edgetl import __version__
from edgetl.bundle.transaction import ExportInterrupted, bundle_transaction
from edgetl.data.load import calibration_indices
from edgetl.errors import EdgetlError
from edgetl.evaluate.metrics import task_drops
from edgetl.evaluate.onnx_eval import evaluate_onnx, feeds_for
from edgetl.export.onnx_export import embed_metadata, export_onnx, verify_onnx
from edgetl.recipe import ExportSpec, QatSpec, Recipe
from edgetl.runs.layout import Run, open_run, require_finished
from edgetl.runs.loaded import LoadedRun, load_run
from edgetl.runtime.artifacts import artifact_kind, format_headline, headline_value, int8_artifact_for
from edgetl.runtime.atomic import atomic_write_bytes, atomic_write_text
from edgetl.runtime.manifest import bundle_file_hashes, onnx_external_data, sha256_file, write_manifest
from edgetl.runtime.tasks import get_kind

log = logging.getLogger("edgetl")

# command-line flag of each ExportSpec field, for one-line errors that name what the user typed
_FLAGS = {
    ("target",): "--target",
    ("max_drop",): "--max-drop",
    ("calibration", "method"): "--calibration",
    ("calibration", "size"): "--calibration-size",
}


@dataclass
class ExportOptions:
    """What one export does. `None` means "the recipe's" (export.*); `resolved(recipe)` fills them in once."""

    int8: bool = False
    fp16: bool = False
    target: str | None = None  # auto | cpu | tensorrt | all; None: the recipe's export.target
    out_dir: Path | None = None
    max_drop: float | None = None  # accuracy points per task; None: the recipe's export.max_drop
    calibration_method: str | None = None
    calibration_size: int | None = None
    allow_mismatch: bool = False  # ship even if FP32 verification fails (explicit opt-in only)
    gate: bool = True
    qat: bool | None = None  # quantization-aware training after PTQ; None: the recipe's export.qat.mode
    qat_spec: QatSpec | None = None  # a recipe QatSpec (epochs, lr, max_steps) instead of the recipe's export.qat
    gate_latency: bool = True  # time FP32 vs INT8 (batch 1) after the gate; a slower INT8 is not the default
    threads: int | None = None  # ORT intra-op threads for those timings (None: min(cores, 4))
    progress: bool = True
    keep_io_fp32: bool = True
    engine: bool = False  # also TensorRT engines (fp32, + fp16 / int8 as asked), into the swapped-in bundle
    deepstream: bool = False  # also a DeepStream nvinfer config (deepstream/config_infer.txt)
    sign: Path | None = None  # Ed25519 private key: manifest.json.sig written last (edgetl.runtime.trust)
    log: list = field(default_factory=list)
    int8_targets: list[str] = field(default_factory=list)  # set by `resolved`: what `target` means here

    @classmethod
    def from_flags(
        cls,
        *,
        int8: bool = False,
        fp16: bool = False,
        engine: bool = False,
        target: str | None = None,
        max_drop: float | None = None,
        calibration: str | None = None,
        calibration_size: int | None = None,
        no_gate: bool = False,
        qat: bool = False,
        fp16_io: bool = False,
        threads: int | None = None,
        allow_mismatch: bool = False,
        out: Path | None = None,
        deepstream: bool = False,
        sign: Path | None = None,
        quiet: bool = False,
    ) -> ExportOptions:
        """The options of `edgetl export`'s flags, under the flags' names (the command passes them through)."""
        return cls(
            int8=int8,
            fp16=fp16,
            engine=engine,
            target=target,
            out_dir=out,
            max_drop=max_drop,
            calibration_method=calibration,
            calibration_size=calibration_size,
            gate=not no_gate,
            allow_mismatch=allow_mismatch,
            progress=not quiet,
            keep_io_fp32=not fp16_io,
            threads=threads,
            qat=True if qat else None,
            deepstream=deepstream,
            sign=sign,
        )

    def resolved(self, recipe: Recipe) -> ExportOptions:
        """These options over the recipe's export section, validated by the recipe's own types (one place).

        The copy has no `None` left in target, max_drop, calibration_* and qat_spec, and names the INT8
        targets (`auto` resolved); `log` stays shared. A calibration method the INT8 backend of a target lacks
        (the catalogue's `calibration`) is refused here, never replaced by another.
        """
        spec = recipe.export.model_dump()
        if self.target is not None:
            spec["target"] = self.target
        if self.max_drop is not None:
            spec["max_drop"] = self.max_drop
        if self.calibration_method is not None:
            spec["calibration"]["method"] = self.calibration_method
        if self.calibration_size is not None:
            spec["calibration"]["size"] = self.calibration_size
        if self.qat_spec is not None:
            spec["qat"] = self.qat_spec.model_dump()
        try:
            merged = ExportSpec.model_validate(spec)
        except pydantic.ValidationError as e:
            err = e.errors()[0]
            loc = tuple(str(x) for x in err["loc"])
            where = _FLAGS.get(loc, "export." + ".".join(loc))
            raise EdgetlError(f"{where} {err.get('input')!r}: {err['msg']}") from None
        if self.threads is not None and self.threads < 1:
            raise EdgetlError(f"--threads {self.threads}: must be at least 1")
        if self.qat and not self.int8:
            raise EdgetlError(
                "--qat needs --int8 (QAT starts from the INT8 calibration and is scored by the same gate)"
            )
        targets = resolve_targets(merged.target) if self.int8 else []
        method = merged.calibration.method
        for target in targets:
            kind = int8_artifact_for(target)
            if method not in kind.calibration:
                where = "--calibration" if self.calibration_method is not None else "export.calibration.method"
                raise EdgetlError(
                    f"{where} {method!r}: INT8 for the {target} target ({kind.name}) calibrates with "
                    f"{', '.join(kind.calibration)} only; choose one of those, or another --target"
                )
        return dataclasses.replace(
            self,
            target=merged.target,
            max_drop=merged.max_drop,
            calibration_method=method,
            calibration_size=merged.calibration.size,
            qat_spec=merged.qat,
            int8_targets=targets,
        )


def resolve_targets(target: str) -> list[str]:
    """The INT8 targets of a validated `export.target` (auto: TensorRT when usable here, else CPU)."""
    if target == "auto":
        from edgetl.runtime import trt_support as trt_mod

        ok, _ = trt_mod.trt_available()
        return ["tensorrt"] if ok else ["cpu"]
    return ["cpu", "tensorrt"] if target == "all" else [target]


def calibration_feeds(loaded: LoadedRun, size: int, batch: int = 16) -> tuple[list[dict], dict]:
    """Stratified sample of the TRAINING split (never test), pre-processed exactly like inference."""
    tr = loaded.splits.train
    first_cls = next((t.name for t in loaded.recipe.tasks if get_kind(t.kind).stratifies), None)
    idx = calibration_indices(tr, first_cls, size, loaded.recipe.train.seed)
    feeds = [feeds_for(loaded.prep, tr, idx[i : i + batch]) for i in range(0, len(idx), batch)]
    info = {
        "source": "train split, stratified by " + (first_cls or "nothing"),
        "size": int(len(idx)),
        "seed": loaded.recipe.train.seed,
        "rows": tr.index[idx].tolist() if tr.index is not None else idx.tolist(),
    }
    return feeds, info


def _stack_feeds(feeds: list[dict]) -> dict[str, np.ndarray]:
    names = feeds[0].keys()
    if any(f[n].ndim == 2 for f in feeds for n in names):  # text: pad to the longest sequence
        L = max(f[n].shape[1] for f in feeds for n in names)
        return {n: np.concatenate([np.pad(f[n], ((0, 0), (0, L - f[n].shape[1]))) for f in feeds]) for n in names}
    return {n: np.concatenate([f[n] for f in feeds]) for n in names}


def export_run(run_path, opts: ExportOptions | None = None) -> Path:
    """Export a trained run to a deploy bundle and return its directory.

    What `edgetl export` does, step for step: the bundle (swapped in whole), then TensorRT engines
    (`opts.engine`) and a DeepStream config (`opts.deepstream`) written into it.
    """
    opts = opts or ExportOptions()
    t_start = time.perf_counter()
    run = run_path if isinstance(run_path, Run) else open_run(run_path)
    require_finished(run)
    opts = opts.resolved(run.recipe())  # bad options fail here, before the model loads
    key = None
    if opts.sign is not None:  # a bad key fails before the export, too
        from edgetl.runtime.trust import load_private_key

        key = load_private_key(opts.sign)
    try:
        loaded = load_run(run)  # the same Run: its recipe is not read again
    except KeyboardInterrupt:
        raise ExportInterrupted("export interrupted before anything was written") from None
    out = Path(opts.out_dir) if opts.out_dir else loaded.run.export_dir
    say = _say(opts)
    with bundle_transaction(out) as staging:
        default = _build_bundle(loaded, staging, opts, say, t_start)
        say("verifying the new bundle (every sha256, every artifact loads), then swapping it in")
    say(f"bundle: {out} (default artifact: {default})")
    if opts.engine:
        from edgetl.compile.bundle import build_bundle_engines

        build_bundle_engines(out, fp16=opts.fp16, int8=opts.int8)
    if opts.deepstream:
        from edgetl.bundle.deepstream import write_deepstream

        say(f"DeepStream config: {write_deepstream(out)}")
    if key is not None:  # last: engines rewrite the manifest
        from edgetl.runtime.trust import sign_manifest

        say(f"signed: {sign_manifest(out, key)}")
    return out


@dataclass
class BundleBuild:
    """What the export steps share: the loaded run, the staging directory, resolved options, what is built."""

    loaded: LoadedRun
    out: Path
    opts: ExportOptions  # resolved: no None left where the recipe has a value
    say: Callable[[str], None]
    t_start: float
    artifacts: dict[str, dict] = field(default_factory=dict)
    input_spec: dict = field(default_factory=dict)
    onnx_meta: dict[str, str] = field(default_factory=dict)
    fp32_val: dict = field(default_factory=dict)
    fp32_test: dict = field(default_factory=dict)
    _calibration: tuple[list[dict], dict] | None = None

    @property
    def kinds(self) -> dict[str, str]:
        return self.loaded.kinds

    def path(self, name: str) -> Path:
        return self.out / artifact_kind(name).file

    def calibration(self) -> tuple[list[dict], dict]:
        """(feeds, record) of the calibration sample, drawn once and shared by every INT8 step."""
        if self._calibration is None:
            self._calibration = calibration_feeds(self.loaded, self.opts.calibration_size)
        return self._calibration

    def add(self, name: str, test: dict, val: dict, **extra) -> dict:
        self.artifacts[name] = _entry(name, self.out, test, val, self.kinds, metadata=self.onnx_meta, **extra)
        return self.artifacts[name]


def _build_bundle(loaded: LoadedRun, out: Path, opts: ExportOptions, say, t_start: float) -> str:
    """Every artifact, labels, tokenizer and (last) the manifest, into `out` (the staging directory)."""
    b = BundleBuild(loaded, out, opts, say, t_start)
    build_fp32(b)
    if opts.int8:
        for target in opts.int8_targets:
            build_int8(b, target)
        maybe_qat(b)
    if opts.fp16:
        build_fp16(b)
    write_labels(b)
    return write_bundle_manifest(b)


def build_fp32(b: BundleBuild) -> None:
    """Export, simplify, verify against PyTorch; score on validation and test (the baseline of every drop)."""
    loaded, recipe, say = b.loaded, b.loaded.recipe, b.say
    fp32 = b.path("fp32")
    say(f"exporting ONNX (opset {recipe.export.opset}) -> {fp32.name}")
    export_onnx(loaded, fp32, opset=recipe.export.opset)
    verification = verify_onnx(loaded, fp32, recipe.export.atol, recipe.export.verify_samples)
    say(
        "verified vs PyTorch: "
        + ", ".join(
            f"{t}: max|diff| {verification['max_abs_diff'][t]:.2e}"
            + (
                f", top-1 agreement {verification['top1_agreement'][t]:.2%}"
                if t in verification["top1_agreement"]
                else ""
            )
            for t in verification["max_abs_diff"]
        )
    )
    if not verification["passed"] and not b.opts.allow_mismatch:
        raise EdgetlError(
            f"ONNX verification failed: max|diff| {max(verification['max_abs_diff'].values()):.2e} > "
            f"atol {recipe.export.atol} or top-1 disagreement; --allow-mismatch to ship anyway"
        )
    b.input_spec = (
        _save_tokenizer(loaded, b.out) if loaded.model.backbone.kind == "text" else loaded.prep.manifest("input")
    )
    b.onnx_meta = onnx_metadata(loaded, b.input_spec)
    b.fp32_val = evaluate_onnx(fp32, loaded, "val")
    b.fp32_test = evaluate_onnx(fp32, loaded, "test")
    b.add("fp32", b.fp32_test, b.fp32_val, verification=verification)


def build_int8(b: BundleBuild, target: str) -> None:
    """INT8 for one target (cpu: ONNX Runtime; tensorrt: modelopt Q/DQ) behind the accuracy gate."""
    loaded, opts, say = b.loaded, b.opts, b.say
    method = opts.calibration_method
    feeds, calib_info = b.calibration()
    name = int8_artifact_for(target).name
    if target == "cpu":
        from edgetl.quantize.gate import quantize_cpu_with_gate

        say(
            "INT8 for CPU (ONNX Runtime dynamic: INT8 weights, activation ranges per call)"
            if loaded.model.backbone.kind == "text"
            else f"INT8 for CPU (ONNX Runtime static Q/DQ, {method} calibration on {calib_info['size']} training examples)"
        )
        result = quantize_cpu_with_gate(
            loaded,
            b.path("fp32"),
            b.path(name),
            feeds,
            method=method,
            max_drop=opts.max_drop,
            base_val=b.fp32_val,
            gate=opts.gate,
            say=say,
            latency=opts.gate_latency,
            threads=opts.threads,
        )
    else:
        from edgetl.quantize.gate import quantize_tensorrt_with_gate

        say(f"INT8 for TensorRT (modelopt Q/DQ, {method} calibration; gate scored on ONNX Runtime CPU)")
        result = quantize_tensorrt_with_gate(
            loaded,
            b.path("fp32"),
            b.path(name),
            _stack_feeds(feeds),
            method=method,
            max_drop=opts.max_drop,
            gate=opts.gate,
            say=say,
        )
    calib = {**calib_info, "method": method}
    if result["settings"].get("mode") == "dynamic":  # activation ranges are computed per call
        calib = {
            "method": None,
            "size": 0,
            "source": "none: dynamic quantization computes activation ranges at run time",
        }
    settings = {**result["settings"], "calibration": calib, "gate": result["gate"]}
    test = evaluate_onnx(b.path(name), loaded, "test")
    b.add(name, test, result["val"], quantization=settings)
    d = task_drops(b.fp32_test, test, b.kinds)
    say(
        f"{name}: "
        + ", ".join(
            f"{t} {format_headline(k, headline_value(test[t], k))} (drop {d[t]:+.2f})" for t, k in b.kinds.items()
        )
    )


def maybe_qat(b: BundleBuild) -> None:
    """Quantization-aware training (optional): when PTQ could not meet the budget with every layer INT8."""
    loaded, opts, say = b.loaded, b.opts, b.say
    reason = qat_reason(opts.qat, opts.qat_spec.mode, b.artifacts, loaded.model.backbone.kind, say)
    if not reason:
        return
    from edgetl.quantize.qat import run_qat

    feeds, calib_info = b.calibration()
    result = run_qat(
        loaded,
        b.path("int8-qat"),
        feeds,
        opts.qat_spec,
        fp32_path=b.path("fp32"),
        base_val=b.fp32_val,
        max_drop=opts.max_drop,
        reason=reason,
        say=say,
        latency=opts.gate_latency,
        threads=opts.threads,
    )
    settings = {**result["settings"], "calibration": {**calib_info, "method": "max (modelopt)"}, "gate": result["gate"]}
    test = evaluate_onnx(b.path("int8-qat"), loaded, "test")
    b.add("int8-qat", test, result["val"], quantization=settings, verification=result["verification"])
    d = task_drops(b.fp32_test, test, b.kinds)
    say(
        "int8-qat: "
        + ", ".join(f"{t} test drop {d[t]:+.2f}, validation drop {result['gate']['drop'][t]:+.2f}" for t in b.kinds)
        + (" (passes)" if result["gate"]["passed"] else " (FAILS)")
    )


def build_fp16(b: BundleBuild) -> None:
    """FP16 ONNX (for GPUs / TensorRT), scored like every other artifact."""
    from edgetl.quantize.fp16 import convert_fp16

    b.say("FP16 ONNX (for GPUs / TensorRT; slower on ONNX Runtime CPU)")
    settings = convert_fp16(b.path("fp32"), b.path("fp16"), keep_io_types=b.opts.keep_io_fp32)
    b.add(
        "fp16",
        evaluate_onnx(b.path("fp16"), b.loaded, "test"),
        evaluate_onnx(b.path("fp16"), b.loaded, "val"),
        quantization=settings,
    )


def write_labels(b: BundleBuild) -> None:
    for t in b.loaded.recipe.tasks:
        if get_kind(b.kinds[t.name]).has_labels:
            atomic_write_text(b.out / "labels" / f"{t.name}.txt", "\n".join(b.loaded.splits.labels[t.name]) + "\n")


def write_bundle_manifest(b: BundleBuild) -> str:
    """The manifest, written last (it hashes every file); returns the default artifact."""
    recipe, artifacts = b.loaded.recipe, b.artifacts
    default = default_artifact(artifacts)
    if "int8-ort" in artifacts and default != "int8-ort":
        g = artifacts["int8-ort"]["quantization"]["gate"]
        why = "it is slower than FP32 here" if g.get("slower_than_fp32") else "it missed the accuracy budget"
        b.say(f"int8-ort is in the bundle but not the default artifact: {why}")
    manifest = {
        "producer": {"name": "edgetl", "version": __version__, "libraries": _versions()},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source_run": str(b.loaded.run.dir),
        "backbone": recipe.backbone.name,
        "input": b.input_spec,
        "tasks": [
            {
                "name": t.name,
                "kind": t.kind,
                "labels": b.loaded.splits.labels[t.name],
                "output": t.name,
                **get_kind(t.kind).manifest_fields(t),
            }
            for t in recipe.tasks
        ],
        "artifacts": artifacts,
        "default_artifact": default,
        "files": bundle_file_hashes(b.out),
        "export_seconds": round(time.perf_counter() - b.t_start, 1),
    }
    write_manifest(b.out, manifest)
    return default


def onnx_metadata(loaded: LoadedRun, input_spec: dict) -> dict[str, str]:
    import json

    recipe = loaded.recipe
    return {
        "edgetl.version": __version__,
        "edgetl.backbone": recipe.backbone.name,
        "edgetl.recipe": recipe.name,
        "edgetl.tasks": json.dumps([{"name": t.name, "kind": t.kind, "output": t.name} for t in recipe.tasks]),
        "edgetl.labels": json.dumps(loaded.splits.labels),
        "edgetl.preprocessing": json.dumps(input_spec),
    }


def default_artifact(artifacts: dict[str, dict]) -> str:
    """int8-ort, else int8-qat, when its gate passed and it is not slower than FP32 (as timed at export);
    otherwise fp32."""
    for name in ("int8-ort", "int8-qat"):
        a = artifacts.get(name)
        if a is not None:
            g = (a.get("quantization") or {}).get("gate") or {}
            if g.get("passed", False) and not g.get("slower_than_fp32", False):
                return name
    return "fp32"


def qat_reason(force: bool | None, mode: str, artifacts: dict[str, dict], kind: str, say) -> str | None:
    """Why QAT runs in this export, or None. auto: a PTQ gate failed, or passed only with layers in float."""
    if force is False:
        return None
    if force:
        return "forced (--qat)"
    if mode == "always":
        return "export.qat.mode=always"
    misses = []
    for name in ("int8-ort", "int8-modelopt"):
        g = ((artifacts.get(name) or {}).get("quantization") or {}).get("gate") or {}
        if g and not g.get("passed", False):
            misses.append(f"{name} missed the budget")
        elif g.get("excluded_nodes"):
            misses.append(f"{name} met it only with {len(g['excluded_nodes'])} layer(s) in float")
    if not misses or kind == "text":  # QAT is for image backbones: text models use dynamic INT8
        return None
    if mode == "never":
        say(f"{'; '.join(misses)}: quantization-aware training may recover it (--qat, or export.qat.mode=auto)")
        return None
    return "auto: " + "; ".join(misses)


def _entry(name: str, out: Path, test: dict, val: dict, kinds: dict[str, str], **extra) -> dict:
    kind = artifact_kind(name)
    fname, precision, target = kind.file, kind.precision, kind.target
    path = out / fname
    if extra.get("metadata"):
        embed_metadata(path, {**extra["metadata"], "edgetl.artifact": name, "edgetl.precision": precision})
    kinds_acc = {t: headline_value(m, kinds[t]) for t, m in test.items()}
    external = onnx_external_data(path)  # weights in <file>.data: listed, hashed in `files` like the model
    return {
        "file": fname,
        "format": "onnx",
        "precision": precision,
        "target": target,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        **({"external_data": external} if external else {}),
        "accuracy": kinds_acc,
        "metrics_split": "test",
        "test_metrics": test,
        "val_metrics": val,
        "verification": extra.get("verification"),
        "quantization": extra.get("quantization"),
    }


def _save_tokenizer(loaded: LoadedRun, out: Path) -> dict:
    tok = loaded.prep.tokenizer
    tdir = out / "tokenizer"
    tdir.mkdir(exist_ok=True)
    src = Path(getattr(tok, "name_or_path", "")) / "tokenizer.json"
    if src.is_file():
        atomic_write_bytes(tdir / "tokenizer.json", src.read_bytes())
    else:
        atomic_write_text(tdir / "tokenizer.json", tok.backend_tokenizer.to_str(pretty=True))
    return loaded.prep.manifest("tokenizer/tokenizer.json")


def _versions() -> dict:
    from edgetl.versions import library_versions

    return library_versions()


def _say(opts: ExportOptions):
    from rich.console import Console

    console = Console(stderr=True)

    def say(msg: str) -> None:
        opts.log.append(msg)
        if opts.progress:
            console.print(f"[cyan]export[/] {msg}")

    return say
