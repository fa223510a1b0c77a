"""Helpers several test files share (fixtures shared by many live in conftest.py)."""

from __future__ import annotations

import sys


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the real console entry point in-process; returns (exit code, stdout, stderr)."""
    from edgetl import cli

    monkeypatch.setattr(sys, "argv", ["edgetl", *map(str, args)])
    monkeypatch.setitem(cli._STATE, "debug", False)
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
