#!/usr/bin/env bash
# The lead's device calls for one GPU session (issues 15-17), each `bash benchmarks/gpu_calls.sh VERB`:
#   first   stage the carried part; the short-context times and CUDA-graph tests (SHORT=0 skips them), the
#           forward variants' sweep (ALU=0 skips it), every path against SDPA 4k-128k with FlexAttention and the 1B
#           model at 32k (TARGETS=0 skips them), the Gluon key pass check (GLUON=1); start the gpu-marked kernel
#           tests in the background (e2e returns their logs; then PYTEST_GPU=0 on long skips them)
#   stage   stage the carried part (exit 3 while parts are missing; stage.py names them)
#   e2e     every model-loading command on CUDA (benchmarks/e2e.py; E2E_ONLY="a,b" runs those only); collects the background test logs
#   long    the long-context captures next to SDPA, notebook 01 and `pytest -m gpu` (benchmarks/e2e.py);
#           GLUON=1 then runs benchmarks/gluon_gpu_check.sh (the Gluon key pass, ~2-3 min) -> gluon.tgz
# (benchmarks/gpu_e2e.sh does e2e + long in one go where a call may take longer than 10 minutes.)
#   lofit   LoFiT at the paper's protocol (benchmarks/lofit_gpu.sh)
#   lofit-runs  several lofit_gpu.sh runs at once, one per line of LOFIT_PLAN (benchmarks/lofit_plans/*.txt:
#           "NAME TASKS ARGS...", each into /tmp/lofit/NAME; LOFIT_PLAN="a.txt b.txt" runs both plans at once)
#   duo     DuoAttention gates to their plateau + the deployment check (benchmarks/duo_gpu.py, 5-8 min)
#   rhythm  preplan-and-anchor rhythm on generated arithmetic problems (benchmarks/rhythm_gpu.py, ~3-5 min)
#   duo-rhythm  both at once on the one GPU (3 processes; 5-8 min): one call instead of two;
#           or BG="duo rhythm" on e2e (then BG_WAIT >= 480 on long, or they are stopped early)
#   together  the BG verbs alone, at once, within DEADLINE (570 s): BG="duo lofit-runs" -> bg.tgz, smi.csv
#   one     BG verbs + e2e + long (LONG=0 skips it) at once, within ONE_DEADLINE (575 s): $OUT holds at most 8 files
#   all     e2e (with BG) and long in one call, for a session with little device time left: $OUT/e2e and
#           $OUT/long (8 files at most come back, so the kernel-test logs are appended to e2e_commands.log)
#   calibration  ACT and ZeroTuning, hundreds of tuning items, random-head controls (benchmarks/calibration_gpu.sh)
#   retrieval-random  the random-K masking control drawn both ways, 128 held-out NIAH runs (benchmarks/retrieval_gpu.py)
#   influence  AttentionInfluence on every document the local data give (871 of 512 tokens: the essays hold
#           only 218 such pieces), 3 fresh random sets each (benchmarks/influence_corpus.py, `workbench
#           influence`), and the Table 6 mirror check (benchmarks/influence_mirror.py, 500 kv prompts), side by
#           side (~2-4 min) -> influence.tgz
# BG="lofit calibration ..." on `e2e` starts those verbs in the background (niced, 2 CPU threads each)
# beside the commands: a 135M model leaves the GPU mostly idle and the device time of a session is short.
# The commands' wall times then say so in the report's "note". `long` first waits for them (BG_WAIT
# seconds at most, so the long-context timings run alone) and returns all their outputs as bg.tgz.
set -u
verb=${1:?usage: gpu_calls.sh first|stage|e2e|long|lofit|duo|rhythm|duo-rhythm|calibration|retrieval-random}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source benchmarks/gpu_env.sh; export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 benchmarks/stage.py receive; staged=$?
convert_once() {  # the SmolLM2 GGUF to safetensors, once, before several processes load it (they would race)
    timeout 120 python3 -c "from workbench.models.convert import convert_smollm2; from workbench.models.registry import smollm2_dir; convert_smollm2(smollm2_dir())"
}
smi_log() {  # the card's memory and use every 15 s into $1, in the background ($! is its pid)
    mkdir -p "$(dirname "$1")"; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv -l 15 > "$1" 2>&1 &
}
start_bg() {  # each verb of $BG in the background (niced, 2 CPU threads), its OUT and log in /tmp/bg/VERB
    rm -rf /tmp/bg; mkdir -p /tmp/bg
    for job in $BG; do
        mkdir -p /tmp/bg/$job
        ( OUT=/tmp/bg/$job OMP_NUM_THREADS=2 setsid nohup nice -n 10 bash -c \
            "echo \$\$ > /tmp/bg/$job.pid; bash benchmarks/gpu_calls.sh $job > /tmp/bg/$job/call.log 2>&1; touch /tmp/bg/$job.done" \
            < /dev/null > /dev/null 2>&1 & )
    done
}
collect_bg() {  # the background verbs (BG on e2e): let them end ($1 seconds at most), stop the rest, return all as bg.tgz
    local pending=""
    for _ in $(seq "$1"); do
        pending=$(for d in /tmp/bg/*/; do j=$(basename "$d"); [ -e /tmp/bg/$j.done ] || echo $j; done)
        [ -z "$pending" ] && break; sleep 1
    done
    pending=$(for d in /tmp/bg/*/; do j=$(basename "$d"); [ -e /tmp/bg/$j.done ] || echo $j; done)
    [ -z "$pending" ] || { echo "still running, stopped: $pending (their finished units are returned)"
                          for j in $pending; do kill -- -"$(cat /tmp/bg/$j.pid)"; done; sleep 3; }
    for d in /tmp/bg/*/; do echo "== $d"; tail -n 12 "$d/call.log"; done
    # the work folders too: a stopped verb never reached its own tar
    tar czf "$OUT/bg.tgz" -C /tmp bg $(cd /tmp && ls -d lofit duo rhythm calibration retrieval-random 2>/dev/null)
}
targets() {  # issue 19 item 4: every path's ratio to SDPA, 4k-128k, FlexAttention beside; the 1B model at 32k
    mkdir -p "$OUT/targets"
    timeout -k 5 ${TARGETS_TIMEOUT:-160} python3 benchmarks/attention_stats.py --flex --out "$OUT/targets/attention_stats.json" \
        > "$OUT/targets/attention_stats.log" 2>&1; echo "attention_stats exit $?"; tail -n 8 "$OUT/targets/attention_stats.log"
    timeout -k 5 ${MODEL_TIMEOUT:-90} python3 benchmarks/model_capture.py --out "$OUT/targets/model_capture.json" \
        > "$OUT/targets/model_capture.log" 2>&1; echo "model_capture exit $?"; tail -n 4 "$OUT/targets/model_capture.log"
}
case $verb in
all)
    [ $staged = 0 ] || exit $staged
    mkdir -p "$OUT/e2e" "$OUT/long"
    OUT="$OUT/e2e" bash benchmarks/gpu_calls.sh e2e
    cat "$OUT/e2e/gpu_tests.log" >> "$OUT/e2e/e2e_commands.log" 2>/dev/null; rm -f "$OUT/e2e/gpu_tests.log"
    OUT="$OUT/long" bash benchmarks/gpu_calls.sh long
    exit 0 ;;
targets)  # issue 19's targets alone (no staged part needed); also SHORT=1 for the short-context times
    targets
    if [ "${SHORT:-0}" = 1 ]; then
        timeout -k 5 ${SHORT_TIMEOUT:-90} python3 benchmarks/short_context.py --out "$OUT/targets/short_context.json" > "$OUT/targets/short_context.log" 2>&1
        echo "short_context exit $?"; tail -n 15 "$OUT/targets/short_context.log"
    fi
    (cd "$OUT" && tar czf targets.tgz targets && rm -rf targets)
    exit 0 ;;
one)  # issues 16-17 in one call, for a session with one call's device time left: the BG verbs start, the
    # e2e commands (E2E_ONLY) and the long-context captures + notebook run beside them (their timings say so),
    # then the BG verbs get until ONE_DEADLINE seconds after the start and come back as bg.tgz
    [ $staged = 0 ] || exit $staged
    began=$(date +%s)
    smi_log /tmp/bg-smi/smi.csv
    BG="${BG:-lofit calibration duo rhythm retrieval-random}" E2E_TIMEOUT=${E2E_TIMEOUT:-300} bash benchmarks/gpu_calls.sh e2e
    cat "$OUT/gpu_tests.log" "$OUT/env.json" >> "$OUT/e2e_commands.log" 2>/dev/null; rm -f "$OUT/gpu_tests.log" "$OUT/env.json"
    [ "${LONG:-1}" = 1 ] && BG_COLLECT=0 PYTEST_GPU=0 LONG_TIMEOUT=${LONG_TIMEOUT:-230} bash benchmarks/gpu_calls.sh long
    left=$(( ${ONE_DEADLINE:-575} - ($(date +%s) - began) )); [ $left -gt 0 ] || left=1
    collect_bg $left
    cp /tmp/bg-smi/smi.csv "$OUT/smi.csv" 2>/dev/null  # the card's memory and use every 15 s through the call
    # the analyses' gpu-marked tests (started by e2e) may end after the commands: their logs as they are now
    for f in /tmp/gpu-tests/*.log; do echo "== $f (at the end of the call)"; tail -n 8 "$f"; done >> "$OUT/e2e_commands.log" 2>&1
    exit 0 ;;
together)  # the BG verbs alone at once (no e2e commands, no tests beside them), within DEADLINE (570 s) of the
    # start; all their outputs come back as bg.tgz, the card's memory and use every 15 s as smi.csv
    [ $staged = 0 ] || exit $staged
    began=$(date +%s)
    source /tmp/wb-stage/env.sh
    smi_log /tmp/bg-smi/smi.csv
    convert_once
    start_bg
    left=$(( ${DEADLINE:-570} - ($(date +%s) - began) )); [ $left -gt 0 ] || left=1
    collect_bg $left
    cp /tmp/bg-smi/smi.csv "$OUT/smi.csv" 2>/dev/null
    exit 0 ;;
first)
    # The Gluon key pass check (issue 19, ~2 min; needs no staged part), alone on the GPU, its files in $OUT;
    # then, in the background while the parts arrive, every gpu-marked kernel test file but the Gluon one's
    # (`e2e` returns their logs as gpu_tests.log). GLUON=0 skips the check.
    mkdir -p /tmp/gpu-tests
    # the Gluon key pass was measured 2026-12-07 (exact, slower): GLUON=1 checks it again after a change
    [ "${GLUON:-0}" = 1 ] && GLUON_TESTS=0 OUT="$OUT" bash benchmarks/gluon_gpu_check.sh
    if [ "${SHORT:-1}" = 1 ]; then  # issue 19 item 2: short-context times (eager and CUDA-graph replay) + graph tests
        timeout -k 5 ${SHORT_TIMEOUT:-90} python3 benchmarks/short_context.py --out "$OUT/short_context.json" > "$OUT/short_context.log" 2>&1
        echo "short_context exit $?"; tail -n 15 "$OUT/short_context.log"
        timeout -k 5 ${GRAPH_TIMEOUT:-80} python3 -m pytest tests/kernels -q -x -m gpu -k "graph_capture or bf16_long" -p no:cacheprovider \
            >> "$OUT/short_context.log" 2>&1; echo "graph tests exit $?"; tail -n 3 "$OUT/short_context.log"
    fi
    if [ "${ALU:-1}" = 1 ]; then  # issue 19 item 3: the forward's variants (ROWSUM_MMA, DISTANCE_MMA) vs the default and SDPA
        mkdir -p "$OUT/sweep"
        timeout -k 5 ${ALU_TIMEOUT:-150} python3 benchmarks/kernel_sweep.py --lengths 4096 16384 32768 --budget-ms 250 \
            --only fwd_packed fwd_packed_mma fwd_rowsum fwd_rowsum_s2 --out-dir "$OUT/sweep" > "$OUT/sweep/sweep.log" 2>&1
        echo "kernel_sweep exit $?"; tail -n 12 "$OUT/sweep/sweep.log"
    fi
    [ "${TARGETS:-1}" = 1 ] && targets
    for file in $(ls tests/kernels/test_*.py | grep -v gluon) tests/test_seam_kernels.py; do
        setsid nohup timeout 600 python3 -m pytest "$file" -q -p no:cacheprovider -rfE \
            > "/tmp/gpu-tests/$(basename "$file" .py).log" 2>&1 < /dev/null &
    done
    python3 -m workbench.cli env --json > "$OUT/env.json" 2>&1; cat "$OUT/env.json"
    # at most 8 files come back: everything in one archive
    (cd "$OUT" && tar czf /tmp/first.tgz --exclude=first.tgz . && find . -mindepth 1 -delete && mv /tmp/first.tgz .)
    [ $staged = 3 ] && exit 0; exit $staged ;;
stage)
    [ $staged = 3 ] && exit 0; exit $staged ;;
e2e)  # the commands (one call: ~17 processes, each loading the model)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    export WORKBENCH_RESULTS=/tmp/wb-e2e/results; mkdir -p $WORKBENCH_RESULTS
    python3 -m workbench.cli env --json > "$OUT/env.json" 2>&1
    mkdir -p /tmp/gpu-tests  # the analyses' gpu-marked tests need the staged wheels: started here, collected below
    ( timeout 400 python3 -m pytest tests/test_devices_analyses.py -m gpu -q -p no:cacheprovider -rfE \
        > /tmp/gpu-tests/test_devices_analyses.log 2>&1 < /dev/null & )
    convert_once
    if [ -n "${BG:-}" ]; then
        start_bg
        export E2E_NOTE="these ran on the same GPU at the same time (niced): $BG"
    fi
    timeout ${E2E_TIMEOUT:-500} python3 benchmarks/e2e.py --device cuda --out /tmp/e2e ${E2E_ONLY:+--only "$E2E_ONLY"} --json "$OUT/gpu_e2e_commands.json" > "$OUT/e2e_commands.log" 2>&1
    echo "e2e commands exit $?"; tail -n 30 "$OUT/e2e_commands.log"
    for f in /tmp/gpu-tests/*.log; do echo "== $f"; tail -n 5 "$f"; done > "$OUT/gpu_tests.log" 2>&1
    grep -E "==|passed|failed|error" "$OUT/gpu_tests.log" | head -20
    tar czf "$OUT/e2e_outputs.tgz" --exclude='*.safetensors' --exclude='stores' -C /tmp e2e 2>/dev/null
    exit 0 ;;
long)  # long-context captures next to SDPA, notebook 01, pytest -m gpu
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    export WORKBENCH_RESULTS=/tmp/wb-e2e/results; mkdir -p $WORKBENCH_RESULTS
    [ -d /tmp/bg ] && [ "${BG_COLLECT:-1}" = 1 ] && collect_bg ${BG_WAIT:-150}
    timeout ${LONG_TIMEOUT:-400} python3 benchmarks/e2e.py --device cuda --out /tmp/e2e-long --only none --long-context \
        --llama-dir /tmp/wb-e2e/llama-1b-random --notebook $([ "${PYTEST_GPU:-1}" = 1 ] && echo --pytest-gpu) --pytest-timeout 150 \
        --json "$OUT/gpu_e2e_long.json" > "$OUT/e2e_long.log" 2>&1
    echo "e2e long exit $?"; tail -n 30 "$OUT/e2e_long.log"
    tar czf "$OUT/e2e_long_outputs.tgz" --exclude='*.safetensors' --exclude='*.parquet' --exclude='stores' --exclude='text-*' -C /tmp e2e-long 2>/dev/null
    if [ "${TARGETS:-0}" = 1 ]; then  # issue 19's targets here when `first` skipped them (TARGETS=0 there)
        OUT=/tmp/targets-out targets; tar czf "$OUT/targets.tgz" -C /tmp/targets-out targets
    fi
    if [ "${GLUON:-0}" = 1 ]; then  # the Gluon key pass check (issue 19), alone on the GPU after the timings
        OUT=/tmp/gluon bash benchmarks/gluon_gpu_check.sh; tar czf "$OUT/gluon.tgz" -C /tmp gluon
    fi
    exit 0 ;;
lofit)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    EXTRA="${LOFIT_EXTRA:-}" bash benchmarks/lofit_gpu.sh /tmp/lofit > /dev/null 2>&1; echo "lofit exit $?"
    tail -n 30 /tmp/lofit/lofit.log
    tar czf "$OUT/lofit.tgz" -C /tmp lofit
    exit 0 ;;
lofit-runs)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    plan=${LOFIT_PLAN:?LOFIT_PLAN=benchmarks/lofit_plans/NAME.txt}
    convert_once
    smi_log /tmp/lofit/smi.csv; smi=$!; runs=()
    while read -r name tasks args; do
        case $name in ''|'#'*) continue ;; esac
        TASKS=$tasks EXTRA="$args" bash benchmarks/lofit_gpu.sh /tmp/lofit/$name > /dev/null 2>&1 &
        runs+=($!)
    done < <(cat $plan)  # LOFIT_PLAN may name several plan files
    wait "${runs[@]}"; kill $smi 2>/dev/null
    echo "lofit runs done"
    for log in /tmp/lofit/*/lofit.log; do echo "== $log"; grep -v "^ \|Traceback\|File " "$log" | tail -n 12; done
    tar czf "$OUT/lofit.tgz" -C /tmp lofit
    exit 0 ;;
duo)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    mkdir -p /tmp/duo
    timeout ${DUO_TIMEOUT:-570} python3 benchmarks/duo_gpu.py --out /tmp/duo --budget-s ${DUO_BUDGET:-500} ${EXTRA:-} > /tmp/duo/duo.log 2>&1
    echo "duo exit $?"; python3 benchmarks/duo_gpu.py --merge --out /tmp/duo ${EXTRA:-} >> /tmp/duo/duo.log 2>&1
    tail -n 40 /tmp/duo/duo.log
    tar czf "$OUT/duo.tgz" -C /tmp duo
    exit 0 ;;
