"""GALFIT feedme files through ``galmoss-jax galfit``.

The checked-in feedme tests/data/galfit/ic3478_64x64.feedme fits one Sérsic (with the mask, no
PSF) to the central 64 x 64 pixels (fit region H) of the bundled IC 3478 image: the pixels of
Imfit's 64 x 64 cut-out (``ic3478rss_64x64.fits``; the mask has no bad pixel there).  With
Imfit's sky, gain and read noise it must reproduce Imfit's published fit of that cut-out (its
test suite; reference_fits.json), give what :func:`galmoss_jax.fit` gives on the same crop
(restart values, header), write a 4-extension image block with GALFIT's header keywords, and
its restart file must fit again to the same answer.  tests/data/galfit/ic3478.feedme, the
same with the Moffat PSF, checks the PSF path in image-block mode (P = 2: a render, no fit).
Conversions (1-based, region offsets, EXPTIME in the magnitudes, GALFIT's sigma from
GAIN/RDNOISE/NCOMBINE, mag/arcsec^2) are checked against hand-computed values.
"""
import dataclasses
import json
import math
import os

import numpy as np
import pytest
from astropy.io import fits
from scipy.special import gamma, gammaincinv

import galmoss_jax as gj
from galmoss_jax.cli import main
from galmoss_jax import fit
from galmoss_jax.galfit import (feedme_model, fit_feedme, format_feedme, galfit_sigma, load_feedme_data, read_constraints,
                                read_feedme)

HERE = os.path.join(os.path.dirname(__file__), "data", "galfit")
FEEDME = os.path.join(HERE, "ic3478_64x64.feedme")
FEEDME_PSF = os.path.join(HERE, "ic3478.feedme")
IC = os.path.join(os.path.dirname(gj.__file__), "data", "ic3478")
EXPTIME = 53.907456          # the image header's EXPTIME (GALFIT puts it in the magnitudes)
NOISE = ["--gain", "4.725", "--rdnoise", "4.3", "--sky", "130.1"]     # Imfit's for the 64 x 64 fits


def _header_value(s):
    return float(s.strip("[]*").split("+/-")[0])


@pytest.fixture(scope="module")
def ic3478_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("galfit")
    assert main(["galfit", FEEDME, "--out-dir", str(out)] + NOISE) == 0
    # the same fit by hand: crop [96:160, 97:161] 1-based -> numpy [95:159, 96:160]
    data = fits.getdata(os.path.join(IC, "ic3478rss_256.fits")).astype(float)[95:159, 96:160]
    mask = (fits.getdata(os.path.join(IC, "ic3478rss_256_mask.fits")) == 0)[95:159, 96:160]
    model = gj.Model("sersic", bounds={"n": (0.5, 8), "r_e": (2, 200), "x0": (126 - 97, 132 - 97),
                                       "y0": (126 - 96, 132 - 96)})
    init = {"x0": 129.0 - 97, "y0": 129.0 - 96, "mag": 14.5, "r_e": 25.0, "n": 1.5, "q": 0.8, "pa": 18.0}
    ref = fit(model, data, mask=mask, gain=4.725, read_noise=4.3, sky=130.1,
              zeropoint=20.0 + 2.5 * math.log10(EXPTIME), init=init)
    return out, ref, data


