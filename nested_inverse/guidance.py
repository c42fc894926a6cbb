"""Human guidance for a running nested sampler: commands sent into it between outer steps.

Each command is a small value object sent with ``run.send(command)`` while the run waits between
outer steps (see :class:`nested_inverse.NestedSampler`); ``send`` answers with the current,
possibly updated, result and the next ``next(run)`` goes on to the next outer step.

Example:
    >>> import torch, operators
    >>> from nested_inverse import DDNM, GaussianMixturePrior, NestedSampler, Resample
    >>> from nested_inverse import SetInnerSteps, Stop
    >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
    ...                              event_shape=(1, 2, 2))
    >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
    >>> y = op(torch.ones(1, 1, 2, 2, dtype=torch.float64))
    >>> run = NestedSampler(DDNM(prior, op, y), outer_steps=3, inner_steps=2).iterate(
    ...     torch.Generator().manual_seed(0))
    >>> next(run).nfe, next(run).nfe
    (0, 2)
    >>> run.send(Resample()).nfe  # the same outer step again, with fresh noise
    4
    >>> _ = run.send(SetInnerSteps(1))
    >>> next(run).nfe
    5
    >>> run.send(Stop()).outer_step
    2
    >>> next(run, None) is None
    True

References:
    Elata, Kawar, Michaeli, Elad, "Nested Diffusion Processes for Anytime Image Generation",
    2023, arXiv 2305.19066 (human guidance between outer steps, Sec. 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from .anytime import AnytimeResult

__all__ = ["Command", "Edit", "Resample", "SetInnerSteps", "Steerable", "Stop", "apply"]


@dataclass(frozen=True)
class Edit:
    """Replace the current restoration with ``image`` (model range [-1, 1], ``[B, C, H, W]``).

    Where the problem is noiseless it is first projected onto ``{x : A x = y}``:
    ``x ← x − A†(A x − y)``. The next outer step is then taken with the edited image as its x̂0.
    """

    image: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.image, Tensor):
            raise ValueError(f"`Edit.image` must be a tensor [B, C, H, W] in the model range "
                             f"[-1, 1], got {type(self.image).__name__}")


@dataclass(frozen=True)
class Resample:
    """Redo the last inner run from the same outer state with fresh noise (costs its evaluations)."""


@dataclass(frozen=True)
class SetInnerSteps:
    """Use ``steps`` inner evaluations per outer step from the next outer step on."""

    steps: int

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"`SetInnerSteps.steps` must be an integer >= 1, got {self.steps!r}")


@dataclass(frozen=True)
class Stop:
    """End the run: ``send`` answers with the latest result and the iteration then stops."""


Command = Edit | Resample | SetInnerSteps | Stop


class Steerable(Protocol):
    """What a running sampler offers the commands: each method acts and answers with the current
    result (raising ``ValueError``/``RuntimeError`` when it cannot, the run staying alive)."""

    latest: AnytimeResult | None
    stopped: bool

    def edit(self, image: Tensor) -> AnytimeResult: ...

    def resample(self) -> AnytimeResult: ...

    def set_inner_steps(self, steps: int) -> AnytimeResult: ...

    def stop(self) -> AnytimeResult: ...


def apply(command: Any, target: Steerable) -> AnytimeResult:
    """Dispatch ``command`` to ``target``; unknown commands raise ``ValueError``."""
    if isinstance(command, Edit):
        return target.edit(command.image)
    if isinstance(command, Resample):
        return target.resample()
    if isinstance(command, SetInnerSteps):
        return target.set_inner_steps(command.steps)
    if isinstance(command, Stop):
        return target.stop()
    raise ValueError(f"unknown command {command!r}; send Edit(image), Resample(), SetInnerSteps(n) "
                     "or Stop()")
