import os

import pytest
import torch

# Under pytest-xdist each worker gets one core; more threads only fight over the two CPUs.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
