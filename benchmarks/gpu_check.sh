#!/usr/bin/env bash
# The DepictQA-Wild GPU check in one offline command: the smoke test with fp16/bf16 tokens against float32, and
# bench_depictqa.py's measurements, each part under its own `timeout` so that one hung part loses no other.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [--tiny] [--scale X]
#
# Random weights at the paper model's shapes (CLIP ViT-L/14 at 224x336, Linear 1024->4096, the 32-layer
# 4096-wide LLaMA with a merged LoRA); --tiny: tiny shapes on the CPU, well under a minute (what the tests run);
# --scale multiplies every image count (0.5 if a run is cut short). Parts, in order, with their limits below:
# install, machine (card, driver, versions, which packages exist), smoke (+ tokens against float32), bench
# (model only: engine, authors' style, step costs, varied lengths, generate(), agreement), e2e (12 MP JPEGs on
# disk, exact and draft decoding, and the decode-only rate), static (static KV cache, eager and compiled).
#
# Nothing is downloaded: the project is installed with `pip install --no-deps --no-index --no-build-isolation`
# into a scratch folder put first on PYTHONPATH, over the packages the machine has (torch, transformers, ...).
# The model path and the audit import neither exifread nor platformdirs, which the GPU machine lacks
# (tests/test_gpu_check.py runs this with both made unimportable). Wheels in benchmarks/gpu_wheels/ (ignored by
# git; give it to the device through `carry`) are installed the same way first, should some other machine lack
# a package: fill it here with `python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux2014_x86_64 -d benchmarks/gpu_wheels NAME==VERSION`. If pip cannot build the project, the
# checkout itself goes on PYTHONPATH (a note in the JSON). IQA_COMMIT=<sha> names the commit where the checkout
# has no .git; PYTHON picks the interpreter (python3).
#
# OUT_DIR gets three files: gpu_check.json (every figure, each part's exit code, seconds and limit, "failed",
# "ok"; rewritten after every part), gpu_check.md (the table and notes to record) and gpu_check.log
# (everything printed). Exit 0 when no part failed.
set -uo pipefail

usage() { echo "usage: bash benchmarks/gpu_check.sh OUT_DIR [--tiny] [--scale X]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1
shift
TINY=()
SCALE=()
while [ $# -gt 0 ]; do
    case $1 in
        --tiny) TINY=(--tiny) ;;
        --scale) [ $# -ge 2 ] || usage; SCALE=(--scale "$2"); shift ;;
        *) usage ;;
    esac
    shift
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$REPO" || exit 1
START=$(date +%s)
LOG=$OUT/gpu_check.log
: >"$LOG"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iqa-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/status" "$WORK/parts" "$WORK/tmp"
# The benchmarks' scratch (GBs of JPEGs at full size) goes with WORK, even from a part killed by its timeout.
export TMPDIR=$WORK/tmp
export PYTHONUNBUFFERED=1
# Hugging Face libraries must not reach for the network (there is none on the GPU machine).
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