rhythm)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    mkdir -p /tmp/rhythm
    timeout ${RHYTHM_TIMEOUT:-570} python3 benchmarks/rhythm_gpu.py --out /tmp/rhythm --budget-s ${RHYTHM_BUDGET:-480} ${EXTRA:-} > /tmp/rhythm/rhythm.log 2>&1
    echo "rhythm exit $?"; python3 benchmarks/rhythm_gpu.py --merge --out /tmp/rhythm ${EXTRA:-} >> /tmp/rhythm/rhythm.log 2>&1
    tail -n 40 /tmp/rhythm/rhythm.log
    tar czf "$OUT/rhythm.tgz" -C /tmp rhythm
    exit 0 ;;
duo-rhythm)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    mkdir -p /tmp/duo /tmp/rhythm
    # convert the GGUF once before the processes start (two conversions at once would race)
    convert_once
    timeout ${RHYTHM_TIMEOUT:-540} python3 benchmarks/rhythm_gpu.py --out /tmp/rhythm --budget-s ${RHYTHM_BUDGET:-420} > /tmp/rhythm/rhythm.log 2>&1 &
    rhythm_pid=$!
    timeout ${DUO_TIMEOUT:-540} python3 benchmarks/duo_gpu.py --out /tmp/duo --budget-s ${DUO_BUDGET:-470} > /tmp/duo/duo.log 2>&1
    echo "duo exit $?"; wait $rhythm_pid; echo "rhythm exit $?"
    python3 benchmarks/duo_gpu.py --merge --out /tmp/duo >> /tmp/duo/duo.log 2>&1
    python3 benchmarks/rhythm_gpu.py --merge --out /tmp/rhythm >> /tmp/rhythm/rhythm.log 2>&1
    tail -n 25 /tmp/duo/duo.log; tail -n 15 /tmp/rhythm/rhythm.log
    tar czf "$OUT/duo.tgz" -C /tmp duo; tar czf "$OUT/rhythm.tgz" -C /tmp rhythm
    exit 0 ;;
