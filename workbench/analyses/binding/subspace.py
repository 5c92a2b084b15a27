"""The binding subspace: top eigenvectors of the quadratic probe's W_sym, and its ablation.

The probe lives in standardised coordinates z = (x - mu) / sigma. Ablating a subspace U (orthonormal
columns, d x r) replaces z by z - U U^T z, i.e. mean-replaces the activation inside the subspace; in raw
coordinates x' = x - sigma * (U U^T ((x - mu) / sigma)). The edit is applied to the patch tokens of the
residual stream after one block, and the remaining blocks are re-run: the edit is data
(``workbench.runners.vision.ResidualProjection``) that ``VisionModel.run(residual_edits=[...])`` applies.
A random r-dimensional subspace is the control.
"""

from __future__ import annotations

import torch

from workbench.analyses.binding.probes import PairProbe, Standardizer
from workbench.runners.vision import ResidualProjection


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


def ablation_edit(basis: torch.Tensor, standardizer: Standardizer, layer: int) -> ResidualProjection:
    """The residual edit that projects the patch tokens (not the cls token) after hidden state ``layer`` off
    ``basis``, in the probe's standardised coordinates (``project_out`` applied inside the network)."""
    return ResidualProjection(layer, basis.float(), standardizer.mean.float(), standardizer.std.float(), first_token=1)
