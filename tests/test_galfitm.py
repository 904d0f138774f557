"""GalfitM feedme files (several bands) through ``galmoss-jax galfit``.

References (tests/data/galfitm/README.md): GalfitM's own regression suite.  ``multisim`` is a
galaxy GalfitM drew in five bands from known values (its models are in the suite) plus Gaussian
noise of sigma 5 ADU: reading GalfitM's input must redraw GalfitM's models, and the joint fit of
the noisy images must recover the values GalfitM drew with calibrated errors.  The Chebyshev
series of the tables and of ``cheb`` lines are checked with NumPy's Chebyshev functions.
"""
import os
import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galmoss_jax._errors import InputFileError
from galmoss_jax._galfitm import band_feedme_model, scaled_wavelengths
from galmoss_jax.cli import main
from galmoss_jax.galfit import read_feedme

HERE = os.path.join(os.path.dirname(__file__), "data", "galfitm")
SIM = os.path.join(HERE, "multisim")
BANDS = "abcde"
LAM = np.array([2000.0, 3000.0, 4000.0, 5000.0, 6000.0])
TRUTH = {"mag": (16.5, 17.0, 17.2, 17.1, 16.8), "r_e": (0.4, 1.0, 2.5, 3.5, 3.3), "n": (1.0, 2.5, 4.0, 6.0, 4.0)}
SHARED = {"x0": 23.5, "y0": 27.5, "q": 0.75, "pa": 30.0}    # GALFIT's 1-based pixels


def _edit(text, **lines):
    """``text`` with control lines replaced: _edit(t, D="none") sets ``D) none``."""
    for key, value in lines.items():
        text, n = re.subn(rf"(?m)^{key}\) .*$", f"{key}) {value}", text)
        assert n == 1, key
    return text


def test_model_only_redraws_galfitm_models(tmp_path):
    """``create.multi.feedme`` (P) 1) drawn by galmoss_jax equals the models GalfitM drew from
    it in every band, within GALFIT's own sampling accuracy at the steep centre of n = 6 (1.5 %
    of the peak; the per-band values are misread if any band is swapped: 20-80 %).  D) none:
    GalfitM convolved nothing (README); G) none: the constraint file is not in the suite."""
    text = open(os.path.join(SIM, "create.multi.feedme")).read()
    path = tmp_path / "create.feedme"
    path.write_text(_edit(text, D="none", G="none"))
    (tmp_path / "out").mkdir()
    assert main(["galfit", str(path), "--out-dir", str(tmp_path / "out")]) == 0
    with fits.open(tmp_path / "out" / "img-multi.fits") as h:
        ours = {b: h[f"MODEL_{b}"].data.astype(float) for b in BANDS}
        assert h["MODEL_c"].header["1_RE"].strip("[]") == "2.5000"
    refs = {b: fits.getdata(os.path.join(SIM, f"model-{b}.fits")).astype(float) for b in BANDS}
    for b in BANDS:
        peak = refs[b].max() - 100.0
        assert np.abs(ours[b] - refs[b]).max() < 0.015 * peak, b
        assert abs(ours[b].sum() - refs[b].sum()) < 0.005 * (refs[b].sum() - 100.0 * refs[b].size), b
    assert np.abs(ours["b"] - refs["c"]).max() > 0.1 * (refs["c"].max() - 100.0)


@pytest.fixture(scope="module")
def multisim_fit(tmp_path_factory):
    """The suite's joint fit of the noisy images, with sigma = 5 ADU maps (C), no PSF (D), no
    constraint file (G), and R_e and n free in each band (DOF 5: the values GalfitM drew are
    not a cubic in wavelength, the file's DOF 4)."""
    tmp = tmp_path_factory.mktemp("galfitm")
    for b in BANDS:
        fits.writeto(tmp / f"sigma-{b}.fits", np.full((50, 50), 5.0, np.float32))
    text = open(os.path.join(SIM, "fit.multi.feedme")).read()
    text = _edit(text, A=",".join(os.path.join(SIM, f"img-{b}.fits") for b in BANDS),
                 C=",".join(f"sigma-{b}.fits" for b in BANDS), D="none", G="none")
    text = re.sub(r"(?m)^( [45]\) [0-9.,]+\s+)4(\s+bands)", r"\g<1>5\2", text)
    path = tmp / "fit.feedme"
    path.write_text(text)
    out = tmp / "out"
    out.mkdir()
    assert main(["galfit", str(path), "--out-dir", str(out)]) == 0
    return path, out


