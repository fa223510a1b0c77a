"""Merge bench reports from several devices into one comparison: device x artifact, latency and accuracy.

`merge_reports(reports)` takes `bench.json` dicts (measured or estimated, local or fetched from a remote
device) plus, for a fleet run, the hosts that failed; `write_comparison(merged, out_dir)` writes
`compare.json` (for programs), `compare.md` (for people) and `compare.png` (latency and accuracy per
artifact, one bar per device). `edgetl bench-merge a.json b.json --out DIR` is the CLI over both, and a
fleet bench (`edgetl bench BUNDLE --host a --host b`) ends with the same files.

Devices are labelled by the ssh host they were measured on (when remote), else by the device profile name;
a label that repeats gets `#2`, `#3`. Torch-free; matplotlib only for the PNG (skipped without it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from edgetl.bench.report import machine_name
from edgetl.errors import EdgetlError
from edgetl.runtime.artifacts import headline_value, in_points, infer_kind
from edgetl.runtime.limits import regular_file
from edgetl.runtime.tasks import get_kind

__all__ = [
    "SCHEMA",
    "comparison_table",
    "load_report",
    "merge_reports",
    "print_comparison",
    "render_markdown",
    "render_png",
    "system_summary",
    "write_comparison",
]

SCHEMA = "edgetl-bench-compare/1"
BENCH_SCHEMA = "edgetl-bench/1"


# ------------------------------------------------------------------------------------------------ loading
def load_report(path: str | Path) -> dict:
    """Read one `bench.json`; anything that is not one is a one-line error naming the file."""
    p = Path(path)
    if p.exists():
        regular_file(p, "bench report")  # a FIFO would block the read
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgetlError(f"{p}: not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgetlError(f"{p}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise EdgetlError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict) or data.get("schema") != BENCH_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise EdgetlError(f"{p}: not an edgetl bench report (schema {got!r}, expected {BENCH_SCHEMA!r})")
    for key in ("rows", "tasks", "device"):
        if key not in data:
            raise EdgetlError(f"{p}: bench report lacks field {key!r}")
    data.setdefault("source", str(p))
    return data


# ------------------------------------------------------------------------------------------------ merging
def system_summary(system: dict | None) -> dict:
    """The facts a comparison row needs from a report's `system`: CPU, GPUs + driver, versions, Jetson."""
    system = system or {}
    cpu = system.get("cpu") or {}
    jetson = system.get("jetson") or None
    versions = system.get("versions") or {}
    out = {
        "cpu": cpu.get("model") if isinstance(cpu, dict) else None,
        "arch": system.get("arch"),
        "threads": cpu.get("threads") if isinstance(cpu, dict) else None,
        "memory_gb": system.get("memory_gb"),
        "gpus": [
            {"name": g.get("name"), "driver": g.get("driver"), "compute_capability": g.get("compute_capability")}
            for g in system.get("gpus") or []
        ],
        "versions": {k: versions.get(k) for k in ("edgetl", "onnxruntime", "tensorrt", "numpy") if versions.get(k)},
        "jetson": None,
    }
    if jetson:
        pm = jetson.get("power_mode") or {}
        out["jetson"] = {
            "model": jetson.get("model"),
            "jetpack": jetson.get("jetpack"),
            "l4t": jetson.get("l4t"),
            "power_mode": pm.get("name"),
            "power_mode_id": pm.get("id"),
            "clocks": "recorded" if jetson.get("clocks") else None,
        }
    return out


def _mean_score(metrics: dict | None, kinds: dict[str, str]) -> float | None:
    """Mean of the tasks' accuracy-like scores in % (accuracy / micro-F1); None for regression-only reports."""
    if not metrics:
        return None
    vals = []
    for t, m in metrics.items():
        if not isinstance(m, dict):
            continue
        k = kinds.get(t) or infer_kind(m)
        v = headline_value(m, k) if k is not None and in_points(k) else None
        if v is not None:
            vals.append(100.0 * v)
    return sum(vals) / len(vals) if vals else None


