"""Imfit's published IC 3478 numbers not used elsewhere (galmoss_jax/data/ic3478/reference_fits.json):
the fit statistic at fixed parameter vectors, the initial chi^2 of the 64 x 64 fits, the
exponential fits of the 256 x 256 image (with gain 1 and no read noise; with the noise model;
with the mask), and one exponential fit.

The statistic at given parameters needs no fit.  Imfit evaluates a pixel at its centre, or as
the mean over n x n sub-pixel centres within r < 10 px of the centre (func_exp.cpp,
func_sersic.cpp: n = 20 within 3 px (exponential) or 4 px (Sérsic), else int(20 / r)).
Sampling galmoss_jax's brightness functions that way, with the library's noise model
(``sigma_from_data``), statistic (``statistic_value``) and Imfit statistics (AIC, BIC) and the
conventions of DESIGN.md (x0 = X0 - 1, q = 1 - ell, PA from +y, I_0 or I_e from the total
magnitude), reproduces Imfit's printed chi^2 to its printed digits.  The library's own pixel
integration differs from Imfit's sampling by ~2e-5 of chi^2 (tests/test_imfit_config.py,
test_imfit_ic3478.py); the one fit here is compared at the tolerances of test_imfit_config.py.
"""
import json
import math
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.io import fits
from scipy.special import gamma, gammaincinv

import galmoss_jax as gj
from galmoss_jax.imfit import fit_statistics
from galmoss_jax.likelihood import statistic_value

IC = os.path.join(os.path.dirname(gj.__file__), "data", "ic3478")
IMFIT = os.path.join(os.path.dirname(__file__), "data", "imfit")
REFS = {f["id"]: f for f in json.load(open(os.path.join(IC, "reference_fits.json")))["fits"]}
ZP = 30.0
GAIN, RN = 4.725, 4.3


def _exponential(X0, Y0, PA, ell, I_0, h):
    """Imfit's Exponential as galmoss_jax parameters (F = 2 pi q h^2 I_0)."""
    q = 1.0 - ell
    return {"x0": X0 - 1, "y0": Y0 - 1, "pa": PA, "q": q, "r_s": h, "c0": 0.0,
            "mag": ZP - 2.5 * math.log10(2 * math.pi * q * h * h * I_0)}


def _sersic(X0, Y0, PA, ell, n, I_e, r_e):
    """Imfit's Sersic as galmoss_jax parameters (F = 2 pi q r_e^2 I_e n e^b b^-2n Gamma(2n))."""
    q = 1.0 - ell
    b = gammaincinv(2 * n, 0.5)
    flux = 2 * math.pi * q * r_e * r_e * I_e * n * math.exp(b) * b ** (-2 * n) * gamma(2 * n)
    return {"x0": X0 - 1, "y0": Y0 - 1, "pa": PA, "q": q, "r_e": r_e, "n": n, "c0": 0.0,
            "mag": ZP - 2.5 * math.log10(flux)}


# the library's brightness function at arbitrary points, one program per profile and size
_eval = jax.jit(lambda p, dx, dy, name: gj.get_profile(name).brightness(p, dx, dy, ZP), static_argnames="name")


def imfit_sampled(name, p, shape, fine_r):
    """Image of profile ``name`` sampled as Imfit samples it (see the module docstring)."""
    H, W = shape
    y, x = np.mgrid[0:H, 0:W].astype(float)
    dx, dy = (x - p["x0"]).ravel(), (y - p["y0"]).ravel()
    t = math.radians(p["pa"] + 90.0)                 # Imfit: PA from +y, turned to +x
    r = np.hypot(dx * math.cos(t) + dy * math.sin(t), (-dx * math.sin(t) + dy * math.cos(t)) / p["q"])
    with np.errstate(divide="ignore"):
        nsub = np.where(r <= fine_r, 20, np.where(r < 10.0, np.minimum(100, np.floor(20.0 / r)), 1)).astype(int)
    xs, ys, pix, wts = [], [], [], []
    for k in np.unique(nsub):
        sel = np.flatnonzero(nsub == k)
        off = -0.5 + (np.arange(k) + 0.5) / k
        ox, oy = (a.ravel() for a in np.meshgrid(off, off))
        xs.append((dx[sel, None] + ox).ravel())
        ys.append((dy[sel, None] + oy).ravel())
        pix.append(np.repeat(sel, k * k))
        wts.append(np.full(sel.size * k * k, 1.0 / (k * k)))
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    size = 1 << int(math.ceil(math.log2(xs.size)))   # few array sizes: few compilations
    pad = np.full(size - xs.size, 1e3)
    pj = {k: jnp.asarray(v, jnp.float64) for k, v in p.items() if k not in ("x0", "y0")}
    vals = np.asarray(_eval(pj, jnp.asarray(np.concatenate([xs, pad])), jnp.asarray(np.concatenate([ys, pad])),
                            name=name))[:xs.size]
    return np.bincount(np.concatenate(pix), vals * np.concatenate(wts), minlength=H * W).reshape(H, W)


