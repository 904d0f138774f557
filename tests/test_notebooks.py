"""Execute every notebook in notebooks/ (quick mode: GALMOSS_NOTEBOOK_QUICK=1 shrinks the work;
each notebook still fits and ends with asserts, so a broken notebook fails here).

The notebooks run as separate kernels, two at a time (compiling is single-threaded and CI has
two cores), sharing one JAX compilation cache (they fit stamps of the same shapes) with the test
processes: the multiband notebook's float64 joint fit of the DECaLS galaxy is the program
``test_bands.py`` fits it with.  The notebooks run first (tests/conftest.py), so the tests reuse
it; a cached program is the compiled program itself, so no result depends on the order."""
import glob
import os
import re
import subprocess
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
pytest.importorskip("nbclient", reason="the test extra installs nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
# start order: the batch notebook compiles the single-galaxy fit the later ones reuse
FIRST = ["batch.ipynb", "numpyro.ipynb", "bulge_disk.ipynb"]
WORKERS = 2
RUNNER = r"""
import sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
try:
    NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": sys.argv[3]}}).execute()
finally:
    nbformat.write(nb, sys.argv[2])
"""


def _order(paths):
    rank = {n: i for i, n in enumerate(FIRST)}
    return sorted(paths, key=lambda p: (rank.get(os.path.basename(p), len(FIRST)), p))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run every notebook; ``{path: (executed notebook path, return code, stderr)}``."""
    base = tmp_path_factory.mktemp("notebooks")
    # the kernels share the run's compilation cache (tests/conftest.py: JAX_COMPILATION_CACHE_DIR)
    env = dict(os.environ, GALMOSS_NOTEBOOK_QUICK="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    pending, running, done = _order(NOTEBOOKS), [], {}
    while pending or running:
        while pending and len(running) < WORKERS:
            path = pending.pop(0)
            name = os.path.splitext(os.path.basename(path))[0]
            work = base / name
            work.mkdir()
            out = work / "executed.ipynb"
            err = open(work / "stderr.txt", "w+")
            proc = subprocess.Popen([sys.executable, "-c", RUNNER, path, str(out), str(work)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)
            running.append((path, proc, out, err))
        for item in list(running):
            path, proc, out, err = item
            if proc.poll() is not None:
                err.seek(0)
                done[path] = (out, proc.returncode, err.read()[-4000:])
                err.close()
                running.remove(item)
        time.sleep(0.2)
    return done


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
    out, rc, stderr = executed[path]
    name = os.path.basename(path)
    assert rc == 0 and os.path.exists(out), f"{name}: the notebook could not be executed:\n{stderr}"
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
