#!/usr/bin/env bash
# The GPU path, checked in one run (< 8 minutes on one H100/H200):
#
#   1. pytest -m cuda tests/         AMP fp16 (GradScaler) / bf16 training, DDP + SyncBN on a
#                                    one-process nccl group,
#                                    every evaluator CUDA vs CPU (1e-6), pinned loading + on-device
#                                    normalisation, CUDA checkpoint tested on the CPU, sliding window
#   2. synthetic data                IMDLBenCo.datasets.synth.make_synthetic_dataset (= benco data synth)
#   3. train + test, AMP fp16 and bf16, DemoNet and one zoo model (PSCC_Net at its recipe's 256):
#                                    train_main under torchrun (2 epochs), then test_main on the
#                                    checkpoints it wrote; images/s and peak GPU memory of each
#   4. benchmarks/bench_metrics.py --device cuda   (our evaluators vs scikit-learn: MISMATCH fails)
#   5. benchmarks/bench_data.py --device cuda      (pinned memory, on-device normalisation)
#   6. benchmarks/bench_zoo.py --device cuda --train (AMP bf16), then --channels-last --compile
#
# Every step runs (a failure does not stop the others), prints a PASS/FAIL line, and the run ends
# with a summary table (card, step, status, images/s, peak memory, seconds), also written to
# $OUT/summary.md; the exit status is non-zero when any step failed. All logs go to $OUT (default
# ./gpu_check_out).
#
#   bash benchmarks/gpu_check.sh                 # on a CUDA machine
#   bash benchmarks/gpu_check.sh --dry-run-cpu   # everything tiny on the CPU (gloo, 2 processes):
#                                                # checks this script end to end without a GPU
#
# Environment: OUT (log folder), PYTHON (interpreter; default .venv/bin/python of the checkout,
# else python3), GPU_CHECK_DEVICE=cpu (same as --dry-run-cpu), GPU_CHECK_NPROC (processes per
# node for the train/test runs; default 1 on CUDA: one GPU, no process group is made then, so
# nccl/SyncBN are checked by the pytest step; 2 in the dry run: gloo DDP), GPU_CHECK_ZOO_MODEL
# (default PSCC_Net), GPU_CHECK_COMPILE=0 (skip the torch.compile variant), GPU_CHECK_BUDGET_S
# (seconds after which optional steps are skipped; default 450), GPU_CHECK_KEEP_CHECKPOINTS=1 (keep the
# runs' .pth files in $OUT/runs; by default they are deleted after their test step).
#
# Each step runs in its own `set -euo pipefail` subshell under a timeout; the script itself uses
# `set -uo pipefail` (no -e) so that every step runs and is reported.

set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

DRY=0
for arg in "$@"; do
    case "$arg" in
        --dry-run-cpu) DRY=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown option: $arg (use --dry-run-cpu or nothing)" >&2; exit 2 ;;
    esac
done
if [ "${GPU_CHECK_DEVICE:-}" = "cpu" ]; then DRY=1; fi

OUT="${OUT:-./gpu_check_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
RESULTS="$OUT/results"
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.json  # figures of an earlier run must not fill this run's rows
: > "$RESULTS/steps.tsv"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"
else PY="python3"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

ZOO_MODEL="${GPU_CHECK_ZOO_MODEL:-PSCC_Net}"
COMPILE="${GPU_CHECK_COMPILE:-1}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-450}"
if [ "$DRY" = 1 ]; then
    DEVICE=cpu; NPROC="${GPU_CHECK_NPROC:-2}"
    SYNTH_N=24; SYNTH_SIZE=64; DEMO_SIZE=64; DEMO_BATCH=4; ZOO_SIZE=64; ZOO_BATCH=2; WORKERS=0
    export OMP_NUM_THREADS=1