def test_joint_fit_recovers_what_galfitm_drew(multisim_fit):
    """Every band's magnitude, R_e and n and the shared centre, q and PA lie within 3.5 of their
    errors of the values GalfitM drew; status 0; chi2/nu consistent with the sigma of the noise."""
    _, out = multisim_fit
    with fits.open(out / "out.fits") as h:
        names = [x.name for x in h]
        band = Table(h["FINAL_BAND"].data)
        info = Table(h["FIT_INFO"].data)
        binfo = Table(h["BAND_INFO"].data)
    assert names[:4] == ["PRIMARY", "INPUT_A", "MODEL_A", "RESIDUAL_A"]
    assert {"FINAL_BAND", "FINAL_CHEB", "FIT_INFO", "BAND_INFO"} <= set(names)
    assert int(info["STATUS"][0]) == 0
    ndof = int(info["NDOF"][0])
    assert ndof == 5 * 2500 - (5 * 3 + 4 + 5)
    assert abs(float(info["CHI2NU"][0]) - 1.0) < 4 * np.sqrt(2.0 / ndof)
    assert list(band["BAND"]) == list(BANDS)
    np.testing.assert_allclose(band["WL"], LAM)
    assert np.isclose(binfo["CHISQ"].sum(), info["CHISQ"][0], rtol=1e-9)
    key = {"mag": "MAG", "r_e": "RE", "n": "N"}
    for p, truth in TRUTH.items():
        pulls = (band[f"COMP1_{key[p]}"] - truth) / band[f"COMP1_{key[p]}_ERR"]
        assert np.all(np.abs(pulls) < 3.5), (p, pulls)
    for p, k in (("x0", "XC"), ("y0", "YC"), ("q", "AR"), ("pa", "PA")):
        v, e = band[f"COMP1_{k}"], band[f"COMP1_{k}_ERR"]
        assert np.ptp(v) == 0 and np.ptp(e) == 0            # shared: one value in every band
        assert abs(v[0] - SHARED[p]) < 3.5 * e[0], (p, v[0], e[0])
    assert np.allclose(band["COMP2_SKY"], 100.0, atol=3.5 * band["COMP2_SKY_ERR"])


def test_the_suites_cubic_fit(multisim_fit):
    """The suite's own file as it is (R_e and n cubic in wavelength, DOF 4) ends with status 0
    and a chi2 within 25 of the fit with R_e and n free in every band (two more parameters;
    the values drawn are not a cubic).  Started from the deepest band alone it had stopped
    at the n = 10 bound, 150 higher."""
    path, out = multisim_fit
    text = open(os.path.join(SIM, "fit.multi.feedme")).read()
    text = _edit(text, A=",".join(os.path.join(SIM, f"img-{b}.fits") for b in BANDS),
                 C=",".join(f"sigma-{b}.fits" for b in BANDS), D="none", G="none")
    cubic = path.parent / "cubic.feedme"
    cubic.write_text(text)
    (path.parent / "out_cubic").mkdir()
    assert main(["galfit", str(cubic), "--out-dir", str(path.parent / "out_cubic")]) == 0
    with fits.open(path.parent / "out_cubic" / "out.fits") as h:
        info = Table(h["FIT_INFO"].data)
        cheb = Table(h["FINAL_CHEB"].data)
    with fits.open(out / "out.fits") as h:
        free = Table(h["FIT_INFO"].data)
    assert int(info["STATUS"][0]) == 0
    assert 0 <= float(info["CHISQ"][0]) - float(free["CHISQ"][0]) < 25
    assert list(cheb["COMP1_RE_FIT"]) == [1, 1, 1, 1, 0] and abs(cheb["COMP1_RE"][4]) < 1e-9


