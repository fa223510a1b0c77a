"""Behaviour unchanged across a refactor: a recipe's bundle from two git revisions, same seed, field by field.

    python benchmarks/compare_bundles.py [--old cbc10a3] [--new HEAD] [--recipe quickstart] [--set KEY=VALUE ...]

Each revision's `edgetl/` and `recipes/` are extracted read-only with `git archive` into /tmp (nothing in the
repository changes) and run from there with this interpreter: `python -m edgetl train recipes/quickstart.yaml`
then `python -m edgetl export RUN --int8 --target cpu`. Prints the manifest fields added, removed and changed
(timestamps and timings are expected to differ), the artifacts, the default, per-artifact test/val accuracy,
whether each ONNX file is byte-identical and which metrics.jsonl keys differ; writes
benchmarks/results/compare_bundles.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def flat(d, prefix: str = "") -> dict:
    if isinstance(d, dict):
        return {k2: v2 for k, v in d.items() for k2, v2 in flat(v, f"{prefix}.{k}" if prefix else k).items()}
    if isinstance(d, list):
        return {k2: v2 for i, v in enumerate(d) for k2, v2 in flat(v, f"{prefix}[{i}]").items()}
    return {prefix: d}


def build(rev: str, recipe: str = "quickstart", overrides: tuple[str, ...] = ()) -> Path:
    """The recipe's run of revision `rev`, trained and exported in its own extracted tree."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True, capture_output=True, text=True
    )
    tree = Path(f"/tmp/edgetl-compare-{sha.stdout.strip()}-{recipe}")
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "edgetl", "recipes"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    for args in (
        ["train", f"recipes/{recipe}.yaml", *overrides, "--name", "qs"],
        ["export", "runs/qs", "--int8", "--target", "cpu"],
    ):
        r = subprocess.run([sys.executable, "-m", "edgetl", *args], cwd=tree, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{rev}: edgetl {args[0]} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return tree / "runs" / "qs"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="cbc10a3", help="the revision before (default: before the issue-13 refactor)")
    ap.add_argument("--new", default="HEAD")
    ap.add_argument("--recipe", default="quickstart", help="a recipe in recipes/ (without .yaml)")
    ap.add_argument("--set", action="append", default=[], help="a key=value override for both trainings")
    args = ap.parse_args()
    runs = {"old": build(args.old, args.recipe, tuple(args.set)), "new": build(args.new, args.recipe, tuple(args.set))}
    man = {k: json.loads((r / "export" / "manifest.json").read_text()) for k, r in runs.items()}
    a, b = flat(man["old"]), flat(man["new"])
    changed = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    out = {
        "old": args.old,
        "new": args.new,
        "recipe": args.recipe,
        "overrides": args.set,
        "cpu": platform.processor() or platform.machine(),
        "fields": {"old": len(a), "new": len(b), "equal": len(a.keys() & b.keys()) - len(changed)},
        "only_old": sorted(a.keys() - b.keys()),
        "only_new": sorted(b.keys() - a.keys()),
        "changed": {k: [a[k], b[k]] for k in changed},
        "artifacts": {k: list(m["artifacts"]) for k, m in man.items()},
        "default": {k: m.get("default_artifact") for k, m in man.items()},
        "accuracy": {
            f"{art}.{split}.{task}": [
                man["old"]["artifacts"][art][split][task].get("accuracy"),
                man["new"]["artifacts"][art][split][task].get("accuracy"),
            ]
            for art in man["old"]["artifacts"]
            if art in man["new"]["artifacts"]
            for split in ("test_metrics", "val_metrics")
            for task in man["old"]["artifacts"][art].get(split, {})
        },  # fmt: skip
        "onnx_identical": {
            f.name: f.is_file()
            and (runs["new"] / "export" / f.name).is_file()
            and sha(f) == sha(runs["new"] / "export" / f.name)
            for f in sorted((runs["old"] / "export").glob("*.onnx"))
        },  # fmt: skip
    }
    rows = [[json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()] for r in runs.values()]
    out["metrics_keys_differing"] = sorted(
        {k for x, y in zip(*rows) for k in x.keys() | y.keys() if x.get(k) != y.get(k)}
    )
    print(f"manifest fields: old {len(a)}, new {len(b)}, equal {out['fields']['equal']}")
    print(f"only in old: {out['only_old'] or 'none'}; only in new: {out['only_new'] or 'none'}")
    print("changed:", ", ".join(changed) or "none")
    print(f"artifacts: {out['artifacts']}; default: {out['default']}")
    for k, (x, y) in out["accuracy"].items():
        print(f"  {k}: {x} -> {y}")
    print(f"ONNX byte-identical: {out['onnx_identical']}")
    print(f"metrics.jsonl keys that differ: {out['metrics_keys_differing'] or 'none'}")
    suffix = "" if args.recipe == "quickstart" else f"-{args.recipe}"
    dest = REPO / f"benchmarks/results/compare_bundles{suffix}.json"
    dest.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
