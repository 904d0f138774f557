"""The float32 path: what a GPU run and a default JAX install compute.

The rest of the suite runs in float64 (conftest.py); here the checks that matter run again
with x64 off (``jax.enable_x64(False)``, which ``fit`` honours in its worker threads too):
rendering against GalSim, Imfit's published IC 3478 fit, and the calibration of the errors
over noise realisations.  Tolerances state float32's limits: a rendered pixel carries ~1e-7 of
the peak in rounding, far below the 1e-3 rendering target, so the render tolerance is the
float64 one; chi2 of the 62,000-pixel IC 3478 fit sums values of ~1 in float32 (relative
rounding ~1e-6 per term, ~1e-4 in the sum at worst), so chi2_nu is held to 2e-4 of Imfit's
and the parameters to the float64 test's tolerances.
"""
from __future__ import annotations

import numpy as np
import pytest

import jax

import galmoss_jax as gj

import _sims as S
import test_galsim as G
import test_imfit_ic3478 as IC


@pytest.fixture(autouse=True)
def float32():
    with jax.enable_x64(False):
        yield


def test_float32_is_what_runs():
    res = gj.fit("sersic", np.zeros((9, 9)) + 1.0, sigma=np.ones((9, 9)), zeropoint=25.0, init={
        "x0": 4.0, "y0": 4.0, "mag": 25.0, "r_e": 2.0, "n": 1.0, "q": 0.9, "pa": 0.0}, starts=1, max_iter=2)
    assert res.covariance.dtype == np.float32 and res.chi2.dtype == np.float32
    img = gj.render("sersic", {"x0": 4.0, "y0": 4.0, "mag": 25.0, "r_e": 2.0, "n": 1.0, "q": 0.9, "pa": 0.0},
                    (9, 9), zeropoint=25.0)
    assert img.dtype == np.float32


@pytest.mark.parametrize("which", ["compact", "resolved"])
def test_render_with_psf_matches_galsim(which):
    """galaxy (x) PSF (x) pixel to 1e-3 of the peak in float32 too (test_galsim.py's cases:
    compact cuspy Sérsics n 2-6, r_e 0.8-3 px, and resolved ones)."""
    spec, seed = (G.COMPACT, 5) if which == "compact" else (G.RESOLVED["sersic"], 3)
    cases = G._cases(spec, G.PSF_SHAPE, seed=seed)
    err = G._physical("sersic", cases, G.PSF_SHAPE, G.MOFFAT_PSF, G.PSF_SIZE, 1)
    print(f"\nfloat32 {which}: max|diff|/peak {err.max():.2e}")
    G.assert_close("sersic", cases, err)


def test_reproduces_imfit_ic3478():
    data, mask, _ = IC._load()
    res = gj.fit("sersic", data, mask=mask, gain=IC.GAIN, read_noise=IC.RN, sky=IC.SKY, zeropoint=20.0,
                 init=IC.INIT)
    t = res.to_table()[0]
    ref = IC._ref("ic3478_256_sersic_masked")
    s = ref["params"]["Sersic"]
    print(f"\nfloat32 IC 3478: chi2_nu {t['chi2_nu']:.6f} (Imfit {ref['reduced_chi2']}), n {t['sersic_n']:.5f} "
          f"({s['n'][0]}), r_e {t['sersic_r_e']:.4f} ({s['r_e'][0]}), n_iter {t['n_iter']}")
    assert t["status"] == 0
    assert abs(t["chi2_nu"] / ref["reduced_chi2"] - 1) < 2e-4
    assert abs(t["sersic_n"] / s["n"][0] - 1) < 0.01
    assert abs(t["sersic_r_e"] / s["r_e"][0] - 1) < 0.01
    assert abs(t["sersic_x0"] + 1 - ref["params"]["X0"][0]) < 0.02
    assert abs(t["sersic_y0"] + 1 - ref["params"]["Y0"][0]) < 0.02
    assert abs(t["sersic_q"] - (1 - s["ell"][0])) < 0.002
    for col, (_, ref_err) in [("sersic_n", s["n"]), ("sersic_r_e", s["r_e"]), ("sersic_x0", ref["params"]["X0"])]:
        assert 0.8 < t[col + "_err"] / ref_err < 1.2, col


def test_error_calibration():
    """One galaxy, 100 noise realisations fitted in float32 from the truth: the pulls of every
    parameter have unit width (standard error of the width 0.07 with 100 pulls) and no bias."""
    rng = np.random.default_rng(7)
    n, r_e, q, pa, mag, x0, y0, snr = 1.5, 3.0, 0.6, 30.0, 16.0, 15.3, 15.6, 80.0
    clean = S.draw(n, r_e, q, pa, mag, x0, y0)
    sig = S.noise_sigma(clean[None], snr)[0]
    data = clean[None] + rng.normal(size=(S.BATCH,) + clean.shape) * sig
    truth = dict(x0=x0, y0=y0, mag=mag, r_e=r_e, n=n, q=q, pa=pa)
    res = gj.fit("sersic", data, sigma=sig, psf=S.psf_image(), zeropoint=S.ZP, sampling=S.SAMPLING,
                 init={k: np.full(S.BATCH, v) for k, v in truth.items()}, starts=1)
    assert np.all(res.status == 0)
    for k in S.PARAMS:
        d = res[k] - truth[k]
        pull = (S.wrap_pa(d) if k == "pa" else d) / res.errors["sersic." + k]
        print(f"  float32 {k}: pull mean {pull.mean():+.3f} std {pull.std(ddof=1):.3f}")
        assert np.all(np.isfinite(pull)), k
        assert 0.8 <= pull.std(ddof=1) <= 1.2, k
        assert abs(pull.mean()) < 0.3, k


def test_galfit_spiral_models():
    """GALFIT's own renderings of SDSS spirals with Fourier modes and an inclined power-law
    rotation (tests/test_shape_modes.py), in float32: the float64 tolerances hold."""
    import test_shape_modes as SM

    for path in SM.SPIRALS[:2]:
        worst, rms = SM._render_vs_galfit(path)
        assert worst < 5e-3 and rms < 3e-4, (path, worst, rms)
