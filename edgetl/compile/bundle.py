"""`build_bundle_engines(bundle, ...)`: TensorRT engines for an exported bundle, added to its manifest.

UNVERIFIED like the rest of edgetl's TensorRT code (docs/tensorrt.md): it needs TensorRT and a GPU.

The engine artifacts, one per precision, each built from the bundle's ONNX artifact that suits the local
TensorRT major version:

| artifact   | file                    | from (TensorRT 10)          | from (TensorRT 11)                  |
|------------|-------------------------|-----------------------------|-------------------------------------|
| `trt-fp32` | `model.trt-fp32.engine` | `fp32`                      | `fp32`                              |
| `trt-fp16` | `model.trt-fp16.engine` | `fp32` + `BuilderFlag.FP16` | `fp16` (FP16 ONNX, strongly typed)  |
| `trt-int8` | `model.trt-int8.engine` | `int8-modelopt` (Q/DQ)      | `int8-modelopt` (Q/DQ)              |

Each engine gets its `<engine>.json` manifest. Unless `evaluate=False`, it is scored on the run's test
split with the same metrics code as the ONNX artifacts. Then `manifest.json` is rewritten with the new
artifacts and file hashes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgetl.compile.tensorrt import EngineBuildConfig, build_engine, trt_available, trt_major
from edgetl.errors import EdgetlError, UnverifiedError
from edgetl.runtime.artifacts import artifact_kind, engine_source, format_headline, headline_value

TIMING_CACHE = ".tensorrt-timing.cache"  # hidden: bundle_file_hashes leaves it out of `files`


def _source_artifact(name: str, major: int, artifacts: dict[str, Any], bundle: Path) -> tuple[str, Path]:
    src = engine_source(name, major)
    if src not in artifacts:
        how = {"fp16": "export with --fp16", "int8-modelopt": "export with --int8 --target tensorrt (or all)"}
        raise EdgetlError(
            f"{name} on TensorRT {major} is built from the {src!r} artifact, which {bundle / 'manifest.json'} lacks: "
            f"{how.get(src, 'export it first')}"
        )
    return src, bundle / artifacts[src]["file"]


def build_bundle_engines(
    bundle: str | os.PathLike,
    *,
    fp16: bool = False,
    int8: bool = False,
    max_batch: int = 32,  # covers `edgetl bench`'s default batch sweep (1, 8, 32); opt stays 1
    evaluate: bool = True,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Build `trt-fp32`, plus `trt-fp16` / `trt-int8` when asked, into `bundle`; returns the artifact names."""
    from edgetl.runtime.manifest import bundle_file_hashes, read_manifest, sha256_file, write_manifest

    bundle = Path(bundle)
    say = say or (lambda msg: None)
    ok, reason = trt_available()
    if not ok:
        raise UnverifiedError(f"--engine: {reason}")
    major = trt_major()
    parsed = read_manifest(bundle)
    data = dict(parsed.raw)
    artifacts = dict(data["artifacts"])
    max_seq = data["input"].get("max_length") if data["input"].get("kind") == "text" else None
    task_kinds = {t["name"]: t["kind"] for t in data["tasks"]}

    names = ["trt-fp32"] + (["trt-fp16"] if fp16 else []) + (["trt-int8"] if int8 else [])
    plans = {n: _source_artifact(n, major, artifacts, bundle) for n in names}  # all refusals before any build
    built = []
    for name in names:
        kind = artifact_kind(name)
        file, precision = kind.file, kind.precision
        src_name, src_path = plans[name]
        say(f"TensorRT {precision} engine from {src_path.name} -> {file}")
        cfg = EngineBuildConfig(
            precision=precision, max_batch=max_batch, max_seq_len=max_seq, timing_cache=bundle / TIMING_CACHE
        )
        em = build_engine(src_path, bundle / file, cfg)
        entry: dict[str, Any] = {
            "file": file,
            "format": "tensorrt",
            "precision": precision,
            "target": "tensorrt",
            "sha256": sha256_file(bundle / file),
            "size_bytes": (bundle / file).stat().st_size,
            "source_artifact": src_name,
            "engine": {
                "manifest": f"{file}.json",
                "tensorrt_version": em.tensorrt_version,
                "gpu_name": em.gpu_name,
                "compute_capability": em.compute_capability,
                "build_seconds": em.build_seconds,
            },
            "verification": None,
            "quantization": artifacts[src_name].get("quantization") if precision == "int8" else None,
        }
        if evaluate:
            test = _evaluate_engine(bundle / file, data.get("source_run"), max_batch)
            entry.update(
                accuracy={t: headline_value(m, task_kinds.get(t)) for t, m in test.items()},
                metrics_split="test",
                test_metrics=test,
            )
            say(
                f"{name}: "
                + ", ".join(f"{t} {format_headline(task_kinds[t], v)}" for t, v in entry["accuracy"].items())
            )
        artifacts[name] = entry
        built.append(name)

    data["artifacts"] = artifacts
    data["files"] = bundle_file_hashes(bundle)
    write_manifest(bundle, data)
    return built


def _evaluate_engine(engine: Path, source_run: str | None, batch: int) -> dict[str, dict]:
    """Test-split metrics of an engine, from the run that produced the bundle (same code as the ONNX rows)."""
    from edgetl.evaluate.metrics import all_task_metrics
    from edgetl.evaluate.onnx_eval import feeds_for
    from edgetl.runs.loaded import load_run
    from edgetl.runtime.batching import predict_in_batches
    from edgetl.runtime.tensorrt_backend import TensorRTBackend

    if not source_run or not Path(source_run).is_dir():
        raise EdgetlError(
            f"cannot score {engine.name}: the bundle's source_run {source_run!r} is not here "
            "(pass evaluate=False to build engines without accuracy)"
        )
    loaded = load_run(source_run)
    ex = loaded.splits.test
    with TensorRTBackend(engine) as backend:
        outputs = predict_in_batches(lambda idx: backend.run(feeds_for(loaded.prep, ex, idx)), len(ex), batch)
    from edgetl.runtime.tasks import task_outputs

    outputs = task_outputs(loaded.model.output_tasks(), outputs)
    return all_task_metrics(outputs, ex.targets, loaded.kinds, loaded.splits.labels)
