#!/usr/bin/env bash
# The main job: the whole pipeline on data generated on the spot (sets up .venv first).
# Extra arguments go to `benco demo`, e.g. --quick or --out DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
exec "$root/.venv/bin/benco" demo "$@"
