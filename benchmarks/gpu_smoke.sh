#!/usr/bin/env bash
# GPU smoke test: the first real run of edgetl's TensorRT code.
#
# For a machine with an NVIDIA GPU and TensorRT >= 10 (desktop, or Jetson with JetPack 6.1+).
# Nothing TensorRT ran where this code was written; until this script passes on a GPU, engine
# build/run is UNVERIFIED (docs/tensorrt.md).
#
# It installs nothing. Missing pieces are reported with the command that would install them.
#
#   benchmarks/gpu_smoke.sh            # run everything
#   benchmarks/gpu_smoke.sh --clean    # first remove runs/gpu-smoke from an earlier smoke run
#
# Steps: environment checks -> quickstart train -> export (INT8, FP16, engines) -> bench -> pytest -m tensorrt.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
RUN_DIR="runs/gpu-smoke"

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'gpu_smoke: %s\n' "$*" >&2; exit 1; }

if [[ "${1:-}" == "--clean" ]]; then
  echo "removing ${RUN_DIR} (from an earlier smoke run)"
  rm -rf -- "${RUN_DIR}"
elif [[ -n "${1:-}" ]]; then
  fail "unknown argument '$1' (only --clean)"
fi

step "environment"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader \
  || echo "nvidia-smi not found (normal on some Jetson releases); the Python checks below decide"

missing=0
if ! "$PY" -c "import tensorrt" 2>/dev/null; then
  echo "TensorRT is not importable by $PY. Install it (this script does not):"
  echo "  desktop GPU:  $PY -m pip install 'tensorrt>=10' cuda-python"
  echo "  Jetson:       sudo apt-get install nvidia-jetpack   (TensorRT comes with JetPack 6.1+)"
  missing=1
fi
if ! "$PY" -c "from cuda.bindings import runtime" 2>/dev/null && ! "$PY" -c "from cuda import cudart" 2>/dev/null \
   && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "No CUDA memory provider for the TensorRT runtime. Install one:"
  echo "  $PY -m pip install cuda-python"
  missing=1
fi
if ! "$PY" -c "import modelopt.onnx.quantization, modelopt.onnx.autocast" 2>/dev/null; then
  echo "modelopt (INT8 Q/DQ and FP16 AutoCast ONNX for TensorRT) is missing. Install it:"
  echo "  $PY -m pip install 'nvidia-modelopt[onnx]'"
  missing=1
fi
if ! command -v edgetl >/dev/null 2>&1; then
  echo "the edgetl command is not on PATH. Install the package from this checkout:"
  echo "  $PY -m pip install -e '.[modelopt,tensorrt,test]'"
  missing=1
fi
[[ $missing -eq 0 ]] || fail "missing prerequisites (above); nothing was run"

"$PY" - <<'EOF'
from edgetl.compile.tensorrt import trt_available
ok, reason = trt_available()
print(("OK: " if ok else "NOT READY: ") + reason)
raise SystemExit(0 if ok else 1)
EOF

[[ ! -e "${RUN_DIR}" ]] || fail "${RUN_DIR} exists from an earlier run; rerun with --clean to replace it"

step "train (quickstart recipe)"
edgetl train recipes/quickstart.yaml --name gpu-smoke

step "export: FP32 + INT8 + FP16 + TensorRT engines"
edgetl export "${RUN_DIR}" --int8 --fp16 --engine

step "engine manifests"
shopt -s nullglob
engines=("${RUN_DIR}"/deploy/*.engine)
[[ ${#engines[@]} -gt 0 ]] || fail "export wrote no .engine under ${RUN_DIR}/deploy"
for e in "${engines[@]}"; do
  [[ -f "$e.json" ]] || fail "$e has no engine manifest $e.json"
  "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[1], {k: m[k] for k in ('tensorrt_version','gpu_name','compute_capability','precision','strongly_typed','builder_flags','build_seconds')})" "$e.json"
done

step "bench (device auto)"
edgetl bench "${RUN_DIR}" --device auto

step "pytest -m tensorrt (skips count as failures here)"
EDGETL_REQUIRE_TENSORRT=1 "$PY" -m pytest -m tensorrt -rs -q

printf '\ngpu_smoke: PASSED on %s\n' "$("$PY" -c 'from edgetl.compile.tensorrt import trt_available; print(trt_available()[1])')"
