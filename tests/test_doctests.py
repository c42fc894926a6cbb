"""Documentation that runs: docstring examples of the public modules, and the README's code.

- every module of ``nested_inverse`` runs its docstring examples with :mod:`doctest` (the operators
  package has its own, ``test_operators_doctests.py``);
- the main public classes and functions carry at least one example;
- the README's Python blocks run, in order, in one namespace;
- every ``nested-inverse`` command the README shows parses with the real argument parser.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import shlex
from pathlib import Path

import pytest

import nested_inverse
import operators

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

MODULES = sorted(m.name for m in pkgutil.walk_packages(nested_inverse.__path__, "nested_inverse.")
                 if not m.name.endswith("__main__"))  # importing __main__ runs the CLI

#: public objects whose docstrings must show how to use them
DOCUMENTED = [
    "nested_inverse.NestedSampler",
    "nested_inverse.restore",
    "nested_inverse.GaussianMixturePrior",
    "nested_inverse.DiffusionPrior",
    "nested_inverse.DDRM",
    "nested_inverse.DDNM",
    "nested_inverse.PiGDM",
    "nested_inverse.DPS",
    "nested_inverse.DDIM",
    "nested_inverse.solvers.ExactPosterior",
    "nested_inverse.CountingPrior",
    "nested_inverse.guidance",
    "nested_inverse.metrics.psnr",
    "nested_inverse.metrics.ssim",
    "nested_inverse.metrics.anytime_quality",
    "nested_inverse.metrics.sliced_wasserstein",
    "nested_inverse.timesteps.spaced_timesteps",
    "operators.make",
    "operators.check",
    "operators.LinearOperator",
    "operators.Compose",
    "operators.Inpainting",
]

#: at least this many examples run over both packages (a floor that catches examples vanishing)
MIN_EXAMPLES = 120


def _run(name: str) -> doctest.TestResults:
    module = importlib.import_module(name)
    return doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                           report=True)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    assert _run(name).failed == 0


def test_examples_are_plentiful():
    names = MODULES + sorted(m.name for m in pkgutil.iter_modules(operators.__path__, "operators."))
    finder = doctest.DocTestFinder()
    count = sum(len(t.examples) for name in names
                for t in finder.find(importlib.import_module(name)))
    assert count >= MIN_EXAMPLES


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    obj = importlib.import_module(module)
    return getattr(obj, attr)


@pytest.mark.parametrize("dotted", DOCUMENTED)
def test_main_api_has_an_example(dotted):
    doc = _resolve(dotted).__doc__ or ""
    assert ">>>" in doc, f"{dotted} has no docstring example"


def _blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_quick_start_commands_come_first():
    blocks = _blocks("bash")
    assert blocks[0].strip().startswith('pip install -e . && nested-inverse restore ')
    assert blocks[1].strip() == 'pip install -e ".[test]" && python -m pytest -q -n 2'


def test_readme_python_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "readme"}
    blocks = _blocks("python")
    assert blocks
    for i, block in enumerate(blocks):
        if block.startswith("# (online)"):  # needs the network; cannot run offline
            continue
        code = compile(block, f"README.md python block {i + 1}", "exec")
        exec(code, namespace)  # noqa: S102 - the README's own examples


def _commands() -> list[list[str]]:
    """``nested-inverse ...`` invocations in the README's shell blocks, as argument lists."""
    found = []
    for block in _blocks("bash") + _blocks("sh"):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.split(" #")[0]
            for part in re.split(r"&&|;", line):
                words = shlex.split(part, comments=True)
                if "nested-inverse" in words:
                    found.append(words[words.index("nested-inverse") + 1:])
                elif "nested_inverse" in words and "-m" in words:  # accelerate launch -m ...
                    found.append(words[words.index("nested_inverse") + 1:])
    return found


def test_readme_commands_parse():
    from nested_inverse.cli import build_parser

    commands = _commands()
    assert len(commands) >= 5
    parser = build_parser()
    for words in commands:
        if not words or words[0] in ("--help", "-h") or "--help" in words:
            continue
        try:
            args = parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"README command does not parse: nested-inverse {shlex.join(words)}")
        assert getattr(args, "func", None) is not None, words
