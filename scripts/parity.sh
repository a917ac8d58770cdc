#!/usr/bin/env bash
# Re-checks parity with IMDL-BenCo 0.1.45 from a clone, with or without ../shared:
#   1. installs IMDL-BenCo 0.1.45 from the package registry into its own environment (.parity-venv;
#      torch, timm and Pillow come from the project's .venv, linked read-only, so nothing large is
#      downloaded twice; the reference's own pins numpy<2 and albumentations 1.3.0 are installed there),
#   2. regenerates the fixtures of ../shared/reference/parity/README.md with scripts/parity_generate.py
#      (the reference builds each model, fills it by the README's rule and runs its procedure),
#   3. runs tests/test_parity.py against them (IMDLBENCO_PARITY_DIR), and, where ../shared's fixtures
#      exist, prints how far the regenerated ones are from them.
#
# usage: bash scripts/parity.sh [--models a,b | all | none] [--no-data] [--out DIR] [--no-tests] [-- PYTEST ARGS]
#   --models    fixture names (README §3's table; default all: one to two hours on 2 cores)
#   --no-data   skip the dataset-pipeline and attack fixtures
#   --out       where the fixtures go (default .parity-fixtures; emptied first)
# exit status: the tests' status; 3 when the reference could not build a requested model (named above).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

models="all"
data_flag=()
out=".parity-fixtures"
run_tests=1
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --models) models="${2:?--models needs a comma-separated list}"; shift 2 ;;
        --models=*) models="${1#--models=}"; shift ;;
        --no-data) data_flag=(--no-data); shift ;;
        --out) out="${2:?--out needs a folder}"; shift 2 ;;
        --no-tests) run_tests=0; shift ;;
        --) shift; pytest_args=("$@"); break ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "parity.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

bash "$root/scripts/setup_env.sh"
venv="$root/.parity-venv"
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [ ! -x "$venv/bin/python" ]; then
    echo "[parity] creating $venv"
    "$(readlink -f .venv/bin/python)" -m venv "$venv"
fi
# the project's packages (torch, torchvision, timm, Pillow, jpeglib, scipy, ...) are visible after
# the environment's own ones; a plain path entry, so ours (an editable install, enabled by a .pth
# hook there) is not importable: `import IMDLBenCo` must find the reference
site_of "$root/.venv/bin/python" > "$(site_of "$venv/bin/python")/_imdlbenco_project_venv.pth"
stamp="$venv/.reference-0.1.45"
if [ ! -f "$stamp" ]; then
    echo "[parity] installing IMDL-BenCo 0.1.45 and its import-time needs into $venv"
    # --no-deps: its declared dependencies are unpinned (timm, matplotlib, ...) and the project's
    # are reused; these are the ones it imports that the project lacks or pins differently
    "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
        "imdlbenco==0.1.45" "numpy==1.26.4" "albumentations==1.3.0" "opencv-python-headless==4.11.0.86" \
        "scikit-image==0.24.0" "qudida==0.0.4" "imageio" "tifffile<2025" "lazy_loader" \
        "fvcore==0.1.5.post20221221" "iopath==0.1.10" "yacs==0.1.8" "portalocker" "tabulate" "termcolor" \
        "appdirs" "colorama"
    touch "$stamp"
fi

echo "[parity] regenerating fixtures into $out (models: $models)"
start=$(date +%s)
gen_status=0
"$venv/bin/python" scripts/parity_generate.py --out "$out" --models "$models" "${data_flag[@]}" || gen_status=$?
echo "[parity] generation took $(( $(date +%s) - start )) s"
if [ "$gen_status" -ne 0 ] && [ "$gen_status" -ne 3 ]; then
    echo "[parity] the generator failed (status $gen_status)" >&2
    exit "$gen_status"
fi

shared="$root/../shared/reference/parity"
if [ -d "$shared" ]; then
    echo "[parity] regenerated vs $shared:"
    .venv/bin/python scripts/parity_generate.py compare "$out" "$shared"
fi

test_status=0
if [ "$run_tests" -eq 1 ]; then
    echo "[parity] tests/test_parity.py against $out"
    # --runslow: the heavy models were asked for explicitly
    IMDLBENCO_PARITY_DIR="$(cd "$out" && pwd)" .venv/bin/python -m pytest -q --runslow tests/test_parity.py \
        "${pytest_args[@]}" || test_status=$?
fi
if [ "$gen_status" -eq 3 ]; then
    echo "[parity] NOT CHECKED: the reference could not build these here (see $out/models/NOT_BUILT.json):" >&2
    .venv/bin/python -c 'import json,sys; [print(f"  {k}: {v.splitlines()[0]}") for k, v in json.load(open(sys.argv[1])).items()]' \
        "$out/models/NOT_BUILT.json" >&2
    [ "$test_status" -eq 0 ] && exit 3
fi
exit "$test_status"
