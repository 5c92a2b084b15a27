"""Small helpers shared by the kernel tests and benchmarks."""

from __future__ import annotations

import torch

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")

# ||kernel - reference|| / ||reference|| bounds (acceptance of issue 3).
TOLERANCE = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference|| in float64; inf on NaN, 0 when both are all zero."""
    value = value.detach().to(torch.float64).cpu()
    reference = reference.detach().to(torch.float64).cpu()
    if value.shape != reference.shape:
        raise ValueError(f"shape {tuple(value.shape)} != reference {tuple(reference.shape)}")
    if not torch.isfinite(value).all():
        return float("inf")
    denominator = reference.norm().item()
    difference = (value - reference).norm().item()
    if denominator == 0.0:
        return difference
    return difference / denominator


def logits_at(q, k, index, *, scaling, logit_bias=None):
    """s[b, h, i, index[b, h, i]] in float64, for checking argmax without ties mattering."""
    batch, heads, q_len, head_dim = q.shape
    group = heads // k.shape[1]
    kk = k.to(torch.float64).repeat_interleave(group, dim=1)
    chosen = torch.gather(kk, 2, index.to(kk.device)[..., None].expand(batch, heads, q_len, head_dim))
    s = (q.to(torch.float64) * chosen).sum(-1) * scaling
    if logit_bias is not None:
        s = s + torch.gather(logit_bias.to(torch.float64)[None].expand(batch, -1, -1), 2, index.to(q.device))
    return s


class Draw:
    """Random inputs from one seed on DEVICE; ``seed`` goes into failure messages so a failure can be replayed."""

    def __init__(self, seed: int):
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def normal(self, *shape, dtype=torch.float32, scale=1.0):
        x = torch.randn(*shape, generator=self.generator, dtype=torch.float32) * scale
        return x.to(device=DEVICE, dtype=dtype)

    def uniform(self, *shape, low=0.0, high=1.0):
        x = torch.rand(*shape, generator=self.generator) * (high - low) + low
        return x.to(DEVICE)
