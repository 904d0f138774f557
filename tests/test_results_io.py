"""Result tables: writers by extension, atomic and never overwriting by accident."""
import os

import numpy as np
import pytest
from astropy.table import Table

from galmoss_jax import GalmossError, InputFileError, OutputFileError
from galmoss_jax.results import write_table


def _table():
    return Table({"id": [0, 1], "sersic_r_e": [3.5, 7.25], "sersic_r_e_err": [0.1, np.nan],
                  "status": np.array([0, 4], np.int32), "status_msg": ["success", "singular"]})


@pytest.mark.parametrize("ext", [".fits", ".ecsv", ".csv"])
def test_round_trip(tmp_path, ext):
    path = tmp_path / f"res{ext}"
    write_table(_table(), path)
    back = Table.read(path)
    np.testing.assert_array_equal(back["sersic_r_e"], [3.5, 7.25])
    err = np.ma.filled(np.ma.asarray(back["sersic_r_e_err"], dtype=float), np.nan)  # FITS reads NaN as masked
    assert np.isnan(err[1]) and list(back["status"]) == [0, 4]
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "res.ecsv"
    write_table(_table(), path)
    with pytest.raises(InputFileError, match="exists"):
        write_table(_table(), path)
    write_table(_table()[:1], path, overwrite=True)
    assert len(Table.read(path)) == 1


def test_unknown_extension_and_missing_directory(tmp_path):
    with pytest.raises(GalmossError, match="unknown extension '.txt'"):
        write_table(_table(), tmp_path / "res.txt")
    with pytest.raises(InputFileError, match="does not exist"):
        write_table(_table(), tmp_path / "nope" / "res.fits")


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    """A writer that dies half-way (full disk) leaves neither the output nor a temporary file."""
    def boom(self, *a, **k):
        with open(a[0], "w") as f:
            f.write("half a table")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Table, "write", boom)
    with pytest.raises(OutputFileError, match="cannot write .*res.fits.*No space"):
        write_table(_table(), tmp_path / "res.fits")
    assert os.listdir(tmp_path) == []
