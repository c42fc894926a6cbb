"""The ADM mapping equals peer implementations: predicted ε of seeded random weights in the
checkpoints' exact layouts against deepinv's DiffUNet (FFHQ ``ffhq_10m.pt`` and ImageNet
``256x256_diffusion_uncond.pt`` layouts, full width) and openai/guided-diffusion's UNetModel
(the ImageNet layout at 64 channels at 256 px, and class-conditional), from the stored outputs of
``tests/fixtures/make_adm_reference.py`` (no deepinv needed here).

The full-width ImageNet layout runs at 64 px (a 256-px pass of its 553 M parameters costs ~90 s on
one CPU thread); at 256 px the same layout is checked at 64 channels (same levels, blocks,
attention resolutions 32/16/8 and heads of 64 channels).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from nested_inverse.priors.adm import adm_unet
from nested_inverse.priors.adm_random import random_adm_state_dict

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: measured 8e-7 … 1.5e-6 across the cases (float32, CPU); the issue's bound is 1e-5
TOLERANCE = 1e-5


def _script():
    spec = importlib.util.spec_from_file_location("make_adm_reference", FIXTURES / "make_adm_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SCRIPT = _script()
REFERENCE = np.load(FIXTURES / "adm_reference.npz")


@pytest.mark.parametrize("name", list(SCRIPT.CASES))
def test_eps_equals_the_reference(name):
    case = SCRIPT.CASES[name]
    layout = SCRIPT.layouts(SCRIPT.load_adm_random())[case["layout"]]
    unet = adm_unet(random_adm_state_dict(**layout, seed=case["seed"]))
    index = list(SCRIPT.CASES).index(name)
    x = torch.from_numpy(SCRIPT.inputs(case, index))
    assert int(REFERENCE[f"{name}/input_seed"]) == 1000 + index
    labels = None if case["y"] is None else torch.tensor(case["y"])
    with torch.no_grad():
        eps = unet(x, torch.tensor(case["t"]), class_labels=labels).sample.double()
    s = int(REFERENCE["stride"])
    ref = torch.from_numpy(REFERENCE[f"{name}/eps"]).double()
    sub = eps[..., ::s, ::s]
    assert sub.shape == ref.shape
    rel = float((sub - ref).norm() / ref.norm())
    assert rel <= TOLERANCE, f"{name}: relative error {rel:.2e}"
    full = float(REFERENCE[f"{name}/eps_norm"])
    assert abs(float(eps.norm()) - full) <= TOLERANCE * full
    # Not a vacuous match: a different weight seed is far from the reference.
    if name == "ffhq_64":
        other = adm_unet(random_adm_state_dict(**layout, seed=case["seed"] + 1))
        with torch.no_grad():
            far = other(x, torch.tensor(case["t"])).sample.double()[..., ::s, ::s]
        assert float((far - ref).norm() / ref.norm()) > 0.1
