"""Bench reports for people (rich table, Markdown, a latency-vs-accuracy PNG) from the JSON for programs."""

from __future__ import annotations

from pathlib import Path


def _acc(row: dict, task: str, kind: str) -> str:
    m = row.get("metrics", {}).get(task)
    if not m:
        return "-"
    if kind == "regression":
        return f"{m['mae']:.3f} MAE"
    v = m.get("accuracy", m.get("micro_f1"))
    return f"{100 * v:.2f}"


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """One row per artifact: latency at batch 1 (end to end), best throughput, speed-up and accuracy per task."""
    tasks = report["tasks"]
    header = ["artifact", "prec", "MB", "p50 ms", "p90 ms", "p99 ms", "compute p50", "thru /s", "x fp32"] + \
        [f"{t} acc" for t in tasks] + ["status"]
    rows = []
    for r in report["rows"]:
        lat = r.get("latency_ms", {})
        est = r.get("kind") == "estimated"
        thr = max((p["items_per_s"] for p in r.get("throughput", [])), default=None)
        plain = est or r.get("backend", "onnxruntime") in ("onnxruntime", "pytorch-eager")
        name = r["artifact"] if plain else f"{r['artifact']} ({r['backend']})"
        rows.append([
            name, r.get("precision", "-"), f"{r['size_mb']:.1f}" if "size_mb" in r else "-",
            (f"~{lat['p50_ms']:.2f}" if est else f"{lat['p50_ms']:.2f}") if "p50_ms" in lat else "-",
            f"{lat['p90_ms']:.2f}" if "p90_ms" in lat else "-",
            f"{lat['p99_ms']:.2f}" if "p99_ms" in lat else "-",
            f"{r['compute_latency_ms']['p50_ms']:.2f}" if "compute_latency_ms" in r else "-",
            f"{thr:.0f}" if thr else "-",
            f"{r['speedup_vs_fp32']:.2f}" if "speedup_vs_fp32" in r else "-",
            *[_acc(r, t, k) for t, k in tasks.items()],
            r.get("warning") or r.get("status", "-"),
        ])
    return header, rows


def print_table(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 120))
    header, rows = table_rows(report)
    mode = report["mode"].upper()
    t = Table(title=f"edgetl bench — {report['device_display']} ({mode}) — {report.get('n_eval', 0)} {report.get('split') or ''} examples")
    for h in header:
        t.add_column(h, justify="left" if h in ("artifact", "backend", "prec", "status") else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    if report["mode"] == "estimated":
        console.print("[yellow]estimated from the device profile (roofline over the ONNX graph), not measured[/]")


def render_markdown(report: dict) -> str:
    header, rows = table_rows(report)
    sysinfo = report.get("system", {})
    lines = [f"# edgetl bench: {report['device_display']} ({report['mode']})", "",
             f"- bundle: `{report['bundle']}`", f"- created: {report['created_utc']}",
             f"- CPU: {sysinfo.get('cpu', {}).get('model', '?') if isinstance(sysinfo.get('cpu'), dict) else sysinfo.get('cpu_model', '?')}",
             f"- evaluation: {report.get('n_eval', 0)} examples of the {report.get('split')} split", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
        scores = [v.get("accuracy", v.get("micro_f1")) for v in m.values() if v.get("accuracy", v.get("micro_f1")) is not None]
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
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, x, y in pts:
        ax.scatter(x, y, s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, batch 1 (ms, log)")
    ax.set_ylabel("mean task accuracy (%)")
    ax.set_title(f"{report['device_display']}: latency vs accuracy")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
