r"""One call for users: observation in, restoration out, with nested diffusion around a solver.

``y`` and the result are images in [0, 1] (PIL, numpy or tensor). A thin layer over the pieces
every front end shares: a :class:`~nested_inverse.Problem` (which owns the conversion to the model
range, ``y_model = 2·y − A 1``), the solver and sampler a :class:`~nested_inverse.SamplerConfig`
names, and the anytime stream run to its end.

With a :class:`~nested_inverse.LatentPrior` the image and the operator still live in image space;
the solver (a latent one, PSLD by default) works on latents and every result is decoded.

References:
    Elata, Kawar, Michaeli, Elad, "Nested Diffusion Processes for Anytime Image Generation",
    2023, arXiv 2305.19066.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

import operators
from operators import LinearOperator

from .anytime import run_to_end
from .imageio import from_tensor, to_tensor
from . import solvers
from .priors import Prior, load_prior
from .memory import plan_memory
from .problem import Problem
from .sampling import DEFAULT_BUDGET, SamplerConfig
from .seeds import check_seed, image_seeds
from . import service

__all__ = ["restore"]


def _operator(operator: LinearOperator | str, image_shape: Sequence[int] | None) -> LinearOperator:
    if isinstance(operator, LinearOperator):
        return operator
    if isinstance(operator, str):
        if image_shape is None:
            raise ValueError(f"`operator`={operator!r} is a registry name: pass `image_shape` "
                             "(C, H, W of the restored image) too")
        return operators.make(operator, image_shape=tuple(int(s) for s in image_shape))
    raise ValueError(f"`operator` must be an operators.LinearOperator or a registry name "
                     f"(operators.available()), got {type(operator).__name__}")


def _split(outer_steps: int | str, inner_steps: int | None, budget_nfe: int | None,
           vanilla: bool) -> dict[str, int | None]:
    """``outer``/``inner`` of the :class:`SamplerConfig` for ``restore``'s arguments."""
    if vanilla:
        return {}
    if outer_steps == "auto":
        if inner_steps is not None:
            raise ValueError(f"`inner_steps`={inner_steps!r} with `outer_steps`='auto': the default "
                             "policy chooses both; give `outer_steps` as a number to fix the split")
        return {"outer": None, "inner": None}
    if isinstance(outer_steps, bool) or not isinstance(outer_steps, int) or outer_steps < 1:
        raise ValueError(f"`outer_steps` must be 'auto' or an integer >= 1, got {outer_steps!r}")
    if inner_steps is None:
        inner_steps = -(-(budget_nfe or DEFAULT_BUDGET) // outer_steps)
    return {"outer": outer_steps, "inner": inner_steps}


def _check_seed(seed: Any) -> None:
    # int(1.5) would silently drop the fraction; the shell refuses it too (--seed takes an int).
    if seed is not None:
        try:
            check_seed(seed)
        except ValueError as err:
            raise ValueError(f"{err} (or None for fresh randomness)") from None


def restore(
    y: Any,
    operator: LinearOperator | str,
    sigma_y: float = 0.0,
    method: str | None = None,
    outer_steps: int | str = "auto",
    inner_steps: int | None = None,
    prior: Prior | str | None = None,
    seed: int | None = None,
    return_intermediates: bool = False,
    *,
    image_shape: Sequence[int] | None = None,
    vanilla: bool = False,
    steps: int | None = None,
    outer_eta: float = 0.0,
    budget_nfe: int | None = None,
    deadline_s: float | None = None,
    tile: int | None = None,
    progress: bool = True,
    **method_params: Any,
) -> Any:
    r"""Restore ``x`` from ``y = A x + sigma_y·n`` with nested diffusion around ``method``.

    Runs ``outer_steps`` (K) outer steps of ``inner_steps`` (I) evaluations each: K·I network
    evaluations, with a finished restoration after every outer step
    (:class:`~nested_inverse.NestedSampler`).

    Args:
        y: the observation in [0, 1]: a PIL image, a numpy array (channels-last) or a tensor
            (``[C, h, w]`` or ``[B, C, h, w]``), shaped like ``operator``'s output.
        operator: an ``operators.LinearOperator``, or a registry name (``"sr4"``, ``"inpaint-box"``,
            see ``operators.available()``) together with ``image_shape``.
        sigma_y: observation noise std on the [0, 1] scale (0.05 = 5 % of the range).
        method: inner solver: ``"ddrm"`` (the default for a pixel prior), ``"ddnm"``, ``"pigdm"``
            or ``"dps"``; with a latent prior ``"psld"`` (its default) or ``"latent-dps"``. A pixel
            solver with a latent prior, or the reverse, raises ``ValueError`` naming what fits.
        outer_steps, inner_steps: K and I. ``"auto"`` (the default, with ``inner_steps=None``)
            is the default policy for the budget (:func:`~nested_inverse.planning.auto_split`:
            4 × 5 at 20 evaluations, 4 × 13 trimmed to 50 at 50, with the inner solver's η = 1
            unless ``method_params`` sets it; benchmarks/RESULTS.md, "Final quality"). A number
            of outer steps without ``inner_steps`` gives ``⌈budget/K⌉`` inner steps.
        prior: None for the bundled default, a path / Hub id, or a ready prior. A
            :class:`~nested_inverse.LatentPrior` (``predict`` on latents, ``decode``/``encode``)
            restores in its latent space: ``y`` and ``operator`` stay in image space, the solver's
            states are latents and every result (each outer step, ``A†y`` first as
            ``decode(encode(A†y))``) is decoded before it is returned. There is no prompt
            argument: a conditional latent prior binds its prompt (or class) when it is built,
            so steering by text comes through the prior object passed here.
        seed: image ``i`` of the batch is seeded with ``seed + i`` (:mod:`nested_inverse.seeds`:
            the same rule as ``nested-inverse restore`` and the page, so the same image, settings
            and seed give the same result through each); None for fresh randomness.
        return_intermediates: also return the results after each outer step.
        image_shape: ``(C, H, W)`` of the restoration, needed with a registry name.
        vanilla: run the solver alone for ``steps`` evaluations (default: the budget), for
            comparison.
        outer_eta: η of the outer DDIM step, in [0, 1].
        budget_nfe: network evaluations per image (default 20; with only ``deadline_s``, what one
            timed evaluation says fits, see :func:`budget_for_deadline`).
        deadline_s: wall-clock seconds; see :meth:`NestedSampler.iterate`.
        tile: large images run on overlapping tiles of a pixel prior
            (:func:`~nested_inverse.priors.tiled_for`): None for tiles of the network's training
            size once a side exceeds twice it (memory stays bounded at any size), N for N-pixel
            tiles, 0 for the whole image in one pass.
        progress: show a tqdm bar over the network evaluations.
        method_params: passed to the solver (e.g. ``eta=0.85``); unknown names raise
            ``ValueError`` listing the accepted ones.

    Returns:
        The restoration in [0, 1], of the same kind as ``y`` (PIL → PIL, numpy → numpy with
        ``y``'s dtype, tensor → tensor on ``y``'s device); with ``return_intermediates``, a tuple
        ``(restoration, results)`` where ``results`` is the list of
        :class:`~nested_inverse.AnytimeResult` whose ``image`` is converted the same way
        (``A†y`` first; for ``vanilla``, each step's x̂0 and finally the result).

    Example:
        >>> import torch, nested_inverse as ni, operators
        >>> x = ni.bundled_image("coffee", size=32)
        >>> op = operators.make("sr4", image_shape=(3, 32, 32))
        >>> out = ni.restore(op(x), op, method="ddnm", outer_steps=2, inner_steps=2, seed=0,
        ...                  progress=False)
        >>> out.shape
        torch.Size([1, 3, 32, 32])
    """
    _check_seed(seed)
    prior = load_prior(prior)
    method = solvers.default_method(prior) if method is None else method
    y01 = to_tensor(y)
    if isinstance(operator, str) and image_shape is not None and len(image_shape) == 3:
        # before the operator is built: a photo too large is refused in seconds
        plan_memory(image_shape=tuple(image_shape), batch=y01.shape[0] if y01.dim() == 4 else 1,
                    method=method, device=getattr(prior, "device", y01.device))
    dtype = getattr(prior, "dtype", y01.dtype)
    device = torch.device(getattr(prior, "device", y01.device))
    problem = Problem(y01.to(dtype=dtype, device=device), _operator(operator, image_shape), sigma_y)
    config = SamplerConfig(method=method, method_args=method_params, vanilla=vanilla,
                           steps=steps if steps is not None or not vanilla else budget_nfe,
                           outer_eta=outer_eta, budget_nfe=budget_nfe, tile=tile,
                           **_split(outer_steps, inner_steps, budget_nfe, vanilla))
    # image i of the batch: seed + i (nested_inverse.seeds), as the command line seeds
    seeds = None if seed is None else image_seeds(seed, problem.image_shape[0])
    config, run = service.start(config, prior, problem, seeds, deadline_s)
    from tqdm.auto import tqdm

    label = f"{method} (vanilla)" if vanilla else f"nested {method}"
    with tqdm(total=config.budget, desc=label, unit="NFE", disable=not progress,
              leave=False) as bar:
        results = run_to_end(run, callback=lambda r: bar.update(r.nfe - bar.n))

    def convert(x: Tensor) -> Any:  # a latent run's results are decoded to be shown
        return from_tensor(service.display(prior, x), y)

    if not return_intermediates:
        return convert(results[-1].image)
    return convert(results[-1].image), [replace(r, image=convert(r.image)) for r in results]