def test_feedme_reproduces_imfit_64x64(ic3478_run):
    """The feedme fit of the 64 x 64 region equals Imfit's published fit of the same pixels
    (``imfit_config_ic3478_64x64b.dat``: sky 130.1, gain 4.725, read noise 4.3, no PSF, no
    masked pixel), to the tolerances of tests/test_imfit_config.py.  Conversions: the cut-out is
    ``full[95:159, 96:160]``, so Imfit's 1-based X0 = XC - 96 and Y0 = YC - 95 with GALFIT's
    1-based XC, YC of the whole image; ell = 1 - q; I_e from the magnitude with the zero point
    J + 2.5 log10(EXPTIME) and F = 2 pi q r_e^2 I_e n e^b b^(-2n) Gamma(2n)."""
    out = ic3478_run[0]
    ref = next(f for f in json.load(open(os.path.join(IC, "reference_fits.json")))["fits"]
               if f["id"] == "ic3478_64x64_sersic")
    p, s = ref["params"], ref["params"]["Sersic"]
    c = read_feedme(os.path.join(out, "galfit.01")).components[0]
    xc, yc = c.get("1").values
    mag, r_e, n, q, pa = (c.get(k).values[0] for k in ("3", "4", "5", "9", "10"))
    with fits.open(os.path.join(out, "imgblock.fits")) as hd:
        h = hd[2].header
    err = {k: float(h["1_" + k].split("+/-")[1]) for k in ("XC", "YC", "RE", "N", "AR", "PA")}
    b = gammaincinv(2 * n, 0.5)
    flux = 10 ** (-0.4 * (mag - (20.0 + 2.5 * math.log10(EXPTIME))))
    i_e = flux / (2 * math.pi * q * r_e ** 2 * n * math.exp(b) * b ** (-2 * n) * gamma(2 * n))
    print(f"\nchi2 {h['CHISQ']:.6f} ({ref['chi2']}), X0 {xc - 96:.5f} ({p['X0'][0]}), Y0 {yc - 95:.5f} "
          f"({p['Y0'][0]}), PA {pa:.4f} ({s['PA'][0]}), ell {1 - q:.6f} ({s['ell'][0]}), n {n:.5f} ({s['n'][0]}), "
          f"I_e {i_e:.4f} ({s['I_e'][0]}), r_e {r_e:.4f} ({s['r_e'][0]})")
    assert h["STATUS"] == 0 and h["NDOF"] == ref["dof"]
    assert abs(h["CHISQ"] / ref["chi2"] - 1) < 5e-5
    assert abs(h["CHI2NU"] / ref["reduced_chi2"] - 1) < 5e-5
    assert abs(xc - 96 - p["X0"][0]) < 0.002 and abs(yc - 95 - p["Y0"][0]) < 0.002
    assert abs(pa - s["PA"][0]) < 0.002
    assert abs(1 - q - s["ell"][0]) < 3e-4
    assert abs(n / s["n"][0] - 1) < 5e-4
    assert abs(r_e / s["r_e"][0] - 1) < 1e-3
    assert abs(i_e / s["I_e"][0] - 1) < 2e-3
    # 1-sigma errors (4 decimals in the header) within 5% of Imfit's; the axis ratio's is ell's
    for key, (_, ref_err) in (("XC", p["X0"]), ("YC", p["Y0"]), ("RE", s["r_e"]), ("N", s["n"]),
                              ("AR", s["ell"]), ("PA", s["PA"])):
        assert abs(err[key] / ref_err - 1) < 0.05, key


