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
# Two pytest workers, one test file each at a time (module fixtures such as a stack stay in one
# worker): the integration tests mostly wait on real timers (rule `for:`, group_wait, recovery
# windows), so two of them overlap well on 2 cores. TRIAGE24_TEST_WORKERS=0 runs in one process.
WORKERS="${TRIAGE24_TEST_WORKERS:-2}"
echo "== pytest ($WORKERS workers)"
if [[ "$WORKERS" == "0" ]]; then exec python -m pytest "$@"; fi
exec python -m pytest -n "$WORKERS" --dist loadfile "$@"
