#!/usr/bin/env bash
# Creates .venv in the repository root (once) and installs the project into it with its test
# extras. Safe to run again: it only installs what is missing or changed, and then says nothing
# but one line. Each step says what it does and about how long it takes before it starts (pip
# runs quietly: a first install is silent for minutes otherwise).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
started=$SECONDS
did=0
step() {  # step "what" "how long": one line before a step that may take a while
    did=1
    echo "[setup] $1 ($2) ..."
}
if [ ! -x .venv/bin/python ]; then
    step "creating .venv with $($py --version 2>&1)" "a few seconds"
    "$py" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    step "installing PyTorch 2.14.1 and torchvision 0.29.1: about 2.5 GB of wheels with the CUDA libraries, 4.5 GB on disk" \
         "the longest step: 2 to 5 minutes on a fast connection"
    "${pip[@]}" install "torch==2.14.1" "torchvision==0.29.1"
fi
stamp=".venv/.imdlbenco-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    step "installing imdlbenco (editable) and its dependencies: timm, OpenCV, TensorBoard, matplotlib, ...; with the test extras scikit-learn, torchmetrics, peft, grad-cam, pytest" \
         "about 1 minute"
    "${pip[@]}" install -e ".[test]"
    touch "$stamp"
fi
if [ "$did" = 1 ]; then
    echo "[setup] .venv ready in $((SECONDS - started)) s ($root/.venv)"
else
    echo "[setup] .venv is up to date ($root/.venv)"
fi
