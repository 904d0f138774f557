"""Posterior sampling through the differentiable model agrees with the LM fit and its
Gauss-Newton errors on a simulated galaxy (GalSim, 32x32, Gaussian PSF), and the likelihood is
the fit's chi2.  Against references the library does not compute: the posterior covers the
injected truth, and its widths are the Laplace widths sqrt(diag(2 H^-1)) of a finite-difference
Hessian H of chi2 taken here.

A coverage test over noise realisations (as for the bootstrap) is not affordable here: one NUTS
run of one galaxy takes ~4 min on a CI core, and a coverage fraction needs tens of draws.
"""
from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from scipy import stats

from galmoss_jax import fit
from galmoss_jax.posterior import log_likelihood, sample_nuts

import _sims as S

pytest.importorskip("numpyro")

TRUTH = dict(n=1.5, r_e=3.0, q=0.6, pa=-35.0, mag=16.0, x0=15.6, y0=15.3)


def test_nuts_posterior_matches_lm():
    rng = np.random.default_rng(21)
    clean = S.draw(TRUTH["n"], TRUTH["r_e"], TRUTH["q"], TRUTH["pa"], TRUTH["mag"], TRUTH["x0"], TRUTH["y0"])
    # S/N 200: well constrained, so the posterior is close to Gaussian (at S/N 80 the flat-prior
    # posterior mean of mag sits 0.26 sigma from the mode, through its skewed covariance with n)
    sig = S.noise_sigma(clean[None], 200.0)[0]
    data = clean + rng.normal(size=clean.shape) * sig
    psf = S.psf_image()
    # the LM fit: a batch of BATCH copies keeps the compiled fit core of the other tests
    G = S.BATCH
    res = fit("sersic", np.broadcast_to(data, (G,) + data.shape), sigma=sig, psf=psf, zeropoint=S.ZP,
              sampling=S.SAMPLING, init={k: np.full(G, v) for k, v in TRUTH.items()}, starts=1)
    best = {k: float(res.values["sersic." + k][0]) for k in S.PARAMS}
    err = {k: float(res.errors["sersic." + k][0]) for k in S.PARAMS}
    logl = log_likelihood("sersic", data, sig, psf=psf, zeropoint=S.ZP, sampling=S.SAMPLING)
    assert float(jax.jit(logl)(best)) == pytest.approx(-0.5 * float(res.chi2[0]), rel=1e-9)
    init = {k: best[k] for k in S.PARAMS}
    # the sampler's mass matrix starts from the fit's covariance (fewer, shorter trajectories)
    post = sample_nuts("sersic", data, sig, init=init, psf=psf, zeropoint=S.ZP, sampling=S.SAMPLING,
                       num_warmup=300, num_samples=400, seed=1, covariance=res.covariance[0])
    print("\nNUTS (400 draws) vs LM + Gauss-Newton errors")
    for k in S.PARAMS:
        m, s = float(post.mean["sersic." + k]), float(post.std["sersic." + k])
        print(f"  {k:4s} LM {best[k]:9.4f} +- {err[k]:.4f}   NUTS {m:9.4f} +- {s:.4f}   "
              f"(mean diff {(m - best[k]) / err[k]:+.2f} sigma, width ratio {s / err[k]:.2f})")
        assert abs(m - best[k]) < 0.2 * err[k] + 1e-12, k
        assert abs(s / err[k] - 1) < 0.25, k
    assert post.num_divergent == 0
    # the truth is inside the posterior: Mahalanobis distance of the posterior mean from the
    # truth with the posterior covariance, below the 99.9 % point of chi2 with 7 dof
    draws = np.stack([np.asarray(post.samples["sersic." + k]) for k in S.PARAMS], axis=1)
    d = np.array([float(post.mean["sersic." + k]) - TRUTH[k] for k in S.PARAMS])
    d[S.PARAMS.index("pa")] = S.wrap_pa(d[S.PARAMS.index("pa")])
    m2 = float(d @ np.linalg.solve(np.cov(draws, rowvar=False), d))
    print(f"  posterior mean - truth: Mahalanobis^2 {m2:.2f} (chi2_7 99.9 % point {stats.chi2(7).ppf(0.999):.1f})")
    assert m2 < stats.chi2(7).ppf(0.999)
    # the widths are the Laplace widths of chi2's curvature at the mode (central finite
    # differences of the log-likelihood with steps of 0.2 sigma, evaluated here)
    f = jax.jit(logl)
    x = np.array([best[k] for k in S.PARAMS])
    h = 0.2 * np.array([err[k] for k in S.PARAMS])
    chi2 = lambda v: -2.0 * float(f(dict(zip(S.PARAMS, v))))   # noqa: E731
    P, E = len(x), np.eye(len(x))
    H = np.empty((P, P))
    c0 = chi2(x)
    for i in range(P):
        H[i, i] = (chi2(x + h[i] * E[i]) - 2 * c0 + chi2(x - h[i] * E[i])) / h[i] ** 2
    for i, j in itertools.combinations(range(P), 2):
        H[i, j] = H[j, i] = sum(si * sj * chi2(x + si * h[i] * E[i] + sj * h[j] * E[j])
                                for si, sj in itertools.product((1, -1), repeat=2)) / (4 * h[i] * h[j])
    laplace = np.sqrt(np.diag(2.0 * np.linalg.inv(H)))
    for i, k in enumerate(S.PARAMS):
        s = float(post.std["sersic." + k])
        print(f"  {k:4s} NUTS width / Laplace width {s / laplace[i]:.3f}")
        assert abs(s / laplace[i] - 1) < 0.25, k