def _task_score(m: dict | None, kind: str) -> float | None:
    if not isinstance(m, dict):
        return None
    v = headline_value(m, kind)
    return None if v is None else (100.0 * v if in_points(kind) else v)


def _unique_label(label: str, used: set[str]) -> str:
    if label not in used:
        used.add(label)
        return label
    i = 2
    while f"{label} #{i}" in used:
        i += 1
    used.add(f"{label} #{i}")
    return f"{label} #{i}"


def merge_reports(reports: Sequence[dict], failures: Iterable[dict] = ()) -> dict:
    """One comparison dict from bench reports (+ failed hosts: `{"label"/"host", "error"}`), in the given order."""
    failures = list(failures)
    if not reports and not failures:
        raise EdgetlError("bench-merge: no reports to merge")
    tasks: dict[str, str] = {}
    for r in reports:
        for t, k in (r.get("tasks") or {}).items():
            if tasks.setdefault(t, k) != k:
                raise EdgetlError(
                    f"{r.get('source', 'report')}: task {t!r} is {k!r} here but {tasks[t]!r} in another report"
                )
    used: set[str] = set()
    devices, rows = [], []
    for r in reports:
        label = _unique_label(r.get("host") or r.get("device") or "?", used)
        devices.append(
            {
                "label": label,
                "status": "ok",
                "host": r.get("host"),
                "device": r.get("device"),
                "device_display": r.get("device_display", r.get("device")),
                "mode": r.get("mode"),
                "machine": r.get("machine")
                or (machine_name(r.get("system") or {}) if r.get("mode") == "measured" else None),
                "bundle": r.get("bundle"),
                "created_utc": r.get("created_utc"),
                "n_eval": r.get("n_eval", 0),
                "split": r.get("split"),
                "threads": r.get("threads"),
                "source": r.get("source"),
                "system": system_summary(r.get("system")),
                "wall_s": (r.get("remote") or {}).get("wall_s"),
                "warnings": list(r.get("warnings") or []),
            }
        )
        kinds = r.get("tasks") or {}
        for row in r.get("rows") or []:
            lat = row.get("latency_ms") or {}
            thr = [p.get("items_per_s") for p in row.get("throughput") or [] if p.get("items_per_s")]
            rows.append(
                {
                    "device": label,
                    "artifact": row.get("artifact"),
                    "backend": row.get("backend"),
                    "precision": row.get("precision"),
                    "kind": row.get("kind"),
                    "size_mb": row.get("size_mb"),
                    "p50_ms": lat.get("p50_ms"),
                    "p90_ms": lat.get("p90_ms"),
                    "p99_ms": lat.get("p99_ms"),
                    "compute_p50_ms": (row.get("compute_latency_ms") or {}).get("p50_ms"),
                    "compute_timer": row.get("compute_timer"),
                    "best_items_per_s": max(thr) if thr else None,
                    "speedup_vs_fp32": row.get("speedup_vs_fp32"),
                    "scores": {t: _task_score((row.get("metrics") or {}).get(t), k) for t, k in kinds.items()},
                    "mean_score": _mean_score(row.get("metrics"), kinds),
                    "status": row.get("warning") or row.get("status", "-"),
                }
            )
    for f in failures:
        label = _unique_label(str(f.get("label") or f.get("host") or "?"), used)
        devices.append(
            {
                "label": label,
                "status": "failed",
                "host": f.get("host"),
                "error": f.get("error"),
                "wall_s": f.get("wall_s"),
            }
        )
        err = str(f.get("error"))
        for prefix in (f"{label}: ", f"{f.get('host')}: "):
            err = err[len(prefix) :] if err.startswith(prefix) else err
        rows.append({"device": label, "artifact": "-", "status": f"FAILED: {err}", "scores": {}})
    return {
        "schema": SCHEMA,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tasks": tasks,
        "devices": devices,
        "rows": rows,
        "consistency": _consistency(rows, tasks),
    }


