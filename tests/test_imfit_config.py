"""Imfit configuration files through ``galmoss-jax imfit``: Imfit's published IC 3478 fits of the
64 x 64 cut-out (its test suite: free Sérsic; n fixed with a sigma map) are reproduced, the
intensity conversions are exact, and malformed lines give errors naming the line.

References: galmoss_jax/data/ic3478/reference_fits.json (perwin/imfit test-suite printouts).
"""
import json
import math
import os

import pytest
from scipy.special import gamma, gammaincinv

import galmoss_jax as gj
from galmoss_jax.cli import main
from galmoss_jax.imfit import (ZEROPOINT, _intensity, fit_imfit, imfit_model, read_imfit_config,
                               write_imfit_params)

HERE = os.path.join(os.path.dirname(__file__), "data", "imfit")
IMAGE = os.path.join(HERE, "ic3478rss_64x64.fits")
REFS = {f["id"]: f for f in json.load(open(os.path.join(os.path.dirname(gj.__file__), "data", "ic3478",
                                                        "reference_fits.json")))["fits"]}


def _check(best, stats, ref, fixed_n=False):
    """Tolerances measured (see README Accuracy): chi2 ~3e-5, centre 1e-4 px, pa 6e-4 deg,
    ell 1.6e-4, n 3.3e-4 and r_e 6.3e-4 relative (0.05 sigma: n and r_e are strongly correlated
    on this cut-out, r_e being twice its half-width), errors within 0.5%."""
    blk = best.blocks[0]
    f = blk.functions[0]
    p = ref["params"]
    s = p["Sersic"]
    print(f"\nchi2 {stats['chi2']:.6f} ({ref['chi2']}), red {stats['reduced_chi2']:.6f} ({ref['reduced_chi2']}), "
          + ", ".join(f"{q.name} {q.value:.6g}±{q.error:.5g} ({s[q.name][0]}±{s[q.name][1]})" for q in f.params))
    assert stats["status"] == 0 and stats["dof"] == ref["dof"]
    assert abs(stats["chi2"] / ref["chi2"] - 1) < 5e-5
    assert abs(stats["reduced_chi2"] / ref["reduced_chi2"] - 1) < 5e-5
    assert abs(stats["AIC"] - stats["chi2"] - (ref["AIC"] - ref["chi2"])) < 1e-6     # same k and N
    assert abs(stats["BIC"] - stats["chi2"] - (ref["BIC"] - ref["chi2"])) < 1e-6
    for q, key in ((blk.x0, "X0"), (blk.y0, "Y0")):
        assert abs(q.value - p[key][0]) < 0.002
        assert abs(q.error / p[key][1] - 1) < 0.05
    assert abs(f.get("PA").value - s["PA"][0]) < 0.002
    assert abs(f.get("ell").value - s["ell"][0]) < 3e-4
    assert abs(f.get("r_e").value / s["r_e"][0] - 1) < 1e-3
    assert abs(f.get("I_e").value / s["I_e"][0] - 1) < 2e-3
    if fixed_n:
        assert f.get("n").fixed and f.get("n").value == 2.4 and f.get("n").error == 0
    else:
        assert abs(f.get("n").value / s["n"][0] - 1) < 5e-4
    for name in ("PA", "ell", "I_e", "r_e") + (() if fixed_n else ("n",)):
        assert abs(f.get(name).error / s[name][1] - 1) < 0.05, name


def test_imfit_cli_reproduces_imfit_64x64(tmp_path, capsys):
    """Imfit's ``imfit ic3478rss_64x64.fits -c imfit_config_ic3478_64x64.dat --gain=4.725
    --readnoise=4.3 --sky=130.1`` (the same fit as the b config with the options in the file)."""
    out = tmp_path / "bestfit_parameters_imfit.txt"
    rc = main(["imfit", os.path.join(HERE, "imfit_config_ic3478_64x64.dat"), IMAGE, "--gain=4.725",
               "--readnoise=4.3", "--sky=130.1", "--save-params", str(out)])
    assert rc == 0
    text = out.read_text()
    lines = text.splitlines()
    assert any(line.startswith("# Reduced Chi^2 = 1.1141") for line in lines)
    assert any(line.startswith("# Fit statistic: chi^2") for line in lines)
    assert "X0\t\t32.94" in text and "# +/- " in text and "FUNCTION Sersic" in text
    # the written file is a configuration again, with the best-fit values
    again = read_imfit_config(out)
    py = fit_imfit(os.path.join(HERE, "imfit_config_ic3478_64x64b.dat"), IMAGE)   # same compiled fit
    _check(py.best, py.stats, REFS["ic3478_64x64_sersic"])
    for a, b in zip(again.blocks[0].functions[0].params, py.best.blocks[0].functions[0].params):
        assert a.name == b.name and abs(a.value - b.value) <= 1e-7 * abs(b.value)
    assert abs(again.blocks[0].x0.value - py.best.blocks[0].x0.value) < 1e-6
    assert again.option("GAIN") is None and dict(py.best.options)["GAIN"] == 4.725


