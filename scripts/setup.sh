#!/usr/bin/env bash
# Triage24 setup: Debian packages, the virtualenv from the lock, the package itself, local model files.
# Idempotent: re-running skips what is already in place.   Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
VENV="${TRIAGE24_VENV:-$ROOT/.venv}"
APT_PACKAGES=(prometheus prometheus-alertmanager ffmpeg espeak-ng); [[ $DEV == 1 ]] && APT_PACKAGES+=(chromium)  # chromium: the UI's browser test
step() { printf '\n\033[1m[%s] %s\033[0m\n' "$1" "$2"; }

step 1/5 "Debian packages: ${APT_PACKAGES[*]}"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "all present"
elif ! command -v apt-get >/dev/null; then
  echo "apt-get is not available here: skipping. Install these yourself: ${missing[*]}" >&2
else
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step 2/5 "Python virtualenv at $VENV"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}"'
if [[ -x "$VENV/bin/python" ]]; then echo "exists"; else "$PYTHON" -m venv "$VENV" && echo "created"; fi

step 3/5 "dependencies from the lock (requirements.txt$([[ $DEV == 1 ]] && echo ', requirements-dev.txt'))"
LOCKS=(requirements.txt)
[[ $DEV == 1 ]] && LOCKS+=(requirements-dev.txt)
STAMP="$VENV/.triage24-lock.sha256"
WANT=$(cat "${LOCKS[@]}" | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" ]] && grep -qx "$WANT" "$STAMP"; then
  echo "lock unchanged since the last install: nothing to do"
else
  REQS=()
  for f in "${LOCKS[@]}"; do REQS+=(-r "$f"); done
  # The lock holds torch 2.14.1 (a CUDA build; it runs on the CPU where there is no GPU): ~6.5 GB.
  "$VENV/bin/pip" install --progress-bar on "${REQS[@]}"
  echo "$WANT" > "$STAMP"
fi

step 4/5 "the triage24 package (editable)"
"$VENV/bin/pip" install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" || true
"$VENV/bin/triage24" --help >/dev/null && echo "triage24 command ready: $VENV/bin/triage24"

step 5/5 "local model files"
HF_HUB_OFFLINE=1 "$VENV/bin/triage24" models prepare

printf '\n\033[1mSetup complete.\033[0m\n'