def _consistency(rows: list[dict], tasks: dict[str, str]) -> dict:
    """Per measured artifact and task: the spread of the score across devices (same bundle, same data:
    a spread beyond a few tenths of a point means a device computes something different)."""
    by: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r.get("kind") != "measured":
            continue
        for t, v in (r.get("scores") or {}).items():
            if v is not None:
                by.setdefault(r["artifact"], {}).setdefault(t, []).append(v)
    return {
        a: {t: {"devices": len(v), "spread": max(v) - min(v)} for t, v in ts.items() if len(v) > 1}
        for a, ts in by.items()
        if any(len(v) > 1 for v in ts.values())
    }


# ------------------------------------------------------------------------------------------------ output
def _f(v, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def comparison_table(merged: dict) -> tuple[list[str], list[list[str]]]:
    tasks = merged["tasks"]
    header = (
        ["device", "artifact", "prec", "p50 ms", "p99 ms", "compute p50", "thru /s", "x fp32"]
        + [f"{t} {get_kind(k).table_label}" for t, k in tasks.items()]
        + ["status"]
    )
    out = []
    for r in merged["rows"]:
        est = r.get("kind") == "estimated"
        backend = r.get("backend") or ""
        name = (
            r["artifact"] if backend in ("", "onnxruntime", "pytorch-eager") or est else f"{r['artifact']} ({backend})"
        )
        p50 = _f(r.get("p50_ms"))
        out.append(
            [
                r["device"],
                name,
                r.get("precision") or "-",
                f"~{p50} (est.)" if est and p50 != "-" else p50,
                _f(r.get("p99_ms")),
                _f(r.get("compute_p50_ms")),
                _f(r.get("best_items_per_s"), ".0f"),
                _f(r.get("speedup_vs_fp32")),
                *[_f(r["scores"].get(t), ".2f" if in_points(k) else ".3f") for t, k in tasks.items()],
                str(r.get("status", "-")),
            ]
        )
    return header, out


def _device_line(d: dict) -> str:
    if d["status"] != "ok":
        err = str(d.get("error"))
        return f"- **{d['label']}**: FAILED: {err[len(d['label']) + 2 :] if err.startswith(d['label'] + ': ') else err}"
    s = d.get("system") or {}
    what = (
        f"{d['machine']} ({d.get('mode')}; profile {d.get('device')})"
        if d.get("machine")
        else f"{d.get('device_display') or d.get('device')} ({d.get('mode')})"
    )
    parts = [what, f"CPU {s.get('cpu') or '?'}"]
    for g in s.get("gpus") or []:
        parts.append(
            f"GPU {g.get('name')} (driver {g.get('driver') or '?'}, compute {g.get('compute_capability') or '?'})"
        )
    j = s.get("jetson")
    if j:
        parts.append(
            f"Jetson {j.get('model') or '?'}, JetPack {j.get('jetpack') or '?'} (L4T {j.get('l4t') or '?'}), "
            f"power mode {j.get('power_mode') or '?'}"
            + (f" (id {j['power_mode_id']})" if j.get("power_mode_id") is not None else "")
        )
    vers = s.get("versions") or {}
    if vers:
        parts.append(", ".join(f"{k} {v}" for k, v in vers.items()))
    if d.get("threads"):
        parts.append(f"{d['threads']} threads")
    if d.get("wall_s") is not None:
        parts.append(f"{d['wall_s']:.0f} s end to end")
    return f"- **{d['label']}**: " + "; ".join(parts)


def render_markdown(merged: dict) -> str:
    header, rows = comparison_table(merged)
    lines = [f"# edgetl bench comparison ({len(merged['devices'])} devices)", "", f"- created: {merged['created_utc']}"]
    lines += [_device_line(d) for d in merged["devices"]]
    for d in merged["devices"]:
        for w in d.get("warnings") or []:
            lines.append(f"- warning ({d['label']}): {w}")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    spread = [(a, t, v) for a, ts in merged.get("consistency", {}).items() for t, v in ts.items()]
    if spread:
        lines += ["", "Accuracy spread across devices (same bundle, same held-out data; points):", ""]
        lines += [f"- {a} / {t}: {v['spread']:.2f} over {v['devices']} devices" for a, t, v in spread]
    return "\n".join(lines) + "\n"


def print_comparison(merged: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 120))
    header, rows = comparison_table(merged)
    ok = sum(d["status"] == "ok" for d in merged["devices"])
    t = Table(title=f"edgetl bench — {ok} of {len(merged['devices'])} devices")
    for h in header:
        t.add_column(
            h,
            justify="left" if h in ("device", "artifact", "prec", "status") else "right",
            no_wrap=h in ("device", "artifact"),
        )
    for r in rows:
        t.add_row(*r, style="red" if r[-1].startswith("FAILED") else None)
    console.print(t)


