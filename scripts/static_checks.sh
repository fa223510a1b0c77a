#!/usr/bin/env bash
# Static checks CI runs before the tests (scripts/test.sh, pinned lane): lint, format, types.
#   ruff check            pyflakes, pycodestyle, import order, bugbear, pyupgrade (pyproject [tool.ruff])
#   ruff format --check   one formatting, no diffs to argue about
#   mypy                  the torch-free runtime and the recipe schema (pyproject [tool.mypy] files)
# Usage: bash scripts/static_checks.sh [python]   (default: .venv/bin/python)
set -uo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
rc=0
paths=(edgetl tests benchmarks scripts)
"$py" -m ruff check "${paths[@]}" || { echo "[static] ruff check failed (ruff check --fix fixes most)"; rc=1; }
"$py" -m ruff format --check "${paths[@]}" >/dev/null || { echo "[static] ruff format --check failed: run ruff format ${paths[*]}"; rc=1; }
"$py" -m mypy || { echo "[static] mypy failed"; rc=1; }
[ $rc -eq 0 ] && echo "[static] ruff check, ruff format --check, mypy: all passed"
exit $rc