calibration)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    # CAL_TASKS / CAL_EXTRA (e.g. "--methods act"): EXTRA and TASKS belong to the other verbs beside it
    TASKS="${CAL_TASKS:-clutrr,truthfulqa,sentiment}" EXTRA="${CAL_EXTRA:-}" bash benchmarks/calibration_gpu.sh /tmp/calibration \
        > /dev/null 2>&1; echo "calibration exit $?"
    tail -n 40 /tmp/calibration/calibration.log
    tar czf "$OUT/calibration.tgz" -C /tmp calibration
    exit 0 ;;
retrieval-random)  # one process for the fixed sets (batched), one per fresh draw (DRAWS, default 5), side by side
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    out=/tmp/retrieval-random; mkdir -p $out
    essays=$WORKBENCH_DATA/niah/essays
    convert_once
    date; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
    timeout ${RR_TIMEOUT:-520} python3 benchmarks/retrieval_gpu.py random-fixed --haystack "$essays" --out $out \
        > $out/random-fixed.log 2>&1 &
    for draw in ${DRAW_LIST:-$(seq 0 $((${DRAWS:-5} - 1)))}; do  # DRAW_LIST="0 2": those draws only
        timeout ${RR_TIMEOUT:-520} python3 benchmarks/retrieval_gpu.py random-fresh --draw $draw --haystack "$essays" \
            --out $out > $out/random-fresh-d$draw.log 2>&1 &
    done
    wait; date
    for f in $out/*.log; do echo "== $f"; grep -v "Warning\|forward_call" "$f" | tail -4; done
    tar czf "$OUT/retrieval-random.tgz" -C /tmp retrieval-random
    exit 0 ;;
influence)
    [ $staged = 0 ] || exit $staged
    source /tmp/wb-stage/env.sh
    out=/tmp/influence; mkdir -p $out/scores $out/mirror
    convert_once
    python3 benchmarks/influence_corpus.py --out $out/docs.jsonl --per-domain ${PER_DOMAIN:-1000} > $out/corpus.log 2>&1
    cp $out/docs.manifest.json $out/scores/
    timeout ${INFLUENCE_TIMEOUT:-540} python3 -m workbench.cli influence smollm2-135m --device cuda \
        --heads docs/results/data/retrieval/detection-heads-cpu.json --docs $out/docs.jsonl --max-tokens 512 \
        --random-sets 3 --out $out/scores/SCORES.parquet > $out/scores/run.log 2>&1 &
    scores_pid=$!
    timeout ${INFLUENCE_TIMEOUT:-540} python3 benchmarks/influence_mirror.py --device cuda --items ${MIRROR_ITEMS:-500} \
        --out $out/mirror > $out/mirror/run.log 2>&1
    echo "mirror exit $?"; wait $scores_pid; echo "influence exit $?"
    tail -n 12 $out/mirror/run.log; tail -c 600 $out/scores/run.log
    tar czf "$OUT/influence.tgz" --exclude docs.jsonl -C /tmp influence
    exit 0 ;;
esac
