"""Tiny ViTs trained here on procedural scenes, in the layout of transformers' ``Dinov2Model``.

Training uses ``TinyViT`` (plain PyTorch, SDPA, runs on torch 2.11 with no transformers); its parameter
names are exactly those of ``Dinov2Model`` (transformers 5.x: ``attention.q_proj`` ...), so a checkpoint
loads into the HF model and every analysis sees it through the same adapter and attention seam as the
DINOv2-S backbone. A checkpoint is one fp16 safetensors file whose metadata holds the config and how it
was trained (objective, seed, steps, command); the library reads it (``workbench.models.vision``).

Part of the training tool (``tools/train_tiny_vit.py``), not of the library.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TINY_DEFAULTS = {
    "hidden_size": 192,
    "num_hidden_layers": 6,
    "num_attention_heads": 3,
    "mlp_ratio": 4,
    "patch_size": 8,
    "image_size": 64,
    "layerscale_value": 0.1,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu",
    "qkv_bias": True,
    "use_swiglu_ffn": False,
    "model_type": "dinov2",
}


def tiny_config_dict(**overrides) -> dict:
    return {**TINY_DEFAULTS, **overrides}


class _LayerScale(nn.Module):
    def __init__(self, dim: int, value: float):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((dim,), float(value)))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        shape = (b, t, self.heads, d // self.heads)
        q, k, v = (proj(x).view(shape).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, d))


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, scale: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attention = _Attention(dim, heads)
        self.layer_scale1 = _LayerScale(dim, scale)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _MLP(dim, dim * mlp_ratio)
        self.layer_scale2 = _LayerScale(dim, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x)) * self.layer_scale1.lambda1
        return x + self.mlp(self.norm2(x)) * self.layer_scale2.lambda1


class _PatchEmbeddings(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.projection = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class _Embeddings(nn.Module):
    def __init__(self, dim: int, patch: int, grid: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.patch_embeddings = _PatchEmbeddings(patch, dim)
        self.position_embeddings = nn.Parameter(torch.randn(1, grid * grid + 1, dim) * 0.02)


class _Encoder(nn.Module):
    def __init__(self, blocks: list[_Block]):
        super().__init__()
        self.layer = nn.ModuleList(blocks)


class TinyViT(nn.Module):
    """A pre-norm ViT with LayerScale whose ``state_dict`` is a valid ``Dinov2Model`` state dict."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        dim, patch = config["hidden_size"], config["patch_size"]
        self.patch = patch
        self.grid = config["image_size"] // patch
        self.embeddings = _Embeddings(dim, patch, self.grid)
        blocks = [
            _Block(dim, config["num_attention_heads"], config["mlp_ratio"], config["layerscale_value"], config["layer_norm_eps"])
            for _ in range(config["num_hidden_layers"])
        ]
        self.encoder = _Encoder(blocks)
        self.layernorm = nn.LayerNorm(dim, eps=config["layer_norm_eps"])
        self.apply(self._init)
        nn.init.trunc_normal_(self.embeddings.position_embeddings, std=0.02)
        nn.init.trunc_normal_(self.embeddings.cls_token, std=0.02)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def dim(self) -> int:
        return self.config["hidden_size"]

    def positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """(1, 1 + grid_h * grid_w, d) position embeddings, bicubically resized as Dinov2Model does."""
        table = self.embeddings.position_embeddings
        if grid_h == self.grid and grid_w == self.grid:
            return table
        cls, grid = table[:, :1], table[:, 1:]
        grid = grid.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=False).to(table.dtype)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)], dim=1)

    def patch_tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch tokens + positions (B, N, d), cls token + its position (B, 1, d))."""
        tokens = self.embeddings.patch_embeddings.projection(pixels)
        grid_h, grid_w = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        positions = self.positions(grid_h, grid_w)
        cls = (self.embeddings.cls_token + positions[:, :1]).expand(tokens.shape[0], -1, -1)
        return tokens + positions[:, 1:], cls

    def forward(self, pixels: torch.Tensor, keep: torch.Tensor | None = None, hidden: bool = False):
        """Final-norm tokens (B, 1 + N, d); ``keep`` (B, n) selects visible patches (MAE); ``hidden`` adds
        the list of hidden states (embeddings, then each block's output), as Dinov2Model returns them."""
        tokens, cls = self.patch_tokens(pixels)
        if keep is not None:
            tokens = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        x = torch.cat([cls, tokens], dim=1)
        states = [x]
        for block in self.encoder.layer:
            x = block(x)
            states.append(x)
        out = self.layernorm(x)
        return (out, states) if hidden else out


def save_checkpoint(model: TinyViT, path: Path, metadata: dict) -> Path:
    """fp16 safetensors with ``config`` and training metadata (strings) in the header; atomic."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to("cpu", torch.float16).contiguous() for name, tensor in model.state_dict().items()}
    header = {"config": json.dumps(model.config), **{k: json.dumps(v) for k, v in metadata.items()}}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=header)
    tmp.replace(path)
    return path
