"""Bad input at every entry point: a typed error naming the argument, or a warning and a
masked pixel where the input is usable in part.

The checks run on the host before anything is compiled; ``_no_solver`` stands in for the
compiled fit core where a case must get past the checks (the real solver's handling of the
same inputs is in ``test_faults.py``).
"""
import os
import re
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import galmoss_jax as gj
from galmoss_jax import (DataError, InputFileError, ParameterError, ProfileError,
                         PSFError, ShapeError)
from galmoss_jax.cli import main
from galmoss_jax import Status, fit
from galmoss_jax.io import read_image, read_mask, read_table

import _no_solver

H = W = 16
P7 = dict(x0=7.5, y0=7.5, mag=18.0, r_e=2.0, n=1.5, q=0.7, pa=20.0)
PARAMS = ",".join(f"{k}={v}" for k, v in P7.items())


def _gauss(n, s=1.5):
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    return np.exp(-(x * x + y * y) / (2 * s * s))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    img = 10 + rng.normal(size=(H, W))
    f = {}

    def put(name, a, header=None):
        f[name] = str(d / f"{name}.fits")
        fits.writeto(f[name], np.asarray(a), header=header)

    put("image", img)
    put("cube", np.stack([img, img]))
    put("sigma", np.ones((H, W)))
    put("sigma_shape", np.ones((H, W + 1)))
    put("sigma_zero", np.zeros((H, W)))
    put("sigma_some_zero", np.where(np.arange(W) < 3, 0.0, 1.0) * np.ones((H, 1)))
    put("mask_shape", np.zeros((H + 2, W), np.int16))
    put("mask_all", np.ones((H, W), np.int16))
    put("image_1d", np.ones(H))
    put("image_4d", np.ones((1, 2, H, W)))
    put("image_nan", np.where(np.eye(H, dtype=bool), np.nan, img))
    put("image_zp_text", img, fits.Header({"MAGZPT": "twenty"}))
    put("psf", _gauss(7) / _gauss(7).sum())
    put("psf_even", _gauss(6))
    put("psf_zero", np.zeros((7, 7)))
    put("psf_negative", -_gauss(7))
    put("psf_4d", np.ones((1, 1, 7, 7)))
    put("psf_unnormalised", 3 * _gauss(7))
    put("psf_cube3", np.stack([_gauss(7) / _gauss(7).sum()] * 3))
    f["text"] = str(d / "notfits.fits")
    with open(f["text"], "w") as fh:
        fh.write("this is not a FITS file\n")
    f["empty_hdu"] = str(d / "empty_hdu.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": [1, 2]}))]).writeto(f["empty_hdu"])
    f["missing"] = str(d / "missing.fits")
    f["init_unknown"] = str(d / "init_unknown.ecsv")
    Table({"sersic_r_e": [2.0], "sersic_rr": [1.0]}).write(f["init_unknown"])
    f["init_text"] = str(d / "init_text.ecsv")
    Table({"sersic_n": ["two"]}).write(f["init_text"])
    f["init_named"] = str(d / "init_named.ecsv")  # a text column (a name) is not a parameter: ignored
    Table({"name": ["J1"], "sersic_r_e": [2.5], "sersic_n": [1.2]}).write(f["init_named"])
    f["init_rows"] = str(d / "init_rows.ecsv")
    Table({"sersic_r_e": [2.5, 3.0, 1.0]}).write(f["init_rows"])
    f["exists"] = str(d / "exists.ecsv")
    Table({"a": [1]}).write(f["exists"])
    f["blocks"] = str(d / "blocks")
    (d / "blocks").mkdir()
    (d / "blocks" / "imgblock_0.fits").write_bytes(b"old")
    f["dir"] = str(d)
    return f


def _fit_args(files, *extra, image="image", out=None):
    out = out or files["dir"] + "/never_written.ecsv"
    return ["fit", files[image], "--sigma", files["sigma"], "--zeropoint", "25", "--out", out, *extra]