else
    DEVICE=cuda; NPROC="${GPU_CHECK_NPROC:-1}"
    SYNTH_N=240; SYNTH_SIZE=256; DEMO_SIZE=256; DEMO_BATCH=16; ZOO_SIZE=""; ZOO_BATCH=""; WORKERS=4
fi
START=$(date +%s)

# ------------------------------------------------------------------------------------------ helpers
CARD="unknown"

# run_step NAME TIMEOUT_S COMMAND...: run the command (its own strict subshell) with a timeout,
# log to $OUT/NAME.log, print PASS/FAIL and record a row; the result file $RESULTS/NAME.json
# (written by the python parts: images_per_s, peak) fills the row's figures.
FAILED=0
run_step() {
    local name="$1" limit="$2"; shift 2
    local log="$OUT/$name.log" t0 t1 rc status
    t0=$(date +%s%N)
    echo "=== $name (timeout ${limit}s): $*" | tee "$log"
    GPU_CHECK_RESULT="$RESULTS/$name.json" timeout --kill-after=15 "$limit" \
        bash -c 'set -euo pipefail; "$@"' _ "$@" >> "$log" 2>&1
    rc=$?
    t1=$(date +%s%N)
    local secs=$(( (t1 - t0) / 1000000000 ))
    if [ $rc -eq 0 ]; then status=PASS
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="FAIL (timeout ${limit}s)"; FAILED=$((FAILED + 1))
    else status="FAIL (exit $rc)"; FAILED=$((FAILED + 1))
    fi
    local ips peak
    ips=$(json_get "$RESULTS/$name.json" images_per_s)
    peak=$(json_get "$RESULTS/$name.json" peak)
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "$ips" "$peak" >> "$RESULTS/steps.tsv"
    printf '%-28s %-24s %5ss  images/s %-10s peak %s\n' "$name" "$status" "$secs" "$ips" "$peak"
    if [ "$status" != PASS ]; then tail -n 25 "$log" | sed 's/^/    | /'; fi
}

skip_step() {
    printf '%s\t%s\t0\t—\t—\n' "$1" "SKIP ($2)" >> "$RESULTS/steps.tsv"
    printf '%-28s SKIP (%s)\n' "$1" "$2"
}

# json_get FILE KEY: a value of a flat JSON file ("—" when absent)
json_get() {
    "$PY" - "$1" "$2" <<'EOF' 2>/dev/null || echo "—"
import json, sys
try:
    v = json.load(open(sys.argv[1])).get(sys.argv[2])
except OSError:
    v = None
print("—" if v is None else (f"{v:.1f}" if isinstance(v, float) else v))
EOF
}

# write_result NAME IMAGES_PER_S PEAK: a result file from figures parsed out of a log
write_result() {
    "$PY" - "$RESULTS/$1.json" "$2" "$3" <<'EOF'
import json, sys
def num(x):
    try:
        return float(x)
    except ValueError:
        return None
json.dump({"images_per_s": num(sys.argv[2]), "peak": sys.argv[3] or None}, open(sys.argv[1], "w"))
EOF
}

elapsed() { echo $(( $(date +%s) - START )); }

# ------------------------------------------------------------------------------ python helpers
# The engine under torchrun, timed: train (train_main; images/s of the last epoch, the first one
# warms cuDNN up) or test (test_main on every checkpoint-<epoch>.pth; images/s over its passes),
# and the peak memory of rank 0 (GPU: torch.cuda.max_memory_allocated; CPU: max RSS).
cat > "$WORK/runner.py" <<'EOF'
import json
import math
import os
import resource
import sys
import time

import torch

import IMDLBenCo.demo.model  # noqa: F401  registers DemoNet

mode, argv = sys.argv[1], sys.argv[2:]
rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
passes = []


def sync():
    # is_initialized, not is_available: on a machine without a GPU, touching the CUDA driver in a
    # gloo run makes the engine's process-group teardown at exit abort now and then (SIGABRT)
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def finite_numbers(record, where):
    bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        sys.exit(f"{where}: non-finite values {bad}")


