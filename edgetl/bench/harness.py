"""`bench(target, device) -> report`: latency and per-task accuracy of every artifact, in one table.

Each row reloads its artifact through the runtime (as a device would), times it end to end (pre-processing
included) and compute-only at batch 1, sweeps batch sizes for throughput, and scores it on the held-out
split. Estimated rows (roofline from the device profile) are labelled and never mixed with measured ones.
Torch-free at import: on a device the light runtime install is enough (the PyTorch row needs torch).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from edgetl.bench.latency import measure_latency, measure_throughput
from edgetl.bench.report import machine_name
from edgetl.errors import EdgetlError
from edgetl.evaluate.metrics import all_task_metrics, task_drops
from edgetl.runtime.artifacts import ARTIFACT_KINDS
from edgetl.runtime.batching import predict_in_batches
from edgetl.runtime.cpuload import BUSY_SHARE, WARMUP_S, CpuLoad, default_threads
from edgetl.runtime.limits import regular_file
from edgetl.runtime.manifest import files_for_artifacts, read_manifest
from edgetl.runtime.ratio import disagreement, unpaired_ratio
from edgetl.runtime.trust import check_bundle, read_trusted_manifest

BENCH_DATA = "bench_data.npz"


# ----------------------------------------------------------------------------------------------- bench data
def write_bench_data(loaded, path: Path, split: str = "test") -> Path:
    """The held-out split as raw inputs + targets, so a device without the dataset can score artifacts."""
    import io

    from edgetl.runtime.atomic import atomic_write_bytes

    ex = getattr(loaded.splits, split)
    arrays: dict[str, np.ndarray] = {f"target.{k}": v for k, v in ex.targets.items()}
    if ex.images is not None:
        arrays["images"] = ex.images
    elif ex.image_list is not None:
        for i, im in enumerate(ex.image_list):
            arrays[f"image.{i}"] = im
    elif ex.files is not None:  # image files: decoded one by one, at the working size training used
        for i in range(len(ex)):
            arrays[f"image.{i}"] = ex.files.load(i)
    else:
        arrays["texts"] = np.array(json.dumps(ex.texts))
    arrays["meta"] = np.array(
        json.dumps({"split": split, "n": len(ex), "labels": loaded.splits.labels, "kinds": loaded.kinds})
    )
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


class BenchData:
    def __init__(self, path: Path):
        regular_file(path, "--data")  # a FIFO would block np.load
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise EdgetlError(f"{path}: not a bench data file ({e})") from None
        meta = json.loads(str(z["meta"]))
        self.split, self.labels, self.kinds = meta["split"], meta["labels"], meta["kinds"]
        self.targets = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("target.")}
        if "images" in z.files:
            self.inputs = z["images"]
        elif "texts" in z.files:
            self.inputs = json.loads(str(z["texts"]))
        else:
            self.inputs = [z[f"image.{i}"] for i in range(meta["n"])]
        self.n = meta["n"]

    def batch(self, idx):
        if isinstance(self.inputs, np.ndarray):
            return self.inputs[idx]
        return [self.inputs[i] for i in idx]


# ---------------------------------------------------------------------------------------------- locating
def locate(target: str | Path) -> tuple[Path, Path | None, Path | None]:
    """(bundle dir, run dir or None, bench data or None) for a run dir or a bundle dir."""
    p = Path(target)
    if not p.is_dir() and (Path("runs") / str(target)).is_dir():
        p = Path("runs") / str(target)
    if not p.is_dir():
        raise EdgetlError(f"not a run or bundle directory: {target}")
    if (p / "manifest.json").is_file():
        data = p / BENCH_DATA
        return p, None, data if data.is_file() else None
    if (p / "recipe.yaml").is_file():
        bundle = p / "export"
        if not bundle.exists() and (p / "export.prev" / "manifest.json").is_file():
            raise EdgetlError(
                f"{p}: an export was killed while swapping bundles; the previous bundle is in "
                f"{p / 'export.prev'} (the next `edgetl export {p}` puts it back)"
            )
        if not (bundle / "manifest.json").is_file():
            raise EdgetlError(f"{p}: no exported bundle yet; run `edgetl export {p} --int8` first")
        return bundle, p, None
    raise EdgetlError(f"{p}: neither a run (recipe.yaml) nor a bundle (manifest.json)")


# ---------------------------------------------------------------------------------------------- measuring
def _accuracy(predict_arrays, data: BenchData, batch: int = 64) -> dict:
    outputs = predict_in_batches(lambda idx: predict_arrays(data.batch(idx)), data.n, batch, dtype=np.float32)
    return all_task_metrics(outputs, data.targets, data.kinds, data.labels)


def missing_artifact_message(name: str, bundle: Path, manifest) -> str:
    """One line for an --artifact the bundle lacks; a missing TensorRT engine says how to build it."""
    available = ", ".join(manifest.artifacts)
    kind = ARTIFACT_KINDS.get(name)
    if kind is not None and kind.format == "tensorrt":
        prec = kind.precision
        flag = {"fp16": " --fp16", "int8": " --int8"}.get(prec, "")
        engines = [a for a, e in manifest.artifacts.items() if e.format == "tensorrt"]
        have = f"it has {', '.join(engines)}" if engines else "it has no TensorRT engines"
        return (
            f"--artifact {name}: {bundle} has no TensorRT {prec} engine ({have}); build it on the device with "
            f"`edgetl build {bundle}{flag}`"
        )
    return f"--artifact {name!r} not in the bundle; available: {available}"


def bench_artifact(
    bundle: Path,
    name: str,
    data: BenchData | None,
    *,
    batch_sizes,
    budget_s: float,
    threads: int | None,
    providers=None,
    verify: bool = True,
) -> dict:
    from edgetl.runtime import Predictor

    entry = read_manifest(bundle).artifacts[name]
    path = bundle / entry.file
    row = {
        "artifact": name,
        "backend": "onnxruntime" if entry.format == "onnx" else entry.format,
        "precision": entry.precision,
        "file": entry.file,
        "size_mb": round(path.stat().st_size / 1e6, 3) if path.is_file() else None,
        "kind": "measured",
    }
    gate = ((entry.raw.get("quantization") or {}).get("gate") or {}).get("latency")
    if gate and gate.get("speedup_interval") and entry.format == "onnx":  # the gate's ratio (ORT CPU), vs ours
        row["gate_speedup"] = {k: gate.get(k) for k in ("speedup_vs_fp32", "speedup_interval", "threads", "batch")}
    if entry.format != "onnx":  # ORT providers and threads do not apply to a TensorRT engine
        providers, threads = None, None
    try:
        pred = Predictor.load(bundle, artifact=name, providers=providers, intra_op_threads=threads, verify=verify)
    except EdgetlError as e:
        return {**row, "status": f"load failed: {e}"}
    row["providers"] = list(getattr(pred.backend, "providers", ()) or ())
    asked = [p[0] if isinstance(p, (tuple, list)) else p for p in providers or ()]
    dropped = [p for p in asked if p not in row["providers"]]
    if dropped:  # ONNX Runtime falls back to CPU silently when a GPU provider cannot start: say so, measure nothing
        return {
            **row,
            "status": f"load failed: execution provider {dropped[0]} did not start on this machine "
            f"(ONNX Runtime fell back to {', '.join(row['providers'])}); check its CUDA / cuDNN / "
            f"TensorRT libraries or drop --provider",
        }
    score_batch = 64
    if entry.format == "tensorrt":
        batch_sizes = _engine_batch_sizes(pred.backend, batch_sizes, row)
        score_batch = min(score_batch, _engine_batch_range(pred.backend)[1] or score_batch)
    with CpuLoad() as load:  # one session at a time; who else used the CPUs while it was timed
        timed = _latency_rows(pred, data, batch_sizes, budget_s)
    row["other_cpu_share"] = load.other_share
    if data is None:
        return {**row, "status": "no bench data: latency only"} | timed
    row.update(timed)
    row["metrics"] = _accuracy(pred.predict_task_arrays, data, batch=score_batch)
    row["status"] = "passed"
    return row


def _latency_rows(pred, data: BenchData | None, batch_sizes, budget_s) -> dict:
    if data is not None:
        one = data.batch(np.arange(1))
    elif pred.input_kind == "image":
        h, w = pred.manifest.input.image_size
        one = np.zeros((1, h, w, 3), dtype=np.uint8)
    else:
        one = ["a short example sentence for timing"]
    feeds = pred.preprocess(one)
    e2e = measure_latency(lambda: pred.predict_arrays(one), warmup_s=WARMUP_S, budget_s=budget_s)
    timer = "perf_counter"
    if callable(getattr(pred.backend, "time_compute", None)):  # TensorRT: CUDA events around execute, no copies
        compute, timer = _engine_compute_latency(pred.backend, feeds, budget_s), "cuda-events"
    else:
        compute = measure_latency(lambda: pred.backend.run(feeds), warmup_s=0.3, budget_s=budget_s)

    def for_batch(b):
        if data is not None:
            xb = data.batch(np.arange(b) % data.n)
        else:
            xb = np.repeat(one, b, axis=0) if isinstance(one, np.ndarray) else one * b
        f = pred.preprocess(xb)
        return lambda: pred.backend.run(f)

    tp = measure_throughput(for_batch, list(batch_sizes), budget_s=budget_s)
    out = {
        "latency_ms": e2e.to_dict(),
        "compute_latency_ms": compute.to_dict(),
        "compute_timer": timer,
        "throughput": [p.to_dict() for p in tp],
    }
    if pred.input_kind == "image":
        with camera_frame(one[0] if isinstance(one, np.ndarray) else np.asarray(one[0])) as frame:
            full = measure_latency(lambda: pred.predict(str(frame)), warmup_s=0.3, budget_s=budget_s)
            out["frame_latency_ms"] = full.to_dict()
            best = max(tp, key=lambda p: p.items_per_s).batch if tp else 1
            if best > 1:  # end to end at the model's best batch: b frames decoded, resized, run, decoded back
                frames = [str(frame)] * best
                many = measure_latency(lambda: pred.predict(frames), warmup_s=0.3, budget_s=budget_s)
                out["frame_best_batch"] = {
                    "batch": best,
                    "latency_ms": many.to_dict(),
                    "frames_per_s": round(1000.0 * best / max(many.p50_ms, 1e-9), 2),
                }
        out["frame"] = f"{CAMERA_FRAME[1]}x{CAMERA_FRAME[0]} JPEG file"
    return out


CAMERA_FRAME = (480, 640)  # (h, w): what an edge camera hands over, for the end-to-end figure


@contextlib.contextmanager
def camera_frame(image: np.ndarray):
    """A test image upscaled to a 640x480 JPEG file: timing `predict(path)` on it covers what a device pays per
    frame (file decode, resize, normalise, model, the task's post-processing at the frame's size)."""
    from PIL import Image

    arr = np.asarray(image, dtype=np.uint8)
    im = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    with tempfile.TemporaryDirectory(prefix="edgetl-frame-") as d:
        path = Path(d) / "frame.jpg"
        im.convert("RGB").resize((CAMERA_FRAME[1], CAMERA_FRAME[0]), Image.BILINEAR).save(path, quality=90)
        yield path


def _engine_compute_latency(backend, feeds, budget_s: float):
    """Compute-only latency of a TensorRT engine from `time_compute` (ms per iteration, CUDA events):
    a short probe sizes the run to the time budget (10..10000 iterations)."""
    from edgetl.bench.latency import stats_from_samples

    probe = np.asarray(backend.time_compute(feeds, iters=10, warmup=10), dtype=np.float64)
    per = max(float(np.median(probe)), 1e-3)
    iters = int(min(10000, max(10, budget_s * 1e3 / per)))
    ms = np.asarray(backend.time_compute(feeds, iters=iters, warmup=10), dtype=np.float64)
    return stats_from_samples([int(round(v * 1e6)) for v in ms], warmup_iters=10, total_s=float(ms.sum()) / 1e3)


def _engine_batch_range(backend) -> tuple[int | None, int | None]:
    """(min, max) batch of an engine's optimization profile, from its engine manifest; (None, None) if unknown."""
    manifest = getattr(backend, "manifest", None)
    profiles = getattr(manifest, "profiles", None) or {}
    first = next(iter(getattr(backend, "input_names", ()) or ()), None)
    prof = profiles.get(first) if first else None
    if not prof or not prof.get("max") or not prof.get("min"):
        return None, None
    return int(prof["min"][0]), int(prof["max"][0])


