r"""One call for users: observation in, restoration out, with nested diffusion around a solver.

``y`` and the result are images in [0, 1] (PIL, numpy or tensor); inside, the model range is used:
for a linear ``A``, ``A(2x − 1) = 2·A x − A 1``, so ``y_model = 2·y − A(1)`` (exact also where
``A 1 ≠ 1``, e.g. zero-padded blur borders or inpainting masks), and ``x = (x_model + 1)/2``.

References:
    Elata, Kawar, Michaeli, Elad, "Nested Diffusion Processes for Anytime Image Generation",
    2023, arXiv 2305.19066.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from operators import LinearOperator

from .imageio import from_model_range, from_tensor, to_tensor
from .nested import AnytimeResult, NestedSampler
from .priors import Prior

__all__ = ["METHODS", "make_solver", "restore"]

#: ``method`` name → (module in ``nested_inverse.solvers``, class name).
METHODS: dict[str, tuple[str, str]] = {
    "ddrm": ("ddrm", "DDRM"),
    "ddnm": ("ddnm", "DDNM"),
    "pigdm": ("pigdm", "PiGDM"),
    "dps": ("dps", "DPS"),
}


def make_solver(method: str, prior: Prior, operator: LinearOperator, y: Tensor,
                sigma_y: float = 0.0, **params: Any):
    """The solver named ``method`` (ddrm | ddnm | pigdm | dps), looked up when asked for.

    ``y`` in the model range, ``sigma_y`` on the [0, 1] scale; ``params`` go to the solver
    (e.g. ``eta``).
    """
    key = str(method).lower()
    if key not in METHODS:
        raise ValueError(f"`method`={method!r} is not known; accepted: {', '.join(METHODS)}")
    module, name = METHODS[key]
    try:
        cls = getattr(importlib.import_module(f"nested_inverse.solvers.{module}"), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"`method`={method!r}: solver {name} is not available in this "
                         f"installation ({err})") from err
    return cls(prior, operator, y, sigma_y, **params)


def _operator(operator: LinearOperator | str, image_shape: Sequence[int] | None) -> LinearOperator:
    if isinstance(operator, LinearOperator):
        return operator
    if isinstance(operator, str):
        import operators

        if image_shape is None:
            raise ValueError(f"`operator`={operator!r} is a registry name: pass `image_shape` "
                             "(C, H, W of the restored image) too")
        return operators.make(operator, image_shape=tuple(int(s) for s in image_shape))
    raise ValueError(f"`operator` must be an operators.LinearOperator or a registry name "
                     f"(operators.available()), got {type(operator).__name__}")


def _generators(seed: int | None, batch: int, device: torch.device) -> list[torch.Generator] | None:
    """One generator per image (seed + i), so an image's result does not depend on its batch."""
    if seed is None:
        return None
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    return [torch.Generator(gen_device).manual_seed(int(seed) + i) for i in range(batch)]


def restore(
    y: Any,
    operator: LinearOperator | str,
    sigma_y: float = 0.0,
    method: str = "ddrm",
    outer_steps: int = 5,
    inner_steps: int = 4,
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
        method: inner solver, ``"ddrm"``, ``"ddnm"``, ``"pigdm"`` or ``"dps"``.
        outer_steps, inner_steps: K and I (defaults 5 × 4 = 20 evaluations).
        prior: None for the bundled default, a path / Hub id, or a ready prior.
        seed: one generator per image (``seed + i``) for reproducible results; None for fresh
            randomness.
        return_intermediates: also return the results after each outer step.
        image_shape: ``(C, H, W)`` of the restoration, needed with a registry name.
        vanilla: run the solver alone for ``steps`` evaluations (default K·I), for comparison.
        outer_eta, budget_nfe, deadline_s: see :meth:`NestedSampler.iterate`.
        progress: show a tqdm bar over the outer steps (solver steps when ``vanilla``).
        method_params: passed to the solver (e.g. ``eta=0.85``).

    Returns:
        The restoration in [0, 1], of the same kind as ``y`` (PIL → PIL, numpy → numpy with
        ``y``'s dtype, tensor → tensor on ``y``'s device); with ``return_intermediates``, a tuple
        ``(restoration, results)`` where ``results`` is the list of
        :class:`~nested_inverse.nested.AnytimeResult` whose ``image`` is converted the same way
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
    from .priors import load_prior

    y01 = to_tensor(y)
    prior = load_prior(prior)
    dtype = getattr(prior, "dtype", y01.dtype)
    device = torch.device(getattr(prior, "device", y01.device))
    y01 = y01.to(dtype=dtype, device=device)
    op = _operator(operator, image_shape)
    op = op.to(device) if hasattr(op, "to") else op
    hint = "pass the degraded observation (and `image_shape` for a registry name)"
    try:
        with torch.no_grad():
            ones = torch.ones_like(op.pinv(y01))
            expected = tuple(op.output_shape(tuple(ones.shape)))
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"`y` of shape {tuple(y01.shape)} does not fit `operator`: {err}; "
                         f"{hint}") from err
    if expected != tuple(y01.shape):
        raise ValueError(f"`y` has shape {tuple(y01.shape)} but `operator` produces {expected}; "
                         f"{hint}")
    with torch.no_grad():
        y_model = 2 * y01 - op(ones)
    solver = make_solver(method, prior, op, y_model, sigma_y, **method_params)
    gens = _generators(seed, y01.shape[0], device)
    results: list[AnytimeResult] = []
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with diffusers
        progress = False
    if vanilla:
        total = steps if steps is not None else outer_steps * inner_steps
        bar = tqdm(total=total, desc=f"{method} (vanilla)", disable=not progress, leave=False) \
            if progress else None
        start = time.perf_counter()
        results.append(AnytimeResult(solver.y_pinv, 0, 0, 0.0, solver.y_pinv, -1))
        final = None
        for state in solver.iterate(steps=total, generator=gens):
            final = state
            image = state.x_t if state.t < 0 else state.x0_hat
            results.append(AnytimeResult(image, state.nfe, state.nfe,
                                         time.perf_counter() - start, state.x_t, state.t))
            if bar is not None:
                bar.update(1)
        out = final.x_t
    else:
        sampler = NestedSampler(solver, outer_steps, inner_steps, outer_eta)
        bar = tqdm(total=outer_steps, desc=f"nested {method}", unit="outer step",
                   disable=not progress, leave=False) if progress else None
        for result in sampler.iterate(gens, budget_nfe=budget_nfe, deadline_s=deadline_s):
            results.append(result)
            if bar is not None and result.outer_step > 0:
                bar.set_postfix(nfe=result.nfe, refresh=False)
                bar.update(1)
        out = results[-1].image
    if bar is not None:
        bar.close()

    def convert(x: Tensor) -> Any:
        return from_tensor(from_model_range(x).clamp(0, 1), y)

    if not return_intermediates:
        return convert(out)
    return convert(out), [replace(r, image=convert(r.image)) for r in results]
