"""The ViT runner: an HF ViT encoder whose attention goes through the workbench seam.

``VisionModel.run`` returns per-layer patch embeddings (hidden-state index 0 = embeddings, l = output of
block l, before the final norm) and, with a spec, the seam's ``Capture``. Attention is measured and changed
through the seam (``CaptureSpec``, interventions); the residual stream is changed by ``residual_edits``,
data too (``ResidualProjection``: remove a subspace after one block, the binding-subspace ablation), applied
before the state is recorded and before the next block reads it. Where the hidden states come from is the
adapter's ``residual_modules``; the forward hooks are owned by one context manager and removed on exit,
also after an exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workbench.adapters import VIT_ADAPTER
from workbench.adapters.vit import VitAdapter
from workbench.capture import Capture
from workbench.devices import DEFAULT_DEVICE
from workbench.models.registry import UnknownModelError
from workbench.runners.seam_run import seam_run
from workbench.seam.interventions import Intervention
from workbench.seam.spec import CaptureSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How images become pixel values: channel mean/std and the native input side."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    image_size: int = 224

    def __call__(self, images) -> torch.Tensor:
        """uint8 (B, H, W, 3) arrays or float (B, 3, H, W) tensors in [0, 1] -> normalised float32."""
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(
                    f"expected uint8 images (batch, height, width, 3), got {images.dtype} {images.shape}"
                )
            images = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        images = images.float()
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std


@dataclass(frozen=True, eq=False)
class ResidualProjection:
    """Remove a subspace from the residual stream after hidden state ``layer`` (0 = embeddings, l = block l).

    Tokens from ``first_token`` on (default 1: the patches, not the cls token) are standardised with
    ``mean``/``std`` (d,), their component in the span of ``basis`` (d, rank; orthonormal columns) is removed,
    i.e. mean-replaced, and they are mapped back: ``x' = x - std * (U U^T ((x - mean) / std))``. Round-trips
    through JSON (``to_dict``/``from_dict``)."""

    layer: int
    basis: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    first_token: int = 1

    def __repr__(self) -> str:
        d, rank = tuple(self.basis.shape)
        return f"ResidualProjection(layer={self.layer}, rank={rank}, d={d}, first_token={self.first_token})"

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (..., d) with the subspace removed, in float32 on the CPU (as the probes see them)."""
        z = (features.float().cpu() - self.mean) / self.std
        z = z - (z @ self.basis) @ self.basis.T
        return z * self.std + self.mean

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, d) -> the same with tokens ``first_token:`` projected; dtype and device kept."""
        edited = self.project(hidden[:, self.first_token :]).to(hidden.device, hidden.dtype)
        return torch.cat([hidden[:, : self.first_token], edited], dim=1)

    def to_dict(self) -> dict:
        return {
            "kind": "residual_projection",
            "layer": self.layer,
            "basis": self.basis.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "first_token": self.first_token,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ResidualProjection:
        return cls(
            int(data["layer"]),
            torch.tensor(data["basis"], dtype=torch.float32),
            torch.tensor(data["mean"], dtype=torch.float32),
            torch.tensor(data["std"], dtype=torch.float32),
            int(data.get("first_token", 1)),
        )


@dataclass
class VisionRun:
    hidden: torch.Tensor  # (batch, recorded layers, tokens, d) fp32 on CPU; tokens = 1 (cls) + patches
    layers: list[int]  # hidden-state indices recorded
    capture: Capture | None


class VisionModel:
    """A loaded ViT encoder plus its preprocessing, adapter and shape."""

    def __init__(self, name: str, hf_model, preprocess: Preprocess, adapter: VitAdapter = VIT_ADAPTER):
        self.name = name
        self.hf = hf_model
        self.preprocess = preprocess
        self.adapter = adapter
        self.shape = adapter.shape(hf_model)
        self.patch_size = int(np.atleast_1d(hf_model.config.patch_size)[0])
        self.backends: set[str] = set()  # attention backends the seam ran (see ``backend``)

    def __repr__(self) -> str:
        s = self.shape
        return (
            f"VisionModel({self.name!r}, layers={s.num_layers}, heads={s.num_heads}, head_dim={s.head_dim}, "
            f"patch={self.patch_size}, image_size={self.image_size})"
        )

    @property
    def image_size(self) -> int:
        return self.preprocess.image_size

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def backend(self) -> str | None:
        """The attention backend(s) used so far, joined by '+' (for the store)."""
        return "+".join(sorted(self.backends)) or None

    @contextlib.contextmanager
    def _residual_hooks(self, layers: Sequence[int], edits: Sequence[ResidualProjection], store: dict):
        """Record hidden states ``layers`` into ``store`` and apply ``edits``, on the adapter's residual modules."""
        modules = self.adapter.residual_modules(self.hf)
        by_layer: dict[int, list[ResidualProjection]] = {}
        for edit in edits:
            if not isinstance(edit, ResidualProjection):
                raise TypeError(
                    f"residual edits are data (ResidualProjection), got {type(edit).__name__}; "
                    "build one with workbench.analyses.binding.subspace.ablation_edit"
                )
            if not 0 <= edit.layer < len(modules):
                raise ValueError(
                    f"residual edit at hidden state {edit.layer}: the model has 0..{len(modules) - 1}"
                )
            by_layer.setdefault(edit.layer, []).append(edit)

        def apply(index, tensor):
            for projection in by_layer.get(index, ()):
                tensor = projection.apply(tensor)
            if index in layers:
                store[index] = tensor.detach().float().cpu()
            return tensor if index in by_layer else None

        with self.adapter.edit_residuals(self.hf, set(layers) | set(by_layer), apply):
            yield

    def run(
        self,
        images,
        *,
        layers: Sequence[int] | None = None,
        spec: CaptureSpec | None = None,
        interventions: Sequence[Intervention] = (),
        residual_edits: Sequence[ResidualProjection] = (),
    ) -> VisionRun:
        """One forward pass over a batch of images; ``layers`` are hidden-state indices (default all)."""
        pixels = self.preprocess(images).to(self.device)
        if pixels.shape[-1] % self.patch_size or pixels.shape[-2] % self.patch_size:
            raise ValueError(
                f"image side {tuple(pixels.shape[-2:])} is not a multiple of the patch size {self.patch_size}"
            )
        all_layers = range(self.shape.num_layers + 1)
        layers = list(all_layers if layers is None else layers)
        bad = [layer for layer in layers if layer not in all_layers]
        if bad:
            raise ValueError(
                f"hidden-state index {bad} out of range: {self.name} has 0..{self.shape.num_layers}"
            )
        if isinstance(residual_edits, dict):
            raise TypeError(
                "residual_edits is a sequence of ResidualProjection (each names its hidden state), not a dict "
                "of callables"
            )
        store: dict[int, torch.Tensor] = {}
        with seam_run(self.hf, spec, interventions, adapter=self.adapter, shape=self.shape,
                      meta={"model": self.name}, backends=self.backends) as seam:
            with self._residual_hooks(layers, tuple(residual_edits or ()), store):
                self.hf(pixel_values=pixels.to(next(self.hf.parameters()).dtype))
        capture = seam.capture
        hidden = torch.stack([store[layer] for layer in layers], dim=1) if layers else torch.empty(0)
        return VisionRun(hidden, layers, capture)

    def attention_maps(self, images, layers: Sequence[int] | None = None) -> torch.Tensor:
        """Exact attention probabilities (batch, layer, head, query, key) over all tokens, through the seam."""
        tokens = 1 + (self.image_size // self.patch_size) ** 2
        if isinstance(images, torch.Tensor):
            tokens = 1 + (images.shape[-2] // self.patch_size) * (images.shape[-1] // self.patch_size)
        spec = CaptureSpec(layers=layers, statistics=(), rows=tuple(range(tokens)))
        capture = self.run(images, layers=[], spec=spec).capture
        return torch.stack([capture.rows[position] for position in range(tokens)], dim=3)

    def random_init(self, seed: int = 0) -> VisionModel:
        """The same architecture with freshly initialised weights (the random-network baseline)."""
        torch.manual_seed(seed)
        parameter = next(self.hf.parameters())
        model = type(self.hf)(self.hf.config).to(parameter.device, parameter.dtype).eval()  # same device and dtype
        return VisionModel(f"{self.name}@random-init-s{seed}", model, self.preprocess, self.adapter)


def load_vision_model(name_or_path: str, device=DEFAULT_DEVICE, dtype=None) -> VisionModel:
    """A registered vision model, a tiny-ViT ``.safetensors`` checkpoint, a local HF folder or a HF id.

    ``device``/``dtype``: torch objects or names, as for ``workbench.load_model`` (``workbench.devices``)."""
    import workbench.seam.attention  # noqa: F401  (registers the seam)
    from workbench.devices import resolve_device, resolve_dtype

    device = resolve_device(device) if isinstance(device, str) else device
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype, device)
    from workbench.models import vision as vision_models
    from workbench.models.registry import known_models

    entries = {entry.name: entry for entry in known_models()}
    if name_or_path in entries:
        entry = entries[name_or_path]
        if entry.kind != "vision":
            raise UnknownModelError(
                f"{name_or_path!r} is a {entry.kind} model, not a vision model; vision models: "
                f"{', '.join(n for n, e in entries.items() if e.kind == 'vision')}"
            )
        model, preprocess = entry.load(device, dtype)
        return VisionModel(name_or_path, model, preprocess)
    path = Path(name_or_path).expanduser()
    if path.suffix == ".safetensors":
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        model, preprocess = vision_models.load_checkpoint(path, device, dtype)
        return VisionModel(path.stem, model, preprocess)
    looks_like_hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if path.exists() or looks_like_hub_id:
        model, preprocess = vision_models.load_pretrained(
            str(path) if path.exists() else name_or_path, device, dtype
        )
        return VisionModel(name_or_path, model, preprocess)
    vision = [n for n, e in entries.items() if e.kind == "vision"]
    raise UnknownModelError(
        f"unknown vision model {name_or_path!r}. Known names: {', '.join(vision)}; or pass a tiny-ViT .safetensors "
        "checkpoint, a local HF ViT/DINOv2 folder or a Hugging Face id"
    )
