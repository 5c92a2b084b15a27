#!/usr/bin/env bash
# One call on the GPU machine: train the six tiny ViTs of issue 8 (supervised / mae / dino x seeds 0, 1) at
# once, as six processes sharing one GPU, each with a wall-clock cap, so that all are done in ~6.5 minutes.
# Writes DIR/tiny-vit-<objective>-s<seed>.safetensors (fp16, ~5.5 MB each) and DIR/train.log (7 files).
#   bash benchmarks/gpu_train_tiny.sh DIR            (from the repository root; DIR e.g. "$OUT")
# Every run stops at one shared deadline, TOTAL_MINUTES (default 6.25) after this script starts, less
# MARGIN_S (default 25 s) for saving and the summary; start-up time comes out of the training time. Each
# run calibrates its step count on steps 20-60 against that deadline (so the cosine schedule ends there);
# the deadline is also a hard stop. Other knobs: MODELS (default all six, e.g. "supervised:0 dino:1"),
# DEVICE (default cuda), EXTRA (more train_tiny arguments, e.g. "--batch 8").
set -u
DIR=${1:?usage: bash benchmarks/gpu_train_tiny.sh DIR}
TOTAL_MINUTES=${TOTAL_MINUTES:-6.25}
MARGIN_S=${MARGIN_S:-25}
MODELS=${MODELS:-"supervised:0 supervised:1 mae:0 mae:1 dino:0 dino:1"}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
mkdir -p "$DIR"
source benchmarks/gpu_env.sh; export PYTHONUNBUFFERED=1
LOG="$DIR/train.log"
start=$(date +%s)
deadline=$(python3 -c "print($start + $TOTAL_MINUTES * 60 - $MARGIN_S)")
{
  echo "== gpu_train_tiny.sh $(date -u +%FT%TZ) git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "TOTAL_MINUTES=$TOTAL_MINUTES MARGIN_S=$MARGIN_S deadline=$deadline MODELS=$MODELS DEVICE=$DEVICE EXTRA=$EXTRA"
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$LOG"

# Fail fast (and say why) if the training module's import chain needs a package this machine lacks.
if ! python3 -c "import sys; sys.path.insert(0, 'tools'); import train_tiny_vit" 2> "$DIR/import.err"; then
  echo "import of tools/train_tiny_vit.py failed:" | tee -a "$LOG"; cat "$DIR/import.err" | tee -a "$LOG"
  rm -f "$DIR/import.err"; exit 1
fi
rm -f "$DIR/import.err"

pids=()
for model in $MODELS; do
  objective=${model%%:*}; seed=${model##*:}
  # shellcheck disable=SC2086
  python3 tools/train_tiny_vit.py --objective "$objective" --seed "$seed" --minutes "$TOTAL_MINUTES" \
    --deadline "$deadline" --device "$DEVICE" --log-every 100 --out "$DIR" $EXTRA > "$DIR/$objective-$seed.part" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

for model in $MODELS; do
  objective=${model%%:*}; seed=${model##*:}
  echo "== $objective seed $seed"; cat "$DIR/$objective-$seed.part"
done >> "$LOG"
rm -f "$DIR"/*.part
echo "== all done in $(( $(date +%s) - start )) s (exit status $status)" | tee -a "$LOG"
# Per-model summary: the FINAL line each run prints after saving its checkpoint.
python3 - "$LOG" <<'EOF' | tee -a "$LOG"
import json, sys
skip = {"objective", "seed", "steps", "schedule_steps", "seconds", "step", "loss", "lr"}
for line in open(sys.argv[1]):
    if line.startswith("FINAL "):
        r = json.loads(line[6:])
        extra = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k not in skip}
        print(f"{r['objective']:>10} s{r['seed']}  steps {r['steps']}/{r['schedule_steps']}  {r['seconds']:.0f} s"
              f"  loss {r['loss']:.4f}  {extra}")
EOF
ls -l "$DIR" | tee -a "$LOG"
exit $status
