#!/usr/bin/env bash
# Issue 17 part 2 on the lent GPU: LoFiT at the paper's protocol (docs/results/7-lofit.md §0).
#   bash benchmarks/lofit_gpu.sh OUTDIR      # TASKS=truthfulqa by default
#   TASKS=clutrr EXTRA="--clutrr-train-limit 1000" bash benchmarks/lofit_gpu.sh OUTDIR   # a call of its own:
#   all 3151 CLUTRR train items are 41,370 steps (3x TruthfulQA), 1000 items about 13,000 (--estimate)
# Staging as for benchmarks/retrieval_gpu.sh (the GGUF in two halves over two calls, the gguf wheel in
# .whl/), plus the data: cp -r ../shared/data/truthfulqa .stage/  (and ../shared/data/clutrr for CLUTRR).
# Then, here: cp -r OUTDIR docs/results/data/lofit/gpu-DATE; python -m workbench.report docs; commit.
set -uo pipefail
out=${1:?usage: lofit_gpu.sh OUTDIR}
mkdir -p "$out"
exec > >(tee -a "$out/lofit.log") 2>&1
source benchmarks/gpu_env.sh; export PYTHONUNBUFFERED=1 PYTHONPATH=$PYTHONPATH:/tmp/site WORKBENCH_HOME=/tmp/wbhome TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/gguf-*.whl || exit 1
part0=/tmp/stage/smollm2.gguf.part00
[ -f "$part0" ] || part0=.stage/smollm2.gguf.part00
cat "$part0" .stage/smollm2.gguf.part01 > /tmp/smollm2.gguf || exit 1
want=$(cut -d' ' -f1 .stage/smollm2.gguf.sha256)
have=$(sha256sum /tmp/smollm2.gguf | cut -d' ' -f1)
[ "$want" = "$have" ] || { echo "GGUF checksum mismatch: $have != $want"; exit 1; }
export WORKBENCH_SMOLLM2_GGUF=/tmp/smollm2.gguf
date; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
timeout 570 python3 benchmarks/lofit_gpu.py --data .stage --tasks "${TASKS:-truthfulqa}" ${EXTRA:-} --out "$out"
status=$?
# a cut run still has every finished condition in units/: fold them into results.json
[ $status -eq 0 ] || python3 benchmarks/lofit_gpu.py --merge --data .stage --tasks "${TASKS:-truthfulqa}" ${EXTRA:-} --out "$out"
date
