"""Tasks: which operator a name means, with parameters."""

from __future__ import annotations

import pytest
import torch

from nested_inverse.errors import UsageError
from nested_inverse.tasks import parse_key_values, resolve_task


@pytest.mark.parametrize("pair", ["sigma=nan", "sigma=inf", "sigma=-Infinity", "sigma=1e999"])
def test_parse_key_values_refuses_non_finite_numbers(pair):
    """``sigma=nan`` once stayed a string and leaked "'>' not supported between 'str' and 'int'"."""
    with pytest.raises(UsageError, match="is not a finite number"):
        parse_key_values([pair], "--task-arg")


def test_parse_key_values_reads_literals_and_strings():
    assert parse_key_values(["sigma=2", "side=left", "weights=(1, 0, 0)", "x=None"]) == {
        "sigma": 2, "side": "left", "weights": (1, 0, 0), "x": None}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_key_values(["sigma"])


def test_resolve_task_names_the_valid_ones_and_imports_factories(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match=r"not a known operator; available: .*sr4"):
        resolve_task("sr5")
    assert resolve_task("sr4").geometry() == (4, 3, 3)
    assert resolve_task("colorize").geometry() == (1, 3, 1)
    assert resolve_task(None, mask=torch.ones(8, 8)).geometry() == (1, 3, 3)
    (tmp_path / "user_ops_ds.py").write_text(
        "import operators\n"
        "def make(image_shape, generator=None, factor=2):\n"
        "    return operators.BoxDownsample(factor, image_shape)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_task("user_ops_ds:make", {"factor": 2}).geometry() == (2, 3, 3)
    with pytest.raises(UsageError, match="accepts: factor"):
        resolve_task("user_ops_ds:make", {"size": 3})
    with pytest.raises(UsageError, match="cannot import module 'no_such_mod'"):
        resolve_task("no_such_mod:make")
    with pytest.raises(UsageError, match="no callable 'nope'"):
        resolve_task("user_ops_ds:nope")


def test_task_errors_name_python_arguments():
    with pytest.raises(UsageError, match="`task` is required"):
        resolve_task(None)
    with pytest.raises(UsageError, match="`mask` applies to inpainting, not to `task`='sr4'"):
        resolve_task("sr4", mask=torch.ones(8, 8))
    with pytest.raises(UsageError, match=r"`task_args` \['side'\] cannot apply with `mask`"):
        resolve_task(None, {"side": "left"}, mask=torch.ones(8, 8))
    task = resolve_task(None, mask=torch.ones(8, 8))
    with pytest.raises(UsageError, match="`mask` is 8×8 pixels but the image is 16×16"):
        task.make((3, 16, 16))
    with pytest.raises(UsageError, match="`task`='sr4' with `task_args` sigma=1 cannot be built"):
        resolve_task("sr4", {"sigma": 1}).geometry()