def render_png(merged: dict, path: Path) -> Path | None:
    """Two panels: p50 latency at batch 1 (log) and mean task accuracy, per artifact, one bar per device."""
    ok = [d["label"] for d in merged["devices"] if d["status"] == "ok"]
    rows = [r for r in merged["rows"] if r["device"] in ok and r.get("p50_ms") is not None]
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    artifacts = list(dict.fromkeys(r["artifact"] for r in rows))
    devs = [d for d in ok if any(r["device"] == d for r in rows)]
    width = 0.8 / max(len(devs), 1)
    fig, (ax_l, ax_a) = plt.subplots(
        1, 2, figsize=(max(8.0, 1.2 * len(artifacts) * max(1.0, len(devs) / 2) + 5), 4.4), dpi=110
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for i, dev in enumerate(devs):
        color = colors[i % len(colors)]
        xs, lat, acc_x, acc = [], [], [], []
        for j, a in enumerate(artifacts):
            r = next((r for r in rows if r["device"] == dev and r["artifact"] == a), None)
            if r is None:
                continue
            x = j - 0.4 + width * (i + 0.5)
            xs.append(x)
            lat.append(r["p50_ms"])
            if r.get("mean_score") is not None:
                acc_x.append(x)
                acc.append(r["mean_score"])
        est = any(r["device"] == dev and r.get("kind") == "estimated" for r in rows)
        bars = ax_l.bar(
            xs, lat, width, label=dev + (" (estimated)" if est else ""), color=color, hatch="//" if est else None
        )
        ax_l.bar_label(bars, labels=[f"{v:.3g}" for v in lat], fontsize=6, padding=1)
        ax_a.plot(acc_x, acc, "o", color=color, label=dev)
        for x, y in zip(acc_x, acc):
            ax_a.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=6)
    for ax in (ax_l, ax_a):
        ax.set_xticks(range(len(artifacts)))
        ax.set_xticklabels(artifacts, rotation=20, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(artifacts) - 0.4)
        ax.grid(True, axis="y", alpha=0.3)
    lats = [r["p50_ms"] for r in rows if r["p50_ms"] > 0]
    if lats and max(lats) / min(lats) > 30:  # several orders of magnitude (a Jetson next to an H100): log axis
        ax_l.set_yscale("log")
        ax_l.set_ylabel("p50 latency, batch 1 (ms, log scale)")
    else:
        ax_l.set_ylabel("p50 latency, batch 1 (ms)")
    ax_a.set_ylabel("mean task accuracy (%)")
    scores = [r["mean_score"] for r in rows if r.get("mean_score") is not None]
    if scores:
        lo, hi = min(scores), max(scores)
        pad = max(1.0, 0.15 * (hi - lo))
        ax_a.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
    ax_l.legend(fontsize=7, loc="best")
    failed = [d["label"] for d in merged["devices"] if d["status"] != "ok"]
    fig.suptitle(
        "edgetl bench: device x artifact" + (f"  (failed: {', '.join(failed)})" if failed else ""), fontsize=10
    )
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_comparison(merged: dict, out_dir: str | Path, stem: str = "compare") -> dict[str, Path]:
    """compare.json / compare.md / compare.png in `out_dir` (atomic writes); sets merged["files"]."""
    from edgetl.runtime.atomic import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    atomic_write_text(paths["md"], render_markdown(merged))
    png = render_png(merged, out_dir / f"{stem}.png")
    if png:
        paths["png"] = png
    merged["files"] = {k: str(v) for k, v in paths.items()}
    atomic_write_text(paths["json"], json.dumps(merged, indent=2, default=float) + "\n")
    return paths