# ---------------------------------------------------------------------------------------------
# CLI: exit code 2, one line "galmoss-jax: error: ...", no traceback
# ---------------------------------------------------------------------------------------------
CLI_ERRORS = [
    # input files
    ("missing image", lambda f: _fit_args(f, image="missing"), r"IMAGE: file '.*missing.fits' does not exist"),
    ("not FITS", lambda f: _fit_args(f, image="text"), r"IMAGE: '.*notfits.fits' is not a readable FITS file"),
    ("a directory", lambda f: ["fit", f["dir"], "--gain", "1", "--zeropoint", "25", "--out", f["dir"] + "/x.ecsv"],
     r"IMAGE: '.*' is not a readable FITS file"),
    ("no image HDU", lambda f: _fit_args(f, image="empty_hdu"), r"IMAGE: '.*empty_hdu.fits' has no image data"),
    ("1-D image", lambda f: _fit_args(f, image="image_1d"), r"IMAGE: .* must be a 2-D image or a \(G, H, W\) cube, got shape \(16,\)"),
    ("4-D image", lambda f: _fit_args(f, image="image_4d"), r"IMAGE: .* must be a 2-D image or a \(G, H, W\) cube, got shape \(1, 2, 16, 16\)"),
    ("sigma shape", lambda f: ["fit", f["image"], "--sigma", f["sigma_shape"], "--zeropoint", "25", "--out", f["dir"] + "/x.ecsv"],
     r"sigma must have the shape of data \(16, 16\) or \(H, W\), got \(16, 17\)"),
    ("sigma cube vs image", lambda f: ["fit", f["cube"], "--sigma", f["sigma_shape"], "--zeropoint", "25", "--out", f["dir"] + "/x.ecsv"],
     r"sigma must have the shape of data \(2, 16, 16\) or \(H, W\)"),
    ("sigma all zero", lambda f: ["fit", f["image"], "--sigma", f["sigma_zero"], "--zeropoint", "25", "--out", f["dir"] + "/x.ecsv"],
     r"sigma: no used pixel has a positive, finite sigma"),
    ("mask shape", lambda f: _fit_args(f, "--mask", f["mask_shape"]), r"mask must have the shape of data \(16, 16\)"),
    ("missing mask", lambda f: _fit_args(f, "--mask", f["missing"]), r"--mask: file .* does not exist"),
    ("no sigma", lambda f: ["fit", f["image"], "--zeropoint", "25", "--out", f["dir"] + "/x.ecsv"], r"give --sigma SIGMA or --gain G"),
    ("gain nan", lambda f: ["fit", f["image"], "--gain", "nan", "--zeropoint", "25", "--out", f["dir"] + "/x.ecsv"], r"gain must be finite"),
    ("gain zero", lambda f: ["fit", f["image"], "--gain", "0", "--zeropoint", "25", "--out", f["dir"] + "/x.ecsv"], r"gain must be positive"),
    ("read noise", lambda f: _fit_args(f, "--read-noise", "-3"), r"read_noise must be >= 0"),
    ("sky inf", lambda f: _fit_args(f, "--sky", "inf"), r"sky must be finite"),
    ("zeropoint nan", lambda f: ["fit", f["image"], "--sigma", f["sigma"], "--zeropoint", "nan", "--out", f["dir"] + "/x.ecsv"],
     r"zeropoint must be finite"),
    ("no zeropoint", lambda f: ["fit", f["image"], "--sigma", f["sigma"], "--out", f["dir"] + "/x.ecsv"],
     r"zeropoint is required: the model has magnitude parameters .*--zeropoint"),
    ("zeropoint header text", lambda f: ["fit", f["image_zp_text"], "--sigma", f["sigma"], "--out", f["dir"] + "/x.ecsv"],
     r"IMAGE: the zero point in the header of .* is not a number \('twenty'\); give --zeropoint"),
    ("max-iter 0", lambda f: _fit_args(f, "--max-iter", "0"), r"max_iter must be a positive integer, got 0"),
    ("oversample 0", lambda f: _fit_args(f, "--oversample", "0"), r"oversample must be a positive integer, got 0"),
    # PSF
    ("psf even", lambda f: _fit_args(f, "--psf", f["psf_even"]), r"psf must have odd sides so that its centre is a pixel, got 6x6"),
    ("psf zero", lambda f: _fit_args(f, "--psf", f["psf_zero"]), r"psf must have a positive sum \(it is all zero or negative-summed\)"),
    ("psf negative", lambda f: _fit_args(f, "--psf", f["psf_negative"]), r"psf must have a positive sum"),
    ("psf 4-D", lambda f: _fit_args(f, "--psf", f["psf_4d"]), r"--psf: .* must be a 2-D image or a \(G, H, W\) cube, got shape \(1, 1, 7, 7\)"),
    ("psf cube count", lambda f: ["fit", f["cube"], "--sigma", f["sigma"], "--zeropoint", "25", "--psf", f["psf_cube3"],
                                  "--out", f["dir"] + "/x.ecsv"], r"psf cube has 3 PSFs for 2 galaxies"),
    ("psf cube for an image", lambda f: _fit_args(f, "--psf", f["psf_cube3"]), r"psf cube has 3 PSFs for 1 galaxies"),
    # model, fixed, tied, init
    ("unknown profile", lambda f: _fit_args(f, "--model", "sersik"), r"unknown profile 'sersik'"),
    ("empty component", lambda f: _fit_args(f, "--model", "sersic+"), r"model spec 'sersic\+' has an empty component"),
    ("fix unknown", lambda f: _fit_args(f, "--fix", "r_ee=3"), r"--fix: unknown parameter 'r_ee'; this model has sersic.x0"),
    ("fix not a number", lambda f: _fit_args(f, "--fix", "n=four"), r"--fix: value of 'n' is not a number: 'four'"),
    ("fix outside bounds", lambda f: _fit_args(f, "--fix", "n=50"), r"fixed\['sersic.n'\] = 50 lies outside its bounds \[0.2, 10\]"),
    ("fix not finite", lambda f: _fit_args(f, "--fix", "q=inf"), r"fixed\['q'\] must be finite"),
    ("free unknown", lambda f: _fit_args(f, "--free", "c9"), r"free: unknown parameter 'c9'"),
    ("tie unknown", lambda f: _fit_args(f, "--model", "a:sersic+b:exponential", "--tie", "b.x0=a.xx"),
     r"tied: unknown parameter 'a.xx'"),
    ("tie cycle", lambda f: _fit_args(f, "--model", "a:sersic+b:exponential", "--tie", "b.x0=a.x0", "--tie", "a.x0=b.x0"),
     r"tied: the ties \['a.x0', 'b.x0'\] form a cycle"),
    ("tie and fix", lambda f: _fit_args(f, "--model", "a:sersic+b:exponential", "--tie", "b.x0=a.x0", "--fix", "b.x0=3"),
     r"tied: 'b.x0' is also fixed"),
    ("tie syntax", lambda f: _fit_args(f, "--tie", "x0"), r"--tie: expected NAME=NAME, got 'x0'"),
    ("init unknown column", lambda f: _fit_args(f, "--init", f["init_unknown"]),
     r"--init: column 'sersic_rr' is not a parameter of the model \(expected columns like sersic_x0"),
    ("init text column", lambda f: _fit_args(f, "--init", f["init_text"]), r"--init: column 'sersic_n' must hold one number per row"),
    ("init rows", lambda f: _fit_args(f, "--init", f["init_rows"]),
     r"init\['sersic.r_e'\] must be a scalar or one value per galaxy \(1\), got shape \(3,\)"),
    ("init missing", lambda f: _fit_args(f, "--init", f["missing"]), r"--init: file .* does not exist"),
    ("init not a table", lambda f: _fit_args(f, "--init", f["text"]), r"--init: cannot read .* as a table"),
    # outputs, refused before any work
    ("out exists", lambda f: _fit_args(f, out=f["exists"]), r"--out: '.*exists.ecsv' exists; pass overwrite=True \(CLI: --overwrite\)"),
    ("out extension", lambda f: _fit_args(f, out=f["dir"] + "/res.txt"), r"--out '.*res.txt': unknown extension '.txt'"),
    ("out directory", lambda f: _fit_args(f, out=f["dir"] + "/nope/res.ecsv"), r"--out: output directory '.*nope' does not exist"),
    ("out is a directory", lambda f: _fit_args(f, out=f["dir"] + "/blocks"), r"unknown extension"),
    ("imgblock exists", lambda f: _fit_args(f, "--imgblock", f["blocks"]), r"--imgblock: 1 image blocks exist already"),
    ("imgblock is a file", lambda f: _fit_args(f, "--imgblock", f["exists"]), r"--imgblock: '.*exists.ecsv' exists and is not a directory"),
    # render
    ("render shape", lambda f: ["render", "--model", "sersic", "--params", PARAMS, "--shape", "16", "--zeropoint", "25",
                                "--out", f["dir"] + "/m.fits"], r"--shape: expected H,W \(two integers\), got '16'"),
    ("render shape zero", lambda f: ["render", "--model", "sersic", "--params", PARAMS, "--shape", "0,16", "--zeropoint", "25",
                                     "--out", f["dir"] + "/m.fits"], r"--shape: sides must be positive"),
    ("render unknown param", lambda f: ["render", "--model", "sersic", "--params", PARAMS + ",bogus=1", "--shape", "16,16",
                                        "--zeropoint", "25", "--out", f["dir"] + "/m.fits"], r"unknown parameter 'bogus'"),
    ("render missing param", lambda f: ["render", "--model", "sersic", "--params", "x0=1", "--shape", "16,16",
                                        "--zeropoint", "25", "--out", f["dir"] + "/m.fits"], r"params: missing values for sersic.y0"),
    ("render nan", lambda f: ["render", "--model", "sersic", "--params", PARAMS.replace("mag=18.0", "mag=nan"),
                              "--shape", "16,16", "--zeropoint", "25", "--out", f["dir"] + "/m.fits"],
     r"params\['sersic.mag'\] must be finite"),
    ("render negative radius", lambda f: ["render", "--model", "sersic", "--params", PARAMS.replace("r_e=2.0", "r_e=-2"),
                                          "--shape", "16,16", "--zeropoint", "25", "--out", f["dir"] + "/m.fits"],
     r"params\['sersic.r_e'\] must be positive, got -2.0"),
    ("render no zeropoint", lambda f: ["render", "--model", "sersic", "--params", PARAMS, "--shape", "16,16",
                                       "--out", f["dir"] + "/m.fits"], r"zeropoint is required"),
    ("render psf even", lambda f: ["render", "--model", "sersic", "--params", PARAMS, "--shape", "16,16", "--zeropoint", "25",
                                   "--psf", f["psf_even"], "--out", f["dir"] + "/m.fits"], r"psf must have odd sides"),
    ("render out exists", lambda f: ["render", "--model", "sersic", "--params", PARAMS, "--shape", "16,16", "--zeropoint", "25",
                                     "--out", f["exists"]], r"--out: .* exists; pass overwrite=True"),
    ("render table unknown", lambda f: ["render", "--model", "sersic", "--params-table", f["init_unknown"], "--shape", "16,16",
                                        "--zeropoint", "25", "--out", f["dir"] + "/m.fits"],
     r"--params-table: column 'sersic_rr' is not a parameter"),
]


