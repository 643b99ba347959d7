#!/usr/bin/env bash
# The project's checks, as CI runs them: lint, format, types, then the whole test suite
# (integration tests start real Airflow, Prometheus, Alertmanager and the testbed on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TRIAGE24_VENV:-$(pwd)/.venv}"
export PATH="$VENV/bin:$PATH" HF_HUB_OFFLINE=1
echo "== ruff (lint)";   ruff check .
echo "== ruff (format)"; ruff format --check .
echo "== mypy diagnostics/ harness/"; mypy diagnostics harness
echo "== pytest"
exec python -m pytest "$@"
