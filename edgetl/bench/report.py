"""Bench reports for people (rich table, Markdown, a latency-vs-accuracy PNG) from the JSON for programs."""

from __future__ import annotations

from pathlib import Path

from edgetl.runtime.artifacts import format_headline, headline_value, in_points, infer_kind
from edgetl.runtime.tasks import get_kind


def machine_name(system: dict) -> str:
    """The hardware that ran a measurement, from its system info: the Jetson board, else the CPU model (and
    GPUs). Device profiles are approximations of classes of machines; a report names the actual one."""
    system = system or {}
    jet = system.get("jetson") or {}
    if jet.get("model"):
        return str(jet["model"])
    cpu = system.get("cpu") if isinstance(system.get("cpu"), dict) else {}
    name = " ".join(str(cpu.get("model") or system.get("cpu_model") or system.get("arch") or "unknown CPU").split())
    gpus = [g.get("name") for g in system.get("gpus") or [] if g.get("name")]
    return name + (f" + {', '.join(gpus)}" if gpus else "")


def report_title(report: dict) -> str:
    """`<machine that ran it> (MEASURED, profile <name>)`, or the profile for estimates (nothing ran)."""
    if report["mode"] == "estimated":
        return f"{report['device_display']} (ESTIMATED from profile {report['device']})"
    machine = report.get("machine") or machine_name(report.get("system") or {})
    where = f" on {report['host']}" if report.get("host") else ""
    return f"{machine}{where} (MEASURED; profile {report['device']})"


def _acc(row: dict, task: str, kind: str) -> str:
    m = row.get("metrics", {}).get(task)
    if not m:
        return "-"
    return format_headline(kind, headline_value(m, kind), unit=True)


def _frames_at_best(r: dict) -> str:
    """End to end at the best batch: frames per second through Predictor.predict, and that batch."""
    fb = r.get("frame_best_batch")
    if fb:
        return f"{fb['frames_per_s']:.0f} @{fb['batch']}"
    if "frame_latency_ms" in r:
        return f"{1000.0 / max(r['frame_latency_ms']['p50_ms'], 1e-9):.0f} @1"
    return "-"


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """One row per artifact: latency at batch 1 (end to end), best throughput, speed-up and accuracy per task."""
    tasks = report["tasks"]
    header = (
        [
            "artifact",
            "prec",
            "MB",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "compute p50",
            "frame p50",
            "frames/s @b",
            "thru /s",
            "x fp32",
        ]  # fmt: skip
        + [f"{t} {get_kind(k).table_label}" for t, k in tasks.items()]
        + ["status"]
    )
    rows = []
    for r in report["rows"]:
        lat = r.get("latency_ms", {})
        est = r.get("kind") == "estimated"
        thr = max((p["items_per_s"] for p in r.get("throughput", [])), default=None)
        plain = est or r.get("backend", "onnxruntime") in ("onnxruntime", "pytorch-eager")
        name = r["artifact"] if plain else f"{r['artifact']} ({r['backend']})"
        rows.append(
            [
                name,
                r.get("precision", "-"),
                f"{r['size_mb']:.1f}" if "size_mb" in r else "-",
                (f"~{lat['p50_ms']:.2f}" if est else f"{lat['p50_ms']:.2f}") if "p50_ms" in lat else "-",
                f"{lat['p90_ms']:.2f}" if "p90_ms" in lat else "-",
                f"{lat['p99_ms']:.2f}" if "p99_ms" in lat else "-",
                f"{r['compute_latency_ms']['p50_ms']:.2f}" if "compute_latency_ms" in r else "-",
                f"{r['frame_latency_ms']['p50_ms']:.2f}" if "frame_latency_ms" in r else "-",
                _frames_at_best(r),
                f"{thr:.0f}" if thr else "-",
                f"{r['speedup_vs_fp32']:.2f}" if "speedup_vs_fp32" in r else "-",
                *[_acc(r, t, k) for t, k in tasks.items()],
                r.get("warning") or r.get("status", "-"),
            ]
        )
    return header, rows


def load_failures(report: dict) -> tuple[list[str], int]:
    """(one line per artifact that could not be loaded, number of rows that did measure something)."""
    failures = [
        f"{r['artifact']}: {r['status']}"
        for r in report.get("rows", [])
        if str(r.get("status", "")).startswith("load failed")
    ]
    ok = sum(1 for r in report.get("rows", []) if "latency_ms" in r)
    return failures, ok


