"""Calibration of the Gauss-Newton (Hessian) errors on GalSim simulations.

Three Sérsic galaxies (GalSim, 32x32 stamps, Gaussian PSF FWHM 2.35 px; ``_sims.py``), each
with 100 independent Gaussian noise realisations: 300 fits in three batches of 100, each
started from the truth with ``starts=1`` (the minimum, not the start, is under test; the
start strategy is ``test_init_multistart.py``'s).  For every parameter the pulls
(fit - truth) / err over the 300 fits must have standard deviation in [0.9, 1.1] and mean
within +-0.2 (pa: the difference wrapped to (-90, 90]).  With 300 pulls the standard error of
the width is 0.04 and of the mean 0.06.  The errors are not scaled by chi2_nu
(``scale_errors=False``, the default): the sigma maps are the true ones.
"""
from __future__ import annotations

import numpy as np
import pytest

from galmoss_jax import fit

import _sims as S

# (n, r_e, q, pa, mag, x0, y0, S/N): a disk, a bulge, a flat low-n galaxy
GALAXIES = [(1.5, 3.0, 0.6, 30.0, 16.0, 15.3, 15.6, 80.0),
            (4.0, 2.5, 0.75, -50.0, 16.0, 15.6, 15.4, 120.0),
            (0.8, 5.0, 0.4, 70.0, 16.0, 15.5, 15.5, 60.0)]
N_NOISE = S.BATCH


@pytest.fixture(scope="module")
def pulls():
    rng = np.random.default_rng(42)
    psf = S.psf_image()
    out = {k: [] for k in S.PARAMS}
    chi2_nu = []
    for n, r_e, q, pa, mag, x0, y0, snr in GALAXIES:
        clean = S.draw(n, r_e, q, pa, mag, x0, y0)
        sig = S.noise_sigma(clean[None], snr)[0]
        data = clean[None] + rng.normal(size=(N_NOISE,) + clean.shape) * sig
        truth = dict(x0=x0, y0=y0, mag=mag, r_e=r_e, n=n, q=q, pa=pa)
        res = fit("sersic", data, sigma=sig, psf=psf, zeropoint=S.ZP, sampling=S.SAMPLING,
                  init={k: np.full(N_NOISE, v) for k, v in truth.items()}, starts=1)
        assert np.all(res.status == 0)
        chi2_nu.append(res.chi2_nu)
        for k in S.PARAMS:
            d = res[k] - truth[k]
            if k == "pa":
                d = S.wrap_pa(d)
            out[k].append(d / res.errors["sersic." + k])
    return {k: np.concatenate(v) for k, v in out.items()}, np.concatenate(chi2_nu)


def test_pulls_have_unit_width(pulls):
    p, chi2_nu = pulls
    print(f"\npulls over {len(p['x0'])} noise realisations of {len(GALAXIES)} galaxies "
          f"(median chi2_nu {np.median(chi2_nu):.3f})")
    print(f"  {'param':6s} {'mean':>7s} {'std':>7s}")
    for k in S.PARAMS:
        print(f"  {k:6s} {p[k].mean():+7.3f} {p[k].std(ddof=1):7.3f}")
    for k in S.PARAMS:
        assert np.all(np.isfinite(p[k]))
        assert 0.9 <= p[k].std(ddof=1) <= 1.1, k
        assert abs(p[k].mean()) <= 0.2, k
