"""A LoFiT result as data: head offsets in safetensors, everything else in JSON.

A folder holds ``lofit.safetensors`` (one fp32 vector per head, keyed ``layer{L}.head{H}.offset``) and
``lofit.json`` (model, shape, heads in rank order, task and hyper-parameters). Loading uses
``safetensors.torch.load_file`` only, so an artifact from anyone is data, never code. A run record holds
the same artifact as ``to_json()`` (its summary) plus ``to_frame()`` (an array, the vectors), so a
pipeline or sweep rebuilds it from the store (``from_record``) and writes the same files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from workbench.seam.interventions import HeadOutputAffine
from workbench.seam.spec import SpecError

FORMAT = "workbench-lofit"
VERSION = 1
TENSORS = "lofit.safetensors"
META = "lofit.json"
_KEY = re.compile(r"^layer(\d+)\.head(\d+)\.(offset|scale)$")


def tensor_key(layer: int, head: int, kind: str = "offset") -> str:
    return f"layer{layer}.head{head}.{kind}"


@dataclass
class LofitArtifact:
    """Per-head offsets v (z <- z + v before o_proj) for ``heads``; ``offsets`` is (K, head_dim) fp32."""

    model: str
    task: str
    heads: list[tuple[int, int]]
    offsets: torch.Tensor
    shape: dict = field(default_factory=dict)  # num_layers, num_heads, num_kv_heads, head_dim
    params: dict = field(default_factory=dict)
    scores: list[float] | None = None  # selection score of each head (||A||), when selected by LoFiT

    def __post_init__(self):
        self.heads = [(int(layer), int(head)) for layer, head in self.heads]
        if self.offsets.ndim != 2 or self.offsets.shape[0] != len(self.heads):
            raise SpecError(
                f"offsets must be (heads, head_dim) = ({len(self.heads)}, d), got {tuple(self.offsets.shape)}"
            )
        if len(set(self.heads)) != len(self.heads):
            raise SpecError("a LoFiT artifact names a head twice")

    def __repr__(self) -> str:
        return f"LofitArtifact(model={self.model!r}, task={self.task!r}, heads={self.heads}, head_dim={self.offsets.shape[1]})"

    @property
    def num_parameters(self) -> int:
        return self.offsets.numel()

    def interventions(self, scope: str = "both") -> list[HeadOutputAffine]:
        """The offsets as seam interventions: apply them on any runner (HF, TransformerLens, nnsight)."""
        return [
            HeadOutputAffine(layer, head, scope=scope, offset=self.offsets[index])
            for index, (layer, head) in enumerate(self.heads)
        ]

    def check_model(self, model) -> None:
        """Raise when ``model`` does not have the shape the offsets were trained for."""
        shape = model.shape
        if self.shape and (
            self.shape.get("num_layers"),
            self.shape.get("num_heads"),
            self.shape.get("head_dim"),
        ) != (
            shape.num_layers,
            shape.num_heads,
            shape.head_dim,
        ):
            raise SpecError(
                f"this LoFiT artifact was made for {self.model} ({self.shape}); {model.name} has "
                f"{shape.num_layers} layers x {shape.num_heads} heads x head_dim {shape.head_dim}"
            )

    # --- files ------------------------------------------------------------------------------

    def to_json(self) -> dict:
        heads = []
        for rank, (layer, head) in enumerate(self.heads):
            item = {"layer": layer, "head": head, "rank": rank}
            if self.scores is not None:
                item["score"] = float(self.scores[rank])
            heads.append(item)
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "task": self.task,
            "shape": self.shape,
            "heads": heads,
            "num_parameters": self.num_parameters,
            "params": self.params,
            "tensors": TENSORS,
        }

    def save(self, folder: Path) -> Path:
        """Write the folder atomically (a half-written artifact never appears under ``folder``)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            tensors = {
                tensor_key(layer, head): self.offsets[index].detach().to("cpu", torch.float32).contiguous()
                for index, (layer, head) in enumerate(self.heads)
            }
            save_file(tensors, str(staging / TENSORS), metadata={"format": FORMAT})
            (staging / META).write_text(json.dumps(self.to_json(), indent=2))
            if folder.exists():
                for name in (TENSORS, META):
                    (folder / name).unlink(missing_ok=True)
                for name in (TENSORS, META):
                    os.replace(staging / name, folder / name)
            else:
                os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: Path) -> LofitArtifact:
        folder = Path(folder)
        meta_path = folder / META
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{folder} is not a LoFiT artifact: {META} is missing (make one with `workbench lofit train`)"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as error:
            raise SpecError(f"{meta_path} is not valid JSON: {error}") from None
        if meta.get("format") != FORMAT:
            raise SpecError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT!r}")
        tensor_path = folder / meta.get("tensors", TENSORS)
        if not tensor_path.exists():
            raise FileNotFoundError(f"{tensor_path} is missing; the artifact folder is incomplete")
        tensors = load_file(str(tensor_path))
        for key in tensors:
            if not _KEY.match(key):
                raise SpecError(
                    f"{tensor_path}: unexpected tensor {key!r} (keys are layer{{L}}.head{{H}}.offset)"
                )
        heads = [(int(h["layer"]), int(h["head"])) for h in meta["heads"]]
        missing = [tensor_key(*h) for h in heads if tensor_key(*h) not in tensors]
        if missing:
            raise SpecError(f"{tensor_path} lacks the vectors {missing}")
        offsets = torch.stack([tensors[tensor_key(*h)] for h in heads]) if heads else torch.zeros(0, 0)
        return cls.from_json(meta, offsets)

    @classmethod
    def from_json(cls, meta: dict, offsets: torch.Tensor) -> LofitArtifact:
        """The artifact from its ``lofit.json`` (``to_json()``) and its (K, head_dim) offsets in rank order."""
        heads = [(int(h["layer"]), int(h["head"])) for h in meta["heads"]]
        scores = (
            [h["score"] for h in meta["heads"]]
            if heads and all("score" in h for h in meta["heads"])
            else None
        )
        return cls(
            meta["model"], meta["task"], heads, offsets, meta.get("shape", {}), meta.get("params", {}), scores
        )

    # --- run records ------------------------------------------------------------------------

    def to_frame(self):
        """The offsets as a table, one row per head in rank order: ``rank, layer, head, kv_head`` (-1 when
        the shape is unknown) and ``offset`` (the head's fp32 vector, head_dim long)."""
        import pandas as pd

        group = self.shape.get("num_heads", 0) // max(self.shape.get("num_kv_heads", 0), 1)
        vectors = self.offsets.detach().to("cpu", torch.float32).numpy().copy()
        return pd.DataFrame(
            {
                "rank": range(len(self.heads)),
                "layer": [layer for layer, _ in self.heads],
                "head": [head for _, head in self.heads],
                "kv_head": [head // group if group else -1 for _, head in self.heads],
                "offset": list(vectors),
            }
        )

    @classmethod
    def from_record(cls, meta: dict, frame) -> LofitArtifact:
        """The artifact from a run record: ``meta`` = ``to_json()`` (the summary's), ``frame`` = ``to_frame()``
        (read back from the store); the vectors come back bit for bit."""
        import numpy as np

        frame = frame.sort_values("rank")
        named = [(int(h["layer"]), int(h["head"])) for h in meta["heads"]]
        rows = [(int(layer), int(head)) for layer, head in zip(frame["layer"], frame["head"], strict=True)]
        if rows != named:
            raise SpecError(f"the offsets table holds heads {rows}, the artifact's metadata names {named}")
        if not rows:
            return cls.from_json(meta, torch.zeros(0, 0))
        offsets = np.stack([np.asarray(vector, dtype=np.float32) for vector in frame["offset"]])
        return cls.from_json(meta, torch.from_numpy(offsets))


def save_scales(path: Path, scales: torch.Tensor) -> None:
    """Step-1 scale vectors A (layer, head, head_dim) as ``layer{L}.head{H}.scale`` tensors."""
    tensors = {
        tensor_key(layer, head, "scale"): scales[layer, head].detach().to("cpu", torch.float32).contiguous()
        for layer in range(scales.shape[0])
        for head in range(scales.shape[1])
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, path)


def load_scales(path: Path) -> torch.Tensor:
    tensors = load_file(str(path))
    found = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if not match or match.group(3) != "scale":
            raise SpecError(f"{path}: unexpected tensor {key!r}")
        found[(int(match.group(1)), int(match.group(2)))] = value
    layers = 1 + max(layer for layer, _ in found)
    heads = 1 + max(head for _, head in found)
    scales = torch.zeros(layers, heads, next(iter(found.values())).shape[0])
    for (layer, head), value in found.items():
        scales[layer, head] = value
    return scales
