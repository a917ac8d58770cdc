#!/usr/bin/env bash
# Creates .venv in the repository root (once) and installs the project into it with its test
# extras. Safe to run again: it only installs what is missing or changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($py --version)"
    "$py" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    echo "[setup] installing torch 2.14.1 / torchvision 0.29.1"
    "${pip[@]}" install "torch==2.14.1" "torchvision==0.29.1"
fi
stamp=".venv/.imdlbenco-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] installing imdlbenco (editable) with test extras"
    "${pip[@]}" install -e ".[test]"
    touch "$stamp"
fi
