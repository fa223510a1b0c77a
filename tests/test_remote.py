"""Remote bench over SSH (edgetl.bench.remote) against a REAL sshd on 127.0.0.1, plus its pure parts.

The "device" is this machine: the remote python is this venv's python behind a wrapper that blocks torch
and the other heavy packages (the light install), so a passing remote bench proves the device side is
torch-free end to end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from helpers import edgetl_cli
from test_remote_sshd import FAST_CLI, HEAVY, N_EXAMPLES, N_WRONG, free_port, make_bundle, start_sshd

from edgetl.bench.remote import SshSettings, bench_remote, read_hosts_file, remote_bench_args, stage_bundle
from edgetl.errors import EdgetlError

FAST = {"batch_sizes": (1, 2), "budget_s": 0.05}


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def _one_line(msg: str) -> str:
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------------------------ pure parts
def test_remote_command_is_only_the_edgetl_entry_point():
    words = remote_bench_args(
        "~/venv/bin/python",
        "job/bundle",
        "job/out",
        artifacts=["fp32", "int8-ort"],
        batch_sizes=[1, 8],
        budget_s=0.5,
        threads=2,
        providers=["CUDAExecutionProvider"],
    )
    assert words[:4] == ["~/venv/bin/python", "-m", "edgetl", "bench"]
    assert words[words.index("--artifact") + 1] == "fp32" and words.count("--artifact") == 2
    assert words[words.index("--batch") + 1] == "1,8" and words[words.index("--device") + 1] == "auto"
    assert words[words.index("--provider") + 1] == "CUDAExecutionProvider"


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"python": "python3; rm -rf ~"}, "--remote-python"),
        ({"python": "-c"}, "--remote-python"),
        ({"artifacts": ["fp32;id"]}, "--artifact"),
        ({"providers": ["CUDA EP"]}, "--provider"),
    ],
)
def test_remote_command_refuses_shell_syntax(kw, needle):
    args = {"python": "python3", "artifacts": None, "providers": None} | kw
    with pytest.raises(EdgetlError, match=needle) as e:
        remote_bench_args(
            args["python"],
            "b",
            "o",
            artifacts=args["artifacts"],
            batch_sizes=[1],
            budget_s=1.0,
            threads=None,
            providers=args["providers"],
        )
    _one_line(e.value.message)


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"options": ("ProxyCommand=nc evil 22",)}, "Key=Value"),
        ({"options": ("ProxyCommand=/bin/true",)}, "not one a bench needs"),
        ({"options": ("LocalCommand=id",)}, "not one a bench needs"),
        ({"identity": Path("/nonexistent/key")}, "no such key file"),
        ({"connect_timeout_s": 0}, "must be > 0"),
    ],
)
def test_ssh_settings_are_validated(kw, needle):
    with pytest.raises(EdgetlError, match=needle):
        SshSettings(**kw)


def test_ssh_settings_always_bound_the_connection():
    opts = SshSettings(connect_timeout_s=3, options=("Compression=yes",)).argv_options()
    pairs = {opts[i + 1] for i, o in enumerate(opts) if o == "-o"}
    assert {"BatchMode=yes", "ConnectTimeout=3", "ServerAliveInterval=5", "Compression=yes"} <= pairs


def test_hosts_file(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("# lab devices\nnvidia@orin-nano.local\n\n  pi@192.168.1.20:2222   # the Pi\n")
    assert read_hosts_file(f) == ["nvidia@orin-nano.local", "pi@192.168.1.20:2222"]
    f.write_text("nvidia@orin\nroot@host;id\n")
    with pytest.raises(EdgetlError, match=r"hosts:2: remote host: 'root@host;id'"):
        read_hosts_file(f)
    f.write_text("# nothing\n")
    with pytest.raises(EdgetlError, match="no hosts"):
        read_hosts_file(f)
    with pytest.raises(EdgetlError, match="not found"):
        read_hosts_file(tmp_path / "missing")


def test_stage_copies_only_the_requested_artifacts(ssh_bundle, tmp_path):
    stage, nbytes = stage_bundle(ssh_bundle, ssh_bundle / "bench_data.npz", ["fp32"], tmp_path / "stage")
    names = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
    assert names == ["bench_data.npz", "labels/color.txt", "manifest.json", "model.fp32.onnx"]
    assert nbytes == sum((stage / n).stat().st_size for n in names)
    everything, _ = stage_bundle(ssh_bundle, None, None, tmp_path / "all")
    assert (everything / "model.fp32-copy.onnx").is_file() and not (everything / "bench_data.npz").exists()


def test_bad_arguments_fail_before_connecting(ssh_bundle, tmp_path):
    port = free_port()  # nothing listens: reaching it would say "unreachable", not these messages
    host = f"root@127.0.0.1:{port}"
    with pytest.raises(EdgetlError, match=r"unknown device 'jetson-nope'; known devices: .*jetson-orin-nano"):
        bench_remote(ssh_bundle, [host], device="jetson-nope")
    with pytest.raises(EdgetlError, match=r"has no TensorRT int8 engine .*edgetl build .*--int8"):
        bench_remote(ssh_bundle, [host], artifacts=["trt-int8"])
    with pytest.raises(EdgetlError, match="given twice"):
        bench_remote(ssh_bundle, [host, host])
    with pytest.raises(EdgetlError, match="starts with '-'"):
        bench_remote(ssh_bundle, ["-oProxyCommand=id"])


# ------------------------------------------------------------------------------------------- against sshd
def test_remote_bench_runs_torch_free_and_fetches_the_report(sshd, ssh_bundle, light_install, tmp_path):
    wrapper, blocked = light_install
    blocked.write_text("")
    lines: list[str] = []
    report = bench_remote(
        ssh_bundle,
        [sshd.host],
        out=tmp_path / "out",
        python=str(wrapper),
        progress=lines.append,
        **FAST,
        **sshd.client_kwargs(),
    )
    # measured on the "device" and fetched back, re-rendered here
    assert report["host"] == sshd.host and report["mode"] == "measured"
    assert report["remote"]["python"] == str(wrapper) and report["bundle"] == str(ssh_bundle)
    assert report["n_eval"] == N_EXAMPLES
    rows = {r["artifact"]: r for r in report["rows"]}
    assert set(rows) == {"fp32", "fp32-copy"}
    for r in rows.values():
        assert r["status"] == "passed", r
        assert r["metrics"]["color"]["accuracy"] == pytest.approx(1 - N_WRONG / N_EXAMPLES)
        assert r["latency_ms"]["p50_ms"] > 0 and [p["batch"] for p in r["throughput"]] == [1, 2]
    # the device side never tried to import torch or any other heavy package
    attempts = blocked.read_text().split()
    assert not [m for m in attempts if m.split(".")[0] in HEAVY and m.split(".")[0] != "matplotlib"], attempts
    # system info came from the device and flows into bench.md
    assert report["system"]["cpu"]["model"]
    host_dir = tmp_path / "out" / f"{sshd.user}_127.0.0.1_{sshd.port}"
    md = (host_dir / "bench.md").read_text()
    assert f"host: `{sshd.host}`" in md and "- CPU: " in md and "onnxruntime" in md
    assert json.loads((host_dir / "bench.json").read_text())["host"] == sshd.host
    # the job directory on the device was removed
    job = (
        Path.home() / report["remote"]["job_dir"]
        if not report["remote"]["job_dir"].startswith("/")
        else Path(report["remote"]["job_dir"])
    )
    assert not job.exists()
    assert any("copying the bundle" in m for m in lines) and any("done in" in m for m in lines)


def test_bundle_already_on_the_device(sshd, ssh_bundle, light_install, tmp_path):
    """--remote-bundle: bench what is on the device (e.g. engines built there); only bench_data.npz travels."""
    wrapper, _ = light_install
    on_device = make_bundle(tmp_path / "device" / "export")  # has fp32-copy, and its own data is removed
    (on_device / "bench_data.npz").unlink()
    here = make_bundle(tmp_path / "here" / "export", second_artifact=False)
    report = bench_remote(
        here,
        [sshd.host],
        out=tmp_path / "out",
        python=str(wrapper),
        artifacts=["fp32-copy"],
        remote_bundle=str(on_device),
        **FAST,
        **sshd.client_kwargs(),
    )
    assert report["bundle"] == f"{sshd.host}:{on_device}"
    assert report["remote"]["bundle_bytes"] == (here / "bench_data.npz").stat().st_size
    [row] = report["rows"]
    assert row["artifact"] == "fp32-copy" and row["metrics"]["color"]["accuracy"] == pytest.approx(
        1 - N_WRONG / N_EXAMPLES
    )
    assert not (on_device / "bench_data.npz").exists() and not (on_device / "bench.json").exists()  # untouched


def test_device_without_profiles_still_measures(ssh_bundle, tmp_path, monkeypatch):
    """A light install has no devices/ directory: the device measures under its detected name; the host that
    fetches the report (with profiles) names it properly."""
    import edgetl.bench.devices as devices
    from edgetl.bench.harness import bench

    monkeypatch.setattr(devices, "default_profile_dirs", lambda: [tmp_path / "no-profiles"])
    rep = bench(ssh_bundle, "auto", artifacts=["fp32"], batch_sizes=(1,), budget_s=0.05, out=tmp_path)
    assert rep["mode"] == "measured" and rep["rows"][0]["status"] == "passed"
    assert rep["device"] == rep["device_display"] in ("cpu-x86-64", "cpu-arm64")
    with pytest.raises(EdgetlError, match="no device profile for this machine"):
        bench(ssh_bundle, "cpu", estimate=True, out=tmp_path)


def test_unreachable_host_is_one_line(ssh_bundle):
    port = free_port()  # closed: connection refused
    t0 = time.monotonic()
    with pytest.raises(EdgetlError) as e:
        bench_remote(ssh_bundle, [f"root@127.0.0.1:{port}"], connect_timeout_s=5, ssh_config=os.devnull, **FAST)
    msg = _one_line(e.value.message)
    assert msg.startswith(f"root@127.0.0.1:{port}: unreachable over ssh") and "Connection refused" in msg
    assert time.monotonic() - t0 < 30


def test_silent_port_is_bounded_by_the_connect_timeout(ssh_bundle, silent_port):
    """A port that accepts TCP but never speaks SSH (a hung device): ConnectTimeout ends it."""
    port = silent_port
    t0 = time.monotonic()
    with pytest.raises(EdgetlError) as e:
        bench_remote(ssh_bundle, [f"root@127.0.0.1:{port}"], connect_timeout_s=2, ssh_config=os.devnull, **FAST)
    elapsed = time.monotonic() - t0
    msg = _one_line(e.value.message)
    assert f"127.0.0.1:{port}" in msg and ("timed out" in msg or "unreachable" in msg)
    assert elapsed < 20


def test_missing_remote_python_is_one_line(sshd, ssh_bundle):
    with pytest.raises(EdgetlError) as e:
        bench_remote(ssh_bundle, [sshd.host], python="/nonexistent/bin/python3", **FAST, **sshd.client_kwargs())
    msg = _one_line(e.value.message)
    assert "remote python '/nonexistent/bin/python3' not found" in msg and "--remote-python" in msg


def test_device_without_edgetl_says_what_to_install(sshd, ssh_bundle, tmp_path):
    bare = tmp_path / "bare-python"  # a python that cannot see edgetl (isolated mode, no site-packages)
    bare.write_text(f'#!/bin/sh\nexec {sys.base_prefix}/bin/python3 -I -S "$@"\n')
    bare.chmod(0o755)
    with pytest.raises(EdgetlError) as e:
        bench_remote(ssh_bundle, [sshd.host], python=str(bare), **FAST, **sshd.client_kwargs())
    msg = _one_line(e.value.message)
    assert "edgetl is not installed" in msg and "pip install --no-deps edgetl" in msg


def test_remote_error_comes_back_as_one_line(sshd, ssh_bundle, light_install):
    """The device's own one-line error (a GPU provider ONNX Runtime cannot start there) reaches the user."""
    wrapper, _ = light_install
    with pytest.raises(EdgetlError) as e:
        bench_remote(
            ssh_bundle,
            [sshd.host],
            python=str(wrapper),
            artifacts=["fp32"],
            providers=["NopeExecutionProvider"],
            **FAST,
            **sshd.client_kwargs(),
        )
    msg = _one_line(e.value.message)
    assert msg.startswith(f"{sshd.host}: remote bench failed: fp32: load failed")
    assert "'NopeExecutionProvider' is not available" in msg


def test_remote_bench_timeout_is_bounded(sshd, ssh_bundle, tmp_path):
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nsleep 8\n")
    slow.chmod(0o755)
    t0 = time.monotonic()
    with pytest.raises(EdgetlError) as e:
        bench_remote(ssh_bundle, [sshd.host], python=str(slow), timeout_s=1.5, **FAST, **sshd.client_kwargs())
    msg = _one_line(e.value.message)
    assert "the remote bench" in msg and "timed out after 2 s" in msg
    assert time.monotonic() - t0 < 8


def test_cli_single_host(sshd, ssh_bundle, light_install, tmp_path):
    wrapper, _ = light_install
    r = edgetl_cli(
        "bench",
        ssh_bundle,
        "--host",
        sshd.host,
        *sshd.cli_args(),
        "--remote-python",
        wrapper,
        *FAST_CLI,
        "--out",
        tmp_path / "o",
        "--json",
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["host"] == sshd.host and [x["artifact"] for x in rep["rows"]] == ["fp32"]
    dead = free_port()
    r = edgetl_cli("bench", ssh_bundle, "--host", f"root@127.0.0.1:{dead}", "--ssh-config", os.devnull, timeout=120)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "unreachable over ssh" in err[0] and "Traceback" not in r.stderr
