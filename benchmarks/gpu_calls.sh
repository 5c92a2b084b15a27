#!/usr/bin/env bash
# The lead's device calls for one GPU session (issues 15-17), each `bash benchmarks/gpu_calls.sh VERB`:
#   first   stage the carried part; start the kernel tests on CUDA in the background (they need no weights)
#   stage   stage the carried part (exit 3 while parts are missing; stage.py names them)
#   e2e     every model-loading command on CUDA (benchmarks/e2e.py); collects the background test logs
#   long    the long-context captures next to SDPA, notebook 01 and `pytest -m gpu` (benchmarks/e2e.py)
# (benchmarks/gpu_e2e.sh does e2e + long in one go where a call may take longer than 10 minutes.)
#   lofit   LoFiT at the paper's protocol (benchmarks/lofit_gpu.sh)
#   calibration  ACT and ZeroTuning, hundreds of tuning items, random-head controls (benchmarks/calibration_gpu.sh)
#   retrieval-random  the random-K masking control drawn both ways, 128 held-out NIAH runs (benchmarks/retrieval_gpu.py)
set -u
verb=${1:?usage: gpu_calls.sh first|stage|e2e|long|lofit|calibration|retrieval-random}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source benchmarks/gpu_env.sh; export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 benchmarks/stage.py receive; staged=$?
case $verb in
first)
    mkdir -p /tmp/gpu-tests
    for file in tests/kernels/test_*.py tests/test_seam_kernels.py; do
        setsid nohup timeout 900 python3 -m pytest "$file" -q -p no:cacheprovider -rfE \
            > "/tmp/gpu-tests/$(basename "$file" .py).log" 2>&1 < /dev/null &
    done
    python3 -m workbench.cli env --json > "$OUT/env.json" 2>&1; cat "$OUT/env.json"
    [ $staged = 3 ] && exit 0; exit $staged ;;
stage)
    [ $staged = 3 ] && exit 0; exit $staged ;;
e2e)  # the commands (one call: ~17 processes, each loading the model)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    export WORKBENCH_RESULTS=/tmp/wb-e2e/results; mkdir -p $WORKBENCH_RESULTS
    python3 -m workbench.cli env --json > "$OUT/env.json" 2>&1
    timeout 120 python3 -c "from workbench.models.convert import convert_smollm2; from workbench.models.registry import smollm2_dir; convert_smollm2(smollm2_dir())"
    timeout ${E2E_TIMEOUT:-500} python3 benchmarks/e2e.py --device cuda --out /tmp/e2e --json "$OUT/gpu_e2e_commands.json" > "$OUT/e2e_commands.log" 2>&1
    echo "e2e commands exit $?"; tail -n 30 "$OUT/e2e_commands.log"
    for f in /tmp/gpu-tests/*.log; do echo "== $f"; tail -n 5 "$f"; done > "$OUT/gpu_tests.log" 2>&1
    grep -E "==|passed|failed|error" "$OUT/gpu_tests.log" | head -20
    tar czf "$OUT/e2e_outputs.tgz" --exclude='*.safetensors' --exclude='stores' -C /tmp e2e 2>/dev/null
    exit 0 ;;
long)  # long-context captures next to SDPA, notebook 01, pytest -m gpu
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    export WORKBENCH_RESULTS=/tmp/wb-e2e/results; mkdir -p $WORKBENCH_RESULTS
    timeout ${LONG_TIMEOUT:-400} python3 benchmarks/e2e.py --device cuda --out /tmp/e2e-long --only none --long-context \
        --llama-dir /tmp/wb-e2e/llama-1b-random --notebook --pytest-gpu --pytest-timeout 150 \
        --json "$OUT/gpu_e2e_long.json" > "$OUT/e2e_long.log" 2>&1
    echo "e2e long exit $?"; tail -n 30 "$OUT/e2e_long.log"
    tar czf "$OUT/e2e_long_outputs.tgz" --exclude='*.safetensors' --exclude='*.parquet' --exclude='stores' --exclude='text-*' -C /tmp e2e-long 2>/dev/null
    exit 0 ;;
lofit)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    bash benchmarks/lofit_gpu.sh /tmp/lofit > /dev/null 2>&1; echo "lofit exit $?"
    tail -n 30 /tmp/lofit/lofit.log
    tar czf "$OUT/lofit.tgz" -C /tmp lofit
    exit 0 ;;
calibration)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    bash benchmarks/calibration_gpu.sh /tmp/calibration > /dev/null 2>&1; echo "calibration exit $?"
    tail -n 40 /tmp/calibration/calibration.log
    tar czf "$OUT/calibration.tgz" -C /tmp calibration
    exit 0 ;;
retrieval-random)  # one process for the fixed sets (batched), one per fresh draw (DRAWS, default 5), side by side
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    out=/tmp/retrieval-random; mkdir -p $out
    essays=$WORKBENCH_DATA/niah/essays
    timeout 120 python3 -c "from workbench.models.convert import convert_smollm2; from workbench.models.registry import smollm2_dir; convert_smollm2(smollm2_dir())"
    date; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
    timeout ${RR_TIMEOUT:-520} python3 benchmarks/retrieval_gpu.py random-fixed --haystack "$essays" --out $out \
        > $out/random-fixed.log 2>&1 &
    for draw in $(seq 0 $((${DRAWS:-5} - 1))); do
        timeout ${RR_TIMEOUT:-520} python3 benchmarks/retrieval_gpu.py random-fresh --draw $draw --haystack "$essays" \
            --out $out > $out/random-fresh-d$draw.log 2>&1 &
    done
    wait; date
    for f in $out/*.log; do echo "== $f"; grep -v "Warning\|forward_call" "$f" | tail -4; done
    tar czf "$OUT/retrieval-random.tgz" -C /tmp retrieval-random
    exit 0 ;;
esac