def test_feedme_fit_matches_python_fit(ic3478_run):
    out, ref, data = ic3478_run
    t = ref.to_table()[0]
    assert t["status"] == 0
    best = read_feedme(os.path.join(out, "galfit.01"))
    s = best.components[0]
    # restart values: GALFIT coordinates of the whole image (x_fits = x0 + xmin), 6 decimals
    assert s.get("1").values == pytest.approx((t["sersic_x0"] + 97, t["sersic_y0"] + 96), abs=1e-6)
    for key, col in (("3", "sersic_mag"), ("4", "sersic_r_e"), ("5", "sersic_n"), ("9", "sersic_q"), ("10", "sersic_pa")):
        assert s.get(key).values[0] == pytest.approx(t[col], abs=1e-6), col
    with fits.open(os.path.join(out, "imgblock.fits")) as hd:
        assert len(hd) == 4 and hd[0].data is None
        np.testing.assert_array_equal(hd[1].data, data)
        np.testing.assert_allclose(hd[3].data, hd[1].data - hd[2].data, rtol=0, atol=1e-9)
        h = hd[2].header
        assert h["COMP_1"] == "sersic" and h["FITSECT"] == "[97:160,96:159]" and h["CONVBOX"] == "100, 100"
        assert h["MAGZPT"] == 20.0 and h["INITFILE"] == "ic3478_64x64.feedme" and h["PSF"] == "none"
        assert h["CHISQ"] == pytest.approx(t["chi2"], rel=1e-9) and h["NDOF"] == t["dof"] and h["NFREE"] == 7
        assert h["NFIX"] == 0
        assert h["CHI2NU"] == pytest.approx(t["chi2_nu"], rel=1e-9)
        for key, col, off in (("1_XC", "sersic_x0", 97), ("1_YC", "sersic_y0", 96), ("1_MAG", "sersic_mag", 0),
                              ("1_RE", "sersic_r_e", 0), ("1_N", "sersic_n", 0), ("1_AR", "sersic_q", 0),
                              ("1_PA", "sersic_pa", 0)):
            val, err = (float(v) for v in h[key].split("+/-"))
            assert val == pytest.approx(t[col] + off, abs=6e-5), key
            assert err == pytest.approx(t[col + "_err"], abs=6e-5), key
        # the model extension is the best fit
        mdl = gj.render("sersic", {k.split(".")[1]: float(v[0]) for k, v in ref.values.items()}, (64, 64),
                        zeropoint=20.0 + 2.5 * math.log10(EXPTIME))
        np.testing.assert_allclose(hd[2].data, np.asarray(mdl), rtol=1e-10, atol=1e-10)
    log = open(os.path.join(out, "fit.log")).read()
    assert "Restart file    : galfit.01" in log and f"Chi^2 = {t['chi2']:.5f}" in log


def test_restart_file_fits_to_the_same_answer(ic3478_run, capsys):
    out, ref, _ = ic3478_run
    assert main(["galfit", os.path.join(out, "galfit.01"), "--out-dir", str(out)] + NOISE) == 0
    assert os.path.exists(os.path.join(out, "galfit.02"))       # the next free number
    a = read_feedme(os.path.join(out, "galfit.01")).components[0]
    b = read_feedme(os.path.join(out, "galfit.02")).components[0]
    t = ref.to_table()[0]
    for key, col in (("1", "sersic_x0"), ("3", "sersic_mag"), ("4", "sersic_r_e"), ("5", "sersic_n"),
                     ("9", "sersic_q"), ("10", "sersic_pa")):
        # within a hundredth of the 1-sigma error
        assert np.allclose(a.get(key).values, b.get(key).values, rtol=0, atol=0.01 * t[col + "_err"]), key
    with fits.open(os.path.join(out, "imgblock.fits")) as hd:
        assert hd[2].header["CHISQ"] == pytest.approx(t["chi2"], rel=1e-8)


def _write_image(path, shape=(20, 24), **keys):
    rng = np.random.default_rng(1)
    hdu = fits.PrimaryHDU(rng.uniform(5, 50, shape))
    for k, v in keys.items():
        hdu.header[k] = v
    hdu.writeto(path)


FEED = """A) img.fits
B) out.fits
C) none
D) none
E) 1
F) none
G) {g}
H) 3 22 2 19
I) 20 20
J) 25.0
K) 0.2 0.25
O) regular
P) {p}
 0) sersic
 1) 12.5 9.0 1 0
 3) 18.0 1
 4) 3.0 1
 5) 2.0 0
 6) 0 0
 9) 0.6 1
10) 30 1
C0) 0.2 1
 Z) 0
 0) expdisk
 1) 12.5 9.0 1 1
 3) 17.0 1
 4) 5.0 1
 9) 0.4 1
10) 30 1
 0) king
 1) 4 5 0 0
 3) 21.0 1
 4) 2.0 1
 5) 20.0 1
 6) 2.0 0
 9) 1.0 0
10) 0.0 0
 Z) 1
 0) sky
 1) 1.5 1
 2) 0.0 1
 3) 0.01 0
"""


