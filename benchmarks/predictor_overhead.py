"""How much does `Predictor.predict` add over a bare ONNX Runtime session, pre-processing included? (target <= 15%)

    python benchmarks/predictor_overhead.py [BUNDLE] [--iters 400] [--threads 2]

BUNDLE defaults to the quickstart's bundle (runs/quickstart/export, else runs/bench/int8-mobilenet_v2/export
from benchmarks/int8_cnn.py). For each artifact (int8-ort, fp32) and two inputs -- a 28x28 grey image (what
Fashion-MNIST gives: Predictor resizes and repeats it to 3 channels) and an RGB image already at the model
size -- the same random uint8 image goes through:
  bare ORT   (the Predictor's own onnxruntime session, so both paths share one thread pool)
             numpy scale/normalise of a model-sized image (or the ready tensor when the image needs resizing:
             the bare path does no resizing at all), then session.run
  predict    Predictor.predict(img): pre-processing, run, softmax, labels
Both paths are called alternately, one call each per iteration, so load from other processes hits both; the
overhead is the median over iterations of predict_i / bare_i (and the ratio of the medians beside it).
Writes benchmarks/results/predictor_overhead.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from int8_common import machine, md_table, write_json  # noqa: E402


def measure(bundle: Path, artifact: str, hw: tuple[int, int], channels: int, iters: int, threads: int) -> dict:
    from edgetl.runtime import Predictor

    p = Predictor.load(bundle, artifact=artifact, intra_op_threads=threads)
    spec = p.manifest.input
    rng = np.random.default_rng(0)
    img = (
        rng.integers(0, 256, (*hw, channels), dtype=np.uint8)
        if channels == 3
        else rng.integers(0, 256, hw, dtype=np.uint8)
    )
    # The bare path runs the Predictor's own ORT session: a second session would keep a second thread pool
    # whose idle workers spin and steal one of the 2 cores from whichever session is being timed.
    sess = p.backend.session
    scale = np.float32(spec.scale)
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    ready = p.preprocess(img)[spec.name]
    same_size = tuple(hw) == tuple(spec.image_size) and channels == 3

    def bare():
        x = ((img.transpose(2, 0, 1).astype(np.float32) * scale - mean) / std)[None] if same_size else ready
        return sess.run(None, {spec.name: x})

    def predict():
        return p.predict(img)

    for _ in range(20):
        bare()
        predict()
    tb, tp = [], []
    for i in range(iters):
        order = (bare, predict) if i % 2 == 0 else (predict, bare)
        for fn in order:
            t0 = time.perf_counter_ns()
            fn()
            (tb if fn is bare else tp).append(time.perf_counter_ns() - t0)
    tb, tp = np.asarray(tb, float), np.asarray(tp, float)
    t0 = time.perf_counter_ns()
    for _ in range(iters):
        p.preprocess(img)
    pre_ms = (time.perf_counter_ns() - t0) / iters / 1e6
    return {
        "artifact": artifact,
        "input": f"{hw[0]}x{hw[1]}x{channels}",
        "model_input": list(spec.image_size),
        "bare_ms_p50": float(np.median(tb)) / 1e6,
        "predict_ms_p50": float(np.median(tp)) / 1e6,
        "preprocess_ms_mean": pre_ms,
        "overhead_paired": float(np.median(tp / tb)),
        "overhead_of_medians": float(np.median(tp) / np.median(tb)),
        "iters": iters,
        "threads": threads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", type=Path)
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    bundle = args.bundle
    if bundle is None:
        for cand in (REPO / "runs" / "quickstart" / "export", REPO / "runs" / "bench" / "int8-mobilenet_v2" / "export"):
            if (cand / "manifest.json").is_file():
                bundle = cand
                break
        else:
            raise SystemExit("no bundle: run scripts/quickstart.sh (or benchmarks/int8_cnn.py), or pass BUNDLE")
    from edgetl.runtime import read_manifest

    m = read_manifest(bundle)
    size = tuple(m.input.image_size)
    rows = []
    for artifact in [a for a in ("int8-ort", "fp32") if a in m.artifacts]:
        for hw, c in (((28, 28), 1), (size, 3)):
            r = measure(bundle, artifact, hw, c, args.iters, args.threads)
            rows.append(r)
            print(
                f"{artifact} {r['input']}: bare {r['bare_ms_p50']:.3f} ms, predict {r['predict_ms_p50']:.3f} ms, "
                f"overhead x{r['overhead_paired']:.3f} (medians x{r['overhead_of_medians']:.3f})",
                flush=True,
            )
    md = md_table(
        [
            "artifact",
            "input image",
            "bare ORT p50 ms",
            "predict p50 ms",
            "pre-processing ms",
            "predict / bare (paired median)",
            "predict / bare (medians)",
            "<= 1.15",
        ],
        [
            [
                r["artifact"],
                r["input"],
                f"{r['bare_ms_p50']:.3f}",
                f"{r['predict_ms_p50']:.3f}",
                f"{r['preprocess_ms_mean']:.3f}",
                f"{r['overhead_paired']:.3f}",
                f"{r['overhead_of_medians']:.3f}",
                "yes" if r["overhead_paired"] <= 1.15 else "NO",
            ]
            for r in rows
        ],
    )
    print(md)
    out = write_json("predictor_overhead", {"machine": machine(), "bundle": str(bundle), "rows": rows, "table_md": md})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
