"""Quality measures: image metrics (PSNR, SSIM, optional LPIPS), anytime quality, and the sliced
Wasserstein distance between sample sets.

Image metrics take ``[B, C, H, W]`` tensors on the scale given by ``data_range`` ([0, 1] by default)
and return one value per image, ``[B]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["anytime_quality", "image_quality", "lpips", "lpips_available", "psnr", "sliced_wasserstein",
           "ssim"]


def _pair(x: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor) or not isinstance(ref, Tensor):
        raise ValueError(f"`x` and `ref` must be tensors, got {type(x).__name__} and "
                         f"{type(ref).__name__}")
    if x.dim() != 4 or tuple(x.shape) != tuple(ref.shape):
        raise ValueError(f"`x` and `ref` must both be [B, C, H, W] of one shape, got "
                         f"{tuple(x.shape)} and {tuple(ref.shape)}")
    return x.detach().to(torch.float64), ref.detach().to(device=x.device, dtype=torch.float64)


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    r"""Peak signal-to-noise ratio per image: ``10·log10(L² / mean((x − ref)²))`` in dB, ``[B]``.

    ``x, ref: [B, C, H, W]`` on a scale of width ``data_range`` (L). Identical images give ``inf``.
    Not clamped: clamp ``x`` to the range first if that is what is meant.

    Example:
        >>> import torch
        >>> psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1))
        tensor([20.0000], dtype=torch.float64)
    """
    a, b = _pair(x, ref)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device) -> Tensor:
    g = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> Tensor:
    r"""Structural similarity per image (Wang et al., 2004), ``[B]``.

    ``SSIM = ((2μ_xμ_r + C1)(2σ_xr + C2)) / ((μ_x² + μ_r² + C1)(σ_x² + σ_r² + C2))`` with local
    statistics under an ``window × window`` Gaussian window (σ = 1.5), ``C1 = (0.01 L)²``,
    ``C2 = (0.03 L)²``, evaluated where the window fits (no padding) and averaged over positions
    and channels. Images smaller than the window use the largest odd window that fits.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim(x, x)
        tensor([1., 1.], dtype=torch.float64)

    References:
        Wang, Bovik, Sheikh, Simoncelli, "Image Quality Assessment: From Error Visibility to
        Structural Similarity", IEEE TIP 2004.
    """
    a, b = _pair(x, ref)
    size = min(window, a.shape[-1], a.shape[-2])
    size -= 1 - size % 2
    g = _gaussian_window(size, sigma, a.dtype, a.device)
    c = a.shape[1]
    # Separable filtering, one channel at a time (groups = C).
    kh = g.view(1, 1, size, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, size).repeat(c, 1, 1, 1)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(z, kh, groups=c), kw, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).flatten(1).mean(1)


def anytime_quality(curve: Iterable[tuple[int, float | Tensor]], total_nfe: int) -> float | Tensor:
    r"""Expected quality of a run stopped at a uniformly random moment of its budget.

    ``Q = (1/N) Σ_{n=1}^{N} q(latest result with nfe ≤ n)`` for a budget of ``N = total_nfe``
    evaluations, ``curve`` holding ``(nfe, quality)`` of every result in the order they became
    available, ``A†y`` at 0 evaluations included (required: before the first evaluation something
    must be shown). Among results at one nfe the last counts. Qualities may be floats or per-image
    tensors ``[B]`` (the answer then is ``[B]``). Results after ``N`` evaluations are ignored.

    Elata et al. (arXiv 2305.19066) compare *intermediate* quality instead: the nested result
    after outer step k against the vanilla sampler's x̂0 prediction after as many evaluations,
    plotted against NFE (FID and CLIP score there; PSNR per image here). Those points are the
    corners of the step curve ``Q`` averages; ``Q`` also charges the wait before the first result
    (A†y is shown until then) and weights each result by how long it is the latest.
    ``benchmarks/final_quality.py`` reports both (its "Δ at outer steps" is the paper's
    comparison, averaged over the outer steps).

    Example:
        >>> anytime_quality([(0, 10.0), (2, 20.0), (4, 30.0)], total_nfe=4)  # (10+20+20+30)/4
        20.0
    """
    points = [(int(n), q) for n, q in curve]
    if isinstance(total_nfe, bool) or not isinstance(total_nfe, int) or total_nfe < 1:
        raise ValueError(f"`total_nfe` must be an integer >= 1, got {total_nfe!r}")
    if not points or min(n for n, _ in points) > 0:
        raise ValueError("`curve` must contain a result at 0 evaluations (A†y), got nfe values "
                         f"{[n for n, _ in points]}")
    if any(b[0] < a[0] for a, b in zip(points, points[1:])):
        raise ValueError(f"`curve` must be in the order results became available (nfe "
                         f"non-decreasing), got {[n for n, _ in points]}")
    total, current, j = 0.0, None, 0
    for n in range(1, total_nfe + 1):
        while j < len(points) and points[j][0] <= n:
            current, j = points[j][1], j + 1
        total = total + current
    return total / total_nfe


_LPIPS_NETS: dict = {}


def lpips_available(net: str = "alex") -> bool:
    """Whether :func:`lpips` can run offline: the ``lpips`` package and its backbone weights exist
    locally (nothing is ever downloaded)."""
    try:
        import lpips as _lp  # noqa: F401
    except ImportError:
        return False
    files = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
             "squeeze": "squeezenet1_1-b8a52dc0.pth"}
    ckpt = os.path.join(torch.hub.get_dir(), "checkpoints", files.get(net, ""))
    return os.path.isfile(ckpt)


def lpips(x: Tensor, ref: Tensor, net: str = "alex") -> Tensor:
    r"""LPIPS distance per image (Zhang et al., 2018, arXiv 1801.03924), ``[B]``; images in [0, 1].

    Optional: needs the ``lpips`` package and its backbone weights already on disk
    (:func:`lpips_available`); raises ``RuntimeError`` otherwise rather than downloading.
    """
    if not lpips_available(net):
        raise RuntimeError(f"LPIPS ({net}) is unavailable offline: install the `lpips` package "
                           "and place its backbone weights in the torch hub cache "
                           f"({torch.hub.get_dir()}/checkpoints)")
    import lpips as _lp

    a, b = _pair(x, ref)
    if net not in _LPIPS_NETS:
        _LPIPS_NETS[net] = _lp.LPIPS(net=net, verbose=False).eval()
    model = _LPIPS_NETS[net].to(a.device)
    with torch.no_grad():
        return model(a.float() * 2 - 1, b.float() * 2 - 1).flatten().to(torch.float64)


def sliced_wasserstein(
    a: Tensor, b: Tensor, projections: int = 256, generator: torch.Generator | None = None
) -> float:
    r"""Sliced 2-Wasserstein distance between two sample sets ``a: [n, ...]`` and ``b: [m, ...]``.

    ``SW₂(a, b) = ( E_θ W₂²(θᵀa, θᵀb) )^{1/2}`` over ``projections`` random unit directions θ; each
    1-D W₂ compares sorted projections (quantiles, interpolated when ``n ≠ m``). Computed in float64.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.randn(2000, 2, generator=g)
        >>> sliced_wasserstein(a, a)
        0.0
        >>> sw = sliced_wasserstein(a, a + torch.tensor([3.0, 4.0]), generator=g)
        >>> abs(sw - 5 / 2**0.5) < 0.2  # a shift v gives |v|/√2 in 2-D
        True

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


def image_quality(x: Tensor, ref: Tensor) -> dict[str, list[float | None]]:
    """PSNR (dB), SSIM and LPIPS per image pair, ``[B, C, H, W]`` in [0, 1], as lists of floats.

    ``lpips`` holds None per image where LPIPS is unavailable offline (:func:`lpips_available`).

    Example:
        >>> import torch
        >>> q = image_quality(torch.full((2, 1, 16, 16), 0.5), torch.full((2, 1, 16, 16), 0.6))
        >>> [round(v, 2) for v in q["psnr"]], q["lpips"]
        ([20.0, 20.0], [None, None])
    """
    a = x.detach().to(torch.float64).clamp(0, 1).cpu()
    b = ref.detach().to(torch.float64).clamp(0, 1).cpu()
    return {"psnr": psnr(a, b).tolist(), "ssim": ssim(a, b).tolist(),
            "lpips": lpips(a, b).tolist() if lpips_available() else [None] * a.shape[0]}
