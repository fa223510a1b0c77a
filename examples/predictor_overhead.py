"""How much does `Predictor.predict` add over a bare ONNX Runtime session? (target: <= 15%)

    python examples/predictor_overhead.py runs/quickstart/deploy [--image-size 480x640] [--iters 200]

Both paths get the same random uint8 image; the bare path pre-processes it with plain numpy (no resize
when the image already has the model's size) and calls `session.run`. Timings are interleaved per
iteration so machine noise hits both alike; reported as medians and their ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

from edgetl.runtime import Predictor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--artifact")
    ap.add_argument("--image-size", help="HxW of the input image (default: the model's size)")
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = default)")
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args(argv)

    p = Predictor.load(args.bundle, artifact=args.artifact, intra_op_threads=args.threads)
    if p.input_kind != "image":
        ap.error("this measurement is for image bundles")
    spec = p.manifest.input
    h, w = (int(v) for v in args.image_size.split("x")) if args.image_size else spec.image_size
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(
        str(p.bundle_dir / p.manifest.artifacts[p.artifact].file), options, providers=["CPUExecutionProvider"]
    )
    scale = np.float32(spec.scale)
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    ready = p.preprocess(img)[spec.name]  # the bare path skips resizing: give it the model-sized tensor

    def bare() -> object:
        if (h, w) == spec.image_size:
            x = ((img.transpose(2, 0, 1).astype(np.float32) * scale - mean) / std)[None]
        else:
            x = ready
        return session.run(None, {spec.name: x})

    paths = {"bare ORT": bare, "predict_arrays": lambda: p.predict_arrays(img), "predict": lambda: p.predict(img),
             "preprocess only": lambda: p.preprocess(img)}
    for fn in paths.values():
        for _ in range(10):
            fn()
    times: dict[str, list[int]] = {k: [] for k in paths}
    for _ in range(args.iters):
        for name, fn in paths.items():
            t0 = time.perf_counter_ns()
            fn()
            times[name].append(time.perf_counter_ns() - t0)
    base = float(np.median(times["bare ORT"]))
    print(f"{p!r}\ninput image {h}x{w}, {args.iters} interleaved iterations")
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"  {name:16s} median {med / 1e6:8.3f} ms  p90 {np.percentile(ts, 90) / 1e6:8.3f} ms  "
              f"x{med / base:.3f} of bare ORT")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