def test_feedme_conversions(tmp_path):
    """1-based full-image coordinates -> 0-based in the region; EXPTIME in the zero point;
    mag/arcsec^2 -> mag/pixel^2; fixed/free toggles, C0, Z, sky gradient; constraints."""
    _write_image(tmp_path / "img.fits", GAIN=3.0, RDNOISE=5.0, NCOMBINE=4, EXPTIME="10.0")
    (tmp_path / "cons").write_text("1_2 x offset\n1_2   y offset  # centres together\n2 re 1 to 30\n"
                                   "1 mag -1 0.5\n3 mu 18 to 24\n")
    (tmp_path / "f").write_text(FEED.format(g="cons", p=0))
    fm = read_feedme(tmp_path / "f")
    assert fm.region == (3, 22, 2, 19) and fm.platescale == (0.2, 0.25) and fm.convbox == (20, 20)
    assert [c.kind for c in fm.components] == ["sersic", "expdisk", "king", "sky"]
    assert fm.components[2].skip and not fm.components[0].skip
    model, init = feedme_model(fm, read_constraints(tmp_path / "cons"))
    assert model.spec_string == "sersic:sersic+exponential:exponential+king:king+sky:sky_plane"
    fixed, tied, bounds = dict(model.fixed), dict(model.tied), dict(model.bounds)
    assert init["sersic.x0"] == 12.5 - 3 and fixed["sersic.y0"] == 9.0 - 2 and fixed["sersic.n"] == 2.0
    assert init["sersic.c0"] == 0.2 and "sersic.c0" in model.free_names
    assert tied == {"exponential.x0": "sersic.x0", "exponential.y0": "sersic.y0"}
    assert bounds["exponential.r_s"] == (1.0, 30.0) and bounds["sersic.mag"] == (17.0, 18.5)
    dmu = 2.5 * math.log10(0.2 * 0.25)            # a pixel is 0.05 arcsec^2
    assert init["king.mu_0"] == pytest.approx(21.0 - dmu)
    assert bounds["king.mu_0"] == pytest.approx((18 - dmu, 24 - dmu))
    assert fixed["king.x0"] == 1.0 and fixed["king.y0"] == 3.0 and fixed["king.alpha"] == 2.0
    assert init["sky.sky"] == 1.5 and init["sky.dsky_dx"] == 0.0 and fixed["sky.dsky_dy"] == 0.01
    d = load_feedme_data(fm)
    assert d.data.shape == (18, 20) and d.zeropoint == pytest.approx(25.0 + 2.5)   # EXPTIME 10
    full = fits.getdata(tmp_path / "img.fits")
    np.testing.assert_array_equal(d.data, full[1:19, 2:22])
    # GALFIT's sigma: N_e = data GAIN NCOMBINE, var_e = N_e + NCOMBINE RDNOISE^2, sigma = sd_e / (GAIN NCOMBINE)
    want = np.sqrt(full * 3.0 * 4 + 4 * 5.0 ** 2) / (3.0 * 4)
    np.testing.assert_allclose(galfit_sigma(full, 3.0, 5.0, 4), want, rtol=1e-13)
    # ... and fit()'s (data + sky) / gain + read_noise^2 / gain^2 with the converted values
    np.testing.assert_allclose(np.sqrt(d.data / d.gain + (d.read_noise / d.gain) ** 2), want[1:19, 2:22], rtol=1e-13)
    # GALFIT's defaults without keywords: GAIN 7, NCOMBINE 1, EXPTIME 1, RDNOISE 0 (here)
    _write_image(tmp_path / "plain.fits")
    (tmp_path / "g").write_text(FEED.format(g="none", p=0).replace("img.fits", "plain.fits"))
    d2 = load_feedme_data(read_feedme(tmp_path / "g"))
    assert (d2.gain, d2.read_noise, d2.zeropoint) == (7.0, 0.0, 25.0) and d2.sigma is None
    # a sigma image (C) is cut like the data
    fits.PrimaryHDU(full * 0.1).writeto(tmp_path / "sig.fits")
    (tmp_path / "h").write_text(FEED.format(g="none", p=0).replace("C) none", "C) sig.fits"))
    np.testing.assert_array_equal(load_feedme_data(read_feedme(tmp_path / "h")).sigma, full[1:19, 2:22] * 0.1)


