#!/usr/bin/env bash
# One call on the GPU machine (device tool): the kernel tests on CUDA (bf16 / fp16 / fp32), the attention
# sweep with tuning and the model-capture benchmark. Logs and JSON land in $OUT (at most 7 files).
#   bash benchmarks/gpu_session.sh            (from the repository root)
set -u
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
source benchmarks/gpu_env.sh; export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,memory.used --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
start=$(date +%s)
# one pytest per file, in parallel: most of their time is Triton compiling, which is single-threaded
for file in tests/kernels/test_*.py; do
  timeout "${TEST_TIMEOUT:-150}" python3 -m pytest "$file" -q -p no:cacheprovider -rfE > "$OUT/$(basename "$file" .py).part" 2>&1 &
done
wait
for part in "$OUT"/*.part; do echo "== $(basename "$part" .part)"; cat "$part"; done > "$OUT/tests.log"
rm -f "$OUT"/*.part
grep -E "passed|failed|error" "$OUT/tests.log" | grep -v "^E " | tail -n 6
echo "tests took $(( $(date +%s) - start )) s"
timeout "${BENCH_TIMEOUT:-170}" python3 benchmarks/attention_stats.py --tune --out "$OUT/attention_stats.json" > "$OUT/bench.log" 2>&1
echo "attention_stats exit $?"; tail -n 8 "$OUT/bench.log"
timeout "${MODEL_TIMEOUT:-120}" python3 benchmarks/model_capture.py --tune --out "$OUT/model_capture.json" > "$OUT/model.log" 2>&1
echo "model_capture exit $?"; tail -n 5 "$OUT/model.log"
