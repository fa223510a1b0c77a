"""Fleet bench: one bundle on several devices concurrently over SSH, merged into one comparison.

Two REAL sshd instances on 127.0.0.1 (different ports) stand for two devices, plus a dead port (connection
refused) and a silent port (accepts TCP, never speaks SSH: a hung device). The failing hosts are rows with
their error; the others' results are complete.
"""

from __future__ import annotations

import json
import os

import pytest
from helpers import edgetl_cli
from test_remote_sshd import FAST_CLI, N_EXAMPLES, N_WRONG, free_port, start_sshd

from edgetl.bench.remote import bench_remote
from edgetl.errors import EdgetlError

FAST = {"batch_sizes": (1,), "budget_s": 0.05}


@pytest.fixture(scope="module")
def two_sshd(tmp_path_factory):
    a = start_sshd(tmp_path_factory.mktemp("sshd-a"))
    try:
        b = start_sshd(tmp_path_factory.mktemp("sshd-b"))
    except BaseException:
        a.stop()
        raise
    (b.root / "authorized_keys").write_text((a.root / "client_key.pub").read_text())  # one client key for the fleet
    with open(a.root / "known_hosts", "a") as f:  # and one known_hosts pinning both servers' keys
        f.write((b.root / "known_hosts").read_text())
    yield a, b
    a.stop()
    b.stop()


def test_fleet_merges_two_devices_and_reports_the_failures(two_sshd, ssh_bundle, light_install, silent_port, tmp_path):
    a, b = two_sshd
    dead = free_port()
    hosts = [a.host, f"root@127.0.0.1:{dead}", b.host, f"root@127.0.0.1:{silent_port}"]
    merged = bench_remote(
        ssh_bundle,
        hosts,
        out=tmp_path / "fleet",
        python=str(light_install[0]),
        connect_timeout_s=3,
        **FAST,
        **a.client_kwargs(),
    )
    status = {d["label"]: d for d in merged["devices"]}
    assert status[a.host]["status"] == status[b.host]["status"] == "ok", "; ".join(
        str(d.get("error")) for d in merged["devices"]
    )
    assert [d["label"] for d in merged["devices"]] == [
        a.host,
        b.host,
        f"root@127.0.0.1:{dead}",
        f"root@127.0.0.1:{silent_port}",
    ]
    assert status[a.host]["status"] == status[b.host]["status"] == "ok"
    assert "Connection refused" in status[f"root@127.0.0.1:{dead}"]["error"]
    silent_err = status[f"root@127.0.0.1:{silent_port}"]["error"]
    assert "timed out" in silent_err or "unreachable" in silent_err
    # device x artifact rows for the two devices, identical accuracy (same bundle, same data)
    rows = [(r["device"], r["artifact"]) for r in merged["rows"] if r["artifact"] != "-"]
    assert sorted(rows) == sorted((h, art) for h in (a.host, b.host) for art in ("fp32", "fp32-copy"))
    for r in merged["rows"]:
        if r["artifact"] != "-":
            assert r["scores"]["color"] == pytest.approx(100 * (1 - N_WRONG / N_EXAMPLES))
            assert r["p50_ms"] > 0
    failed_rows = [r for r in merged["rows"] if r["artifact"] == "-"]
    assert len(failed_rows) == 2 and all(r["status"].startswith("FAILED: ") for r in failed_rows)
    assert merged["consistency"]["fp32"]["color"] == {"devices": 2, "spread": 0.0}
    # the two devices really ran at the same time: their remote runs overlap
    runs = []
    for h in (a, b):
        rep = json.loads((tmp_path / "fleet" / f"{h.user}_127.0.0.1_{h.port}" / "bench.json").read_text())
        assert rep["host"] == h.host and rep["n_eval"] == N_EXAMPLES
        runs.append((rep["remote"]["started_unix"], rep["remote"]["finished_unix"]))
    assert max(s for s, _ in runs) < min(e for _, e in runs), runs
    # the comparison files
    out = tmp_path / "fleet"
    saved = json.loads((out / "compare.json").read_text())
    assert saved["schema"] == "edgetl-bench-compare/1" and len(saved["devices"]) == 4
    md = (out / "compare.md").read_text()
    assert f"| {a.host} | fp32 |" in md and "FAILED" in md and "Connection refused" in md
    assert (out / "compare.png").stat().st_size > 5000


def test_fleet_cli_with_hosts_file(two_sshd, ssh_bundle, light_install, tmp_path):
    a, b = two_sshd
    dead = free_port()
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(f"# the lab\n{a.host}\n{b.host}   # second board\nroot@127.0.0.1:{dead}\n")
    r = edgetl_cli(
        "bench",
        ssh_bundle,
        "--hosts-file",
        hosts,
        *a.cli_args(),
        "--remote-python",
        light_install[0],
        *FAST_CLI,
        "--out",
        tmp_path / "o",
        timeout=240,
    )
    assert r.returncode == 1, r.stderr  # some hosts failed: results written, exit status says so
    assert "Traceback" not in r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "1 of 3 hosts failed" in warn[0] and "Connection refused" in warn[0]
    assert "2 of 3 devices" in r.stdout
    merged = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert [d["status"] for d in merged["devices"]] == ["ok", "ok", "failed"]


def test_all_hosts_failing_is_one_error(ssh_bundle, tmp_path):
    d1, d2 = free_port(), free_port()
    with pytest.raises(EdgetlError) as e:
        bench_remote(
            ssh_bundle,
            [f"root@127.0.0.1:{d1}", f"root@127.0.0.1:{d2}"],
            out=tmp_path / "o",
            ssh_config=os.devnull,
            connect_timeout_s=3,
            **FAST,
        )
    assert e.value.message.startswith("all 2 hosts failed; first: root@127.0.0.1:")
    assert "\n" not in e.value.message
    merged = json.loads((tmp_path / "o" / "compare.json").read_text())  # the failures are still on record
    assert [d["status"] for d in merged["devices"]] == ["failed", "failed"]
