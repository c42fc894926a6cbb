import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test process: the suite runs under pytest-xdist on two cores, and on a
    shared CPU threads that wait for each other cost far more than they give (measured 3–20×)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
