#!/usr/bin/env bash
# The Gluon key pass on the lent GPU in one device call (about 2 minutes, at most ~165 s: each step has a timeout):
#   OUT=$OUT bash benchmarks/gluon_gpu_check.sh
# 1. compile report on the machine's own Triton (benchmarks/gluon_compile_check.py): registers, spills,
#    shared memory, ptxas warnings           -> $OUT/gluon_compile.json
# 2. checks against float64 (T = 1k, 4k, 16k) and times next to the Triton key pass and SDPA (4k, 16k,
#    32k), all in one process (benchmarks/gluon_gpu_check.py) -> $OUT/gluon_gpu_check.json
#    If that process dies or hangs before the Triton / SDPA times are in, they are measured again
#    without the Gluon kernel                -> $OUT/gluon_gpu_check_baseline.json
# 3. when step 2 finished: the Gluon kernel's pytest file (tests/kernels/test_gluon_key_pass.py)
#                                            -> $OUT/gluon_tests.log
# Logs of each step: $OUT/gluon_gpu_check.log. Exit status 0 unless the machine has no usable GPU.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export TMPDIR=${TMPDIR:-/tmp}
source benchmarks/gpu_env.sh; export PYTHONUNBUFFERED=1
log="$OUT/gluon_gpu_check.log"
step() { echo "== $* ($(date +%T))" | tee -a "$log"; }

step "environment"
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv 2>&1 | tee -a "$log"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)" 2>&1 | tee -a "$log"

step "compile report (timeout 30 s)"
timeout 30 python3 benchmarks/gluon_compile_check.py --json "$OUT/gluon_compile.json" >> "$log" 2>&1
echo "compile check exit $?" | tee -a "$log"

step "checks and times (timeout 90 s)"
timeout -k 5 90 python3 benchmarks/gluon_gpu_check.py --out "$OUT/gluon_gpu_check.json" >> "$log" 2>&1
status=$?
echo "gluon_gpu_check exit $status" | tee -a "$log"
if [ $status -ne 0 ] && ! python3 - "$OUT/gluon_gpu_check.json" <<'PY'
import json, sys
try:
    times = json.load(open(sys.argv[1])).get("times_ms", {})
except Exception:
    sys.exit(1)
sys.exit(0 if len(times.get("triton_key", {})) == 3 and len(times.get("sdpa", {})) == 3 else 1)
PY
then
    step "baseline again without the Gluon kernel (timeout 40 s)"
    timeout -k 5 40 python3 benchmarks/gluon_gpu_check.py --skip-gluon --check 1024 \
        --out "$OUT/gluon_gpu_check_baseline.json" >> "$log" 2>&1
    echo "baseline exit $?" | tee -a "$log"
fi

if [ $status -eq 0 ] && [ "${GLUON_TESTS:-1}" = 1 ]; then  # GLUON_TESTS=0 skips it
    step "pytest tests/kernels/test_gluon_key_pass.py (timeout 40 s)"
    timeout -k 5 40 python3 -m pytest tests/kernels/test_gluon_key_pass.py -q -p no:cacheprovider -rfEs \
        > "$OUT/gluon_tests.log" 2>&1
    echo "pytest exit $?" | tee -a "$log"; tail -5 "$OUT/gluon_tests.log" | tee -a "$log"
fi
step "done"
tail -40 "$log" | grep -v "^==" | tail -25
exit 0