if mode == "train":
    from IMDLBenCo.engine import train as engine_train

    original = engine_train.Trainer.train_one_epoch

    def timed_epoch(self, epoch):
        sync()
        t0 = time.perf_counter()
        stats = original(self, epoch)
        sync()
        loader = self.loader
        samples = len(loader) * self.args.batch_size * self.runtime.world_size if loader.drop_last else len(self.train_set)
        passes.append({"epoch": epoch, "seconds": time.perf_counter() - t0, "samples": samples})
        return stats

    engine_train.Trainer.train_one_epoch = timed_epoch
    from IMDLBenCo.engine import train_main

    result = train_main(argv)
    finite_numbers({k: v for k, v in result.items() if k.startswith("train_")}, "train losses")
    steady = passes[-1]
else:
    from IMDLBenCo.engine import evaluate_checkpoints

    original = evaluate_checkpoints.evaluate

    def timed_evaluate(model, loader, *args, **kwargs):
        sync()
        t0 = time.perf_counter()
        metrics = original(model, loader, *args, **kwargs)
        sync()
        passes.append({"seconds": time.perf_counter() - t0, "samples": len(loader.dataset)})
        return metrics

    evaluate_checkpoints.evaluate = timed_evaluate
    from IMDLBenCo.engine import test_main

    result = test_main(argv)
    if not result["rows"]:
        sys.exit("test_main returned no rows")
    for row in result["rows"]:
        finite_numbers(row, f"test metrics of {row.get('checkpoint')}")
    timed = passes[1:] or passes  # the first pass warms up
    steady = {"seconds": sum(p["seconds"] for p in timed), "samples": sum(p["samples"] for p in timed)}

if torch.cuda.is_initialized():
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
else:
    peak = f"RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (CPU)"
record = {"mode": mode, "images_per_s": steady["samples"] / max(steady["seconds"], 1e-9), "peak": peak,
          "passes": passes, "world_size": world}
print(f"[rank {rank}] GPU_CHECK {json.dumps(record)}", flush=True)
if rank == 0 and os.environ.get("GPU_CHECK_RESULT"):
    with open(os.environ["GPU_CHECK_RESULT"], "w") as fh:
        json.dump(record, fh)
EOF

# the recipe's engine options of a zoo model: image size, batch sizes, flags
cat > "$WORK/recipe_args.py" <<'EOF'
import json, os, sys
name, size, batch = sys.argv[1], sys.argv[2], sys.argv[3]
root = os.path.join("IMDLBenCo", "model_zoo")
for d in sorted(os.listdir(root)):
    path = os.path.join(root, d, "recipe.json")
    if not os.path.isfile(path):
        continue
    recipes = json.load(open(path))
    for r in recipes if isinstance(recipes, list) else [recipes]:
        if r.get("model") != name:
            continue
        t = r["train"]
        s = size or t.get("image_size", 512)
        b = batch or t.get("batch_size", 1)
        args = ["--image_size", s, "--batch_size", b, "--test_batch_size", batch or t.get("test_batch_size", b)]
        args += ["--if_padding"] if t.get("if_padding") else ["--if_resizing"]
        for flag in ("if_predict_label", "find_unused_parameters"):
            if t.get(flag):
                args.append(f"--{flag}")
        if t.get("edge_mask_width"):
            args += ["--edge_mask_width", t["edge_mask_width"]]
        if "input_size" in t:
            args += ["--input_size", s]
        print(" ".join(str(a) for a in args))
        sys.exit(0)
sys.exit(f"no recipe.json for {name}")
EOF

TORCHRUN=("$PY" -m torch.distributed.run --standalone "--nproc_per_node=$NPROC")
# the steps that are shell functions run in `bash -c` under timeout: they need these
export PY OUT RESULTS WORK DRY
export -f json_get write_result