def test_model_only_and_imgblock_modes(tmp_path):
    """P) 1 writes the model of the initial values (checked against render at x0 = x - xmin);
    P) 2 the image block, the Z) 1 component left out of the model."""
    _write_image(tmp_path / "img.fits", shape=(24, 24))
    one = (" 0) sersic\n 1) 12.5 11.0 1 1\n 3) 18.0 1\n 4) 3.0 1\n 5) 2.0 1\n 9) 0.6 1\n10) 30 1\n"
           " 0) sersic\n 1) 8.0 7.0 1 1\n 3) 19.0 1\n 4) 2.0 1\n 5) 1.0 1\n 9) 0.9 1\n10) 0 1\n Z) 1\n")
    head = "A) img.fits\nB) out.fits\nH) 2 21 3 22\nJ) 25.0\nP) {p}\n"
    (tmp_path / "m1").write_text(head.format(p=1) + one)
    out = tmp_path / "o"
    out.mkdir()
    assert main(["galfit", str(tmp_path / "m1"), "--out-dir", str(out)]) == 0
    img = fits.getdata(out / "out.fits")
    ref = gj.render("sersic", {"x0": 12.5 - 2, "y0": 11.0 - 3, "mag": 18.0, "r_e": 3.0, "n": 2.0, "q": 0.6, "pa": 30.0},
                    (20, 20), zeropoint=25.0)
    np.testing.assert_allclose(img, np.asarray(ref), rtol=1e-12)
    (tmp_path / "m2").write_text(head.format(p=2) + one)
    assert main(["galfit", str(tmp_path / "m2"), "--out-dir", str(out)]) == 0
    with fits.open(out / "out.fits") as hd:
        assert len(hd) == 4
        np.testing.assert_allclose(hd[2].data, np.asarray(ref), rtol=1e-12)
        np.testing.assert_allclose(hd[3].data, hd[1].data - hd[2].data)
        assert hd[2].header["1_XC"] == "[12.5000]" and hd[2].header["COMP_2"] == "sersic"
    assert not os.path.exists(out / "galfit.01")


def test_imgblock_mode_with_psf(tmp_path):
    """ic3478.feedme (the 64 x 64 region with the Moffat PSF) in P) 2 mode: the model
    extension is the initial model convolved with the normalised PSF (D), the header names the
    PSF, the data extension is the region, 1-based centres of the whole image become 0-based
    ones in the region."""
    fm = dataclasses.replace(read_feedme(FEEDME_PSF), mode=2)
    fit_feedme(fm, output_dir=str(tmp_path), gain=4.725, rdnoise=4.3, sky=130.14)
    psf = fits.getdata(os.path.join(IC, "psf_moffat_51.fits")).astype(float)
    init = {"x0": 129.0 - 97, "y0": 129.0 - 96, "mag": 14.5, "r_e": 25.0, "n": 1.5, "q": 0.8, "pa": 18.0}
    mdl = gj.render("sersic", init, (64, 64), psf=psf / psf.sum(), zeropoint=20.0 + 2.5 * math.log10(EXPTIME))
    with fits.open(tmp_path / "imgblock.fits") as hd:
        assert len(hd) == 4 and hd[2].header["PSF"].endswith("psf_moffat_51.fits")
        np.testing.assert_array_equal(hd[1].data, fits.getdata(os.path.join(IC, "ic3478rss_256.fits"))[95:159, 96:160])
        np.testing.assert_allclose(hd[2].data, np.asarray(mdl), rtol=1e-10, atol=1e-10)
    assert not os.path.exists(tmp_path / "galfit.01")


