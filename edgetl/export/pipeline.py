"""`export_run(run, ...) -> bundle dir`: FP32 ONNX (verified), INT8 / FP16 artifacts, manifest.

One artifact table drives what gets built; every artifact is scored on the same held-out split and its
figures go into the manifest, so the bundle describes itself. The bundle is built in a staging directory
and swapped in only once verified (edgetl/export/transaction.py): a failed or interrupted export leaves the
previous bundle as it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl import __version__
from edgetl.data.load import calibration_indices
from edgetl.errors import EdgetlError
from edgetl.evaluate.metrics import primary_score
from edgetl.evaluate.onnx_eval import evaluate_onnx, feeds_for
from edgetl.export.loaded import LoadedRun, load_run
from edgetl.export.onnx_export import embed_metadata, export_onnx, verify_onnx
from edgetl.export.transaction import ExportInterrupted, bundle_transaction
from edgetl.recipe import QatSpec
from edgetl.runtime.atomic import atomic_write_bytes, atomic_write_text
from edgetl.runtime.manifest import bundle_file_hashes, onnx_external_data, sha256_file, write_manifest
from edgetl.train.run import Run, open_run, require_finished

log = logging.getLogger("edgetl")

# The artifact table: name -> (file name, precision, target). Export, bundle and bench all read it.
ARTIFACTS = {
    "fp32": ("model.fp32.onnx", "fp32", "any"),
    "fp16": ("model.fp16.onnx", "fp16", "gpu"),
    "int8-ort": ("model.int8-ort.onnx", "int8", "cpu"),
    "int8-modelopt": ("model.int8-modelopt.onnx", "int8", "tensorrt"),
    "int8-qat": ("model.int8-qat.onnx", "int8", "cpu"),
}


@dataclass
class ExportOptions:
    int8: bool = False
    fp16: bool = False
    target: str = "auto"  # auto | cpu | tensorrt | all
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
    log: list = field(default_factory=list)


def resolve_targets(target: str) -> list[str]:
    if target == "all":
        return ["cpu", "tensorrt"]
    if target == "auto":
        from edgetl.compile import tensorrt as trt_mod

        ok, _ = trt_mod.trt_available()
        return ["tensorrt"] if ok else ["cpu"]
    if target not in ("cpu", "tensorrt"):
        raise EdgetlError(f"--target {target!r}: allowed auto, cpu, tensorrt, all")
    return [target]


def calibration_feeds(loaded: LoadedRun, size: int, batch: int = 16) -> tuple[list[dict], dict]:
    """Stratified sample of the TRAINING split (never test), pre-processed exactly like inference."""
    tr = loaded.splits.train
    first_cls = next((t.name for t in loaded.recipe.tasks if t.kind == "classification"), None)
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


def drops(base: dict[str, dict], new: dict[str, dict], kinds: dict[str, str]) -> dict[str, float]:
    """Accuracy points lost per task (positive = worse); regression in MAE units."""
    scale = {k: (100.0 if kinds[k] != "regression" else 1.0) for k in kinds}
    return {t: (primary_score(kinds[t], base[t]) - primary_score(kinds[t], new[t])) * scale[t] for t in kinds}


def export_run(run_path, opts: ExportOptions | None = None) -> Path:
    """Export a trained run to a deploy bundle and return its directory."""
    opts = opts or ExportOptions()
    t_start = time.perf_counter()
    require_finished(open_run(run_path) if not isinstance(run_path, Run) else run_path)
    try:
        loaded = load_run(run_path)
    except KeyboardInterrupt:
        raise ExportInterrupted("export interrupted before anything was written") from None
    out = Path(opts.out_dir) if opts.out_dir else loaded.run.export_dir
    say = _say(opts)
    with bundle_transaction(out) as staging:
        default = _build_bundle(loaded, staging, opts, say, t_start)
        say("verifying the new bundle (every sha256, every artifact loads), then swapping it in")
    say(f"bundle: {out} (default artifact: {default})")
    return out


def _build_bundle(loaded: LoadedRun, out: Path, opts: ExportOptions, say, t_start: float) -> str:
    """Every artifact, labels, tokenizer and (last) the manifest, into `out` (the staging directory)."""
    recipe = loaded.recipe
    kinds = loaded.kinds

    # ---- FP32: export, simplify, verify against PyTorch
    fp32 = out / ARTIFACTS["fp32"][0]
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
    if not verification["passed"] and not opts.allow_mismatch:
        raise EdgetlError(
            f"ONNX verification failed: max|diff| {max(verification['max_abs_diff'].values()):.2e} > "
            f"atol {recipe.export.atol} or top-1 disagreement; --allow-mismatch to ship anyway"
        )

    input_spec = _save_tokenizer(loaded, out) if loaded.model.backbone.kind == "text" else loaded.prep.manifest("input")
    onnx_meta = onnx_metadata(loaded, input_spec)
    artifacts: dict[str, dict] = {}
    fp32_val = evaluate_onnx(fp32, loaded, "val")
    fp32_test = evaluate_onnx(fp32, loaded, "test")
    artifacts["fp32"] = _entry("fp32", out, fp32_test, fp32_val, verification=verification, metadata=onnx_meta)

    # ---- INT8
    if opts.int8:
        method = opts.calibration_method or recipe.export.calibration.method
        size = opts.calibration_size or recipe.export.calibration.size
        feeds, calib_info = calibration_feeds(loaded, size)
        max_drop = recipe.export.max_drop if opts.max_drop is None else opts.max_drop
        for target in resolve_targets(opts.target):
            if target == "cpu":
                from edgetl.quantize.gate import quantize_cpu_with_gate

                name = "int8-ort"
                say(
                    "INT8 for CPU (ONNX Runtime dynamic: INT8 weights, activation ranges per call)"
                    if loaded.model.backbone.kind == "text"
                    else f"INT8 for CPU (ONNX Runtime static Q/DQ, {method} calibration on {calib_info['size']} training examples)"
                )
                result = quantize_cpu_with_gate(
                    loaded,
                    fp32,
                    out / ARTIFACTS[name][0],
                    feeds,
                    method=method,
                    max_drop=max_drop,
                    base_val=fp32_val,
                    gate=opts.gate,
                    say=say,
                    latency=opts.gate_latency,
                    threads=opts.threads,
                )
            else:
                from edgetl.quantize.gate import quantize_tensorrt_with_gate

                name = "int8-modelopt"
                mo_method = "max" if method == "minmax" else "entropy"
                say(f"INT8 for TensorRT (modelopt Q/DQ, {mo_method} calibration; gate scored on ONNX Runtime CPU)")
                result = quantize_tensorrt_with_gate(
                    loaded,
                    fp32,
                    out / ARTIFACTS[name][0],
                    _stack_feeds(feeds),
                    method=mo_method,
                    max_drop=max_drop,
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
            test = evaluate_onnx(out / ARTIFACTS[name][0], loaded, "test")
            artifacts[name] = _entry(name, out, test, result["val"], quantization=settings, metadata=onnx_meta)
            d = drops(fp32_test, test, kinds)
            say(
                f"{name}: "
                + ", ".join(
                    f"{t} {100 * primary_score(kinds[t], test[t]) if kinds[t] != 'regression' else primary_score(kinds[t], test[t]):.2f}"
                    f" (drop {d[t]:+.2f})"
                    for t in kinds
                )
            )

        # ---- QAT (optional): when PTQ could not meet the budget with every layer INT8
        spec = opts.qat_spec or recipe.export.qat
        reason = qat_reason(opts.qat, spec.mode, artifacts, loaded.model.backbone.kind, say)
        if reason:
            from edgetl.quantize.qat import run_qat

            result = run_qat(
                loaded,
                out / ARTIFACTS["int8-qat"][0],
                feeds,
                spec,
                fp32_path=fp32,
                base_val=fp32_val,
                max_drop=max_drop,
                reason=reason,
                say=say,
                latency=opts.gate_latency,
                threads=opts.threads,
            )
            settings = {
                **result["settings"],
                "calibration": {**calib_info, "method": "max (modelopt)"},
                "gate": result["gate"],
            }
            test = evaluate_onnx(out / ARTIFACTS["int8-qat"][0], loaded, "test")
            artifacts["int8-qat"] = _entry(
                "int8-qat",
                out,
                test,
                result["val"],
                quantization=settings,
                metadata=onnx_meta,
                verification=result["verification"],
            )
            d = drops(fp32_test, test, kinds)
            say(
                "int8-qat: "
                + ", ".join(
                    f"{t} test drop {d[t]:+.2f}, validation drop {result['gate']['drop'][t]:+.2f}" for t in kinds
                )
                + (" (passes)" if result["gate"]["passed"] else " (FAILS)")
            )

    # ---- FP16
    if opts.fp16:
        from edgetl.quantize.fp16 import convert_fp16

        say("FP16 ONNX (for GPUs / TensorRT; slower on ONNX Runtime CPU)")
        settings = convert_fp16(fp32, out / ARTIFACTS["fp16"][0], keep_io_types=opts.keep_io_fp32)
        artifacts["fp16"] = _entry(
            "fp16",
            out,
            evaluate_onnx(out / ARTIFACTS["fp16"][0], loaded, "test"),
            evaluate_onnx(out / ARTIFACTS["fp16"][0], loaded, "val"),
            quantization=settings,
            metadata=onnx_meta,
        )

    # ---- labels, tokenizer, manifest
    for t in recipe.tasks:
        if kinds[t.name] != "regression":
            atomic_write_text(out / "labels" / f"{t.name}.txt", "\n".join(loaded.splits.labels[t.name]) + "\n")
    default = default_artifact(artifacts)
    if "int8-ort" in artifacts and default != "int8-ort":
        g = artifacts["int8-ort"]["quantization"]["gate"]
        why = "it is slower than FP32 here" if g.get("slower_than_fp32") else "it missed the accuracy budget"
        say(f"int8-ort is in the bundle but not the default artifact: {why}")
    manifest = {
        "producer": {"name": "edgetl", "version": __version__, "libraries": _versions()},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source_run": str(loaded.run.dir),
        "backbone": recipe.backbone.name,
        "input": input_spec,
        "tasks": [
            {"name": t.name, "kind": t.kind, "labels": loaded.splits.labels[t.name], "output": t.name}
            for t in recipe.tasks
        ],
        "artifacts": artifacts,
        "default_artifact": default,
        "files": bundle_file_hashes(out),
        "export_seconds": round(time.perf_counter() - t_start, 1),
    }
    write_manifest(out, manifest)
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


def _entry(name: str, out: Path, test: dict, val: dict, **extra) -> dict:
    fname, precision, target = ARTIFACTS[name]
    path = out / fname
    if extra.get("metadata"):
        embed_metadata(path, {**extra["metadata"], "edgetl.artifact": name, "edgetl.precision": precision})
    kinds_acc = {t: (m.get("accuracy", m.get("micro_f1", m.get("mae")))) for t, m in test.items()}
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