def _engine_batch_sizes(backend, batch_sizes, row: dict) -> list[int]:
    """The sweep's batch sizes an engine's optimization profile accepts (the others are noted in the row)."""
    lo, hi = _engine_batch_range(backend)
    if hi is None:
        return list(batch_sizes)
    keep = [b for b in batch_sizes if lo <= b <= hi]
    if len(keep) < len(list(batch_sizes)):
        row["skipped_batches"] = [b for b in batch_sizes if b not in keep]
        row["note"] = f"engine profile takes batch {lo}..{hi}"
    return keep or [lo]


def bench_pytorch(run_dir: Path, data: BenchData, *, budget_s: float, threads: int | None) -> dict:
    """The eager PyTorch row: the trained checkpoint, pre-processing in torch, CPU."""
    import torch

    from edgetl.evaluate.torch_eval import call_model
    from edgetl.runs.loaded import load_run

    if threads:
        torch.set_num_threads(threads)
    loaded = load_run(run_dir, with_data=False)
    model, prep = loaded.model.eval(), loaded.prep

    @torch.no_grad()
    def predict_arrays(x):
        y = model.eval_outputs(call_model(model, prep(x)))  # what the export outputs (a detector's detections)
        return {k: v.float().numpy() for k, v in y.items()}

    one = data.batch(np.arange(1))
    lat = measure_latency(lambda: predict_arrays(one), warmup_s=0.5, budget_s=budget_s)
    ck = loaded.run.checkpoint("best")
    return {
        "artifact": "pytorch",
        "backend": "pytorch-eager",
        "precision": "fp32",
        "file": str(ck),
        "size_mb": round(ck.stat().st_size / 1e6, 3),
        "kind": "measured",
        "latency_ms": lat.to_dict(),
        "metrics": _accuracy(predict_arrays, data),
        "status": "passed",
    }