def test_format_feedme_round_trip(tmp_path):
    fm = read_feedme(FEEDME_PSF)
    (tmp_path / "again").write_text(format_feedme(fm))
    back = read_feedme(tmp_path / "again")
    assert len(back.components) == len(fm.components)
    for a, b in zip(fm.components, back.components):
        assert (a.kind, a.skip) == (b.kind, b.skip)
        assert [(p.key, p.values, p.free) for p in a.params] == [(p.key, p.values, p.free) for p in b.params]
    for f in ("image", "output", "sigma", "psf", "mask", "constraints", "region", "convbox", "zeropoint",
              "platescale", "mode", "psf_fine"):
        assert getattr(back, f) == getattr(fm, f), f


@pytest.mark.parametrize("body,line,msg", [
    (" 0) sersik\n 1) 1 1 1 1\n", 4, "unknown or unsupported component 'sersik'"),
    ("Q) 3\n 0) psf\n 1) 1 1 1 1\n 3) 20 1\n", 4, "unknown option letter 'Q'"),
    (" 0) psf\n 1) 1 1 1 1\n 3) 2O.5 1\n", 6, "not a number in '2O.5'"),
    (" 0) sersic\n 1) 1 1 1 1\n 3) 20 1\n 4) 3 1\n 5) 2 1\n 9) 0.5 1\n10) 0 1\nB1) 0.1 1\n", 11,
     "bending mode 'B1'"),
    (" 0) psf\n 1) 1 1 1 1\n 3) 20 2\n", 6, "fit toggles must be 0 or 1"),
])
def test_malformed_feedme_names_the_line(tmp_path, capsys, body, line, msg):
    (tmp_path / "bad").write_text("A) img.fits\nJ) 20\nP) 1\n" + body)
    with pytest.raises(gj.InputFileError, match=f"line {line} "):
        read_feedme(tmp_path / "bad")
    assert main(["galfit", str(tmp_path / "bad"), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("galmoss-jax: error:") and msg in err and f"line {line}" in err and "Traceback" not in err
    assert repr((tmp_path / "bad").read_text().splitlines()[line - 1].strip()) in err


@pytest.mark.parametrize("text,msg", [
    ("1-2 mag -1 1\n", "differences '1-2'"),
    ("1 pa 0 to 10\n", "position angle"),
    ("1 bogus 0 to 1\n", "parameter 'bogus'"),
    ("1 n 3 to 1\n", "must be below"),
])
def test_malformed_constraints_name_the_line(tmp_path, text, msg):
    (tmp_path / "img.fits").write_bytes(b"")
    (tmp_path / "c").write_text("# constraints\n" + text)
    (tmp_path / "f").write_text(FEED.format(g="c", p=0))
    with pytest.raises(gj.InputFileError, match="line 2 ") as e:
        feedme_model(read_feedme(tmp_path / "f"), read_constraints(tmp_path / "c"))
    assert msg in str(e.value) and repr(text.strip()) in str(e.value)


def test_mask_as_fits_or_coordinate_list(tmp_path):
    """F): a FITS image (non-zero = bad) or an ASCII list of 1-based x y of bad pixels; cut to
    the fit region like the data."""
    _write_image(tmp_path / "img.fits", shape=(20, 24))
    bad = np.zeros((20, 24), np.int32)
    bad[4, 6] = 3
    fits.PrimaryHDU(bad).writeto(tmp_path / "m.fits")
    (tmp_path / "m.txt").write_text("# x y\n7 5\n24 20\n")     # 1-based: [4, 6] and the far corner
    for name in ("m.fits", "m.txt"):
        (tmp_path / "f").write_text(f"A) img.fits\nF) {name}\nH) 2 24 3 20\nJ) 20\n 0) psf\n 1) 5 5 1 1\n 3) 20 1\n")
        d = load_feedme_data(read_feedme(tmp_path / "f"))
        want = np.ones((18, 23), bool)
        want[4 - 2, 6 - 1] = False
        if name == "m.txt":
            want[-1, -1] = False
        np.testing.assert_array_equal(d.mask, want)
