"""Quality measures: distances between sample sets (and, later, image metrics)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sliced_wasserstein"]


def sliced_wasserstein(
    a: Tensor, b: Tensor, projections: int = 256, generator: torch.Generator | None = None
) -> float:
    r"""Sliced 2-Wasserstein distance between two sample sets ``a: [n, ...]`` and ``b: [m, ...]``.

    ``SW₂(a, b) = ( E_θ W₂²(θᵀa, θᵀb) )^{1/2}`` over ``projections`` random unit directions θ; each
    1-D W₂ compares sorted projections (quantiles, interpolated when ``n ≠ m``). Computed in float64.

    References:
        Bonneel, Rabin, Peyré, Pfister, "Sliced and Radon Wasserstein Barycenters of Measures",
        JMIV 2015.
    """
    x = a.reshape(a.shape[0], -1).to(torch.float64).cpu()
    z = b.reshape(b.shape[0], -1).to(torch.float64).cpu()
    if x.shape[1] != z.shape[1]:
        raise ValueError(f"sample sets differ in dimension: {x.shape[1]} and {z.shape[1]}")
    theta = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ theta, dim=0)
    pz, _ = torch.sort(z @ theta, dim=0)
    if px.shape[0] != pz.shape[0]:
        q = torch.linspace(0, 1, max(px.shape[0], pz.shape[0]), dtype=torch.float64)
        px, pz = torch.quantile(px, q, dim=0), torch.quantile(pz, q, dim=0)
    return float(((px - pz) ** 2).mean().sqrt())