def estimate_rows(bundle: Path, device: str) -> list[dict]:
    from edgetl.bench.estimate import estimate_latency

    rows = []
    for name, entry in read_manifest(bundle).artifacts.items():
        if entry.format != "onnx":
            continue
        est = estimate_latency(bundle / entry.file, device)
        rows.append(
            {
                "artifact": name,
                "backend": f"estimate:{device}",
                "precision": est.precision,
                "file": entry.file,
                "kind": "estimated",
                "estimate": est.to_dict(),
                "latency_ms": {"p50_ms": est.total_ms},
                "status": "estimated",
            }
        )
    return rows


def _add_comparisons(rows: list[dict], kinds: dict[str, str], threads: int | None = None) -> None:
    base = next((r for r in rows if r["artifact"] == "fp32" and r["kind"] == "measured" and "metrics" in r), None)
    for r in rows:
        if base is None or r["kind"] != "measured" or "latency_ms" not in r:
            continue
        r["speedup_vs_fp32"] = base["latency_ms"]["p50_ms"] / r["latency_ms"]["p50_ms"]
        r["speedup_interval"] = _interval(base["latency_ms"], r["latency_ms"])
        if "metrics" in r:
            r["drop_vs_fp32"] = task_drops(base["metrics"], r["metrics"], kinds)
        if r["artifact"] != "fp32" and r["speedup_vs_fp32"] < 1.0 and r.get("precision") in ("int8", "fp16"):
            r["warning"] = f"slower than FP32 on this device ({r['speedup_vs_fp32']:.2f}x)"
        if "gate_speedup" in r and "compute_latency_ms" in r and "compute_latency_ms" in base:
            msg = gate_disagreement(r, base, threads)
            if msg:
                r["speed_warning"] = msg


