#!/usr/bin/env bash
# The GPU benchmark in one call, for a short slot on a machine with no network where
# torch is installed: docs/benchmarks.md, "GPU benchmark in one call".
#
#   make gpu-wheels                    # here, with network: fills wheelhouse/ (ignored)
#   bash benchmarks/gpu.sh --out DIR   # there, from the repository root
#   bash benchmarks/gpu.sh --cpu       # the same stages on the CPU, tiny model, fp32: seconds
#
# Stages, each a process of its own under `timeout`, in this order:
#   install            pip installs wheelhouse/ (--no-index; torch untouched); with no
#                      wheelhouse/ it checks that pyproject.toml's requirements are met
#   cuda               (not with --cpu) torch sees a CUDA device, and which
#   models-FAMILY      benchmarks.models, --random-weights architectures in fp16: ms per
#                      frame at 512x512, steps 1 and 4, batch 1, 4 and 8, no compile; for
#                      sd-turbo, lcm and sdxl-turbo (the largest last)
#   e2e-1, e2e-8       `realtime bench --serve`: 1 and 8 sessions of 30 fps WebSocket
#                      cameras through the real server running sd-turbo (random weights,
#                      fp16, batching up to 8, no compile)
#   compile-sd-turbo   benchmarks.models --compile (inductor, reduce-overhead: CUDA graphs)
#                      for sd-turbo only, batch 1 and 8, steps 1 and 4
# --compile covers one family and two batch sizes because each new batch size or step
# count compiles again on first use (FewStepModel.compile), in the warm-up, and a UNet's
# compile is expected to take a minute or so on a GPU host (a guess: not yet measured
# here): every family and batch would not fit in 8 minutes. sd-turbo is the family that
# StreamDiffusion's 93.9 fps is measured on; batch 1 and 8 are one session and a full
# batch (--max-batch's default). Compile runs last: a slow one cannot cost other rows.
#
# Time: every stage has its own limit, and none may run past BUDGET_S (450 s on a GPU)
# from the script's start: the whole script ends inside 8 minutes, a hung stage is
# killed with its children (timeout signals its process group, the bench's server too).
# Failures: a stage that fails or times out prints its name and the tail of its log,
# the later stages still run (a slot is short: keep every number it can give), and the
# script exits 1 at the end naming the failed stages. Only install and cuda stop it at once.
#
# Options: --cpu, --out DIR (table.md, results.json and stages.log copied there),
# --families LIST (models-* stages; the first one is also e2e's and compile's model),
# --only LIST (stages whose names start with one of these, e.g. models,e2e; install
# and cuda always run). PYTHON picks the interpreter (default .venv/bin/python, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

