"""Test support for remote benches: a REAL OpenSSH server on 127.0.0.1, a tiny torch-free bundle, and a
"light install" python that cannot import torch. Imported by test_remote.py / test_fleet.py; the tests here
check the support itself (sshd starts, accepts our key, and is gone after stop()).

Only loopback addresses are used. Every sshd started here is stopped by its fixture's finalizer.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SSHD = "/usr/sbin/sshd"
LABELS = ["red", "green", "blue"]
N_EXAMPLES = 40
N_WRONG = 10  # labels deliberately wrong in the bench data: every artifact scores exactly 75 %
FAST_CLI = ("--artifact", "fp32", "--batch", "1", "--budget", "0.05")  # `edgetl bench` flags: one quick row
HEAVY = (
    "torch",
    "torchvision",
    "transformers",
    "timm",
    "modelopt",
    "sklearn",
    "safetensors",
    "onnx",
    "onnxslim",
    "matplotlib",
    "scipy",
)


def ssh_tools_missing() -> str | None:
    missing = [t for t in (SSHD,) if not os.path.exists(t)] + [
        t for t in ("ssh", "scp", "ssh-keygen") if shutil.which(t) is None
    ]
    return (
        f"OpenSSH not installed here (missing {', '.join(missing)}); apt install openssh-server openssh-client"
        if missing
        else None
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshServer:
    """`sshd -D -e` on 127.0.0.1:<free port> with keys, config and pid file under `root`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.key = self.root / "client_key"
        self.log = self.root / "sshd.log"

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def start(self) -> SshServer:
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / name)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        shutil.copy(self.root / "client_key.pub", self.root / "authorized_keys")
        # the client pins this server's key (StrictHostKeyChecking=yes), as a real bench would
        host_pub = (self.root / "host_key.pub").read_text().split()
        (self.root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        (self.root / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.root / 'host_key'}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 50",
                    "MaxSessions 50",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-f", str(self.root / "sshd_config"), "-D", "-e"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-400:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"sshd did not start on 127.0.0.1:{self.port}: {' '.join(tail.split())}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def client_kwargs(self) -> dict:
        """bench_remote keyword arguments that reach this server without touching ~/.ssh."""
        return {
            "identity": self.key,
            "ssh_config": os.devnull,
            "ssh_options": ["StrictHostKeyChecking=yes", f"UserKnownHostsFile={self.root / 'known_hosts'}"],
        }

    def cli_args(self) -> list[str]:
        return [
            "--identity",
            str(self.key),
            "--ssh-config",
            os.devnull,
            "--ssh-option",
            "StrictHostKeyChecking=yes",
            "--ssh-option",
            f"UserKnownHostsFile={self.root / 'known_hosts'}",
        ]


def start_sshd(root: Path) -> SshServer:
    """Start a server or skip the test with the reason (OpenSSH missing, or sshd refusing to start here)."""
    reason = ssh_tools_missing()
    if reason:
        pytest.skip(reason)
    try:
        return SshServer(root).start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot run a test sshd on this machine: {e}")


# --------------------------------------------------------------------------------------------- bundle
def make_bundle(root: Path, *, second_artifact: bool = True) -> Path:
    """A tiny image bundle built with onnx.helper (no torch): class = the brightest channel.

    bench_data.npz holds 40 images whose labels are right for 30 of them, so accuracy is exactly 0.75.
    """
    import onnx
    from helpers import image_input, onnx_artifact
    from onnx import TensorProto, helper

    from edgetl.runtime.atomic import atomic_write_bytes
    from edgetl.runtime.manifest import SCHEMA_VERSION, bundle_file_hashes, write_manifest

    bundle = Path(root)
    bundle.mkdir(parents=True, exist_ok=True)
    w = np.eye(3, dtype=np.float32) * 4.0
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W"], ["color"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("color", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor("W", TensorProto.FLOAT, [3, 3], w.flatten().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    files = {"fp32": "model.fp32.onnx"} | ({"fp32-copy": "model.fp32-copy.onnx"} if second_artifact else {})
    for f in files.values():
        atomic_write_bytes(bundle / f, model.SerializeToString())
    (bundle / "labels").mkdir(exist_ok=True)
    (bundle / "labels" / "color.txt").write_text("\n".join(LABELS) + "\n")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "producer": {"name": "edgetl", "version": "0.1.0", "libraries": {}},
        "created_utc": "2026-01-01T00:00:00Z",
        "backbone": "tiny",
        "input": image_input(),
        "tasks": [{"name": "color", "kind": "classification", "labels": LABELS, "output": "color"}],
        "artifacts": {
            name: onnx_artifact(bundle / f, accuracy={"color": 0.75}, quantization=None) for name, f in files.items()
        },
        "files": bundle_file_hashes(bundle),
    }
    write_manifest(bundle, manifest)
    rng = np.random.default_rng(0)
    truth = np.arange(N_EXAMPLES) % 3
    images = rng.integers(0, 60, size=(N_EXAMPLES, 8, 8, 3), dtype=np.uint8)
    images[np.arange(N_EXAMPLES), :, :, truth] += 150
    labels = truth.copy()
    labels[:N_WRONG] = (labels[:N_WRONG] + 1) % 3
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        images=images,
        **{"target.color": labels.astype(np.int64)},
        meta=np.array(
            json.dumps(
                {"split": "test", "n": N_EXAMPLES, "labels": {"color": LABELS}, "kinds": {"color": "classification"}}
            )
        ),
    )
    (bundle / "bench_data.npz").write_bytes(buf.getvalue())
    return bundle


def light_python(root: Path) -> tuple[Path, Path]:
    """A python for the "device" that behaves like the light install: importing torch & co fails.

    Returns (wrapper script to pass as --remote-python, log file of every blocked import attempt).
    """
    root = Path(root)
    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    log = root / "blocked.log"
    log.write_text("")
    (site / "sitecustomize.py").write_text(f'''
import sys
_HEAVY = {HEAVY!r}
_LOG = {str(log)!r}


class _LightInstall:
    """Import finder of a device without torch: heavy packages are absent, and every attempt is logged."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _HEAVY:
            with open(_LOG, "a") as fh:
                fh.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (light install)", name=name)
        return None


sys.meta_path.insert(0, _LightInstall())
''')
    wrapper = root / "python-light"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={site}\nexport PYTHONPATH\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


# ------------------------------------------------------------------------------------------ self-tests
def test_sshd_accepts_our_key_and_stops(tmp_path):
    server = start_sshd(tmp_path / "sshd")
    try:
        out = subprocess.run(
            [
                "ssh",
                "-F",
                os.devnull,
                "-i",
                str(server.key),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-p",
                str(server.port),
                "--",
                f"{server.user}@127.0.0.1",
                "echo",
                "ok",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"
    finally:
        server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_light_python_blocks_torch(tmp_path):
    wrapper, log = light_python(tmp_path)
    r = subprocess.run(
        [
            str(wrapper),
            "-c",
            "import numpy, onnxruntime\ntry:\n import torch\nexcept ImportError as e:\n print('blocked', e.name)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "blocked torch"
    assert log.read_text().split() == ["torch"]


def test_tiny_bundle_scores_75_percent(tmp_path):
    from edgetl.bench.harness import BenchData, _accuracy
    from edgetl.runtime import Predictor

    bundle = make_bundle(tmp_path / "b")
    data = BenchData(bundle / "bench_data.npz")
    acc = _accuracy(Predictor.load(bundle).predict_arrays, data)["color"]["accuracy"]
    assert acc == pytest.approx(1 - N_WRONG / N_EXAMPLES)
