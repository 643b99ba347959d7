# The two commands of the README. Both set everything up first (idempotent).
.PHONY: demo test check setup setup-dev down status results

demo: setup           ## set up, start the local stack and run the main job end to end
	.venv/bin/triage24 demo

test: setup-dev       ## set up and run every check CI runs
	scripts/test.sh

check:                ## the fast loop: lint, format, types, unit tests (no servers, no models), ~3 min
	scripts/check.sh

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev

down:                 ## stop the local stack
	.venv/bin/triage24 stack down

status:
	.venv/bin/triage24 stack status

results:              ## benchmarks/RESULTS.md from benchmarks/results/*.json (never edited by hand)
	.venv/bin/triage24 results render