@pytest.mark.parametrize("case,argv,message", CLI_ERRORS, ids=[c[0] for c in CLI_ERRORS])
def test_cli_bad_input(files, capsys, monkeypatch, case, argv, message):
    _no_solver.install(monkeypatch)  # a case that slipped through would not compile a fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(argv(files))
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("galmoss-jax: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in err
    assert not any(n.startswith("never_written") or n.startswith(".tmp-") for n in os.listdir(files["dir"]))


def test_cli_debug_shows_the_traceback(files):
    with pytest.raises(InputFileError, match="does not exist"):
        main(["--debug", *_fit_args(files, image="missing")])


def test_cli_unexpected_error_is_one_line(files, capsys, monkeypatch, tmp_path):
    """An error that is not a GalmossError (here a ValueError from inside Astropy's table
    writer) is still one line with its type, exit 2, and leaves no temporary file."""
    _no_solver.install(monkeypatch)

    def broken(self, *a, **k):
        raise ValueError("column 'x'\nhas a bad unit")
    monkeypatch.setattr(Table, "write", broken)
    rc = main(_fit_args(files, out=str(tmp_path / "r.fits")))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == ["galmoss-jax: error: ValueError: column 'x' has a bad unit (--debug shows the traceback)"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# CLI: inputs usable in part -> a warning, the bad pixels masked, the fit goes on
# ---------------------------------------------------------------------------------------------
def test_cli_nan_pixels_and_bad_sigma_are_masked(files, monkeypatch, tmp_path):
    seen = _no_solver.install(monkeypatch)
    out = str(tmp_path / "r.ecsv")
    with pytest.warns(UserWarning) as rec:
        assert main(["fit", files["image_nan"], "--sigma", files["sigma_some_zero"], "--zeropoint", "25",
                     "--psf", files["psf_unnormalised"], "--init", files["init_named"], "--starts", "1", "--out", out,
                     "--imgblock", str(tmp_path / "blocks")]) == 0
    msgs = [str(w.message) for w in rec]
    assert "data: 16 non-finite pixels are masked" in msgs
    assert "sigma: 45 pixels with sigma <= 0 or non-finite are masked" in msgs  # 3 columns, less the diagonal
    assert any(re.match(r"psf does not sum to 1 \(sum [\d.]+\); it has been normalised", m) for m in msgs)
    expect = ~np.eye(H, dtype=bool) & (np.arange(W) >= 3)[None, :]
    np.testing.assert_array_equal(seen["mask"][0], expect)
    assert np.all(np.isfinite(seen["data"])) and np.all(seen["sigma"] > 0)
    # the image block records the mask that was fitted, and the residual only there
    with fits.open(tmp_path / "blocks" / "imgblock_0.fits") as hd:
        np.testing.assert_array_equal(hd["MASK"].data.astype(bool), expect)
        assert np.all(hd["RESIDUAL"].data[~expect] == 0)
    np.testing.assert_allclose(seen["psf"].sum(), 1.0, rtol=1e-12)
    # the text column 'name' of the init table was ignored; its numbers were used
    i = seen["prob"].layout.free.index("sersic.r_e")
    lo, hi = seen["prob"].layout.bounds[i]
    assert np.isclose(lo + (hi - lo) / (1 + np.exp(-seen["u0"][0, i])), 2.5)
    assert Table.read(out)["status"][0] == 0


def test_fixed_value_wins_over_an_init_table(files, monkeypatch, tmp_path):
    """--fix n=4 with an init table that has a sersic_n column (a previous result table): the
    fixed value is used, not the table's; a NaN in a fixed column does not matter either."""
    seen = _no_solver.install(monkeypatch)
    Table({"sersic_n": [1.2], "sersic_q": [np.nan], "sersic_r_e": [2.5]}).write(tmp_path / "prev.ecsv")
    assert main(_fit_args(files, "--fix", "n=4", "--fix", "q=0.5", "--init", str(tmp_path / "prev.ecsv"),
                          out=str(tmp_path / "r.ecsv"))) == 0
    fixed = seen["prob"].layout.fixed
    assert seen["fvals"][0, fixed.index("sersic.n")] == 4.0 and seen["fvals"][0, fixed.index("sersic.q")] == 0.5
    t = Table.read(tmp_path / "r.ecsv")
    assert t["sersic_n"][0] == 4.0 and t["sersic_q"][0] == 0.5 and t["sersic_n_err"][0] == 0.0


def test_cli_all_masked_galaxy_is_a_status(files, monkeypatch, tmp_path):
    _no_solver.install(monkeypatch)
    out = str(tmp_path / "r.ecsv")
    assert main(_fit_args(files, "--mask", files["mask_all"], out=out)) == 0
    t = Table.read(out)
    assert t["status"][0] == Status.NO_DATA and t["status_msg"][0] == "no usable pixels (all masked)"
    assert t["dof"][0] == -7 and np.isnan(t["chi2_nu"][0])


# ---------------------------------------------------------------------------------------------
# Python API: the same checks, typed errors
# ---------------------------------------------------------------------------------------------
IMG = 10 + np.random.default_rng(1).normal(size=(H, W))
ONE = np.ones((H, W))

PY_ERRORS = [
    # data, sigma, mask
    ("data 1-D", lambda: fit("sersic", np.ones(5), sigma=1, zeropoint=25), ShapeError, r"data must be an image \(H, W\) or a cube \(G, H, W\), got shape \(5,\)"),
    ("data 4-D", lambda: fit("sersic", np.ones((1, 1, 4, 4)), sigma=1, zeropoint=25), ShapeError, r"got shape \(1, 1, 4, 4\)"),
    ("data empty", lambda: fit("sersic", np.ones((2, 0, 4)), sigma=1, zeropoint=25), ShapeError, r"data is empty \(shape \(2, 0, 4\)\)"),
    ("data no galaxies", lambda: fit("sersic", np.ones((0, 4, 4)), sigma=1, zeropoint=25), ShapeError, r"data is empty"),
    ("data text", lambda: fit("sersic", np.full((4, 4), "a"), sigma=ONE, zeropoint=25), DataError, r"data must be numeric, got dtype <U1"),
    ("data ragged", lambda: fit("sersic", [[1.0, 2.0], [3.0]], sigma=ONE, zeropoint=25), DataError, r"data must be a numeric array"),
    ("sigma shape", lambda: fit("sersic", IMG, sigma=np.ones((H, 3)), zeropoint=25), ShapeError, r"sigma must have the shape of data \(16, 16\) or \(H, W\), got \(16, 3\)"),
    ("sigma cube", lambda: fit("sersic", np.stack([IMG] * 3), sigma=np.ones((2, H, W)), zeropoint=25), ShapeError,
     r"sigma must have the shape of data \(3, 16, 16\) or \(H, W\), got \(2, 16, 16\)"),
    ("sigma text", lambda: fit("sersic", IMG, sigma=np.full((H, W), "x"), zeropoint=25), DataError, r"sigma must be numeric"),
    ("sigma all bad", lambda: fit("sersic", IMG, sigma=np.full((H, W), -1.0), zeropoint=25), DataError, r"sigma: no used pixel has a positive, finite sigma"),
    ("sigma all nan", lambda: fit("sersic", IMG, sigma=np.full((H, W), np.nan), zeropoint=25), DataError, r"sigma: no used pixel"),
    ("sigma from data", lambda: fit("sersic", -IMG, gain=2.0, zeropoint=25), DataError, r"built from the data: check gain"),
    ("mask shape", lambda: fit("sersic", IMG, sigma=ONE, mask=np.ones((3, 3), bool), zeropoint=25), ShapeError, r"mask must have the shape of data"),
    ("no sigma", lambda: fit("sersic", IMG, zeropoint=25), DataError, r"sigma is required for stat='chi2' unless gain is given"),
    ("gain text", lambda: fit("sersic", IMG, gain="high", zeropoint=25), ParameterError, r"gain must be a number or one number per galaxy, got 'high'"),
    ("gain per galaxy", lambda: fit("sersic", np.stack([IMG] * 2), gain=[1.0, 2.0, 3.0], zeropoint=25), ShapeError,
     r"gain must be a scalar or one value per galaxy \(2\), got shape \(3,\)"),
    ("stat", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, stat="chi3"), ParameterError, r"stat must be one of"),
    ("solver", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, solver="bfgs"), ParameterError, r"solver must be 'lm', 'adam'"),
    ("errors", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, errors="bogus"), ParameterError, r"errors must be 'gn', 'hessian', 'bootstrap' or None"),
    ("max_iter", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, max_iter=2.5), ParameterError, r"max_iter must be a positive integer, got 2.5"),
    ("zeropoint missing", lambda: fit("sersic", IMG, sigma=ONE), ParameterError, r"zeropoint is required"),
    ("zeropoint shape", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=[25, 26]), ShapeError, r"zeropoint must be a scalar or one value per galaxy \(1\)"),
    # PSF
    ("psf even", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, psf=np.ones((4, 5))), PSFError, r"psf must have odd sides .* got 4x5"),
    ("psf 1-D", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, psf=np.ones(5)), PSFError, r"psf must be a 2-D image or a \(G, h, w\) cube, got shape \(5,\)"),
    ("psf zero", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, psf=np.zeros((5, 5))), PSFError, r"positive sum"),
    ("psf negative sum", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, psf=-np.ones((5, 5))), PSFError, r"positive sum"),
    ("psf nan", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, psf=np.full((5, 5), np.nan)), PSFError, r"psf contains NaN or infinite values"),
    ("psf text", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, psf=[["a"]]), PSFError, r"psf must be a numeric array"),
    ("psf cube count", lambda: fit("sersic", np.stack([IMG] * 2), sigma=ONE, zeropoint=25, psf=np.ones((3, 5, 5)) / 25), ShapeError,
     r"psf cube has 3 PSFs for 2 galaxies"),
    ("point source no psf", lambda: fit("star:point", IMG, sigma=ONE, zeropoint=25), PSFError, r"point-source component, which needs a PSF"),
    ("oversample", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, oversample=1.5), PSFError, r"oversample must be a positive integer, got 1.5"),
    # init
    ("init unknown", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, init={"r_ee": 2}), ParameterError, r"init: unknown parameter 'r_ee'"),
    ("init text", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, init={"n": "two"}), ParameterError, r"init\['n'\] must be a number"),
    ("init inf", lambda: fit("sersic", IMG, sigma=ONE, zeropoint=25, init={"n": np.inf}), ParameterError, r"init\['n'\] must be finite, got inf"),
    # Model
    ("unknown profile", lambda: gj.Model("bulge:sersik"), ProfileError, r"unknown profile 'sersik'"),
    ("bad component", lambda: gj.Model({"1bulge": "sersic"}), ProfileError, r"component name '1bulge' must start with a letter"),
    ("fixed unknown", lambda: gj.Model("sersic", fixed={"r_ee": 1}), ParameterError, r"fixed: unknown parameter 'r_ee'"),
    ("fixed text", lambda: gj.Model("sersic", fixed={"n": "four"}), ParameterError, r"fixed\['n'\] must be a number, got 'four'"),
    ("fixed nan", lambda: gj.Model("sersic", fixed={"n": np.nan}), ParameterError, r"fixed\['n'\] must be finite"),
    ("fixed outside bounds", lambda: gj.Model("sersic", fixed={"q": 0.01}), ParameterError, r"fixed\['sersic.q'\] = 0.01 lies outside its bounds \[0.02, 50\]"),
    ("fixed outside user bounds", lambda: gj.Model("sersic", fixed={"n": 5}, bounds={"n": (1, 4)}), ParameterError, r"lies outside its bounds \[1, 4\]"),
    ("free unknown", lambda: gj.Model("sersic", free=["c1"]), ParameterError, r"free: unknown parameter 'c1'"),
    ("tied unknown", lambda: gj.Model("a:sersic+b:sersic", tied={"a.x0": "c.x0"}), ParameterError, r"tied: unknown parameter 'c.x0'"),
    ("tied self", lambda: gj.Model("a:sersic+b:sersic", tied={"a.x0": "a.x0"}), ParameterError, r"cannot be tied to itself"),
    ("tied cycle", lambda: gj.Model("a:sersic+b:sersic+c:sersic", tied={"a.n": "b.n", "b.n": "c.n", "c.n": "a.n"}), ParameterError,
     r"tied: the ties .* form a cycle"),
    ("tied and fixed", lambda: gj.Model("a:sersic+b:sersic", tied={"a.x0": "b.x0"}, fixed={"a.x0": 3}), ParameterError, r"'a.x0' is also fixed"),
    ("bounds order", lambda: gj.Model("sersic", bounds={"n": (4, 4)}), ParameterError, r"bounds\['n'\]: lower bound 4.0 must be below upper bound 4.0"),
    ("bounds nan", lambda: gj.Model("sersic", bounds={"n": (np.nan, 4)}), ParameterError, r"lower bound nan must be below"),
    ("bounds form", lambda: gj.Model("sersic", bounds={"n": 4}), ParameterError, r"bounds\['n'\] must be a \(lower, upper\) pair, got 4"),
    ("bounds on angle", lambda: gj.Model("sersic", bounds={"pa": (0, 90)}), ParameterError, r"'sersic.pa' is an angle \(period 180\) and is fitted without bounds"),
    # render
    ("render shape", lambda: gj.render("sersic", P7, (16,), zeropoint=25), ShapeError, r"shape must be \(H, W\) with positive sides"),
    ("render shape text", lambda: gj.render("sersic", P7, ("a", 3), zeropoint=25), ShapeError, r"shape must be \(H, W\)"),
    ("render params text", lambda: gj.render("sersic", {**P7, "n": "x"}, (8, 8), zeropoint=25), ParameterError, r"params\['sersic.n'\] must be a number"),
    ("render params inf", lambda: gj.render("sersic", {**P7, "x0": np.inf}, (8, 8), zeropoint=25), ParameterError, r"params\['sersic.x0'\] must be finite"),
    ("render q <= 0", lambda: gj.render("sersic", {**P7, "q": [0.5, 0.0]}, (8, 8), zeropoint=25), ParameterError, r"params\['sersic.q'\] must be positive"),
    ("render lengths", lambda: gj.render("sersic", {**P7, "q": [0.5, 0.6], "n": [1, 2, 3]}, (8, 8), zeropoint=25), ShapeError, r"different lengths \[2, 3\]"),
    ("render 2-D param", lambda: gj.render("sersic", {**P7, "q": np.ones((2, 2))}, (8, 8), zeropoint=25), ShapeError, r"params\['sersic.q'\] must be a scalar or a 1-D array"),
    ("render zeropoint", lambda: gj.render("sersic", P7, (8, 8), zeropoint="zp"), ParameterError, r"zeropoint must be a number, got 'zp'"),
    ("render zeropoint nan", lambda: gj.render("sersic", P7, (8, 8), zeropoint=np.nan), ParameterError, r"zeropoint must be finite"),
    ("render psf cube", lambda: gj.render("sersic", P7, (8, 8), zeropoint=25, psf=np.ones((2, 3, 3))), ShapeError, r"a \(G, h, w\) PSF cube needs batched parameters"),
    ("render params mapping", lambda: gj.render("sersic", [1, 2], (8, 8), zeropoint=25), ParameterError, r"params must be a mapping"),
]


