"""Machine facts in bench reports (CPU, GPU + driver, versions, Jetson board / JetPack / power mode / clocks)
and `edgetl bench-merge`: several devices' bench.json in, one device x artifact comparison out."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_remote_sshd import N_EXAMPLES, N_WRONG, make_bundle

from edgetl.bench.merge import load_report, merge_reports, render_markdown, write_comparison
from edgetl.errors import EdgetlError

JETSON_SYSTEM = {
    "arch": "aarch64",
    "python": "3.10.12",
    "os": {"system": "Linux", "release": "5.15.148-tegra", "distribution": "Ubuntu 22.04.5 LTS"},
    "cpu": {"model": "ARMv8 Processor rev 1 (v8l)", "threads": 6, "cores": 6, "flags": {}},
    "memory_gb": 7.4,
    "versions": {"numpy": "1.26.4", "onnxruntime": "1.20.0", "tensorrt": "10.3.0", "edgetl": "0.1.0", "torch": None},
    "gpus": [{"name": "Orin (nvgpu)", "driver": "540.4.0", "memory_mb": None, "compute_capability": "8.7"}],
    "jetson": {
        "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit",
        "l4t": "36.4.3",
        "jetpack": "6.2",
        "jetpack_source": "dpkg nvidia-jetpack",
        "power_mode": {"name": "15W", "id": 0},
        "clocks": "SOC family:tegra234  Machine:NVIDIA Jetson Orin Nano\nGPU MinFreq=306000000 "
        "MaxFreq=624750000 CurrentFreq=624750000\nEMC MinFreq=204000000 MaxFreq=2133000000",
    },
    "errors": [],
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("b") / "export")


@pytest.fixture(scope="module")
def jetson_report(bundle, tmp_path_factory):
    """A real bench, on a machine that sysinfo describes as a Jetson Orin Nano in 15 W mode."""
    import edgetl.bench.sysinfo as sysinfo
    from edgetl.bench.harness import bench

    mp = pytest.MonkeyPatch()
    mp.setattr(sysinfo, "collect_system_info", lambda: json.loads(json.dumps(JETSON_SYSTEM)))
    try:
        out = tmp_path_factory.mktemp("jetson")
        rep = bench(bundle, "auto", batch_sizes=(1,), budget_s=0.05, out=out)
    finally:
        mp.undo()
    return rep, out


@pytest.fixture(scope="module")
def x86_report(bundle, tmp_path_factory):
    from edgetl.bench.harness import bench

    out = tmp_path_factory.mktemp("x86")
    return bench(bundle, "cpu", batch_sizes=(1,), budget_s=0.05, out=out), out


def test_jetson_facts_flow_into_bench_json_and_md(jetson_report):
    rep, out = jetson_report
    assert rep["device"] == "jetson-orin-nano"  # detected from the board model, 15 W: not the Super profile
    saved = json.loads((out / "bench.json").read_text())
    assert saved["system"]["jetson"]["power_mode"] == {"name": "15W", "id": 0}
    assert saved["system"]["gpus"][0]["driver"] == "540.4.0"
    md = (out / "bench.md").read_text()
    assert (
        "- Jetson: NVIDIA Jetson Orin Nano Engineering Reference Developer Kit, JetPack 6.2 (L4T 36.4.3), "
        "power mode 15W (nvpmodel 0)"
    ) in md
    assert "- clocks (`jetson_clocks --show`): SOC family:tegra234" in md and "GPU MinFreq=306000000" in md
    assert "- GPU: Orin (nvgpu) (driver 540.4.0, compute 8.7" in md
    assert "tensorrt 10.3.0" in md and "onnxruntime 1.20.0" in md and "torch" not in md  # absent = not listed
    assert "ARMv8 Processor rev 1 (v8l) (aarch64, 6 threads" in md


def test_merge_two_devices(jetson_report, x86_report, tmp_path):
    reports = [load_report(jetson_report[1] / "bench.json"), load_report(x86_report[1] / "bench.json")]
    merged = merge_reports(
        reports, failures=[{"host": "nvidia@orin-nx", "error": "nvidia@orin-nx: unreachable over ssh (x)"}]
    )
    labels = [d["label"] for d in merged["devices"]]
    assert labels == ["jetson-orin-nano", "cpu-x86-64", "nvidia@orin-nx"]
    pairs = [(r["device"], r["artifact"]) for r in merged["rows"]]
    assert pairs == [(d, a) for d in labels[:2] for a in ("fp32", "fp32-copy")] + [("nvidia@orin-nx", "-")]
    acc = 100 * (1 - N_WRONG / N_EXAMPLES)
    assert all(r["scores"]["color"] == pytest.approx(acc) for r in merged["rows"][:4])
    assert merged["rows"][-1]["status"] == "FAILED: unreachable over ssh (x)"
    assert merged["consistency"]["fp32"]["color"]["spread"] == 0.0
    assert merged["devices"][0]["system"]["jetson"]["power_mode"] == "15W"
    paths = write_comparison(merged, tmp_path)
    assert set(paths) == {"json", "md", "png"} and paths["png"].stat().st_size > 5000
    md = paths["md"].read_text()
    assert (
        "Jetson NVIDIA Jetson Orin Nano Engineering Reference Developer Kit, JetPack 6.2 (L4T 36.4.3), power mode 15W"
        in md
    )
    assert "GPU Orin (nvgpu) (driver 540.4.0, compute 8.7)" in md
    assert "| jetson-orin-nano | fp32 | fp32 |" in md and "| nvidia@orin-nx | - |" in md
    assert json.loads(paths["json"].read_text())["files"]["png"] == str(paths["png"])


def test_repeated_labels_are_numbered(x86_report):
    rep = load_report(x86_report[1] / "bench.json")
    merged = merge_reports([rep, rep])
    assert [d["label"] for d in merged["devices"]] == ["cpu-x86-64", "cpu-x86-64 #2"]
    assert "cpu-x86-64 #2" in render_markdown(merged)


def test_conflicting_task_kinds_are_refused(x86_report):
    a = load_report(x86_report[1] / "bench.json")
    b = json.loads(json.dumps(a))
    b["tasks"]["color"] = "regression"
    with pytest.raises(EdgetlError, match="task 'color' is 'regression' here but 'classification'"):
        merge_reports([a, b])


def test_bench_merge_cli(jetson_report, x86_report, tmp_path):
    out = tmp_path / "cmp"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetl",
            "bench-merge",
            str(jetson_report[1] / "bench.json"),
            str(x86_report[1] / "bench.json"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "2 of 2 devices" in r.stdout and (out / "compare.png").is_file()
    assert [d["label"] for d in json.loads((out / "compare.json").read_text())["devices"]] == [
        "jetson-orin-nano",
        "cpu-x86-64",
    ]


@pytest.mark.parametrize(
    "content,needle",
    [
        ("{not json", "invalid JSON at line 1"),
        ('{"schema": "something-else"}', "not an edgetl bench report (schema 'something-else'"),
        ('{"schema": "edgetl-bench/1", "tasks": {}}', "bench report lacks field 'rows'"),
    ],
)
def test_bench_merge_bad_files_are_one_line(tmp_path, content, needle):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = subprocess.run(
        [sys.executable, "-m", "edgetl", "bench-merge", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: {bad}: ") and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
