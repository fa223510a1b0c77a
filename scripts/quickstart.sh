#!/usr/bin/env bash
# Install, then run the main job on the built-in offline demo: train -> export (FP32 + INT8) -> bench.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. "${EDGETL_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1
name=${EDGETL_RUN_NAME:-quickstart}
start=$(date +%s)
edgetl train recipes/quickstart.yaml --name "$name"
run=$(ls -td runs/"$name"* | head -1)
edgetl export "$run" --int8 --target cpu
edgetl bench "$run" --device cpu
edgetl bench "$run" --device jetson-orin-nano --estimate
echo "quickstart: $run done in $(( $(date +%s) - start )) s (after installation)"
