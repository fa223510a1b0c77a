"""Shared by benchmarks/int8_*.py: cached training runs, side-by-side latency, JSON + markdown output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def ensure_run(
    name: str, overrides: list[str], runs_dir: Path, base: str | dict = "recipes/quickstart.yaml", say=print
):
    """The run `runs_dir/name` trained from `base` (a recipe file, or a recipe dict) + `overrides`; trained now
    only if it is not there yet with exactly that recipe (training is the slow part on a shared 2-core machine,
    the figures are not)."""
    from edgetl.recipe import apply_overrides, load_recipe, recipe_from_dict
    from edgetl.runs.layout import open_run
    from edgetl.train.loop import train

    if isinstance(base, dict):
        rec = recipe_from_dict(apply_overrides(json.loads(json.dumps(base)), overrides), name)
        base = f"recipe {name}"
    else:
        rec = load_recipe(REPO / base, overrides)
    d = Path(runs_dir) / name
    if (d / "run.json").is_file():
        run = open_run(d)
        done = json.loads((d / "run.json").read_text()).get("status") == "completed"
        # a run saves its resolved recipe (input.resize/crop_pct that ran, moot split fractions left out)
        moot = {
            "name": True,
            "description": True,
            "input": {"resize", "crop_pct"},
            "data": {"split": {"val_fraction", "test_fraction"}},
        }
        same = run.recipe().model_dump(exclude=moot) == rec.model_dump(exclude=moot)
        if done and same:
            say(f"[{name}] reusing trained run {d}")
            return run, 0.0
        raise SystemExit(f"{d} exists but is not a completed run of this recipe; remove it or pass another --runs-dir")
    say(f"[{name}] training {base} {' '.join(overrides)} (once; later runs reuse {d})")
    t0 = time.perf_counter()
    run = train(rec, name=name, runs_dir=Path(runs_dir), progress=False)
    return run, time.perf_counter() - t0


def latency(models: dict[str, Path], feeds: dict, threads: int = 2, budget_s: float = 8.0, inner: int = 3) -> dict:
    """Interleaved batch-1 timing: p50/p10 ms per model and paired speedups of each vs the first model."""
    from edgetl.quantize.speed import compare_latency, speedup

    res = compare_latency(models, feeds, threads=threads, budget_s=budget_s, min_rounds=20, inner=inner)
    base = next(iter(models))
    out = {
        "threads": threads,
        "rounds": res["rounds"],
        "ms": res["ms"],
        "speedup_vs_" + base: {k: speedup(res, base, k) for k in models},
        "p10_speedup_vs_" + base: {k: res["ms"][base]["p10"] / res["ms"][k]["p10"] for k in models},
    }
    return out


def machine() -> dict:
    from edgetl.quantize.cpu_features import cpu_flags, has_vnni

    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "vnni": has_vnni(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def write_json(name: str, data: dict) -> Path:
    from edgetl.runtime.atomic import atomic_write_text

    p = REPO / "benchmarks" / "results" / f"{name}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(data, indent=2, default=float) + "\n")
    return p


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
