"""Execute every notebook in notebooks/ (quick mode: GALMOSS_NOTEBOOK_QUICK=1 shrinks the work;
each notebook still fits and ends with asserts, so a broken notebook fails here)."""
import glob
import os

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """Quick mode, this checkout first on the kernel's path, and one JAX compilation cache
    shared by the notebooks (they fit stamps of the same shapes)."""
    cache = tmp_path_factory.mktemp("jax_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALMOSS_NOTEBOOK_QUICK", "1")
        mp.setenv("JAX_COMPILATION_CACHE_DIR", str(cache))
        mp.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        mp.setenv("MPLBACKEND", "Agg")
        yield


def test_notebooks_are_committed_without_outputs():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{os.path.basename(path)} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs(path, notebook_env, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"{os.path.basename(path)} failed:\n{e}")
    # the final cell reports success (its asserts passed)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.get("output_type") == "stream")
    assert "ok" in text
