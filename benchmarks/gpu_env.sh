# Source from the repository root where the package is not installed (the lent GPU machine has no
# registry): makes `workbench` and `workbench_kernels` (the folder kernels/) importable from this tree.
#   source benchmarks/gpu_env.sh; python3 -m workbench.cli env
_wb_src=${TMPDIR:-/tmp}/workbench-src
mkdir -p "$_wb_src" && ln -sfn "$PWD/kernels" "$_wb_src/workbench_kernels"
export PYTHONPATH="$PWD:$_wb_src${PYTHONPATH:+:$PYTHONPATH}"
unset _wb_src
# many small processes share the one card (BG verbs): fewer stranded cached blocks
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