def _interval(slow: dict, fast: dict) -> list | None:
    iv = unpaired_ratio(
        slow["p50_ms"],
        (slow.get("p50_lo_ms"), slow.get("p50_hi_ms")),
        fast["p50_ms"],
        (fast.get("p50_lo_ms"), fast.get("p50_hi_ms")),
    )
    return None if iv["lo"] is None else [iv["lo"], iv["hi"]]


def gate_disagreement(row: dict, base: dict, threads: int | None) -> str | None:
    """The export gate and this bench timed the same FP32/INT8 pair on (it is assumed) this machine: compare
    the bench's compute-only ratio (model call, batch 1: what the gate times) with the gate's, each with its
    95% interval. One line when they disagree beyond both spreads, naming what differed between the two."""
    g = row["gate_speedup"]
    cb, c = base["compute_latency_ms"], row["compute_latency_ms"]
    row["compute_speedup_vs_fp32"] = cb["p50_ms"] / c["p50_ms"]
    row["compute_speedup_interval"] = _interval(cb, c)
    if row["compute_speedup_interval"] is None:  # a report from an older device side: no p50 intervals
        return None
    ours = {
        "ratio": row["compute_speedup_vs_fp32"],
        "lo": row["compute_speedup_interval"][0],
        "hi": row["compute_speedup_interval"][1],
    }
    lo, hi = g["speedup_interval"]
    differences = []
    if g.get("threads") and threads and int(g["threads"]) != int(threads):
        differences.append(f"gate {g['threads']} threads, bench {threads}")
    if max(base.get("other_cpu_share") or 0, row.get("other_cpu_share") or 0) > BUSY_SHARE:
        differences.append("other processes loaded the CPUs while the bench timed")
    differences.append("the gate times the pair interleaved, the bench one after the other")
    msg = disagreement(
        {"ratio": g["speedup_vs_fp32"], "lo": lo, "hi": hi},
        ours,
        names=("export gate", "bench"),
        differences=differences,
    )
    return f"{row['artifact']} vs fp32: {msg}" if msg else None