def _chi2(data, model, sigma, mask=None):
    mask = np.ones(data.shape, bool) if mask is None else mask
    return float(statistic_value("chi2", jnp.asarray(data), jnp.asarray(model), jnp.asarray(sigma), jnp.asarray(mask)))


def _stats(chi2, k, n_pixels):
    """Imfit's reduced chi^2, AIC and BIC through galmoss_jax.imfit.fit_statistics."""
    res = types.SimpleNamespace(chi2=[chi2], dof=[n_pixels - k], free_names=tuple(range(k)), status=[0],
                                status_msg=["success"], n_iter=[0], stat="chi2")
    return fit_statistics(res)


@pytest.fixture(scope="module")
def ic256():
    data = fits.getdata(os.path.join(IC, "ic3478rss_256.fits")).astype(float)
    good = gj.mask_from_bad_pixels(fits.getdata(os.path.join(IC, "ic3478rss_256_mask.fits")))
    return data, good


def test_exponential_chi2_at_fixed_parameters(ic256):
    """pyimfit's likelihood test: chi^2 of the Exponential at two parameter vectors [X0, Y0, PA,
    ell, I_0, h] (gain 4.725, read noise 4.3, sky 130.14, no mask), with its reduced chi^2, AIC
    and BIC at the first (the configuration's initial values)."""
    data, _ = ic256
    sigma = gj.sigma_from_data(data, GAIN, RN, 130.14)
    for ref in REFS["ic3478_256_exp"]["chi2_at_other_params"]:
        model = imfit_sampled("exponential", _exponential(*ref["params"]), data.shape, 3.0)
        chi2 = _chi2(data, model, sigma)
        assert chi2 == pytest.approx(ref["chi2"], rel=1e-9, abs=0), ref["params"]
        if "AIC" in ref:
            s = _stats(chi2, 6, data.size)
            assert s["reduced_chi2"] == pytest.approx(ref["reduced"], abs=1e-6)
            assert s["AIC"] == pytest.approx(ref["AIC"], abs=1e-5) and s["BIC"] == pytest.approx(ref["BIC"], abs=1e-5)


@pytest.mark.parametrize("fid", ["ic3478_256_exp_sky_only", "ic3478_256_exp", "ic3478_256_exp_masked"])
def test_exponential_best_fit_statistics(ic256, fid):
    """The statistics of Imfit's three Exponential fits at their published best-fit values:
    gain 1 and no read noise (sky only in the variance); gain 4.725 and read noise 4.3; the
    same with the mask (its non-zero pixels left out).  The published values are rounded, which
    moves chi^2 at the minimum by < 1e-6 of itself; AIC - BIC depends on the number of used
    pixels alone (a pixel more or less changes it by 1e-4), so it checks the mask conversion
    exactly."""
    data, good = ic256
    ref = REFS[fid]
    e = ref["params"]["Exponential"]
    p = _exponential(ref["params"]["X0"][0], ref["params"]["Y0"][0], e["PA"][0], e["ell"][0], e["I_0"][0], e["h"][0])
    mask = good if ref["mask"] else np.ones(data.shape, bool)
    sigma = gj.sigma_from_data(data, ref["gain"], ref["readnoise"], ref["sky"])
    chi2 = _chi2(data, imfit_sampled("exponential", p, data.shape, 3.0), sigma, mask)
    s = _stats(chi2, 6, int(mask.sum()))
    print(f"\n{fid}: reduced chi2 {s['reduced_chi2']:.7f} (Imfit {ref['reduced_chi2']}), N {s['n_pixels']}")
    assert s["reduced_chi2"] == pytest.approx(ref["reduced_chi2"], abs=1e-6)      # printed to 6 decimals
    assert s["AIC"] - s["BIC"] == pytest.approx(ref["AIC"] - ref["BIC"], abs=2e-6)
    if "chi2" in ref:       # 7-digit parameters: chi^2 to 1e-8
        assert chi2 == pytest.approx(ref["chi2"], rel=1e-8)
        assert s["AIC"] - chi2 == pytest.approx(ref["AIC"] - ref["chi2"], abs=1e-6)
        assert s["BIC"] - chi2 == pytest.approx(ref["BIC"] - ref["chi2"], abs=1e-6)