def test_imfit_nfixed_sigma_map_reproduces_imfit(tmp_path):
    """``imfit_config_ic3478_64x64c.dat`` (n fixed at 2.4) with ``--noise`` sigma map."""
    out = tmp_path / "best.txt"
    rc = main(["imfit", os.path.join(HERE, "imfit_config_ic3478_64x64c.dat"), IMAGE,
               "--noise", os.path.join(HERE, "ic3478rss_64x64_sigma.fits"), "--save-params", str(out)])
    assert rc == 0
    best = read_imfit_config(out)
    f = best.blocks[0].functions[0]
    assert f.get("n").fixed and f.get("n").value == 2.4
    ref = REFS["ic3478_64x64_sersic_nfixed_sigmamap"]
    assert abs(f.get("r_e").value / ref["params"]["Sersic"]["r_e"][0] - 1) < 1e-3
    assert abs(f.get("I_e").value / ref["params"]["Sersic"]["I_e"][0] - 1) < 2e-3
    # errors from the comments of the written file
    err = {ln.split()[0]: float(ln.split("+/-")[1].split()[0]) for ln in out.read_text().splitlines()
           if "+/-" in ln and not ln.startswith("#")}
    for name in ("I_e", "r_e", "PA", "ell"):
        assert abs(err[name] / ref["params"]["Sersic"][name][1] - 1) < 0.05, name
    assert abs(err["X0"] / ref["params"]["X0"][1] - 1) < 0.05


def test_imfit_variance_map_reproduces_imfit():
    """The n = 2.4 fit with Imfit's variance map (``--errors-are-variances``) and with its sigma
    map: each chi^2 as Imfit's (4555.947598 and 4555.947592; the maps are float32, so the two
    differ by ~6e-6), same best fit (the compiled fit of the test above)."""
    ref = REFS["ic3478_64x64_sersic_nfixed_sigmamap"]
    cfg = os.path.join(HERE, "imfit_config_ic3478_64x64c.dat")
    var = fit_imfit(cfg, IMAGE, noise=os.path.join(HERE, "ic3478rss_64x64_variance.fits"), errors_are_variances=True)
    sig = fit_imfit(cfg, IMAGE, noise=os.path.join(HERE, "ic3478rss_64x64_sigma.fits"))
    print(f"\nchi2 variance map {var.stats['chi2']:.6f} ({ref['chi2_variance_map']}), "
          f"sigma map {sig.stats['chi2']:.6f} ({ref['chi2']})")
    for out, want in ((var, ref["chi2_variance_map"]), (sig, ref["chi2"])):
        assert out.stats["status"] == 0 and out.stats["dof"] == ref["dof"]
        assert abs(out.stats["chi2"] / want - 1) < 5e-5
        assert abs(out.stats["reduced_chi2"] / ref["reduced_chi2"] - 1) < 5e-5
    assert abs((var.stats["chi2"] - sig.stats["chi2"]) - (ref["chi2_variance_map"] - ref["chi2"])) < 2e-6
    for a, b in zip(var.best.blocks[0].functions[0].params, sig.best.blocks[0].functions[0].params):
        assert abs(a.value - b.value) <= 1e-6 * max(abs(b.value), 1.0), a.name


def test_intensity_conversions_are_exact():
    """Imfit's I_e / I_0 from galmoss_jax's magnitudes, against the closed forms (b_n from
    SciPy's inverse incomplete gamma)."""
    F = 10 ** (-0.4 * (17.3 - ZEROPOINT))
    q, r_e, n = 0.7, 12.0, 2.7
    b = gammaincinv(2 * n, 0.5)
    i_e = F / (2 * math.pi * q * r_e ** 2 * n * math.exp(b) * b ** (-2 * n) * gamma(2 * n))
    p = {"x0": 3.0, "y0": 4.0, "mag": 17.3, "r_e": r_e, "n": n, "q": q, "pa": 33.0, "c0": 0.0}
    assert abs(float(_intensity("Sersic", gj.get_profile("sersic"), p, ZEROPOINT)) / i_e - 1) < 1e-10
    h = 7.5
    p = {"x0": 0.0, "y0": 0.0, "mag": 17.3, "r_s": h, "q": q, "pa": -10.0, "c0": 0.0}
    assert abs(float(_intensity("Exponential", gj.get_profile("exponential"), p, ZEROPOINT))
               / (F / (2 * math.pi * q * h ** 2)) - 1) < 1e-12
    sig = 2.2
    p = {"x0": 0.0, "y0": 0.0, "mag": 17.3, "fwhm": sig * 2 * math.sqrt(2 * math.log(2)), "q": q, "pa": 5.0, "c0": 0.0}
    assert abs(float(_intensity("Gaussian", gj.get_profile("gaussian"), p, ZEROPOINT))
               / (F / (2 * math.pi * q * sig ** 2)) - 1) < 1e-12


