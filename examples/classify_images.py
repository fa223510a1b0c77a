"""A minimal device application: run a deploy bundle on image files, with no torch installed.

    python examples/classify_images.py runs/quickstart/deploy shirt.png boot.jpg
    python examples/classify_images.py runs/quickstart/deploy *.png --artifact fp32 --json

Needs only numpy, onnxruntime and pillow (pip install numpy onnxruntime pillow; edgetl with --no-deps).
"""

from __future__ import annotations

import argparse
import json
import sys

from edgetl.errors import EdgetlError
from edgetl.runtime import Predictor, TaskPrediction


def describe(pred: TaskPrediction) -> str:
    """One readable line per task."""
    if pred.kind == "classification":
        return f"{pred.task}: {pred.label} ({pred.score:.3f})"
    if pred.kind == "multilabel":
        return f"{pred.task}: {', '.join(pred.labels or []) or '(none)'}"
    value = pred.value if isinstance(pred.value, list) else [pred.value]
    return f"{pred.task}: {', '.join(f'{v:.4g}' for v in value)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Per-task predictions for image files from an edgetl bundle.")
    parser.add_argument("bundle", help="deploy bundle directory (holds manifest.json)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--artifact", help="artifact to run (default: the bundle's default)")
    parser.add_argument("--provider", action="append", help="ONNX Runtime execution provider (repeatable)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.add_argument("--batch", type=int, default=8, help="images per model call (default 8)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be >= 1")
    try:
        predictor = Predictor.load(
            args.bundle, artifact=args.artifact, providers=args.provider, intra_op_threads=args.threads
        )
        for start in range(0, len(args.images), args.batch):
            paths = args.images[start : start + args.batch]
            for path, result in zip(paths, predictor.predict(paths)):
                if args.json:
                    print(json.dumps({"image": path, **{t: p.to_dict() for t, p in result.items()}}))
                else:
                    print(path)
                    for pred in result.values():
                        print(f"  {describe(pred)}")
    except EdgetlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