def print_table(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 120))
    header, rows = table_rows(report)
    t = Table(
        title=f"edgetl bench — {report_title(report)} — {report.get('n_eval', 0)} {report.get('split') or ''} examples"
    )
    for h in header:
        t.add_column(h, justify="left" if h in ("artifact", "backend", "prec", "status") else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    if report["mode"] == "estimated":
        console.print("[yellow]estimated from the device profile (roofline over the ONNX graph), not measured[/]")
    elif report.get("timing"):
        console.print(f"timing: {report['timing']['how']}", highlight=False)
    for w in report.get("warnings") or []:
        console.print(f"[yellow]warning: {w}[/]", highlight=False)


def system_lines(report: dict) -> list[str]:
    """Markdown bullets for the machine a report was measured on: host, CPU, GPUs + driver, library versions,
    Jetson board / JetPack / power mode / clocks (from `edgetl.bench.sysinfo`, collected on the device)."""
    sysinfo = report.get("system") or {}
    cpu = sysinfo.get("cpu") if isinstance(sysinfo.get("cpu"), dict) else {}
    lines = []
    if report.get("host"):
        lines.append(f"- host: `{report['host']}` (over ssh)")
    threads = f", {report['threads']} inference threads" if report.get("threads") else ""
    lines.append(
        f"- CPU: {cpu.get('model') or sysinfo.get('cpu_model') or '?'} ({sysinfo.get('arch') or '?'}, "
        f"{cpu.get('threads') or '?'} threads{threads}); memory {sysinfo.get('memory_gb') or '?'} GB"
    )
    for g in sysinfo.get("gpus") or []:
        lines.append(
            f"- GPU: {g.get('name')} (driver {g.get('driver') or '?'}, compute {g.get('compute_capability') or '?'}, "
            f"{g.get('memory_mb') or '?'} MB)"
        )
    jet = sysinfo.get("jetson")
    if jet:
        pm = jet.get("power_mode") or {}
        mode = f"{pm.get('name') or '?'}" + (f" (nvpmodel {pm['id']})" if pm.get("id") is not None else "")
        lines.append(
            f"- Jetson: {jet.get('model') or '?'}, JetPack {jet.get('jetpack') or '?'} "
            f"(L4T {jet.get('l4t') or '?'}), power mode {mode}"
        )
        if jet.get("clocks"):
            first = [ln.strip() for ln in str(jet["clocks"]).splitlines() if ln.strip()][:6]
            lines.append("- clocks (`jetson_clocks --show`): " + "; ".join(first))
    vers = {k: v for k, v in (sysinfo.get("versions") or {}).items() if v}
    if vers:
        lines.append(
            "- versions: "
            + ", ".join(f"{k} {v}" for k, v in vers.items())
            + (f", python {sysinfo['python']}" if sysinfo.get("python") else "")
        )
    os_ = sysinfo.get("os") or {}
    if os_.get("distribution") or os_.get("release"):
        lines.append(
            f"- OS: {os_.get('distribution') or os_.get('system') or '?'} (kernel {os_.get('release') or '?'})"
        )
    for w in report.get("warnings") or []:
        lines.append(f"- warning: {w}")
    return lines


def render_markdown(report: dict) -> str:
    header, rows = table_rows(report)
    timing = [f"- timing: {report['timing']['how']}"] if report.get("timing") else []
    lines = [
        f"# edgetl bench: {report_title(report)}",
        "",
        f"- bundle: `{report['bundle']}`",
        f"- created: {report['created_utc']}",
        *system_lines(report),
        *timing,
        f"- evaluation: {report.get('n_eval', 0)} examples of the {report.get('split')} split",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if report["mode"] == "estimated":
        lines += ["", "_Latencies are estimates from the device profile, not measurements._"]
    return "\n".join(lines) + "\n"


def render_pareto_png(report: dict, path: Path) -> Path | None:
    """Latency (x, log) vs mean task score (y) per artifact: the trade-off a person wants to see."""
    pts = []
    for r in report["rows"]:
        lat = r.get("latency_ms", {}).get("p50_ms")
        m = r.get("metrics")
        if lat is None or not m:
            continue
        kinds = report.get("tasks") or {}
        scores = []
        for t, v in m.items():
            k = kinds.get(t) or infer_kind(v)
            s = headline_value(v, k) if k is not None and in_points(k) else None
            if s is not None:
                scores.append(s)
        if scores:
            pts.append((r["artifact"], lat, 100 * sum(scores) / len(scores)))
    if not pts:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import io

    from edgetl.runtime.atomic import atomic_write_bytes

    fig = pareto_figure(report, pts, plt)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())  # a full disk: one line, no half-written .png left
    return path


def pareto_figure(report: dict, pts: list[tuple[str, float, float]], plt):
    """The bench.png figure (separate from saving so tests can check that the title fits inside it)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, x, y in pts:
        ax.scatter(x, y, s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, batch 1 (ms, log)")
    ax.set_ylabel("mean task accuracy (%)")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, min(hi, 100.5))  # no axis room above 100 %
    import textwrap

    # the machine's name can be long (a full CPU model string): wrap it rather than let it run off the figure
    ax.set_title("\n".join(textwrap.wrap(f"latency vs accuracy: {report_title(report)}", 60)), fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
