#!/usr/bin/env bash
# Issue 17 part 2 on the lent GPU: LoFiT at the paper's protocol (docs/results/7-lofit.md §0).
#   bash benchmarks/lofit_gpu.sh OUTDIR      # TASKS=truthfulqa by default
#   TASKS=clutrr EXTRA="--clutrr-train-limit 1000" bash benchmarks/lofit_gpu.sh OUTDIR   # a call of its own:
#   all 3151 CLUTRR train items are 41,370 steps (3x TruthfulQA), 1000 items about 13,000 (--estimate)
# The weights and data reach the GPU through benchmarks/stage.py (pack here, one part per call; every
# call starts with `python3 benchmarks/stage.py receive`, which exits 3 naming the parts still missing).
# Then, here: cp -r OUTDIR docs/results/data/lofit/gpu-DATE; python -m workbench.report docs; commit.
set -uo pipefail
out=${1:?usage: lofit_gpu.sh OUTDIR}
mkdir -p "$out"
exec > >(tee -a "$out/lofit.log") 2>&1
python3 benchmarks/stage.py receive || exit 3
source /tmp/wb-stage/env.sh; source benchmarks/gpu_env.sh
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
date; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
timeout ${LOFIT_TIMEOUT:-570} python3 benchmarks/lofit_gpu.py --data "$WORKBENCH_DATA" --tasks "${TASKS:-truthfulqa}" ${EXTRA:-} --out "$out"
status=$?
# a cut run still has every finished condition in units/: fold them into results.json
[ $status -eq 0 ] || python3 benchmarks/lofit_gpu.py --merge --data "$WORKBENCH_DATA" --tasks "${TASKS:-truthfulqa}" ${EXTRA:-} --out "$out"
date
