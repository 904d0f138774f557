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


def test_csv_keeps_text_as_text_and_reads_plain_csv(tmp_path):
    """CSV has no types: write_table quotes text values and read_table keeps a column with
    quoted values as text ("00", "1e5", "0x1" are not numbers); unquoted columns from other
    tools are typed as before, and a file that quotes every field says nothing about types."""
    from galmoss_jax.io import read_table

    t = Table({"id": ["007", "1e5", "0x1"], "chi2": [1.5, np.nan, -0.0], "status": [0, 1, 2],
               "status_msg": ["00", 'say "hi", twice', "nan"]})
    write_table(t, tmp_path / "r.csv")
    text = (tmp_path / "r.csv").read_text()
    assert text.splitlines()[:2] == ["id,chi2,status,status_msg", '"007",1.5,0,"00"']
    back = read_table(tmp_path / "r.csv")
    assert list(back["id"]) == ["007", "1e5", "0x1"] and back["id"].dtype.kind == "U"
    assert list(back["status_msg"]) == ["00", 'say "hi", twice', "nan"]
    assert back["status"].dtype.kind == "i" and back["chi2"].dtype.kind == "f"
    # plain CSV as other tools write it: numbers unquoted, text quoted only where it must be
    (tmp_path / "plain.csv").write_text('id,name,x\r\n1,"Smith, J",2.5\r\n\r\n2,NGC 1,3\r\n')
    back = read_table(tmp_path / "plain.csv")
    assert back["id"].dtype.kind == "i" and back["x"].dtype.kind == "f" and list(back["name"]) == ["Smith, J", "NGC 1"]
    (tmp_path / "all.csv").write_text('"id","x","name"\n"1","2.5","a"\n"2","3","b"\n')   # QUOTE_ALL
    back = read_table(tmp_path / "all.csv")
    assert back["id"].dtype.kind == "i" and back["x"].dtype.kind == "f" and back["name"].dtype.kind == "U"
