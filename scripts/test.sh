#!/usr/bin/env bash
# The project's checks, as CI runs them: lint, format, types, then the whole test suite
# (integration tests start real Airflow, Prometheus, Alertmanager and the testbed on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TRIAGE24_VENV:-$(pwd)/.venv}"
export PATH="$VENV/bin:$PATH" HF_HUB_OFFLINE=1
echo "== ruff (lint)";   ruff check .
echo "== ruff (format)"; ruff format --check .
# mypy (about a minute cold, one core) runs beside pytest, whose first minutes are mostly waits on real
# servers; its verdict is printed and enforced when pytest is done.
types="$(mktemp)"
trap 'rm -f "$types"' EXIT
echo "== mypy diagnostics/ harness/ (beside pytest; its result follows pytest's)"
mypy diagnostics harness >"$types" 2>&1 &
mypy_pid=$!
echo "== pytest"
set +e
python -m pytest "$@"
tests=$?
wait "$mypy_pid"
typed=$?
set -e
echo "== mypy diagnostics/ harness/"; cat "$types"
if (( typed != 0 )); then
  echo "mypy failed" >&2
  exit "$typed"
fi
exit "$tests"
