"""Fleet bench on loopback: one small exported run, benched locally, on one SSH "device", then on a fleet of
two SSH "devices" plus a dead port, all on 127.0.0.1 (two real sshd instances started here, stopped at exit).

What it shows: the remote path's cost over a local bench (copy + ssh + the device's python start-up), that
the fleet runs hosts concurrently and merges them into one table, that a dead host costs a bounded time and
does not sink the others, and that the device side ran torch-free (torch imports blocked on the "device").
Both "devices" are this machine: in the fleet run they share its CPU cores, so their latencies contend.
That is a property of this setup, not of the fleet code; read the latencies as a contention check, not as
device figures.

    python benchmarks/fleet.py --run /tmp/myruns/t          # an exported run (edgetl export RUN --int8)
    python benchmarks/fleet.py                              # trains + exports a small quickstart run first (~2-3 min)

Writes benchmarks/results/fleet.json and the comparison files under --out (default /tmp/edgetl-fleet-bench).
Needs OpenSSH (sshd, ssh, scp, ssh-keygen). Nothing is downloaded; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the loopback sshd + light-install helpers live with the tests

from test_remote_sshd import HEAVY, SshServer, free_port, light_python, ssh_tools_missing  # noqa: E402

from edgetl.bench.harness import bench  # noqa: E402
from edgetl.bench.remote import bench_remote  # noqa: E402


def _small_run(runs_dir: Path) -> Path:
    run = runs_dir / "fleet"
    if not (run / "export" / "manifest.json").is_file():
        edgetl = [sys.executable, "-m", "edgetl"]
        subprocess.run(
            [
                *edgetl,
                "train",
                str(REPO / "recipes" / "quickstart.yaml"),
                "train.epochs=1",
                "data.split.limit_train=500",
                "--name",
                "fleet",
                "--runs-dir",
                str(runs_dir),
                "-q",
            ],
            check=True,
        )
        subprocess.run([*edgetl, "export", str(run), "--int8", "--target", "cpu", "-q"], check=True)
    return run


def _p50(rows: list[dict]) -> dict[str, float]:
    return {r["artifact"]: r["latency_ms"]["p50_ms"] for r in rows if "latency_ms" in r and r.get("kind") == "measured"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="exported run directory (default: train + export a small one)")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "edgetl-fleet-bench")
    ap.add_argument("--budget", type=float, default=1.0, help="timed seconds per measurement")
    ap.add_argument("--batch", default="1,8,32")
    args = ap.parse_args()
    reason = ssh_tools_missing()
    if reason:
        sys.exit(f"fleet benchmark: {reason}")
    sizes = [int(b) for b in args.batch.split(",")]
    run = args.run or _small_run(args.out / "runs")
    arts = ["fp32", "int8-ort"]
    common = {"artifacts": arts, "batch_sizes": sizes, "budget_s": args.budget}
    servers: list[SshServer] = []
    try:
        for name in ("sshd-a", "sshd-b"):
            servers.append(SshServer(args.out / name).start())
        a, b = servers
        (b.root / "authorized_keys").write_text((a.root / "client_key.pub").read_text())
        wrapper, blocked = light_python(args.out / "light")
        ssh = a.client_kwargs()

        t0 = time.perf_counter()
        local = bench(run, "cpu", pytorch=False, out=args.out / "local", **common)
        local_s = time.perf_counter() - t0
        print(f"local bench: {local_s:.1f} s")

        t0 = time.perf_counter()
        single = bench_remote(run, [a.host], out=args.out / "single", python=str(wrapper), **common, **ssh)
        single_s = time.perf_counter() - t0
        print(f"one ssh device: {single_s:.1f} s (remote bench {single['remote']['bench_s']:.1f} s)")

        dead = f"root@127.0.0.1:{free_port()}"
        t0 = time.perf_counter()
        merged = bench_remote(
            run,
            [a.host, b.host, dead],
            out=args.out / "fleet",
            python=str(wrapper),
            progress=lambda m: print("  " + m),
            **common,
            **ssh,
        )
        fleet_s = time.perf_counter() - t0
    finally:
        for s in servers:
            s.stop()

    attempts = [m for m in blocked.read_text().split() if m.split(".")[0] in HEAVY]
    per_host = merged["hosts"]
    ok_reports = [json.loads(Path(h["files"]["json"]).read_text()) for h in per_host if h["status"] == "ok"]
    result = {
        "command": "python benchmarks/fleet.py"
        + (f" --run {args.run}" if args.run else "")
        + f" --budget {args.budget} --batch {args.batch}",
        "machine": {
            "cpu": (local["system"].get("cpu") or {}).get("model"),
            "threads": os.cpu_count(),
            "python": platform.python_version(),
        },
        "run": str(run),
        "artifacts": arts,
        "batch_sizes": sizes,
        "budget_s": args.budget,
        "local": {"wall_s": round(local_s, 2), "p50_ms": _p50(local["rows"])},
        "single_host": {
            "wall_s": round(single_s, 2),
            "remote_bench_s": single["remote"]["bench_s"],
            "bundle_mb": round(single["remote"]["bundle_bytes"] / 1e6, 2),
            "p50_ms": _p50(single["rows"]),
        },
        "fleet": {
            "wall_s": round(fleet_s, 2),
            "hosts": [{k: h[k] for k in ("host", "status", "error", "wall_s")} for h in per_host],
            "remote_bench_s": [r["remote"]["bench_s"] for r in ok_reports],
            "p50_ms": {r["host"]: _p50(r["rows"]) for r in ok_reports},
            "accuracy": {
                r["host"]: {x["artifact"]: x["metrics"] for x in r["rows"] if "metrics" in x} for r in ok_reports
            },
            "consistency": merged["consistency"],
            "files": merged["files"],
        },
        "device_side_heavy_import_attempts": attempts,
    }
    print()
    print(f"{'':28} {'wall s':>7} " + " ".join(f"{a + ' p50 ms':>16}" for a in arts))
    print(
        f"{'local (in-process)':28} {local_s:7.1f} "
        + " ".join(f"{result['local']['p50_ms'].get(a, float('nan')):16.2f}" for a in arts)
    )
    print(
        f"{'1 ssh device':28} {single_s:7.1f} "
        + " ".join(f"{result['single_host']['p50_ms'].get(a, float('nan')):16.2f}" for a in arts)
    )
    for h, p in result["fleet"]["p50_ms"].items():
        print(f"{'fleet: ' + h:28} {fleet_s:7.1f} " + " ".join(f"{p.get(a, float('nan')):16.2f}" for a in arts))
    for h in per_host:
        if h["status"] != "ok":
            print(f"fleet: {h['host']}: FAILED after {h['wall_s']:.2f} s: {h['error']}")
    print(f"device-side heavy imports attempted: {attempts or 'none'} (matplotlib is optional there)")
    print(f"comparison: {', '.join(merged['files'].values())}")
    dest = REPO / "benchmarks" / "results" / "fleet.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