def test_64x64_initial_and_sigma_map_chi2():
    """The 64 x 64 cut-out (sky 130.1): the initial chi^2 of the free-n fit (data-based sigma,
    imfit_config_ic3478_64x64b.dat) and of the n = 2.4 fit with the sigma map
    (..._64x64c.dat), and chi^2 with the sigma map at that fit's best-fit values.  Imfit's
    Sérsic uses the Ciotti-Bertin series for b_n, galmoss_jax the exact root: 2e-6 of chi^2."""
    data = fits.getdata(os.path.join(IMFIT, "ic3478rss_64x64.fits")).astype(float)
    sigma_map = fits.getdata(os.path.join(IMFIT, "ic3478rss_64x64_sigma.fits")).astype(float)
    free, fixed = REFS["ic3478_64x64_sersic"], REFS["ic3478_64x64_sersic_nfixed_sigmamap"]
    # configuration initial values: X0 32, Y0 32, PA 18, ell 0.2, n 1.5 (b) or 2.4 (c), I_e 15, r_e 25
    for n, sigma, want in ((1.5, gj.sigma_from_data(data, GAIN, RN, 130.1), free["initial_chi2"]),
                           (2.4, sigma_map, fixed["initial_chi2"])):
        chi2 = _chi2(data, imfit_sampled("sersic", _sersic(32, 32, 18, 0.2, n, 15, 25), data.shape, 4.0), sigma)
        assert chi2 == pytest.approx(want, rel=5e-6), n
    p, s = fixed["params"], fixed["params"]["Sersic"]
    best = _sersic(p["X0"][0], p["Y0"][0], s["PA"][0], s["ell"][0], s["n"][0], s["I_e"][0], s["r_e"][0])
    chi2 = _chi2(data, imfit_sampled("sersic", best, data.shape, 4.0), sigma_map)
    assert chi2 == pytest.approx(fixed["chi2"], rel=1e-6)


def test_exponential_fit_reproduces_imfit(ic256):
    """One fit: Imfit's Exponential fit of the 256 x 256 image (config_exponential_ic3478_256.dat
    initial values; gain 4.725, read noise 4.3, sky 130.14, no mask), from the same start
    (``starts=1``: LM alone, as Imfit), at the tolerances of tests/test_imfit_config.py."""
    data, _ = ic256
    ref = REFS["ic3478_256_exp"]
    e = ref["params"]["Exponential"]
    init = _exponential(129.0, 129.0, 18.0, 0.2, 100.0, 25.0)
    init.pop("c0")
    r = gj.fit("exponential", data, gain=GAIN, read_noise=RN, sky=130.14, zeropoint=ZP, init=init, starts=1)
    t = r.to_table()[0]
    q, h = t["exponential_q"], t["exponential_r_s"]
    i_0 = 10 ** (-0.4 * (t["exponential_mag"] - ZP)) / (2 * math.pi * q * h * h)
    print(f"\nchi2 {t['chi2']:.6f} ({ref['chi2']:.6f}), X0 {t['exponential_x0'] + 1:.5f} ({ref['params']['X0'][0]}), "
          f"Y0 {t['exponential_y0'] + 1:.5f} ({ref['params']['Y0'][0]}), PA {t['exponential_pa']:.5f} ({e['PA'][0]}), "
          f"ell {1 - q:.7f} ({e['ell'][0]}), I_0 {i_0:.4f} ({e['I_0'][0]}), h {h:.5f} ({e['h'][0]})")
    assert t["status"] == 0 and t["dof"] == data.size - 6
    assert abs(t["chi2"] / ref["chi2"] - 1) < 5e-5
    assert abs(t["exponential_x0"] + 1 - ref["params"]["X0"][0]) < 0.002
    assert abs(t["exponential_y0"] + 1 - ref["params"]["Y0"][0]) < 0.002
    assert abs(t["exponential_pa"] - e["PA"][0]) < 0.002
    assert abs(1 - q - e["ell"][0]) < 3e-4
    assert abs(h / e["h"][0] - 1) < 1e-3
    assert abs(i_0 / e["I_0"][0] - 1) < 2e-3
    for col, (_, ref_err) in (("exponential_x0", ref["params"]["X0"]), ("exponential_y0", ref["params"]["Y0"]),
                              ("exponential_pa", e["PA"]), ("exponential_q", e["ell"]), ("exponential_r_s", e["h"])):
        assert abs(t[col + "_err"] / ref_err - 1) < 0.05, col
