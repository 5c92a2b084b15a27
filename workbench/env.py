"""What this installation is: versions, CUDA, the attention backend a capture would use, where files go.

``workbench env --json`` prints it; users paste it into bug reports, so it must never raise.
"""

from __future__ import annotations

import importlib.metadata
import platform

from workbench import paths


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    import torch

    from workbench.seam import cuda_path

    cuda = torch.cuda.is_available()
    kernels_importable = cuda_path.importable()
    triton_error = cuda_path.triton_error()
    if not cuda:
        backend, reason = "pytorch", "no CUDA device: captures run the seam's PyTorch path on the CPU"
    elif not kernels_importable:
        backend, reason = "pytorch", f"the project's kernels do not import: {cuda_path.IMPORT_ERROR}"
    elif triton_error:
        backend, reason = "pytorch", triton_error
    else:
        backend, reason = "triton", None
    models = paths.home() / "models"
    return {
        "workbench": _version("attention-workbench"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "transformers": _version("transformers"),
        "hf_kernels": _version("kernels"),
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "torch_cuda": torch.version.cuda,
        "kernels_importable": kernels_importable,
        "kernels_import_error": cuda_path.IMPORT_ERROR,
        "triton_import_error": triton_error,
        "attention_backend": backend,
        "attention_backend_reason": reason,
        # which key pass a capture's key statistics would run here, and why (Gluon on Hopper is opt-in)
        "key_pass": cuda_path.key_pass_path(),
        "models_dir": str(models),
        "embedded_models": {
            name: (models / name).is_dir() and any((models / name).iterdir())
            for name in ("smollm2-135m", "dinov2-s14")
        },
        "store": str(paths.results_dir().resolve()),
        "store_exists": (paths.results_dir() / "workbench.duckdb").exists(),
    }
