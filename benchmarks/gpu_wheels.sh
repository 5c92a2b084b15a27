#!/usr/bin/env bash
# Download benchmarks/gpu_wheels.txt for the GPU machine's Python 3.12 (x86_64 manylinux), no deps:
#   bash benchmarks/gpu_wheels.sh /tmp/gpuwheels && python3 benchmarks/stage.py pack --wheels /tmp/gpuwheels
set -euo pipefail
dest=${1:?usage: gpu_wheels.sh DEST}
mkdir -p "$dest"
grep -v '^#' "$(dirname "$0")/gpu_wheels.txt" | while read -r pin; do
    [ -n "$pin" ] || continue
    pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --no-deps \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 "$pin" -d "$dest"
done
ls "$dest" | wc -l
