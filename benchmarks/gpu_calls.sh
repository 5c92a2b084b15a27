#!/usr/bin/env bash
# The lead's device calls for one GPU session (issues 15-17), each `bash benchmarks/gpu_calls.sh VERB`:
#   first   stage the carried part; start the kernel tests on CUDA in the background (they need no weights)
#   stage   stage the carried part (exit 3 while parts are missing; stage.py names them)
#   e2e     every model-loading command on CUDA + long context + notebook 01 (benchmarks/gpu_e2e.sh),
#           then `pytest -m gpu`; collects the background test log; all under $OUT as a few files
#   lofit   LoFiT at the paper's protocol (benchmarks/lofit_gpu.sh)
set -u
verb=${1:?usage: gpu_calls.sh first|stage|e2e|lofit}
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
e2e)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    python3 -m workbench.cli env --json > "$OUT/env.json" 2>&1
    E2E_TIMEOUT=${E2E_TIMEOUT:-520} bash benchmarks/gpu_e2e.sh /tmp/e2e > /tmp/e2e.log 2>&1
    echo "gpu_e2e exit $?"; tail -n 25 /tmp/e2e.log
    cp benchmarks/results/gpu_e2e.json "$OUT/" 2>/dev/null
    for f in /tmp/gpu-tests/*.log; do echo "== $f"; tail -n 5 "$f"; done > "$OUT/gpu_tests.log" 2>&1
    cat "$OUT/gpu_tests.log" | grep -E "==|passed|failed|error" | head -20
    cp /tmp/e2e.log "$OUT/"
    tar czf "$OUT/e2e_outputs.tgz" -C /tmp e2e --exclude='*.safetensors' --exclude='stores' 2>/dev/null
    exit 0 ;;
lofit)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    bash benchmarks/lofit_gpu.sh /tmp/lofit > /dev/null 2>&1; echo "lofit exit $?"
    tail -n 30 /tmp/lofit/lofit.log
    tar czf "$OUT/lofit.tgz" -C /tmp lofit
    exit 0 ;;
esac