def test_config_to_model(tmp_path):
    """Two function blocks: 1-based centres, shared centre within a block, ell -> q limits,
    sigma -> fwhm, fixed values, flat sky."""
    cfg = tmp_path / "c.dat"
    cfg.write_text("GAIN 2.0\nX0 20 15,25\nY0 21 fixed\nFUNCTION Sersic\nPA 10\nell 0.3 0.1,0.6\nn 2 fixed\n"
                   "I_e 5 0,50\nr_e 8 1,30\nFUNCTION Exponential\nPA 10\nell 0.5\nI_0 40\nh 12\n"
                   "X0 5 fixed\nY0 6 fixed\nFUNCTION Gaussian  # a star-ish blob\nPA 0 fixed\nell 0 fixed\n"
                   "I_0 3\nsigma 1.5 1,2\nFUNCTION FlatSky\nI_sky 0.4\n")
    c = read_imfit_config(cfg)
    model, init, layout = imfit_model(c)
    assert model.component_names == ("sersic", "exponential", "gaussian", "sky")
    fixed, tied, bounds = dict(model.fixed), dict(model.tied), dict(model.bounds)
    assert init["sersic.x0"] == 19.0 and fixed["sersic.y0"] == 20.0 and bounds["sersic.x0"] == (14.0, 24.0)
    assert tied["exponential.x0"] == "sersic.x0" and tied["exponential.y0"] == "sersic.y0"
    assert fixed["sersic.n"] == 2.0 and bounds["sersic.q"] == pytest.approx((0.4, 0.9))
    assert bounds["sersic.r_e"] == (1.0, 30.0) and "sersic.mag" not in bounds
    assert fixed["gaussian.x0"] == 4.0 and fixed["gaussian.q"] == 1.0
    f = 2 * math.sqrt(2 * math.log(2))
    assert init["gaussian.fwhm"] == pytest.approx(1.5 * f) and bounds["gaussian.fwhm"] == pytest.approx((f, 2 * f))
    assert init["sky.sky"] == 0.4
    # the initial magnitude gives back the initial I_0 = 40 of the exponential
    p = {"x0": 19.0, "y0": 20.0, "mag": init["exponential.mag"], "r_s": 12.0, "q": 0.5, "pa": 10.0, "c0": 0.0}
    assert float(_intensity("Exponential", gj.get_profile("exponential"), p, ZEROPOINT)) == pytest.approx(40.0, rel=1e-12)


