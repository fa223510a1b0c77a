"""`edgetl bench` as library calls: `bench_command` benches here or over SSH, `show_bench` prints the result.

The command passes its options through under their own names, so the shell and Python bench the same way and
the CLI holds no logic (which hosts, which batch sizes, what counts as a failure are decided here).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from edgetl.bench.remote import DEFAULT_REMOTE_DIR
from edgetl.errors import EdgetlError


def bench_command(
    target: str,
    *,
    device: str = "cpu",
    estimate: bool | None = None,
    host: list[str] | None = None,
    hosts_file: Path | None = None,
    remote_python: str = "python3",
    remote_dir: str = DEFAULT_REMOTE_DIR,
    identity: Path | None = None,
    ssh_config: Path | None = None,
    ssh_option: list[str] | None = None,
    connect_timeout: float = 10.0,
    timeout: float | None = None,
    remote_bundle: str | None = None,
    keep_remote: bool = False,
    artifact: list[str] | None = None,
    provider: list[str] | None = None,
    batch: str = "1,8,32",
    budget: float = 3.0,
    threads: int | None = None,
    data: Path | None = None,
    out: Path | None = None,
    skip_verify: bool = False,
    public_key: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Bench a run or bundle on this machine (`bench.harness.bench`), or on the SSH hosts named by `host` and
    `hosts_file` (`bench.remote.bench_remote`); returns the report (several hosts: the merged comparison)."""
    sizes = parse_batch_sizes(batch)
    hosts = list(host or [])
    if hosts_file:
        from edgetl.bench.remote import read_hosts_file

        hosts += read_hosts_file(hosts_file)
    if not hosts:
        from edgetl.bench.harness import bench

        return bench(
            target,
            device,
            estimate=estimate,
            artifacts=artifact,
            batch_sizes=sizes,
            budget_s=budget,
            threads=threads,
            out=out,
            data_path=data,
            providers=provider,
            progress=progress,
            verify=not skip_verify,
            public_key=public_key,
        )
    from edgetl.bench.remote import bench_remote

    if estimate:
        raise EdgetlError("--estimate is computed here from the device profile; drop --host (or --estimate)")
    return bench_remote(
        target,
        hosts,
        device=device,
        artifacts=artifact,
        batch_sizes=sizes,
        budget_s=budget,
        out=out,
        threads=threads,
        providers=provider,
        python=remote_python,
        remote_dir=remote_dir,
        identity=identity,
        ssh_config=ssh_config,
        ssh_options=ssh_option or (),
        connect_timeout_s=connect_timeout,
        timeout_s=timeout,
        keep_remote=keep_remote,
        data_path=data,
        remote_bundle=remote_bundle,
        progress=progress,
        public_key=public_key,
    )


def parse_batch_sizes(batch: str) -> list[int]:
    try:
        return [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise EdgetlError(f"--batch {batch!r}: expected comma-separated integers, e.g. 1,8,32") from None


def show_bench(report: dict, as_json: bool = False) -> int:
    """Print a bench report (table, or JSON for programs) and its warnings; returns the exit code (1: a host
    failed). A report in which no artifact could be loaded is an EdgetlError naming the first failure."""
    if report.get("schema") == "edgetl-bench-compare/1":  # several hosts: the merged comparison
        from edgetl.bench.merge import print_comparison

        _show(report, as_json, print_comparison)
        failed = [d for d in report["devices"] if d["status"] != "ok"]
        if failed:
            print(
                f"warning: {len(failed)} of {len(report['devices'])} hosts failed: "
                + "; ".join(str(d.get("error")) for d in failed),
                file=sys.stderr,
            )
            return 1
        return 0
    from edgetl.bench.report import load_failures, print_table

    _show(report, as_json, print_table)
    failures, ok = load_failures(report)
    for msg in failures:
        print(f"warning: {msg}", file=sys.stderr)
    if failures and not ok:
        raise EdgetlError(failures[0])
    return 0


def _show(report: dict, as_json: bool, table: Callable[[dict], None]) -> None:
    if as_json:
        print(json.dumps(report, indent=2, default=float))
    else:
        table(report)
        print(f"wrote {', '.join(report.get('files', {}).values())}")
