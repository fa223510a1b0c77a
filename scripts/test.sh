#!/usr/bin/env bash
# What CI runs (.ci/run): install, then test in two lanes. A failure in either fails the script.
#   pinned: the exact versions of constraints/ci.txt: static checks (scripts/static_checks.sh: ruff, mypy), then
#           the whole suite (unit, integration and the slow end-to-end tier)
#   newest: today's releases (no constraints): the fast tests, then the shipped quickstart and text recipes
#           through the real CLI (train -> export --int8 [--qat] -> bench, progress bars on)
# Extra arguments go to pytest in both lanes. EDGETL_LANES="pinned" (or "newest") runs one lane.
# Contributors' tiers, one lane: EDGETL_LANES=pinned bash scripts/test.sh -m unit   (or -m "not slow")
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
rc=0
for lane in ${EDGETL_LANES:-pinned newest}; do
  echo "[test] ===== $lane lane ====="
  if ! EDGETL_LANE=$lane bash scripts/install.sh; then echo "[test] $lane lane: install failed"; rc=1; continue; fi
  venv=.venv; [ "$lane" = newest ] && venv=.venv-newest
  if [ "$lane" = pinned ]; then
    bash scripts/static_checks.sh "$venv/bin/python" || { echo "[test] pinned lane: static checks failed"; rc=1; }
    "$venv/bin/python" -m pytest -q -p no:cacheprovider --durations=15 "$@"
    r=$?
  else
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" "$@"
    r=$?
    [ $r -eq 0 ] || [ $r -eq 5 ] || { echo "[test] newest lane: fast tests failed"; rc=1; }
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -m slow tests/test_recipes.py \
      -k "quickstart or text-classify" "$@"
    r=$?
  fi
  if [ $r -eq 5 ]; then echo "[test] $lane lane: pytest collected no tests"; r=0; fi
  [ $r -eq 0 ] || { echo "[test] $lane lane failed (pytest exit $r)"; rc=1; }
done
exit $rc