# ------------------------------------------------------------------------------------------ 0. env
{
    echo "date: $(date -Is)"; echo "repo: $REPO"; echo "python: $PY"; echo "dry run on CPU: $DRY"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    "$PY" -c "import torch, sys; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available', torch.cuda.is_available(), 'devices', torch.cuda.device_count(), 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported(), 'nccl', torch.distributed.is_nccl_available(), 'python', sys.version.split()[0])"
} > "$OUT/env.log" 2>&1
cat "$OUT/env.log"
if [ "$DRY" = 1 ]; then
    CARD="CPU dry run ($(getconf _NPROCESSORS_ONLN) cores)"
elif command -v nvidia-smi >/dev/null 2>&1; then
    CARD="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
else
    CARD="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null || echo unknown)"
fi
if [ "$DRY" = 0 ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "PyTorch sees no CUDA device: run on a GPU machine, or use --dry-run-cpu to check the script" >&2
    exit 2
fi
echo "card: $CARD; device $DEVICE; $NPROC process(es) per run; logs in $OUT"
echo

# ---------------------------------------------------------------------------------- 1. pytest -m cuda
# -s: the tests print their peak GPU memory; -p no:cacheprovider: nothing written into the checkout
pytest_step() {
    "$PY" -m pytest -m cuda -q -s -p no:cacheprovider tests/
    "$PY" - "$OUT/pytest_cuda.log" <<'EOF'
import json, os, re, sys
peaks = [float(m) for m in re.findall(r"\[peak GPU memory\] \S+: ([0-9.]+) MB", open(sys.argv[1]).read())]
json.dump({"images_per_s": None, "peak": f"{max(peaks):.0f} MB (max of {len(peaks)} tests)" if peaks else None},
          open(os.environ["GPU_CHECK_RESULT"], "w"))
EOF
}
export -f pytest_step
run_step pytest_cuda 300 pytest_step

# --------------------------------------------------------------------------------- 2. synthetic data
DATA="$WORK/synth"
run_step synth_data 120 "$PY" -c "import sys; from IMDLBenCo.datasets.synth import make_synthetic_dataset as m; \
print(m(sys.argv[1], n=int(sys.argv[2]), size=int(sys.argv[3]), seed=0)['counts'])" "$DATA" "$SYNTH_N" "$SYNTH_SIZE"

# ---------------------------------------------------------------------------- 3. train + test runs
# DemoNet (registered by the runner's import of IMDLBenCo.demo.model) and the zoo model at its recipe.
DEMO_ARGS=(--model DemoNet --width 16 --image_size "$DEMO_SIZE" --if_resizing --if_predict_label
           --batch_size "$DEMO_BATCH" --test_batch_size "$DEMO_BATCH")
ZOO_RECIPE="$("$PY" "$WORK/recipe_args.py" "$ZOO_MODEL" "$ZOO_SIZE" "$ZOO_BATCH" 2>"$OUT/recipe_args.err")" || ZOO_RECIPE=""
read -r -a ZOO_ARGS <<< "--model $ZOO_MODEL $ZOO_RECIPE"
echo "zoo model options (from its recipe.json): ${ZOO_ARGS[*]}"

train_and_test() {  # train_and_test TAG DTYPE MODEL-ARGS...
    local tag="$1" dtype="$2"; shift 2
    local run="$OUT/runs/${tag}_${dtype}"
    rm -rf "$run"
    # test.py has no training options: drop --batch_size N and --find_unused_parameters for it
    local test_args=() skip=0 a
    for a in "$@"; do
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        case "$a" in
            --batch_size) skip=1 ;;
            --find_unused_parameters) ;;
            *) test_args+=("$a") ;;
        esac
    done
    run_step "train_${tag}_${dtype}" 240 "${TORCHRUN[@]}" "$WORK/runner.py" train "$@" \
        --data_path "$DATA/train" --test_data_path "$DATA/val" --epochs 2 --test_period 1 --accum_iter 1 \
        --lr 1e-4 --warmup_epochs 0 --num_workers "$WORKERS" --device "$DEVICE" --amp_dtype "$dtype" \
        --log_per_epoch_count 4 --output_dir "$run/train"
    run_step "test_${tag}_${dtype}" 180 "${TORCHRUN[@]}" "$WORK/runner.py" test "${test_args[@]}" \
        --checkpoint_path "$run/train" --test_data_path "$DATA/test" --num_workers "$WORKERS" \
        --device "$DEVICE" --amp_dtype "$dtype" --output_dir "$run/test"
    # the run folders stay in $OUT (logs, config, metrics); the weights do not (GPU_CHECK_KEEP_CHECKPOINTS=1 keeps them)
    if [ "${GPU_CHECK_KEEP_CHECKPOINTS:-0}" != 1 ]; then find "$run" -name '*.pth' -delete; fi
}