def test_tables_and_restart_file_round_trip(multisim_fit):
    """FINAL_CHEB's Chebyshev series (NumPy's chebval over the bands' wavelength range) give
    FINAL_BAND's values; the restart file reads back with every band's value and DOF."""
    path, out = multisim_fit
    with fits.open(out / "out.fits") as h:
        band = Table(h["FINAL_BAND"].data)
        cheb = Table(h["FINAL_CHEB"].data)
        model_hdr = h["MODEL_c"].header
    t = 2 * (LAM - LAM.min()) / (LAM.max() - LAM.min()) - 1
    for col in ("COMP1_MAG", "COMP1_RE", "COMP1_N", "COMP1_XC", "COMP1_AR", "COMP2_SKY"):
        np.testing.assert_allclose(np.polynomial.chebyshev.chebval(t, np.asarray(cheb[col])), band[col], rtol=1e-9,
                                   atol=1e-9)
    assert list(cheb["COMP1_MAG_FIT"]) == [1] * 5 and list(cheb["COMP1_AR_FIT"]) == [1, 0, 0, 0, 0]
    # shared parameter: only the constant term, with the parameter's error
    assert np.allclose(cheb["COMP1_AR"][1:], 0, atol=1e-12)
    assert np.isclose(cheb["COMP1_AR_ERR"][0], band["COMP1_AR_ERR"][0], rtol=1e-6)
    assert float(model_hdr["1_MAG"].split("+/-")[0]) == pytest.approx(band["COMP1_MAG"][2], abs=1e-4)
    restart = read_feedme(out / "galfit.01")
    assert restart.bands == tuple(BANDS) and restart.wavelengths == tuple(LAM)
    assert os.path.abspath(os.path.join(out, restart.image.split(",")[0])) == os.path.join(SIM, "img-a.fits")
    sersic = {p.key: p for p in restart.components[0].params}
    for key, col, dof in (("3", "COMP1_MAG", 5), ("4", "COMP1_RE", 5), ("5", "COMP1_N", 5), ("1", "COMP1_XC", 1),
                          ("9", "COMP1_AR", 1), ("10", "COMP1_PA", 1)):
        np.testing.assert_allclose(sersic[key].values, band[col], atol=2e-6, rtol=1e-6)
        assert sersic[key].dof == dof
    sky = {p.key: p for p in restart.components[1].params}
    assert sky["1"].dof == 5 and sky["2"].dof == 0 and sky["2"].values == (0.0,) * 5
    model, _ = band_feedme_model(restart)
    assert dict(model.band_modes) == {"sersic.mag": "free", "sersic.r_e": "free", "sersic.n": "free",
                                      "sky.sky": "free"}


def test_degrees_of_freedom_become_band_modes(tmp_path):
    """The suite's fit file (DOF 5 for magnitudes and sky, 4 for R_e and n, 1 elsewhere) and a
    GAMA input (DOF 3, a sky fixed in each band at its own value) read as band modes."""
    model, init = band_feedme_model(read_feedme(os.path.join(SIM, "fit.multi.feedme")))
    assert dict(model.band_modes) == {"sersic.mag": "free", "sersic.r_e": 3, "sersic.n": 3, "sky.sky": "free"}
    assert init["sersic.x0"] == 24.0 and init["sersic.r_e_c"] == 2.0      # 1-based 25 -> 0-based 24
    gama = os.path.join(HERE, "t10_5.34_obj_q")
    with pytest.raises(InputFileError, match=r"D\): a diffusion kernel"):
        read_feedme(gama)
    path = tmp_path / "obj_q"
    path.write_text(open(gama).read().replace(", kernel", ""))
    model, init = band_feedme_model(read_feedme(path))
    modes = dict(model.band_modes)
    assert modes == {"sky.sky": "free", "sersic.mag": "free", "sersic.r_e": 2, "sersic.n": 2}
    assert dict(model.fixed)["sky.sky"] is None and init["sky.sky_K"] == 65017.1    # fixed at its own value
    assert model.layout.free.count("sersic.x0") == 1


def _feedme(tmp_path, lines):
    text = ("A) a.fits,b.fits,c.fits\nA1) g,r,i\nA2) 4770,6231,7625\nB) out.fits\nJ) 25\nH) 1 20 1 20\nP) 1\n"
            " 0) sersic\n 1) 10 1 band\n 2) 10 1 band\n" + lines +
            " 9) 0.8 1\n10) 20 1\n Z) 0\n")
    path = tmp_path / "f.feedme"
    path.write_text(text)
    return path