@pytest.mark.parametrize("case,call,error,message", PY_ERRORS, ids=[c[0] for c in PY_ERRORS])
def test_python_bad_input(monkeypatch, case, call, error, message):
    _no_solver.install(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=message):
            call()


@pytest.mark.parametrize("case,call,error,message", [
    ("missing", lambda f: read_image(f["missing"], name="--sigma"), InputFileError, r"--sigma: file '.*missing.fits' does not exist"),
    ("not FITS", lambda f: read_image(f["text"]), InputFileError, r"image: '.*notfits.fits' is not a readable FITS file \(No SIMPLE card"),
    ("no image", lambda f: read_image(f["empty_hdu"]), InputFileError, r"has no image data"),
    ("4-D", lambda f: read_image(f["image_4d"]), ShapeError, r"must be a 2-D image or a \(G, H, W\) cube"),
    ("cube not allowed", lambda f: read_image(f["cube"], allow_cube=False), ShapeError, r"must be a 2-D image, got shape \(2, 16, 16\)"),
    ("mask 1-D", lambda f: read_mask(f["image_1d"]), ShapeError, r"mask: .* got shape \(16,\)"),
    ("table missing", lambda f: read_table(f["missing"]), InputFileError, r"table: file .* does not exist"),
    ("not a table", lambda f: read_table(f["text"]), InputFileError, r"table: cannot read .* as a table"),
], ids=lambda c: c if isinstance(c, str) else None)
def test_readers_bad_input(files, case, call, error, message):
    with pytest.raises(error, match=message):
        call(files)


