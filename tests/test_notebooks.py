"""Every tutorial notebook runs from a fresh kernel, top to bottom, at its small test size.

The notebooks read ``NESTED_INVERSE_SMALL=1`` (set here) to use tiny crops and few steps; plots go to
matplotlib's non-interactive Agg backend. Each runs in a temporary working directory so anything it
writes is thrown away.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: seconds allowed for any one cell
CELL_TIMEOUT = 600


def test_notebooks_found():
    names = [p.name for p in NOTEBOOKS]
    for expected in ("01_quickstart.ipynb", "02_custom_operator.ipynb", "03_human_guidance.ipynb",
                     "04_exact_posterior.ipynb"):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    # The kernel is a child process and inherits this environment.
    monkeypatch.setenv("NESTED_INVERSE_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # One thread: on a shared machine, torch's threads fighting over busy cores run many times
    # slower than one thread (the suite itself runs one test per core).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    # Committed notebooks carry no outputs, so the repository stays small and diffs readable.
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: commit notebooks without outputs"
    # A last cell reports how many figures the notebook drew (Agg keeps them open).
    nb.cells.append(nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as _plt\nprint('figures:', len(_plt.get_fignums()))"))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell and traceback
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    report = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    assert report.startswith("figures:") and int(report.split()[1]) >= 1, \
        f"{path.name} drew no figure ({report!r})"
