#!/usr/bin/env bash
# The test command: install (idempotent), lint, run the whole suite on CPU, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV="${ABCGEN_VENV:-.venv}"
# One thread per process: with two cores, a busy second core makes 2-thread torch ~40x slower.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/ruff" check .
# The layer contracts of pyproject.toml's [tool.importlinter] (ARCHITECTURE.md): imports only point down.
"$VENV/bin/lint-imports" --no-cache
# Every test, the `slow` ones too (developers: `pytest -m "not slow"` for the fast subset, two processes by
# pyproject's addopts; see README). Serial here (-n 0): the slow tests train, start 2-process runs and drive a
# browser, and are not checked under xdist.
"$VENV/bin/python" -m pytest -n 0 "$@"
