"""Execute every notebook in notebooks/ (nbclient, kernel from this venv); any error fails.

The notebooks are kept small (each runs in < 60 s on a laptop CPU), so this is not marked slow.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
TIMEOUT = 300  # per cell, seconds


def _kernel_spec_for_this_python(tmp_path) -> tuple[str, dict]:
    """A kernel that runs `sys.executable` (the test venv), whatever is installed globally."""
    from jupyter_client.kernelspec import KernelSpecManager

    kdir = tmp_path / "kernels" / "jaxdyn-test"
    kdir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jaxdyn test",
        "language": "python",
    }
    (kdir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return "jaxdyn-test", {"kernel_spec_manager": ksm}


#: Notebooks run only in the full suite (`-m slow` included): lazy_to_rich takes ≈ 85 s;
#: spectral (≈ 65 s) and rich_quick_beyond (≈ 50 s) on CI's 2 cores call the experiments that
#: test_spectral and test_experiments_rich_quick run in CI.
SLOW_NOTEBOOKS = {"lazy_to_rich.ipynb", "spectral.ipynb", "rich_quick_beyond.ipynb"}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_NOTEBOOKS else p
        for p in NOTEBOOKS
    ],
    ids=[p.name for p in NOTEBOOKS],
)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    name, km_kwargs = _kernel_spec_for_this_python(tmp_path)
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=name, **km_kwargs)
    client = nbclient.NotebookClient(
        nb, km=km, timeout=TIMEOUT, kernel_name=name, resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    images = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )
    assert images >= 1, "notebook produced no figures"


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"
