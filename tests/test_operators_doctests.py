"""The docstring examples of the operators package run and print what they claim."""

import doctest
import importlib
import pkgutil

import pytest

import operators

MODULES = sorted(m.name for m in pkgutil.iter_modules(operators.__path__, "operators."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
