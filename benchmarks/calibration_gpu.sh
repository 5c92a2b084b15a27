#!/usr/bin/env bash
# Issue 17 item 3 on the lent GPU: ACT and ZeroTuning with hundreds of tuning items (docs/results/5-sinks-calibration.md §3).
#   bash benchmarks/calibration_gpu.sh OUTDIR       # TASKS=clutrr,truthfulqa,sentiment by default
# The weights and data reach the GPU through benchmarks/stage.py (as for lofit_gpu.sh).
# Then, here: cp -r OUTDIR docs/results/data/calibration/gpu-DATE (without calibration.log if it is large);
# python -m workbench.report docs; commit.
set -uo pipefail
out=${1:?usage: calibration_gpu.sh OUTDIR}
mkdir -p "$out"
exec > >(tee -a "$out/calibration.log") 2>&1
python3 benchmarks/stage.py receive || exit 3
source /tmp/wb-stage/env.sh; source benchmarks/gpu_env.sh
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
date; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
args=(--data "$WORKBENCH_DATA" --tasks "${TASKS:-clutrr,truthfulqa,sentiment}" --batch "${BATCH:-64}" --workers "${WORKERS:-6}")
timeout 560 python3 benchmarks/calibration_gpu.py "${args[@]}" --budget-s "${BUDGET_S:-500}" ${EXTRA:-} --out "$out"
status=$?
# a cut run still has every finished condition in units/: fold them into results.json
[ $status -eq 0 ] || python3 benchmarks/calibration_gpu.py --merge "${args[@]}" ${EXTRA:-} --out "$out"
date