def bench(
    target: str | Path,
    device: str = "cpu",
    *,
    estimate: bool | None = None,
    artifacts: list[str] | None = None,
    batch_sizes=(1, 8, 32),
    budget_s: float = 3.0,
    threads: int | None = None,
    pytorch: bool = True,
    out: Path | None = None,
    data_path: Path | None = None,
    providers=None,
    progress=None,
    verify: bool = True,
    public_key=None,
) -> dict:
    """Benchmark a run or bundle; writes bench.json (+ bench.md, bench.png) and returns the report dict.

    With `verify` (the default) a bundle whose files do not match their manifest sha256 is refused before
    anything is measured or written, so a broken bundle never replaces an earlier report (the check every
    entry point shares: `edgetl.runtime.trust`); with `public_key`, so is one whose manifest signature fails."""
    from edgetl.bench.devices import get_device_profile
    from edgetl.bench.sysinfo import collect_system_info, detect_local_device

    local = detect_local_device()
    if device in ("cpu", "auto", "local"):
        try:
            profile = get_device_profile(local)
        except EdgetlError:  # a device with the light install has no profiles directory: measure, name only
            profile = None
        on_device = True
    else:
        profile = get_device_profile(device)  # unknown names fail here, listing the known ones
        on_device = profile.name == local
    if estimate is None:
        estimate = not on_device
    if not estimate and not on_device:
        raise EdgetlError(f"--device {profile.name}: this machine is {local}; measure there, use --host, or --estimate")
    if estimate and profile is None:
        raise EdgetlError(f"--estimate: no device profile for this machine ({local}); set EDGETL_DEVICES_DIR")
    bundle, run_dir, data_file = locate(target)
    manifest = read_trusted_manifest(bundle, public_key)
    if verify:  # the files the asked-for artifacts read (a remote bench gets only those)
        check_bundle(bundle, manifest, files_for_artifacts(manifest, artifacts))
    kinds = {t.name: t.kind for t in manifest.tasks}
    names = artifacts or list(manifest.artifacts)
    unknown = [a for a in names if a not in manifest.artifacts and a != "pytorch"]
    if unknown:
        raise EdgetlError(missing_artifact_message(unknown[0], bundle, manifest))
    data = None
    if data_path or data_file:
        data = BenchData(Path(data_path or data_file))
    elif run_dir is not None:
        path = run_dir / BENCH_DATA
        if not path.is_file():
            try:
                from edgetl.runs.loaded import load_run
            except ImportError as e:  # a device with the light install: it gets bench_data.npz with the bundle
                raise EdgetlError(
                    f"{run_dir}: writing {BENCH_DATA} from a run needs the training install ({e}); "
                    f"bench the bundle {bundle} with its {BENCH_DATA} instead, or use --host"
                ) from None
            write_bench_data(load_run(run_dir), path)
        data = BenchData(path)
    # the export gate's threads unless told otherwise, so `x fp32` here and the manifest's ratio are comparable
    threads = threads or int(os.environ.get("EDGETL_THREADS", 0)) or (None if estimate else default_threads())
    rows: list[dict] = []
    if estimate:
        rows += [r for r in estimate_rows(bundle, profile.name) if r["artifact"] in names]
    else:
        if pytorch and run_dir is not None and data is not None and (artifacts is None or "pytorch" in artifacts):
            try:
                rows.append(bench_pytorch(run_dir, data, budget_s=budget_s, threads=threads))
            except ImportError:
                rows.append({"artifact": "pytorch", "kind": "measured", "status": "skipped: torch not installed"})
        for name in names:
            if name == "pytorch":
                continue
            if progress:
                progress(f"benchmarking {name}")
            rows.append(
                bench_artifact(
                    bundle,
                    name,
                    data,
                    batch_sizes=batch_sizes,
                    budget_s=budget_s,
                    threads=threads,
                    providers=providers,
                    verify=verify,
                )
            )
        _add_comparisons(rows, kinds, threads)
    warnings = [
        f"other processes used {100 * r['other_cpu_share']:.0f}% of the CPUs while {r['artifact']} was timed: "
        "its latency and x fp32 may be off (rerun on an idle machine)"
        for r in rows
        if (r.get("other_cpu_share") or 0) > BUSY_SHARE
    ] + [r["speed_warning"] for r in rows if r.get("speed_warning")]
    system = collect_system_info()
    report = {
        "schema": "edgetl-bench/1",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle": str(bundle),
        "device": profile.name if profile else local,
        "device_display": profile.display_name if profile else local,
        "mode": "estimated" if estimate else "measured",
        "threads": threads,
        "split": data.split if data else None,
        "n_eval": data.n if data else 0,
        "system": system,
        "machine": machine_name(system),
        "tasks": kinds,
        "rows": rows,
        "timing": None
        if estimate
        else {
            "how": f"one artifact at a time, {threads} threads, {WARMUP_S} s warm-up; batch 1: p50 = pre-processing "
            "+ model from an in-memory image, compute = model only, frame = a 640x480 JPEG file through "
            "Predictor.predict (decode, resize, model, post-processing); x fp32 = ratio of p50s",
            "threads": threads,
            "warmup_s": WARMUP_S,
        },
        "warnings": warnings,
    }
    out_dir = Path(out) if out else (run_dir or bundle)
    write_report(report, out_dir)
    return report


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    from edgetl.bench.report import render_markdown, render_pareto_png
    from edgetl.errors import StorageError
    from edgetl.runtime.atomic import atomic_write_text, storage_error

    stem = "bench" if report["mode"] == "measured" else f"bench.estimate.{report['device']}"
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, out_dir) from None
    try:  # the markdown first: the JSON (what programs read) is replaced only when its companions could be
        atomic_write_text(paths["md"], render_markdown(report))
        atomic_write_text(paths["json"], json.dumps(report, indent=2, default=float) + "\n")
        png = render_pareto_png(report, out_dir / f"{stem}.png")
    except StorageError as e:
        raise StorageError(f"bench: {e.message}; the previous {paths['json'].name} is unchanged", path=e.path) from None
    if png:
        paths["png"] = png
    report["files"] = {k: str(v) for k, v in paths.items()}
    return paths