for dtype in float16 bfloat16; do
    train_and_test demo "$dtype" "${DEMO_ARGS[@]}"
    if [ -n "$ZOO_RECIPE" ]; then
        train_and_test "$ZOO_MODEL" "$dtype" "${ZOO_ARGS[@]}"
    else
        skip_step "train_${ZOO_MODEL}_${dtype}" "no recipe: see recipe_args.err"
        FAILED=$((FAILED + 1))
    fi
done

# -------------------------------------------------------------------------------- 4. bench_metrics
# the evaluators on the device against scikit-learn on the same predictions; MISMATCH fails the step
metrics_step() {
    local log="$OUT/bench_metrics.log"
    if [ "$DRY" = 1 ]; then
        "$PY" benchmarks/bench_metrics.py --device cpu --images 8 --size 64 --batch 4 --sklearn-images 4 --repeat 1
    else
        "$PY" benchmarks/bench_metrics.py --device cuda --images 64 --size 512 --batch 8 --sklearn-images 8 --repeat 2
    fi
    if grep -q MISMATCH "$log"; then echo "values differ from scikit-learn (MISMATCH)"; return 1; fi
    grep -q "max |diff|" "$log"
    # images/s: the 4 pixel metrics together (ours, wall ms per image)
    local ips peak
    ips=$(awk '/^4 pixel metrics/ { if ($4 > 0) print 1000 / $4; exit }' "$log")
    peak=$(awk '/^peak GPU memory:/ { print $4 " MB" }' "$log")
    write_result bench_metrics "${ips:-}" "${peak:-}"
}
export -f metrics_step
run_step bench_metrics 180 metrics_step

# ----------------------------------------------------------------------------------- 5. bench_data
data_step() {
    local log="$OUT/bench_data.log"
    if [ "$DRY" = 1 ]; then
        "$PY" benchmarks/bench_data.py --device cpu --n 4 --batch-size 2 --repeats 1 --warmup 0 --workers 0
    else
        "$PY" benchmarks/bench_data.py --device cuda --n 32 --batch-size 8 --repeats 1 --warmup 1 --workers 4
    fi
    grep -q "^min ratio" "$log"
    # images/s: the best rate of our deferred (uint8, normalised on the device) pipeline
    local ips peak
    ips=$(awk '/^(resize|pad) / { if ($8 + 0 > m) m = $8 + 0 } END { if (m > 0) print m }' "$log")
    peak=$(awk '/^peak GPU memory:/ { print $4 " MB" }' "$log")
    write_result bench_data "${ips:-}" "${peak:-}"
}
export -f data_step
run_step bench_data 180 data_step

