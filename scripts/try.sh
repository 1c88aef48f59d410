#!/usr/bin/env bash
# Set up httpov on a fresh Debian machine and render the example animation on this machine alone.
# Installs povray, bubblewrap, redis-server and gcc (povray's quick waits) from Debian, httpov into ./.venv, then runs
# `httpov render examples/spinner`: frames land in ./out/spinner/.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v povray >/dev/null || missing+=(povray povray-includes)
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v cc >/dev/null || missing+=(gcc libc6-dev)  # builds povray's quick waits (httpov/worker/waits.py)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A virtual environment: Debian's own python3 refuses system-wide pip installs (PEP 668).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/httpov render examples/spinner "$@"
