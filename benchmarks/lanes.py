"""Pinned vs newest releases, side by side in one run: the same shipped recipes through the real CLI in each venv.

For each venv (default: the pinned lane's .venv and the newest lane's .venv-newest, made by
`EDGETL_LANE=... bash scripts/install.sh`): `edgetl train recipes/quickstart.yaml` -> `edgetl export RUN --int8
--target cpu --qat` -> `edgetl bench RUN --device cpu`, and the MiniLM text recipe -> export --int8 (dynamic)
-> bench, progress bars on. The benches run after both exports, interleaved (A, B, A, B) so both venvs see the
same machine; each artifact's batch-1 latency is the median of its rounds. Prints one table and writes JSON.

    python benchmarks/lanes.py                       # full recipes (about 12 minutes on 2 cores)
    python benchmarks/lanes.py --quick               # 1 epoch, 400 rows: a smoke run, figures not comparable
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPES = {"quickstart": ("recipes/quickstart.yaml", ["--qat"]), "text": ("recipes/text-classify.yaml", [])}


def cli(venv: Path, args: list[str], log) -> float:
    t0 = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    p = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "edgetl", *args],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    if p.returncode:
        raise SystemExit(f"{venv}: edgetl {' '.join(args)} failed (exit {p.returncode}); see {log.name}")
    return time.perf_counter() - t0


def versions(venv: Path) -> dict:
    code = "import json; from edgetl.versions import library_versions; print(json.dumps(library_versions()))"
    return json.loads(subprocess.check_output([str(venv / "bin" / "python"), "-c", code], cwd=REPO, text=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venvs", nargs="+", default=[".venv", ".venv-newest"])
    ap.add_argument("--runs-dir", default="runs/lanes")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/lanes.json")
    a = ap.parse_args()
    from edgetl.bench.sysinfo import collect_system_info

    venvs = [REPO / v for v in a.venvs]
    runs = REPO / a.runs_dir
    runs.mkdir(parents=True, exist_ok=True)
    quick = (
        ["train.epochs=1", "data.split.limit_train=400", "data.split.limit_val=200", "data.split.limit_test=200"]
        if a.quick
        else []
    )
    result = {"cpu": collect_system_info()["cpu"], "quick": a.quick, "lanes": {}}
    for venv in venvs:
        lane = venv.name
        result["lanes"][lane] = {"versions": versions(venv), "recipes": {}}
        for key, (recipe, flags) in RECIPES.items():
            name = f"{key}-{lane.strip('.')}"
            run = runs / name
            with open(runs / f"{name}.log", "w") as log:
                entry = {"run": str(run)}
                if not (run / "run.json").is_file():
                    entry["train_s"] = cli(
                        venv, ["train", recipe, "--name", name, "--runs-dir", str(runs), *quick], log
                    )
                entry["export_s"] = cli(venv, ["export", str(run), "--int8", "--target", "cpu", *flags], log)
            result["lanes"][lane]["recipes"][key] = entry
    for rnd in range(a.rounds):  # interleaved benches: every venv sees the same machine state
        for venv in venvs:
            lane = venv.name
            for key in RECIPES:
                entry = result["lanes"][lane]["recipes"][key]
                out = runs / f"bench-{key}-{lane.strip('.')}-{rnd}"
                with open(runs / f"{key}-{lane.strip('.')}.log", "a") as log:
                    cli(venv, ["bench", entry["run"], "--device", "cpu", "--batch", "1,32", "--out", str(out)], log)
                entry.setdefault("bench", []).append(json.loads((out / "bench.json").read_text()))
    table = summarise(result)
    result["table"] = table
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({k: v for k, v in result.items()}, indent=2, default=str) + "\n")
    print_table(result)
    print(f"wrote {a.out}")


def summarise(result: dict) -> list[dict]:
    rows = []
    for lane, info in result["lanes"].items():
        for key, entry in info["recipes"].items():
            manifest = json.loads((Path(entry["run"]) / "export" / "manifest.json").read_text())
            task = manifest["tasks"][0]["name"]
            for art, a in manifest["artifacts"].items():
                lat = [
                    next(r for r in b["rows"] if r["artifact"] == art)["latency_ms"]["p50_ms"] for b in entry["bench"]
                ]
                fp32 = [
                    next(r for r in b["rows"] if r["artifact"] == "fp32")["latency_ms"]["p50_ms"]
                    for b in entry["bench"]
                ]
                gate = (a.get("quantization") or {}).get("gate") or {}
                rows.append(
                    {
                        "lane": lane,
                        "recipe": key,
                        "artifact": art,
                        "test_accuracy": a["accuracy"][task],
                        "p50_ms_batch1": statistics.median(lat),
                        "speedup_vs_fp32": statistics.median(f / x for f, x in zip(fp32, lat)),
                        "gate_speedup": (gate.get("latency") or {}).get("speedup_vs_fp32"),
                        "layers_float": len(gate.get("excluded_nodes", []) or []),
                    }
                )
    return rows


def print_table(result: dict) -> None:
    cpu = result["cpu"]
    flags = ", ".join(f for f, on in (cpu.get("flags") or {}).items() if on) or "none"
    print(f"CPU: {cpu.get('model')} ({cpu.get('threads')} threads; flags: {flags})")
    for lane, info in result["lanes"].items():
        v = info["versions"]
        print(
            f"{lane}: "
            + ", ".join(
                f"{k} {v[k]}"
                for k in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "transformers", "timm", "nvidia-modelopt")
                if k in v
            )
        )
    print(
        f"{'recipe':<11}{'artifact':<10}"
        + "".join(f"{lane + ' acc':>16}{lane + ' x fp32':>18}" for lane in result["lanes"])
    )
    keys = sorted({(r["recipe"], r["artifact"]) for r in result["table"]})
    for recipe, art in keys:
        cells = ""
        for lane in result["lanes"]:
            r = next(
                (r for r in result["table"] if (r["lane"], r["recipe"], r["artifact"]) == (lane, recipe, art)), None
            )
            cells += f"{100 * r['test_accuracy']:>16.2f}{r['speedup_vs_fp32']:>18.2f}" if r else f"{'-':>16}{'-':>18}"
        print(f"{recipe:<11}{art:<10}{cells}")


if __name__ == "__main__":
    main()
