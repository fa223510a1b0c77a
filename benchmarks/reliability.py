"""Issue 6 acceptance figures: kills survived, fuzzed inputs tried, tracebacks seen.

    python benchmarks/reliability.py [--fsync-kills 3,8,13,6,11] [--timed-kills 5] [--fuzz-scale 4]
                                     [--workdir /tmp/edgetl-reliability] [--skip-kills] [--skip-fuzz]

1. Kill campaign (tests/test_resume_kill.py `run_campaign`): a reference `edgetl train` run, then the same
   recipe (MobileNetV2 offline weights, digits at 32 px, hflip, a checkpoint every step, 3 epochs x 6 steps)
   SIGKILLed again and again — inside checkpoint writes (the Nth fsync of a checkpoint file/directory) and at
   seeded random moments after a commit — and resumed with `--resume` each time. Reports kills, resumes,
   corrupt checkpoints, tracebacks, and the largest difference to the uninterrupted run over every number in
   metrics.jsonl and every weight of last/best.safetensors.
2. Fuzzing (tests/test_fuzz_loaders.py, hypothesis, shrinking off so every crash is counted): recipes as dicts,
   recipe YAML files, key=value overrides, bundle manifests, CSV/JSONL datasets. Every input must end in
   success or an EdgetlError with a one-line message; anything else is counted as a crash (traceback).

Prints a table and writes benchmarks/results/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def kill_campaign(args) -> dict:
    import shutil

    from test_resume_kill import run_campaign

    work = Path(args.workdir) / "kills"
    shutil.rmtree(work, ignore_errors=True)
    fs = tuple(int(x) for x in args.fsync_kills.split(",") if x)
    res = run_campaign(work, fsync_kills=fs, timed_kills=args.timed_kills, seed=args.seed,
                       overrides={"train.epochs": 3}, log=lambda s: print("  " + s, flush=True))
    killed = [k for k in res.kills if k["killed"]]
    return {
        "kills_planned": len(fs) + args.timed_kills,
        "kills": len(killed),
        "kills_inside_checkpoint_writes": sum(k["how"] == "fsync" for k in killed),
        "kills_at_random_times": sum(k["how"] == "timed" for k in killed),
        "resumes": res.resumes,
        "processes": res.processes,
        "corrupt_checkpoints": len(res.corrupt),
        "tracebacks": res.tracebacks,
        "max_metric_diff": res.max_metric_diff,
        "max_weight_diff": res.max_weight_diff,
        "seconds": round(res.seconds, 1),
        "detail": res.kills,
    }


def fuzz(args) -> dict:
    from hypothesis import Phase

    import test_fuzz_loaders as F

    F.FUZZ_SETTINGS["phases"] = [Phase.explicit, Phase.generate]  # no shrinking: count every crash
    crashes: list[str] = []
    real = F._outcome

    def counting(counter, fn, *a, **kw):
        try:
            return real(counter, fn, *a, **kw)
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001  (anything but EdgetlError is a crash)
            counter["crash"] += 1
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f"{f.filename.split('edgetl/')[-1]}:{f.lineno}" for f in reversed(tb)
                          if "/edgetl/" in f.filename), "?")
            crashes.append(f"{type(e).__name__} at {where}: {str(e)[:100]}")
            return None

    F._outcome = counting
    out = {}
    for name, (_, n) in F.FUZZERS.items():
        t0 = time.perf_counter()
        c = F.run_fuzzer(name, int(n * args.fuzz_scale))
        out[name] = {"tried": c["tried"], "ok": c["ok"], "edgetl_error": c["error"], "crash": c["crash"],
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(f"  {name}: {out[name]}", flush=True)
    F._outcome = real
    total = Counter()
    for v in out.values():
        total.update({k: v[k] for k in ("tried", "ok", "edgetl_error", "crash")})
    return {"per_loader": out, "total": dict(total), "crashes": sorted(set(crashes))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/edgetl-reliability")
    ap.add_argument("--fsync-kills", default="3,8,13,6,11")
    ap.add_argument("--timed-kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fuzz-scale", type=float, default=4.0, help="multiplier on the CI example budgets")
    ap.add_argument("--skip-kills", action="store_true")
    ap.add_argument("--skip-fuzz", action="store_true")
    args = ap.parse_args()

    import logging

    logging.getLogger("edgetl").setLevel(logging.ERROR)  # the fuzzed datasets warn a lot
    result: dict = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
                    "command": "python benchmarks/reliability.py " + " ".join(sys.argv[1:])}
    if not args.skip_kills:
        print("kill campaign:", flush=True)
        result["kill_campaign"] = kill_campaign(args)
    if not args.skip_fuzz:
        print("fuzzing:", flush=True)
        result["fuzz"] = fuzz(args)

    print()
    print("| figure | value |")
    print("|---|---|")
    if "kill_campaign" in result:
        k = result["kill_campaign"]
        print(f"| SIGKILLs survived (inside checkpoint writes / at random times) | {k['kills']} "
              f"({k['kills_inside_checkpoint_writes']} / {k['kills_at_random_times']}) |")
        print(f"| resumes, processes started | {k['resumes']}, {k['processes']} |")
        print(f"| corrupt checkpoints after any kill | {k['corrupt_checkpoints']} |")
        print(f"| tracebacks (training processes) | {k['tracebacks']} |")
        print(f"| max abs diff vs uninterrupted: metrics.jsonl / weights | {k['max_metric_diff']:.3g} / "
              f"{k['max_weight_diff']:.3g} |")
        print(f"| campaign wall time | {k['seconds']} s |")
    if "fuzz" in result:
        f = result["fuzz"]
        for name, v in f["per_loader"].items():
            print(f"| fuzz {name}: tried (ok / EdgetlError / crash) | {v['tried']} ({v['ok']} / "
                  f"{v['edgetl_error']} / {v['crash']}), {v['seconds']} s |")
        t = f["total"]
        print(f"| fuzz total: tried (ok / EdgetlError / crash) | {t['tried']} ({t['ok']} / {t['edgetl_error']} / "
              f"{t.get('crash', 0)}) |")
        for c in f["crashes"]:
            print(f"  crash: {c}")
    out = REPO / "benchmarks" / "results" / "reliability.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from edgetl.runtime.atomic import atomic_write_text

    atomic_write_text(out, json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {out.relative_to(REPO)}")
    bad = (result.get("kill_campaign", {}).get("corrupt_checkpoints", 0)
           + result.get("kill_campaign", {}).get("tracebacks", 0)
           + result.get("fuzz", {}).get("total", {}).get("crash", 0))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
