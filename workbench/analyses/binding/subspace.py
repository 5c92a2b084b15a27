"""The binding subspace: top eigenvectors of the quadratic probe's W_sym, and its ablation.

The probe lives in standardised coordinates z = (x - mu) / sigma. Ablating a subspace U (orthonormal
columns, d x r) replaces z by z - U U^T z, i.e. mean-replaces the activation inside the subspace; in raw
coordinates x' = x - sigma * (U U^T ((x - mu) / sigma)). The edit is applied to the patch tokens of the
residual stream after one block, and the remaining blocks are re-run (``VisionModel.run(residual_edits=...)``).
A random r-dimensional subspace is the control.
"""

from __future__ import annotations

import torch

from workbench.vision.probes import PairProbe, Standardizer


def binding_basis(probe: PairProbe, rank: int) -> torch.Tensor:
    """(d, rank) eigenvectors of W_sym with the largest |eigenvalue|."""
    with torch.no_grad():
        values, vectors = torch.linalg.eigh(probe.matrix().double())
    order = values.abs().argsort(descending=True)[:rank]
    return vectors[:, order].float()


def random_basis(dim: int, rank: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=generator, dtype=torch.float64))
    return q.float()


def project_out(features: torch.Tensor, basis: torch.Tensor, standardizer: Standardizer) -> torch.Tensor:
    """Features with the subspace removed (mean-replaced) in standardised coordinates; same dtype/shape."""
    z = standardizer(features)
    z = z - (z @ basis) @ basis.T
    return (z * standardizer.std + standardizer.mean).to(features.dtype)


def ablation_edit(basis: torch.Tensor, standardizer: Standardizer):
    """A residual edit for ``VisionModel.run``: project the patch tokens (not the cls token) off ``basis``."""

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        patches = project_out(hidden[:, 1:].float().cpu(), basis, standardizer).to(
            hidden.device, hidden.dtype
        )
        return torch.cat([hidden[:, :1], patches], dim=1)

    return edit
