"""Outputs appear complete or not at all, are never overwritten by accident, and a write
failure is one clear error naming the path.

The tests run as root, for whom a read-only directory is writable, so failures are made by
patching the system calls the writers use (``os.replace``, ``os.open``) or the writer itself.
"""
import errno
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galmoss_jax import OutputFileError
from galmoss_jax.cli import main
from galmoss_jax import fit
from galmoss_jax.io import write_image, write_imgblocks
from galmoss_jax.results import write_table

import _no_solver

H = W = 12


def _table():
    return Table({"id": [0, 1], "sersic_r_e": [3.5, 7.25], "status": np.array([0, 4], np.int32)})


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _eacces(*a, **k):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


WRITERS = {
    "table": lambda path, **k: write_table(_table(), path, **k),
    "image": lambda path, **k: write_image(np.ones((3, 4)), path, **k),
}


def _leftovers(d):
    return sorted(os.listdir(d))


@pytest.mark.parametrize("kind,ext", [("table", ".fits"), ("table", ".ecsv"), ("table", ".csv"), ("image", ".fits")])
@pytest.mark.parametrize("call,fault,reason", [
    ("os.replace", _enospc, "No space left on device"),   # the disk fills as the file is moved in
    ("os.open", _eacces, "Permission denied"),            # a read-only directory
])
def test_write_failure_is_clear_and_leaves_nothing(tmp_path, monkeypatch, kind, ext, call, fault, reason):
    path = tmp_path / f"out{ext}"
    monkeypatch.setattr(call, fault)
    with pytest.raises(OutputFileError, match=rf"cannot write '{path}' \({reason}\)"):
        WRITERS[kind](path)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["table", "image"])
def test_failed_overwrite_keeps_the_old_file(tmp_path, monkeypatch, kind):
    """With overwrite=True, a write that dies half-way leaves the previous output as it was."""
    path = tmp_path / "out.fits"
    WRITERS[kind](path)
    before = path.read_bytes()

    def half_then_full(self, name, *a, **k):
        with open(name, "wb") as f:
            f.write(b"SIMPLE  =                    T / half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Table, "write", half_then_full)
    monkeypatch.setattr(fits.HDUList, "writeto", half_then_full)
    with pytest.raises(OutputFileError, match="No space left on device"):
        WRITERS[kind](path, overwrite=True)
    assert path.read_bytes() == before and _leftovers(tmp_path) == ["out.fits"]


@pytest.mark.parametrize("kind", ["table", "image"])
def test_never_overwrites_without_asking(tmp_path, kind):
    path = tmp_path / "out.fits"
    path.write_bytes(b"precious")
    with pytest.raises(OutputFileError, match=r"exists; pass overwrite=True \(CLI: --overwrite\)"):
        WRITERS[kind](path)
    assert path.read_bytes() == b"precious"
    WRITERS[kind](path, overwrite=True)
    assert path.read_bytes() != b"precious" and _leftovers(tmp_path) == ["out.fits"]


def test_missing_directory_and_directory_as_file(tmp_path):
    with pytest.raises(OutputFileError, match=r"output directory '.*nope' does not exist"):
        write_table(_table(), tmp_path / "nope" / "r.ecsv")
    (tmp_path / "d.fits").mkdir()
    with pytest.raises(OutputFileError, match=r"'.*d.fits' is a directory; expected a file name"):
        write_image(np.ones((2, 2)), tmp_path / "d.fits")


def test_outputs_get_ordinary_permissions(tmp_path):
    """Temporary files are private (0600); the output must get 0666 less the umask."""
    umask = os.umask(0o022)
    try:
        write_table(_table(), tmp_path / "r.ecsv")
    finally:
        os.umask(umask)
    assert (os.stat(tmp_path / "r.ecsv").st_mode & 0o777) == 0o644


# ---------------------------------------------------------------------------------------------
# image blocks: all or nothing
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_fit():
    rng = np.random.default_rng(3)
    data = 5 + rng.normal(size=(3, H, W))
    with pytest.MonkeyPatch.context() as mp:
        _no_solver.install(mp)
        res = fit("sersic", data, sigma=np.ones((H, W)), zeropoint=25,
                  init={"x0": 5.5, "y0": 5.5, "mag": 18.0, "r_e": 2.0, "n": 1.0, "q": 0.8, "pa": 0.0})
    return res, data


def test_imgblocks_all_or_nothing(tmp_path, monkeypatch, small_fit):
    res, data = small_fit
    sigma, mask = np.ones_like(data), np.ones(data.shape, bool)
    d = tmp_path / "blocks"
    real = fits.HDUList.writeto
    calls = []

    def third_fails(self, name, *a, **k):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, name, *a, **k)
    monkeypatch.setattr(fits.HDUList, "writeto", third_fails)
    with pytest.raises(OutputFileError, match=r"imgblock: cannot write '.*imgblock_2.fits' \(No space left on device\)"):
        write_imgblocks(res, data, sigma, mask, d, zeropoint=25)
    assert _leftovers(d) == []          # blocks 0 and 1 were written to temporary files only
    monkeypatch.setattr(fits.HDUList, "writeto", real)
    paths = write_imgblocks(res, data, sigma, mask, d, zeropoint=25)
    assert _leftovers(d) == ["imgblock_0.fits", "imgblock_1.fits", "imgblock_2.fits"]
    np.testing.assert_array_equal(fits.getdata(paths[1], "DATA"), data[1])
    # an existing block is refused before anything is written, and kept
    before = {p: open(p, "rb").read() for p in paths}
    os.remove(paths[0])
    with pytest.raises(OutputFileError, match=r"imgblock: 2 image blocks exist already \(first '.*imgblock_1.fits'\)"):
        write_imgblocks(res, data, sigma, mask, d, zeropoint=25)
    assert _leftovers(d) == ["imgblock_1.fits", "imgblock_2.fits"]
    assert all(open(p, "rb").read() == before[p] for p in paths[1:])
    (tmp_path / "plain").write_text("x")
    with pytest.raises(OutputFileError, match=r"imgblock: '.*plain' exists and is not a directory"):
        write_imgblocks(res, data, sigma, mask, tmp_path / "plain", zeropoint=25)


