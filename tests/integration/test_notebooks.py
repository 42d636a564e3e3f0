"""Every tutorial notebook in examples/ runs end to end on its offline defaults.

The notebooks assert their own checks (export parity, resampling parity); a cell that
raises fails the test with the cell's traceback.
"""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples")
NOTEBOOKS = sorted(glob.glob(os.path.join(EXAMPLES, "*.ipynb")))
CELL_TIMEOUT_S = 900


def test_the_tutorials_exist_and_install_themselves_in_colab():
    names = [os.path.basename(p) for p in NOTEBOOKS]
    assert names == ["01_fine_tune_bit.ipynb", "02_classify_and_export.ipynb", "03_vit_resolution.ipynb",
                     "04_few_shot_transfer.ipynb", "05_noisy_student.ipynb", "06_backbones.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        setup = nb.cells[1].source
        assert '"google.colab" in sys.modules' in setup and "pip" in setup, path
        assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), (
            f"{path} is committed with outputs; clear them")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p)[:2] for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline PNGs
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{os.path.basename(path)} drew no plots"


def xdist_group(item):
    """pytest-xdist group (tests/conftest.py): each notebook may run on either worker (its own kernel)."""
    return item.nodeid