def test_chebyshev_lines(tmp_path):
    """``cheb`` lines give NumPy's chebval at the scaled wavelengths; coefficient toggles name
    the degree; fixed higher orders (GalfitM's offsets) and gaps in the toggles are refused."""
    lam = np.array([4770.0, 6231.0, 7625.0])
    t = scaled_wavelengths(lam)
    np.testing.assert_allclose(t, 2 * (lam - lam.min()) / np.ptp(lam) - 1)
    f = read_feedme(_feedme(tmp_path, " 3) 17.2,-0.4,0.05 3 cheb\n 4) 3.0,0.5,0 1,1,0 cheb\n 5) 2.5 1\n"))
    p = {q.key: q for q in f.components[0].params}
    np.testing.assert_allclose(p["3"].values, np.polynomial.chebyshev.chebval(t, [17.2, -0.4, 0.05]))
    np.testing.assert_allclose(p["4"].values, np.polynomial.chebyshev.chebval(t, [3.0, 0.5]))
    assert p["4"].dof == 2
    model, init = band_feedme_model(f)
    assert dict(model.band_modes) == {"sersic.mag": "free", "sersic.r_e": 1}
    with pytest.raises(InputFileError, match="lowest"):
        read_feedme(_feedme(tmp_path, " 3) 17 3\n 4) 3.0,0.5,0.1 1,0,1 cheb\n 5) 2.5 1\n"))
    with pytest.raises(InputFileError, match="fixed higher orders"):
        band_feedme_model(read_feedme(_feedme(tmp_path, " 3) 17 3\n 4) 3.0,0.5,0.2 2 cheb\n 5) 2.5 1\n")))
    with pytest.raises(InputFileError, match=r"2 values for 3 bands"):
        read_feedme(_feedme(tmp_path, " 3) 17,18 3\n 4) 3 1\n 5) 2.5 1\n"))


def test_fixed_value_in_each_band(tmp_path):
    """DOF 0 with different values holds each band at its own value (the model drawn has that
    band's flat sky far from the galaxy); a numeric fixed value cannot differ between bands."""
    import galmoss_jax as gj
    from galmoss_jax._errors import ParameterError

    text = ("A) none,none\nA1) g,r\nA2) 4770,6231\nB) model.fits\nJ) 25,26\nH) 1 40 1 40\nP) 1\n"
            " 0) sersic\n 1) 20 1 band\n 2) 20 1 band\n 3) 17,17.5 2 band\n 4) 3 1\n 5) 1.5 1\n 9) 0.8 1\n10) 20 1\n"
            " 0) sky\n 1) 10,20 0 band\n 2) 0 0\n 3) 0 0\n")
    (tmp_path / "f.feedme").write_text(text)
    (tmp_path / "out").mkdir()
    assert main(["galfit", str(tmp_path / "f.feedme"), "--out-dir", str(tmp_path / "out")]) == 0
    with fits.open(tmp_path / "out" / "model.fits") as h:
        for b, level, zp, mag in (("g", 10.0, 25.0, 17.0), ("r", 20.0, 26.0, 17.5)):
            img = h[f"MODEL_{b}"].data
            assert img[0, 0] == pytest.approx(level, abs=1e-3)
            flux = img.sum() - level * img.size          # the galaxy's flux, but for its wings off the stamp
            assert flux == pytest.approx(10 ** (-0.4 * (mag - zp)), rel=0.02)
    with pytest.raises(ParameterError, match="same in every band"):
        gj.Model("sersic+sky", fixed={"sky.sky": 3.0}, bands={"sky.sky": "free"})
    with pytest.raises(ParameterError, match="not a polynomial"):
        gj.Model("sersic+sky", fixed=["sky.sky"], bands={"sky.sky": 1})


def test_output_items_are_honoured(tmp_path):
    """W) lists the image extensions written (GalfitM): model and residual only, the model
    in the primary HDU; the restart file keeps the list.  U) and V) must be off."""
    text = (f"A) {os.path.join(SIM, 'img-a.fits')}\nB) block.fits\nJ) 25\nH) 1 50 1 50\nW) model,residual\nP) 2\n"
            " 0) sersic\n 1) 23.5 27.5 1 1\n 3) 16.5 1\n 4) 0.4 1\n 5) 1.0 1\n 9) 0.75 1\n10) 30 1\n")
    (tmp_path / "f.feedme").write_text(text)
    assert main(["galfit", str(tmp_path / "f.feedme"), "--out-dir", str(tmp_path)]) == 0
    with fits.open(tmp_path / "block.fits") as h:
        assert [x.name for x in h] == ["MODEL", "RESIDUAL"]
        data = fits.getdata(os.path.join(SIM, "img-a.fits"))
        np.testing.assert_allclose(h["RESIDUAL"].data, data - h[0].data)
    assert read_feedme(tmp_path / "f.feedme").outputs == ("model", "residual")
    for bad, match in (("W) model,sigma", "W\\): output items"), ("U) 1,0.75,25,4,40", "non-parametric"),
                       ("V) 1,0,500", "MultiNest")):
        (tmp_path / "g.feedme").write_text(text.replace("W) model,residual", bad))
        with pytest.raises(InputFileError, match=match):
            read_feedme(tmp_path / "g.feedme")
