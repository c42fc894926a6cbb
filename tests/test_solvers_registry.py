"""The solver registry: names, parameters, plug-ins, and errors that say what is accepted."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

import operators
from nested_inverse import DDNM, DDRM, GaussianMixturePrior, Problem, solvers
from nested_inverse.solvers import registry


def _problem():
    op = operators.make("inpaint-half", image_shape=(1, 2, 2))
    return Problem(torch.full((1, 1, 2, 2), 0.75, dtype=torch.float64), op)


PRIOR = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None], event_shape=(1, 2, 2))


def test_built_ins_are_listed_and_built_from_a_problem():
    assert solvers.available() == ["daps", "ddnm", "ddrm", "diffpir", "dps", "latent-dps", "pigdm", "psld"]
    assert solvers.available(latent=False) == ["daps", "ddnm", "ddrm", "diffpir", "dps", "pigdm"]
    assert solvers.available(latent=True) == ["latent-dps", "psld"]
    problem = _problem()
    solver = solvers.make("DDRM", PRIOR, problem, eta=0.5)
    assert isinstance(solver, DDRM) and solver.eta == 0.5
    assert solver.y is problem.y and solver.sigma_y == problem.sigma_y
    assert solvers.get("ddnm") is DDNM


def test_unknown_methods_and_parameters_name_what_is_accepted():
    with pytest.raises(ValueError, match=r"`method`='ddpm' is not known; accepted: daps, ddnm, ddrm, diffpir, dps, latent-dps, pigdm, psld"):
        solvers.make("ddpm", PRIOR, _problem())
    with pytest.raises(ValueError, match="`method_params` etta not accepted by 'ddnm'; it accepts: eta, plus"):
        solvers.make("ddnm", PRIOR, _problem(), etta=1.0)


def test_describe_lists_parameters_with_defaults():
    assert solvers.describe("ddnm") == "ddnm: DDNM (eta=0.85, plus=None)"


def test_register_refuses_non_solvers_and_taken_names(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match="must be a Solver subclass"):
        solvers.register("mine", dict)
    with pytest.raises(ValueError, match="already registered"):
        solvers.register("ddrm", DDNM)
    solvers.register("mine", DDNM)
    assert "mine" in solvers.available()


def test_entry_point_plug_ins_load_lazily(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PLUGINS", {})
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    eps = [metadata.EntryPoint("plugged", "nested_inverse.solvers.ddnm:DDNM", registry.ENTRY_POINT_GROUP),
           metadata.EntryPoint("broken", "no_such_module:X", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda group: [e for e in eps if e.group == group])
    assert {"plugged", "broken"} <= set(solvers.available())
    assert solvers.get("plugged") is DDNM
    with pytest.raises(ValueError, match=r"plug-in solver 'broken' \(no_such_module:X\) failed to load"):
        solvers.get("broken")
