#!/usr/bin/env bash
# The fast developer loop (make check): lint, format, types and the unit tests — no servers, no
# models (pytest -m "not integration and not models"), spread over the cores by pytest-xdist
# (TRIAGE24_CHECK_WORKERS, default: one per core). About 2 minutes on 2 cores; `make test` is the
# full suite CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TRIAGE24_VENV:-$(pwd)/.venv}"
if [[ ! -x "$VENV/bin/pytest" ]]; then
  echo "no dev environment at $VENV: run 'make setup-dev' (or 'make test') once first" >&2
  exit 2
fi
export PATH="$VENV/bin:$PATH" HF_HUB_OFFLINE=1
start=$(date +%s)
echo "== ruff (lint)";   ruff check .
echo "== ruff (format)"; ruff format --check .
echo "== mypy diagnostics/ harness/"; mypy diagnostics harness
echo "== pytest (unit: no servers, no models)"
python -m pytest -m "not integration and not models" -q --durations=10 \
  -n "${TRIAGE24_CHECK_WORKERS:-auto}" "$@"
echo "make check: $(( $(date +%s) - start )) s"
