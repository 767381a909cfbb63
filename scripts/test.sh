#!/usr/bin/env bash
# The test command of the README and of CI: the whole suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m ruff check src tests benchmarks
"$PY" -m pytest -q "$@"