# ------------------------------------------------------------------------------------ 6. bench_zoo
# forward and training step (AMP bfloat16 on CUDA) of a few zoo models at their recipe's size
ZOO_BENCH_MODELS=(PSCC_Net Mesorch SPAN ObjectFormer)
zoo_step() {  # zoo_step NAME EXTRA-ARGS...
    local name="$1"; shift
    local json="$RESULTS/$name.rows.json"
    if [ "$DRY" = 1 ]; then
        "$PY" benchmarks/bench_zoo.py --device cpu --size 64 --models segformer --repeats 1 --train --json "$json" "$@"
    else
        "$PY" benchmarks/bench_zoo.py --device cuda --amp bfloat16 --train --repeats 3 --json "$json" "$@"
    fi
    "$PY" - "$json" "$name" <<'EOF'
import json, os, sys
rows = json.load(open(sys.argv[1]))
if not rows:
    sys.exit("bench_zoo measured no model")
missing = [r["model"] for r in rows if "train_ips" not in r]
for r in rows:
    for note in r.get("notes", []):
        print(f"note: {r['model']}: {note}")
ips = [r["train_ips"] for r in rows if "train_ips" in r]
peaks = [r[k] for r in rows for k in ("fwd_mb", "train_mb") if r.get(k) is not None]
json.dump({"images_per_s": ips[0] if ips else None,
           "peak": f"{max(peaks):.0f} MB (max over {len(rows)} models)" if peaks else None},
          open(os.environ["GPU_CHECK_RESULT"], "w"))
print(f"{sys.argv[2]}: {len(rows)} model(s); images/s column = training images/s of {rows[0]['model']}")
if missing:
    sys.exit(f"no training step timed for {missing} (see the notes above)")
EOF
}
export -f zoo_step
if [ "$DRY" = 1 ]; then
    run_step bench_zoo 300 zoo_step bench_zoo
    run_step bench_zoo_channels_last 300 zoo_step bench_zoo_channels_last --channels-last
else
    run_step bench_zoo 240 zoo_step bench_zoo --models "${ZOO_BENCH_MODELS[@]}"
fi
# torch.compile: optional (compilation alone can take minutes); skipped when the budget is spent
left=$(( BUDGET_S - $(elapsed) ))
if [ "$COMPILE" = 0 ]; then
    skip_step bench_zoo_compile "GPU_CHECK_COMPILE=0"
elif [ "$left" -lt 90 ]; then
    skip_step bench_zoo_compile "time budget: ${left}s left of ${BUDGET_S}s"
elif [ "$DRY" = 1 ]; then
    run_step bench_zoo_compile "$left" zoo_step bench_zoo_compile --compile
else
    limit=$(( left < 200 ? left : 200 ))
    run_step bench_zoo_compile "$limit" zoo_step bench_zoo_compile --models PSCC_Net --channels-last --compile
fi

# --------------------------------------------------------------------------------------- summary
"$PY" - "$RESULTS/steps.tsv" "$OUT/summary.md" "$CARD" "$(elapsed)" "$DRY" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
card, total, dry = sys.argv[3], sys.argv[4], sys.argv[5] == "1"
head = "| card | step | status | images/s | peak memory | seconds |\n|---|---|---|---|---|---|\n"
table = head + "\n".join(f"| {card} | {n} | {s} | {i} | {p} | {t} |" for n, s, t, i, p in rows)
failed = sum(1 for r in rows if r[1].startswith("FAIL"))
title = "# gpu_check " + ("(CPU dry run: tiny sizes, figures are not GPU figures)" if dry else f"on {card}")
text = (f"{title}\n\n{table}\n\n{len(rows)} steps, {failed} failed, {total} s in all. "
        "images/s: train = samples per second of the last epoch (the first warms up), test = images per second of "
        "test_main's passes after the first, bench_metrics = images per second through the 4 pixel metrics, "
        "bench_data = best rate of the deferred (uint8) pipeline, bench_zoo = training images/s of the first model "
        "(full tables in the logs). Peak memory: torch.cuda.max_memory_allocated of rank 0 (CPU: max RSS).\n")
open(sys.argv[2], "w").write(text)
print("\n" + text)
EOF
echo "logs: $OUT"
if [ "$FAILED" -gt 0 ]; then
    echo "gpu_check: $FAILED step(s) failed" >&2
    exit 1
fi
echo "gpu_check: all steps passed"