CPU=0 OUT_DIR="" FAMILIES="" ONLY=""
while (($#)); do
    case $1 in
        --cpu) CPU=1 ;;
        --out) OUT_DIR=${2:?--out needs a folder}; shift ;;
        --families) FAMILIES=${2:?--families needs a list}; shift ;;
        --only) ONLY=${2:?--only needs a list}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [[ -z ${PYTHON:-} ]]; then
    PYTHON=python3
    [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi
# The tree's code, also in the servers the bench starts; weights are never fetched.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

if ((CPU)); then
    BUDGET_S=300
    FAMILIES=${FAMILIES:-tiny}
    DEVICE=(--device cpu --dtype fp32)
    MODELS=(--steps 1,2 --batch 1,2 --frames 1 --warmup 1)
    # inductor's CPU code takes minutes to build here; eager checks the compiled path.
    COMPILE=(--compile --compile-backend eager --steps 1 --batch 1 --frames 1 --warmup 1)
    SESSIONS=(1 2)
    E2E=(--size 256x256 --duration 3 --warmup 1)
    SERVE=(--random-weights --devices cpu)
    LIMIT_MODELS=120 LIMIT_BIG=120 LIMIT_E2E=90 LIMIT_COMPILE=120
else
    BUDGET_S=450
    FAMILIES=${FAMILIES:-sd-turbo,lcm,sdxl-turbo}
    DEVICE=(--device cuda --dtype fp16)
    MODELS=(--steps 1,4 --batch 1,4,8 --frames 10 --warmup 2)
    COMPILE=(--compile --steps 1,4 --batch 1,8 --frames 10 --warmup 3)
    SESSIONS=(1 8)
    E2E=(--size 512x512 --duration 10 --warmup 3)
    SERVE=(--random-weights --devices cuda)
    LIMIT_MODELS=90 LIMIT_BIG=150 LIMIT_E2E=90 LIMIT_COMPILE=240
fi
IFS=, read -ra FAMILY_LIST <<<"$FAMILIES"
FIRST=${FAMILY_LIST[0]}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILED=() RESULTS=()

say() { echo "[gpu.sh $(date +%H:%M:%S) +${SECONDS}s] $*"; }

wanted() {
    [[ -z $ONLY || $1 == install || $1 == cuda ]] && return 0
    local prefix
    for prefix in ${ONLY//,/ }; do [[ $1 == "$prefix"* ]] && return 0; done
    return 1
}

# stage NAME LIMIT_S COMMAND...: COMMAND's stdout is the stage's JSON, its stderr its log.
stage() {
    local name=$1 limit=$2 left rc started=$SECONDS
    shift 2
    wanted "$name" || return 0
    left=$((BUDGET_S - SECONDS))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        say "FAILED $name: not started, the ${BUDGET_S} s budget is spent"
        FAILED+=("$name")
        return 1
    fi
    say "$name: started (limit ${limit} s)"
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.json" 2>"$WORK/$name.log"
    rc=$?
    {
        echo "=== $name (exit $rc) ==="
        cat "$WORK/$name.log"
    } >>"$WORK/stages.log"
    if ((rc == 0)); then
        say "$name: done in $((SECONDS - started)) s"
        RESULTS+=("$WORK/$name.json")
        return 0
    fi
    if ((rc == 124 || rc == 137)); then
        say "FAILED $name: timed out after ${limit} s; the end of its log:"
    else
        say "FAILED $name: exit $rc after $((SECONDS - started)) s; the end of its log:"
    fi
    # The bench's progress line redraws itself with \r: a line each here.
    tr '\r' '\n' <"$WORK/$name.log" | grep -v '^$' | tail -n 15 | sed 's/^/    /'
    [[ -s $WORK/$name.log ]] || echo "    (its log is empty)"
    FAILED+=("$name")
    return 1
}

# With no wheelhouse/, install nothing where pyproject.toml's requirements are all met.
install() {
    if [[ -d wheelhouse ]]; then
        echo "installing from wheelhouse/ ($(du -sh wheelhouse | cut -f1))" >&2
        "$PYTHON" -m pip install --quiet --no-index --no-deps --no-cache-dir \
            --disable-pip-version-check wheelhouse/*.whl >&2 || return 1
    elif "$PYTHON" -m benchmarks.gpu --missing >&2; then
        echo "no wheelhouse/: nothing to install" >&2
        return 0
    else
        echo "no wheelhouse/ and requirements missing: run make gpu-wheels" \
            "and carry wheelhouse (docs/benchmarks.md)" >&2
        return 1
    fi
    "$PYTHON" -m benchmarks.gpu --missing >&2
}
export -f install
export PYTHON

say "$( ((CPU)) && echo CPU path || echo GPU path): families $FAMILIES, budget ${BUDGET_S} s," \
    "python $PYTHON"
if ! stage install 120 bash -c install; then
    say "gpu.sh: stopping, nothing can run without the install"
    exit 1
fi
CUDA_CHECK="import sys, torch
assert torch.cuda.is_available(), f'torch {torch.__version__} sees no CUDA device'
print(torch.cuda.get_device_name(), file=sys.stderr)"
if ! ((CPU)) && ! stage cuda 60 "$PYTHON" -c "$CUDA_CHECK"; then
    say "gpu.sh: stopping, no GPU (--cpu runs the CPU path)"
    exit 1
fi

for family in "${FAMILY_LIST[@]}"; do
    limit=$LIMIT_MODELS
    [[ $family == sdxl-turbo ]] && limit=$LIMIT_BIG
    stage "models-$family" "$limit" \
        "$PYTHON" -m benchmarks.models --json --families "$family" "${DEVICE[@]}" "${MODELS[@]}"
done

for sessions in "${SESSIONS[@]}"; do
    stage "e2e-$sessions" "$LIMIT_E2E" \
        "$PYTHON" -m realtime bench --serve --json --sessions "$sessions" \
        --model "$FIRST" "${E2E[@]}" -- "${SERVE[@]}"
done

stage "compile-$FIRST" "$LIMIT_COMPILE" \
    "$PYTHON" -m benchmarks.models --json --families "$FIRST" "${DEVICE[@]}" "${COMPILE[@]}"

say "table (stages that ran):"
"$PYTHON" -m benchmarks.gpu "${RESULTS[@]}" /dev/null | tee "$WORK/table.md"
if [[ -n $OUT_DIR ]]; then
    mkdir -p "$OUT_DIR"
    cp "$WORK/table.md" "$WORK/stages.log" "$OUT_DIR/"
    "$PYTHON" -m benchmarks.gpu --json "${RESULTS[@]}" /dev/null >"$OUT_DIR/results.json"
    say "wrote table.md, results.json and stages.log to $OUT_DIR"
fi
if ((${#FAILED[@]})); then
    say "gpu.sh: ${#FAILED[@]} stage(s) failed: ${FAILED[*]}"
    exit 1
fi
say "gpu.sh: every stage passed in ${SECONDS} s"