# Each part's limit in seconds. The full run's add up to 500 s, inside one 600 s device call with the start-up
# and the collecting; the parts' own estimates add up to about 5 minutes (never yet measured on a GPU).
if [ ${#TINY[@]} -gt 0 ]; then
    MODE=tiny
    L_INSTALL=60 L_MACHINE=60 L_SMOKE=60 L_BENCH=120 L_E2E=90 L_STATIC=60
else
    MODE=full
    L_INSTALL=30 L_MACHINE=40 L_SMOKE=70 L_BENCH=190 L_E2E=100 L_STATIC=70
fi

say() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

COMMIT=${IQA_COMMIT:-$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)}
DIRTY=null
if git -C "$REPO" rev-parse HEAD >/dev/null 2>&1; then
    if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then DIRTY=true; else DIRTY=false; fi
fi
printf '{"mode": "%s", "commit": "%s", "dirty": %s, "started": "%s", "started_epoch": %s, "scale": "%s"}\n' \
    "$MODE" "$COMMIT" "$DIRTY" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$START" "${SCALE[1]:-1}" >"$WORK/run.json"

collect() {
    # The parts so far, merged into gpu_check.json: a run cut short still leaves its figures.
    "$PY" "$REPO/benchmarks/bench_depictqa.py" --collect "$WORK" --json "$OUT/gpu_check.json" >>"$LOG" 2>&1 \
        || say "collecting the parts failed (see above)"
}

# part NAME LIMIT COMMAND...: run COMMAND under `timeout`, its output into the log, its exit into status/NAME.json.
part() {
    local name=$1 limit=$2 rc start seconds timed_out=false
    shift 2
    say "part $name (limit ${limit} s): $*"
    start=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then timed_out=true; fi
    printf '{"rc": %d, "seconds": %s, "limit_s": %d, "timed_out": %s}\n' "$rc" "$seconds" "$limit" "$timed_out" \
        >"$WORK/status/$name.json"
    say "part $name: exit $rc after $seconds s"
    collect
    return "$rc"
}

install() {
    # The project's files only, copied, so that the build leaves no build/ or egg-info in the checkout.
    local src=$WORK/src site=$WORK/site wheels=()
    mkdir -p "$src"
    cp -r "$REPO/pyproject.toml" "$REPO/setup.py" "$REPO/README.md" "$REPO/iqa_cli" "$REPO/man" "$src/" || return 1
    find "$src" -name __pycache__ -prune -exec rm -rf {} +
    shopt -s nullglob
    wheels=("$REPO"/benchmarks/gpu_wheels/*.whl)
    shopt -u nullglob
    if [ ${#wheels[@]} -gt 0 ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" "${wheels[@]}" || return 1
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" "$src"
}

say "mode $MODE, commit $COMMIT, python $(command -v "$PY"), out $OUT"
export -f install
export REPO WORK PY
if part install "$L_INSTALL" bash -c install; then
    export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
else
    # pip could not build it (an old setuptools, say): the checkout itself is importable as it stands.
    say "install failed: running from the checkout through PYTHONPATH"
    export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
fi
export IQA_COMMIT=$COMMIT

part machine "$L_MACHINE" "$PY" benchmarks/bench_depictqa.py --machine-info "$WORK/parts/machine.json"

# fp16 and bf16: finite logits, shapes, and greedy tokens against float32 from the same weights.
part smoke "$L_SMOKE" "$PY" benchmarks/gpu_depictqa_smoke.py "${TINY[@]}" --agreement 8 --json "$WORK/parts/smoke.json"

# The model-only figures, the scheduler's step costs, varied lengths, generate(), batched-vs-alone agreement.
part bench "$L_BENCH" "$PY" benchmarks/bench_depictqa.py "${TINY[@]}" "${SCALE[@]}" \
    --parts engine,authors,steps,profile,varied,hf,agreement --json "$WORK/parts/bench-1-model.json"

# End to end from 12 MP JPEGs (exact and draft decoding) and the decode-only rate of the same files.
part e2e "$L_E2E" "$PY" benchmarks/bench_depictqa.py "${TINY[@]}" "${SCALE[@]}" \
    --parts e2e --json "$WORK/parts/bench-2-e2e.json"

# Last: the static-KV-cache decoder, eager and (CUDA only) compiled, which may take long to compile, or hang.
part static "$L_STATIC" "$PY" benchmarks/bench_depictqa.py "${TINY[@]}" "${SCALE[@]}" \
    --parts static,compiled --json "$WORK/parts/bench-3-static.json"

collect
if [ -f "$OUT/gpu_check.md" ]; then tee -a "$LOG" <"$OUT/gpu_check.md"; fi
OK=$("$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print("ok" if d["ok"] else "; ".join(d["failed"]))' \
    "$OUT/gpu_check.json" 2>&1)
say "done in $(($(date +%s) - START)) s: $OK"
[ "$OK" = ok ]