# ---------------------------------------------------------------------------------------------
# the CLI: refused before any work; a failed write is one line and leaves nothing
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def image(tmp_path):
    p = tmp_path / "img.fits"
    fits.writeto(p, 5 + np.random.default_rng(4).normal(size=(H, W)))
    return str(p)


def test_cli_full_disk(tmp_path, image, monkeypatch, capsys):
    _no_solver.install(monkeypatch)
    out = tmp_path / "res" / "r.ecsv"
    out.parent.mkdir()
    monkeypatch.setattr("os.replace", _enospc)
    rc = main(["fit", image, "--gain", "2", "--zeropoint", "25", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"galmoss-jax: error: --out: cannot write '{out}' (No space left on device)"]
    assert _leftovers(out.parent) == []


def test_cli_refuses_existing_outputs_before_fitting(tmp_path, image, monkeypatch, capsys):
    seen = _no_solver.install(monkeypatch)
    out = tmp_path / "r.ecsv"
    out.write_text("precious")
    assert main(["fit", image, "--gain", "2", "--zeropoint", "25", "--out", str(out)]) == 2
    assert "exists; pass overwrite=True (CLI: --overwrite)" in capsys.readouterr().err
    assert seen == {} and out.read_text() == "precious"   # refused before the fit
    m = tmp_path / "m.fits"
    m.write_text("precious")
    assert main(["render", "--model", "sersic", "--params", "x0=1", "--shape", "5,5", "--out", str(m)]) == 2
    assert "--out: " in capsys.readouterr().err and m.read_text() == "precious"
    assert main(["fit", image, "--gain", "2", "--zeropoint", "25", "--out", str(out), "--overwrite"]) == 0
    assert Table.read(out)["status"][0] == 0
