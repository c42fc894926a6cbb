"""Documentation that runs: docstring examples of every module, and the README's code.

- every module of ``nested_inverse`` and ``operators`` (found by walking the packages, so modules
  added or moved are picked up) runs its docstring examples with :mod:`doctest`; a module that
  cannot be imported fails, unless what is missing belongs to an optional extra (then it is
  skipped, with the reason);
- the README's Python blocks run, in order, in one namespace (blocks marked ``# (online)`` need
  the network and are only compiled);
- every ``nested-inverse`` command the README shows parses with the real argument parser;
- the README's quick-start restore command runs for real and writes the files the README lists;
  its test command names a test runner setup that exists (it is not run: that would recurse).
"""

from __future__ import annotations

import configparser
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


def _walk(package) -> list[str]:
    # ``onerror`` swallows nothing: a package that fails to import is still listed (walk_packages
    # yields it before importing it), and its own test below reports the failure.
    names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".",
                                                   onerror=lambda name: None)]
    return [package.__name__] + names


#: every module of both packages but ``__main__`` (importing it runs the CLI)
MODULES = sorted(name for package in (nested_inverse, operators) for name in _walk(package)
                 if name.rpartition(".")[2] != "__main__")


def _optional_packages() -> set[str]:
    """Top-level import names of the packages in the optional extras (``setup.cfg``)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    found = set()
    for spec in cfg["options.extras_require"].values():
        for line in spec.splitlines():
            name = re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0]
            if name:
                found.add(name.lower().replace("-", "_"))
    return found


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0].lower()
        if missing and missing in _optional_packages():
            pytest.skip(f"{name} needs the optional package {missing!r} "
                        f"(an extra in setup.cfg), which is not installed: {exc}")
        raise


def test_modules_are_found():
    # The walk must reach subpackages, or new modules would silently go untested.
    for expected in ("nested_inverse.nested", "nested_inverse.solvers.ddrm",
                     "nested_inverse.priors", "operators.inpainting"):
        assert expected in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, one_thread):
    module = _import(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             report=True)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_optional_extras_are_read():
    # The skip above depends on this list; an empty one would turn every skip into a failure.
    assert {"matplotlib", "accelerate", "pytest"} <= _optional_packages()


# -------------------------------------------------------------------------------------- README
def _blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_runs(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "readme"}
    blocks = _blocks("python")
    assert blocks
    for i, block in enumerate(blocks):
        code = compile(block, f"README.md python block {i + 1}", "exec")
        if block.startswith("# (online)"):  # needs the network: only checked to compile
            continue
        exec(code, namespace)  # noqa: S102 - the README's own examples


def _words(block: str) -> list[list[str]]:
    """The shell commands of one block (continuations joined, split at ``&&`` and ``;``)."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0]
        for part in re.split(r"&&|;", line):
            words = shlex.split(part, comments=True)
            if words:
                found.append(words)
    return found


def _cli_args(words: list[str]) -> list[str] | None:
    """The arguments after ``nested-inverse`` (or ``-m nested_inverse``), or None."""
    if "nested-inverse" in words:
        return words[words.index("nested-inverse") + 1:]
    if "nested_inverse" in words and "-m" in words:  # accelerate launch -m nested_inverse ...
        return words[words.index("nested_inverse") + 1:]
    return None


def _commands() -> list[list[str]]:
    """``nested-inverse ...`` invocations in the README's shell blocks, as argument lists."""
    return [args for block in _blocks("bash") + _blocks("sh") for words in _words(block)
            if (args := _cli_args(words)) is not None]


def test_readme_commands_parse():
    from nested_inverse.cli import build_parser

    commands = _commands()
    assert commands
    parser = build_parser()
    for words in commands:
        if not words or "--help" in words or "-h" in words:
            continue
        try:
            args = parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"README command does not parse: nested-inverse {shlex.join(words)}")
        assert getattr(args, "func", None) is not None, words


def _quick_start() -> tuple[list[str], list[str]]:
    """The README's first two shell blocks: the restore command's arguments, the test command."""
    first, second = _blocks("bash")[:2]
    restore = [a for w in _words(first) if (a := _cli_args(w)) is not None]
    tests = [w for w in _words(second) if "pytest" in w]
    assert len(restore) == 1 and restore[0][0] == "restore", restore
    assert len(tests) == 1, tests
    return restore[0], tests[0]


def _option(args: list[str], name: str) -> str:
    assert name in args, f"the quick-start command has no {name}"
    return args[args.index(name) + 1]


def test_readme_quick_start_restore_runs(tmp_path, monkeypatch, capsys, one_thread):
    from nested_inverse.cli import main

    args, _ = _quick_start()
    out = tmp_path / "quickstart"
    args = list(args)
    args[args.index("--out") + 1] = str(out)  # write into the test's folder, not the checkout
    # A max side of 64 px instead of the README's 256: the same command, untiled, at a small
    # fraction of the cost (~3 s).
    _option(args, "--max-side")
    args[args.index("--max-side") + 1] = "64"
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository root
    assert main([*args, "--no-progress"]) == 0, capsys.readouterr()
    # The files the README says ``out/quickstart`` then holds, for the input it restores.
    stem = Path(args[1]).stem
    for suffix in ("", "_y", "_clean", "_steps"):
        assert (out / f"{stem}{suffix}.png").stat().st_size > 0, suffix
    assert (out / f"{stem}_steps.gif").stat().st_size > 0
    assert (out / f"{stem}.json").stat().st_size > 0
    from PIL import Image

    side = int(_option(args, "--max-side"))
    with Image.open(ROOT / args[1]) as photo:
        W, H = photo.size
    factor = re.fullmatch(r"sr(\d+)", _option(args, "--task"))
    f = int(factor[1]) if factor else 1
    # The whole photo, its longer side downscaled to max side, cropped to the task's factor.
    w, h = side, round(H * side / W) // f * f
    with Image.open(out / f"{stem}.png") as restored:
        assert restored.size == (w, h)
    with Image.open(out / f"{stem}_y.png") as observed:
        assert observed.size == (w // f, h // f)


def test_readme_quick_start_test_command_names_a_real_setup(pytestconfig):
    _, words = _quick_start()
    assert words[:3] == ["python", "-m", "pytest"], words
    args = words[3:]
    paths = [a for a in args if not a.startswith("-") and not a.isdigit()]
    for path in paths:
        assert (ROOT / path).exists(), f"the README's test command names a missing path {path}"
    if not paths:  # then pytest collects setup.cfg's testpaths
        cfg = configparser.ConfigParser()
        cfg.read(ROOT / "setup.cfg")
        testpaths = cfg["tool:pytest"]["testpaths"].split()
        assert testpaths and all((ROOT / p).is_dir() for p in testpaths)
    if "-n" in args:  # -n N comes from pytest-xdist, part of the test extra
        assert _option(args, "-n").isdigit()
        assert pytestconfig.pluginmanager.hasplugin("xdist"), "-n needs pytest-xdist"
    for flag in args:
        if flag.startswith("-") and flag != "-n":
            assert flag in ("-q", "-x", "-v", "-ra"), f"unexpected flag {flag} (extend the list)"
