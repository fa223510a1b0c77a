#!/usr/bin/env bash
# Proves a deploy bundle runs with the runtime's dependencies only, as on a device: a fresh venv with
# numpy, onnxruntime, pillow and tokenizers (no torch), this repo installed with --no-deps, then
# examples/classify_images.py on the bundle; fails if torch & co. are importable there.
#
#   scripts/runtime_venv_check.sh BUNDLE_DIR IMAGE...
#
# Environment: PYTHON (default python3); RUNTIME_PACKAGES (default "numpy onnxruntime pillow tokenizers",
# e.g. swap in onnxruntime-gpu); KEEP_VENV=1 keeps the venv and prints its path.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 BUNDLE_DIR IMAGE..." >&2
  exit 2
fi
bundle="$1"
shift
if [ ! -f "$bundle/manifest.json" ]; then
  echo "error: $bundle/manifest.json not found; is it a deploy bundle?" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
packages="${RUNTIME_PACKAGES:-numpy onnxruntime pillow tokenizers}"
work="$(mktemp -d "${TMPDIR:-/tmp}/edgetl-runtime-venv.XXXXXX")"
if [ "${KEEP_VENV:-0}" = "1" ]; then
  echo "venv kept in $work/venv"
else
  trap 'rm -rf "$work"' EXIT
fi

echo "== fresh venv ($("$python" --version 2>&1)) in $work/venv"
"$python" -m venv "$work/venv"
py="$work/venv/bin/python"
unset PYTHONPATH  # nothing from the caller's environment may leak in

echo "== pip install $packages"
# shellcheck disable=SC2086  # word splitting of the package list is intended
"$py" -m pip install --quiet --disable-pip-version-check $packages

echo "== pip install --no-deps $repo"
# a copy, so the build never writes into the checkout (build/, *.egg-info)
mkdir "$work/src"
(cd "$repo" && tar --exclude=.git --exclude=.venv --exclude=runs --exclude='*.egg-info' --exclude=build -cf - .) \
  | tar -xf - -C "$work/src"
"$py" -m pip install --quiet --disable-pip-version-check --no-deps "$work/src"

echo "== checking the venv holds no training stack"
(cd "$work" && "$py" - <<'PY'
import importlib.util
import sys

import edgetl

heavy = [m for m in ("torch", "torchvision", "transformers", "pydantic") if importlib.util.find_spec(m)]
if heavy:
    sys.exit(f"FAIL: importable in the runtime venv: {', '.join(heavy)}")
if "site-packages" not in edgetl.__file__:
    sys.exit(f"FAIL: edgetl imported from {edgetl.__file__}, not from the venv")
print(f"ok: no torch/torchvision/transformers/pydantic; edgetl {edgetl.__version__} from the venv")
PY
)

echo "== examples/classify_images.py $bundle $*"
# run from $work so the checkout is not on sys.path; bundle and image paths made absolute first
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd)" "$(basename "$1")"); }
images=()
for image in "$@"; do images+=("$(abs "$image")"); done
bundle_abs="$(cd "$bundle" && pwd)"
(cd "$work" && "$py" "$repo/examples/classify_images.py" "$bundle_abs" "${images[@]}")
echo "== ok: the bundle runs without torch"
