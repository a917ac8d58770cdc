#!/usr/bin/env bash
# The main job: the whole pipeline on data generated on the spot (sets up .venv first).
# Extra arguments go to `benco demo`, e.g. --quick or --out DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
echo "[demo] benco demo${*:+ $*}: data, training, tests, report (about 1.5 minutes on a 2-core CPU; --quick about 25 s)"
exec "$root/.venv/bin/benco" demo "$@"
