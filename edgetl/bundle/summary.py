"""The table `edgetl export` prints: one row per artifact of a bundle (precision, target, size, each task's
headline on the test split, gate notes), from the manifest alone."""

from __future__ import annotations

import json
from pathlib import Path

from edgetl.runtime.artifacts import format_headline
from edgetl.runtime.tasks import get_kind


def _gate_note(gate: dict) -> str:
    note = ("gate passed" if gate.get("passed", True) else "gate FAILED") + (
        f", {len(gate.get('excluded_nodes', []))} layers kept in float" if gate.get("excluded_nodes") else ""
    )
    lat = gate.get("latency")
    if lat:
        note += f", x{lat['speedup_vs_fp32']:.2f} vs FP32" + (" (SLOWER)" if gate.get("slower_than_fp32") else "")
    return note


def bundle_table(bundle: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a bundle's artifacts."""
    m = json.loads((Path(bundle) / "manifest.json").read_text())
    header = [
        "artifact",
        "precision",
        "target",
        "size MB",
        *[f"{x['name']} {get_kind(x['kind']).table_label}" for x in m["tasks"]],
        "notes",
    ]
    rows = []
    for name, a in m["artifacts"].items():
        gate = (a.get("quantization") or {}).get("gate") or {}
        note = _gate_note(gate) if gate else ""
        if name == m.get("default_artifact"):
            note = (note + ", " if note else "") + "default"
        rows.append(
            [
                name,
                a["precision"],
                a["target"],
                f"{a['size_bytes'] / 1e6:.2f}",
                *[format_headline(x["kind"], a["accuracy"][x["name"]]) for x in m["tasks"]],
                note,
            ]
        )
    return header, rows