def test_python_partial_bad_pixels_are_masked_with_a_warning(monkeypatch):
    """NaN/Inf pixels and sigma <= 0 on some pixels: masked with a warning; init values outside
    the bounds: moved inside with a warning; a PSF that does not sum to 1: normalised."""
    seen = _no_solver.install(monkeypatch)
    data = IMG.copy()
    data[2, 3], data[5, 5] = np.nan, -np.inf
    sigma = ONE.copy()
    sigma[0, :4] = 0.0
    sigma[1, 0] = np.inf
    with pytest.warns(UserWarning) as rec:
        fit("sersic", data, sigma=sigma, zeropoint=25, psf=2 * _gauss(5), init={"n": 50.0, "q": -1.0})
    msgs = [str(w.message) for w in rec]
    assert "data: 2 non-finite pixels are masked" in msgs
    assert "sigma: 5 pixels with sigma <= 0 or non-finite are masked" in msgs
    assert "init['sersic.n'] lies outside its bounds [0.2, 10.0] for some galaxies; moved inside" in msgs
    assert "init['sersic.q'] lies outside its bounds [0.02, 50.0] for some galaxies; moved inside" in msgs
    assert any("it has been normalised" in m for m in msgs)
    expect = np.ones((H, W), bool)
    expect[2, 3] = expect[5, 5] = False
    expect[0, :4] = expect[1, 0] = False
    np.testing.assert_array_equal(seen["mask"][0], expect)
    assert np.all(np.isfinite(seen["u0"]))
    np.testing.assert_allclose(seen["psf"].sum(), 1.0, rtol=1e-12)


def test_psf_larger_than_the_stamp_is_not_an_error():
    """The stamp is padded by the PSF half-width, so any PSF fits the padded grid (it can never
    be larger): a 21x21 PSF on a 9x9 stamp gives the centre of the same model rendered on a
    29x29 stamp."""
    psf = _gauss(21, 3.0)
    psf /= psf.sum()
    p = dict(P7, x0=4.3, y0=3.8)
    plain = gj.Sampling(psf_window=0)  # the padding is the same with or without it; compiles faster
    small = np.asarray(gj.render("sersic", p, (9, 9), psf=psf, zeropoint=25, sampling=plain))
    big = np.asarray(gj.render("sersic", dict(p, x0=14.3, y0=13.8), (29, 29), psf=psf, zeropoint=25, sampling=plain))
    # equal to the pixel quadrature's accuracy (its windows are placed on each grid)
    np.testing.assert_allclose(small, big[10:19, 10:19], rtol=0, atol=1e-5 * big.max())
