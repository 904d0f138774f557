"""Execute every notebook in notebooks/ (quick mode: GALMOSS_NOTEBOOK_QUICK=1 shrinks the work;
each notebook still fits and ends with asserts, so a broken notebook fails here).

The notebooks run in their own kernels (a fresh Python process each), two at a time (compiling
is single-threaded and CI has two cores), driven from this test process by nbclient's asyncio
API, and share one JAX compilation cache (they fit stamps of the same shapes) with the test
processes: the multiband notebook's float64 joint fit of the DECaLS galaxy is the program
``test_bands.py`` fits it with.  The notebooks run first (tests/conftest.py), so the tests reuse
it; a cached program is the compiled program itself, so no result depends on the order."""
import asyncio
import glob
import os
import re
import traceback

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
# start order: the batch notebook compiles the single-galaxy fit the later ones reuse
FIRST = ["batch.ipynb", "numpyro.ipynb", "bulge_disk.ipynb"]
WORKERS = 2


def _order(paths):
    rank = {n: i for i, n in enumerate(FIRST)}
    return sorted(paths, key=lambda p: (rank.get(os.path.basename(p), len(FIRST)), p))


async def _execute_all(paths, base, env):
    """Execute ``paths`` (in that order of start), ``WORKERS`` kernels at a time; for each,
    ``(executed notebook path, error text or "")`` (cell errors are kept in the notebook:
    ``allow_errors``)."""
    slots = asyncio.Semaphore(WORKERS)

    async def one(path):
        async with slots:
            work = base / os.path.splitext(os.path.basename(path))[0]
            work.mkdir()
            out = work / "executed.ipynb"
            nb = nbformat.read(path, as_version=4)
            client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                                             resources={"metadata": {"path": str(work)}})
            error = ""
            try:
                await client.async_execute(env=env)
            except Exception:   # the kernel died or timed out: reported by the test of this notebook
                error = traceback.format_exc()[-4000:]
            finally:
                nbformat.write(nb, str(out))
            return path, (out, error)

    return dict(await asyncio.gather(*(one(p) for p in _order(paths))))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run every notebook; ``{path: (executed notebook path, error text or "")}``."""
    base = tmp_path_factory.mktemp("notebooks")
    # the kernels share the run's compilation cache (tests/conftest.py: JAX_COMPILATION_CACHE_DIR)
    env = dict(os.environ, GALMOSS_NOTEBOOK_QUICK="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    return asyncio.run(_execute_all(NOTEBOOKS, base, env))


def test_notebooks_are_committed_without_outputs():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{os.path.basename(path)} has outputs"


def _plain(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs(path, executed):
    out, error = executed[path]
    name = os.path.basename(path)
    assert not error and os.path.exists(out), f"{name}: the notebook could not be executed:\n{error}"
    nb = nbformat.read(str(out), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        for o in cell.outputs:
            if o.get("output_type") == "error":
                tb = _plain("\n".join(o.get("traceback", [])))
                pytest.fail(f"{name}: code cell {i + 1} raised {o['ename']}: {o['evalue']}\n{tb}")
        assert cell.execution_count is not None, f"{name}: code cell {i + 1} did not run"
    # the final cell reports success once its asserts have passed
    text = "".join(o.get("text", "") for o in code[-1].outputs if o.get("output_type") == "stream")
    assert "ok" in text, f"{name}: the final cell printed {text!r}"
