#!/usr/bin/env bash
# Runs the test suite (sets up .venv first). Extra arguments go to pytest, e.g. -k data.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec .venv/bin/python -m pytest "$@"