@pytest.mark.parametrize("text,line,msg", [
    ("X0 10\nY0 10\nFUNCTION Sersik\n", 3, "unknown or unsupported function 'Sersik'"),
    ("X0 10\nY0 10\nFUNCTION Exponential\nPA 1\nell 0.1\nI_0 3\nr_e 4\n", 7, "has no parameter 'r_e'"),
    ("X0 10\nY0 1O\n", 2, "Y0: expected a number, got '1O'"),
    ("X0 10 12,15\n", 1, "outside its limits"),
    ("X0 10\nY0 10\nFUNCTION Exponential\nPA 1\nell 0.1 0;1\n", 5, "limits must be 'lo,hi' or 'fixed'"),
    ("GAINS 3\n", 1, "unknown option 'GAINS'"),
])
def test_malformed_config_names_the_line(tmp_path, capsys, text, line, msg):
    cfg = tmp_path / "bad.dat"
    cfg.write_text(text)
    with pytest.raises(gj.InputFileError, match=f"line {line} "):
        read_imfit_config(cfg)
    assert main(["imfit", str(cfg), IMAGE, "--save-params", str(tmp_path / "o.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("galmoss-jax: error:") and msg in err and f"line {line}" in err and "Traceback" not in err
    bad_line = text.splitlines()[line - 1].strip()
    assert repr(bad_line) in err


def test_write_params_is_pure_text():
    c = read_imfit_config(os.path.join(HERE, "imfit_config_ic3478_64x64c.dat"))
    stats = {"chi2": 10.0, "dof": 5, "reduced_chi2": 2.0, "AIC": 1.0, "BIC": 2.0, "n_iter": 3, "status": 0,
             "status_msg": "success", "stat": "chi2"}
    a = write_imfit_params(c, stats)
    assert a == write_imfit_params(c, stats)
    assert "# Reduced Chi^2 = 2.000000" in a and "n\t\t2.4\t\tfixed" in a and "GAIN\t4.725" in a


def test_ferrers_and_generalised_ellipse_map_exactly(tmp_path):
    """FerrersBar2D (I_0 (1 - m^2/a_bar^2)^n, m the generalised-ellipse radius with exponent
    c0 + 2, as in Imfit's func_ferrersbar2d.cpp) and Sersic_GenEllipse: c0 is freed, the
    rendered brightness at a point equals Imfit's formula written out here."""
    cfg = tmp_path / "c.dat"
    cfg.write_text("X0 30 fixed\nY0 31 fixed\nFUNCTION FerrersBar2D\nPA 25 fixed\nell 0.4 fixed\nc0 0.5 0,1\n"
                   "n 1.5 0,2\nI_0 80 fixed\na_bar 12 5,20\nFUNCTION Sersic_GenEllipse\nPA 25\nell 0.2\n"
                   "c0 -0.3 -1,1\nn 2\nI_e 10\nr_e 8\n")
    model, init, _ = imfit_model(read_imfit_config(cfg))
    assert "ferrer.c0" in model.free_names and "sersic.c0" in model.free_names
    fixed = dict(model.fixed)
    assert fixed["ferrer.beta"] == 0.0 and fixed["ferrer.mu_0"] == pytest.approx(ZEROPOINT - 2.5 * math.log10(80))
    assert init["ferrer.alpha"] == 1.5 and init["ferrer.r_out"] == 12.0 and dict(model.bounds)["ferrer.alpha"] == (0.05, 2.0)
    p = {"x0": 29.0, "y0": 30.0, "mu_0": fixed["ferrer.mu_0"], "r_out": 12.0, "alpha": 1.5, "beta": 0.0,
         "q": 0.6, "pa": 25.0, "c0": 0.5}
    dx, dy = 3.0, -4.0                               # pixel offset from the centre
    t = math.radians(25.0 + 90.0)                    # Imfit: PA from +y, rotated to +x
    xp, yp = abs(dx * math.cos(t) + dy * math.sin(t)), abs((-dx * math.sin(t) + dy * math.cos(t)) / 0.6)
    m = (xp ** 2.5 + yp ** 2.5) ** (1 / 2.5)
    want = 80.0 * (1 - m * m / 144.0) ** 1.5
    assert float(gj.get_profile("ferrer").brightness(p, dx, dy, ZEROPOINT)) == pytest.approx(want, rel=1e-12)
    # Sersic_GenEllipse: the initial magnitude gives back I_e = 10 on the major axis at r_e
    ps = {"x0": 29.0, "y0": 30.0, "mag": init["sersic.mag"], "r_e": 8.0, "n": 2.0, "q": 0.8, "pa": 25.0, "c0": -0.3}
    assert float(_intensity("Sersic_GenEllipse", gj.get_profile("sersic"), ps, ZEROPOINT)) == pytest.approx(10.0, rel=1e-12)


def test_modified_king_maps_exactly(tmp_path):
    """ModifiedKing (func_king.cpp: I_0 (1 - C)^-alpha ((1 + (r/r_c)^2)^(-1/alpha) - C)^alpha,
    C = (1 + (r_t/r_c)^2)^(-1/alpha)) onto galmoss_jax's king: same brightness at a point."""
    cfg = tmp_path / "k.dat"
    cfg.write_text("X0 30 fixed\nY0 31 fixed\nFUNCTION ModifiedKing\nPA 25 fixed\nell 0.4 fixed\nI_0 80 fixed\n"
                   "r_c 3 1,10\nr_t 20 10,40\nalpha 1.4 0.5,3\n")
    model, init, _ = imfit_model(read_imfit_config(cfg))
    fixed = dict(model.fixed)
    assert fixed["king.mu_0"] == pytest.approx(ZEROPOINT - 2.5 * math.log10(80))
    assert init["king.alpha"] == 1.4 and dict(model.bounds)["king.r_t"] == (10.0, 40.0)
    p = {"x0": 29.0, "y0": 30.0, "mu_0": fixed["king.mu_0"], "r_c": 3.0, "r_t": 20.0, "alpha": 1.4,
         "q": 0.6, "pa": 25.0, "c0": 0.0}
    dx, dy = 3.0, -4.0
    t = math.radians(25.0 + 90.0)
    xp, yp = dx * math.cos(t) + dy * math.sin(t), (-dx * math.sin(t) + dy * math.cos(t)) / 0.6
    r = math.hypot(xp, yp)
    c = (1 + (20.0 / 3.0) ** 2) ** (-1 / 1.4)
    want = 80.0 * (1 - c) ** -1.4 * ((1 + (r / 3.0) ** 2) ** (-1 / 1.4) - c) ** 1.4
    assert float(gj.get_profile("king").brightness(p, dx, dy, ZEROPOINT)) == pytest.approx(want, rel=1e-12)
