#!/usr/bin/env bash
# Fold one device call's returned files into the committed evidence (run here, in the repository root):
#   bash benchmarks/ingest_call.sh FILES_AT benchmarks/results/gpu_DATE/callN
# LoFiT runs named s<seed>-* (benchmarks/lofit_plans/clutrr*.txt) go to $LOFIT_CLUTRR, the others to
# $LOFIT_TQA; each folder is then --merged (the newest unit of each key wins); the two ACT calibration jobs, the
# DuoAttention run and the e2e commands likewise. Then: python -m workbench.report docs; commit.
set -uo pipefail
src=${1:?FILES_AT}; raw=${2:?RAW_DIR}
cd "$(dirname "$0")/.."
mkdir -p $raw
work=$(mktemp -d); logs=logs-$(basename "$(dirname "$raw")")-$(basename "$raw")
cp $src/*.json $src/*.log $src/*.csv $raw/ 2>/dev/null
[ -f $src/bg.tgz ] && tar xzf $src/bg.tgz -C $work
[ -f $src/lofit.tgz ] && tar xzf $src/lofit.tgz -C $work
[ -f $src/e2e_outputs.tgz ] && tar xzf $src/e2e_outputs.tgz -C $work
ls $work
# the BG verbs' call logs
for d in $work/bg/*/; do [ -d "$d" ] && cp $d/call.log $raw/bg-$(basename $d).log; done
# LoFiT
L=docs/results/data/lofit
for run in $work/lofit/*/; do
    name=$(basename $run); [ -d $run/units ] || continue
    case $name in s[0-9]-*) dest=${LOFIT_CLUTRR:-$L/gpu-2026-12-07-clutrr} ;; *) dest=${LOFIT_TQA:-$L/gpu-2026-12-07} ;; esac
    mkdir -p $dest/units $dest/offsets $dest/heads $dest/$logs
    cp $run/units/* $dest/units/; cp -r $run/offsets/* $dest/offsets/ 2>/dev/null; cp $run/heads/* $dest/heads/ 2>/dev/null
    cp $run/lofit.log $dest/$logs/$name.log
done
cp $work/lofit/smi.csv $raw/lofit-smi.csv 2>/dev/null
[ -d ${LOFIT_TQA:-$L/gpu-2026-12-07} ] && .venv/bin/python benchmarks/lofit_gpu.py --merge --data ../shared/data --tasks truthfulqa --out ${LOFIT_TQA:-$L/gpu-2026-12-07}
[ -d ${LOFIT_CLUTRR:-$L/gpu-2026-12-07-clutrr} ] && .venv/bin/python benchmarks/lofit_gpu.py --merge --data ../shared/data --tasks clutrr --clutrr-train-limit 1000 --out ${LOFIT_CLUTRR:-$L/gpu-2026-12-07-clutrr}
# calibration: every job of the call joins the run's units (a job run again replaces its earlier file)
C=${CALIBRATION:-docs/results/data/calibration/gpu-2026-12-07}
if [ -d $work/calibration/units ]; then
    cp -v $work/calibration/units/*.json $C/units/
    cp $work/calibration/calibration.log $C/calibration-$logs.log
    .venv/bin/python benchmarks/calibration_gpu.py --merge --data ../shared/data --out $C
fi
# duo: a run of its own (DUO=docs/results/data/duo/gpu-DATE; an existing folder is overwritten)
if [ -d $work/duo ]; then
    D=${DUO:-docs/results/data/duo/gpu-2026-12-07}; mkdir -p $D; cp -r $work/duo/* $D/
    .venv/bin/python benchmarks/duo_gpu.py --merge --out $D
fi
# e2e
[ -f $src/gpu_e2e_commands.json ] && .venv/bin/python benchmarks/e2e.py merge docs/results/data/gpu/gpu_e2e.json docs/results/data/gpu/gpu_e2e.json $src/gpu_e2e_commands.json \
    && cp docs/results/data/gpu/gpu_e2e.json benchmarks/results/gpu_e2e.json
rm -rf "$work"
git status --short | head -40
