"""Fit options and reporting conventions end to end, against references the library does not
compute: GalSim galaxies with injected truth, a finite-difference Hessian of chi2 taken here,
and the analytic scaling of errors with sigma.

* ``errors="hessian"``: the covariance 2 H^-1 of the full Hessian of chi2 equals the one from a
  central finite-difference Hessian of chi2 (computed in this test from model images), and on a
  well-fitting simulation it is near the Gauss-Newton one;
* ``scale_errors``: errors times sqrt(chi2_nu) exactly, with chi2_nu recomputed here; errors
  scale with sigma, and the scaled ones do not depend on the sigma map's normalisation;
* q > 1: a fit started with the axes swapped (q > 1, pa + 90, r_e times q) is reported with
  q <= 1, pa and r_e of the truth, and equals the fit from the ordinary start;
* a sky component: ``sersic+sky`` on a galaxy plus a known flat sky recovers the sky and the
  galaxy within their errors (a plain Sérsic on the same data is biased).

Every fit is a 16x16 stamp without a PSF (``_sims.draw_small``, GalSim's exact pixel integral)
with ``_sims.SAMPLING``: one compiled Sérsic fit core (shared with the bootstrap coverage test),
one for ``errors="hessian"`` and one for ``sersic+sky``.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import galmoss_jax as gj
from galmoss_jax import fit

import _sims as S

N = S.SMALL
# a compact galaxy (n 1.5, r_e 2.5 px) a little off the stamp centre, S/N 100
TRUTH = dict(x0=7.7, y0=7.3, mag=16.0, r_e=2.5, n=1.5, q=0.6, pa=30.0)
SNR = 100.0
FREE = tuple(f"sersic.{k}" for k in S.PARAMS)


def draw(t):
    return S.draw_small(t["n"], t["r_e"], t["q"], t["pa"], t["mag"], t["x0"], t["y0"])


def delta(name, fitted, truth):
    d = np.asarray(fitted) - truth
    return S.wrap_pa(d) if name.endswith("pa") else d


def batch(t, G):
    return {k: np.full(G, float(v)) for k, v in t.items()}


@pytest.fixture(scope="module")
def galaxy():
    clean = draw(TRUTH)
    sig = S.noise_sigma(clean[None], SNR)[0]
    data = clean + np.random.default_rng(3).normal(size=clean.shape) * sig
    return data, sig


@pytest.fixture(scope="module")
def gn_fit(galaxy):
    data, sig = galaxy
    return fit("sersic", data, sigma=sig, zeropoint=S.ZP, sampling=S.SAMPLING, init=TRUTH, starts=1)


RENDER_BATCH = 100   # every render of this module has this batch size: one compiled program


def chi2_of(data, sig, params):
    """chi2 of K <= RENDER_BATCH parameter sets {name: (K,)}, from model images."""
    K = len(next(iter(params.values())))
    pad = {k: np.concatenate([v, np.repeat(v[-1:], RENDER_BATCH - K)]) for k, v in params.items()}
    m = np.asarray(gj.render("sersic", pad, (N, N), zeropoint=S.ZP, sampling=S.SAMPLING))[:K]
    return (((data - m) / sig) ** 2).sum(axis=(-2, -1))


def fd_hessian(data, sig, x, h):
    """Central finite-difference Hessian of chi2 at ``x`` (P,) with steps ``h`` (P,), every
    point rendered in one batched call."""
    P = len(x)
    pts, keys = [x], ["0"]
    for i in range(P):
        for s in (1, -1):
            pts.append(x + s * h[i] * np.eye(P)[i])
            keys.append((i, s))
    for i, j in itertools.combinations(range(P), 2):
        for si, sj in itertools.product((1, -1), repeat=2):
            pts.append(x + si * h[i] * np.eye(P)[i] + sj * h[j] * np.eye(P)[j])
            keys.append((i, j, si, sj))
    X = np.array(pts)
    c = dict(zip(keys, chi2_of(data, sig, {n.split(".")[1]: X[:, k] for k, n in enumerate(FREE)})))
    H = np.empty((P, P))
    for i in range(P):
        H[i, i] = (c[(i, 1)] - 2 * c["0"] + c[(i, -1)]) / h[i] ** 2
    for i, j in itertools.combinations(range(P), 2):
        H[i, j] = H[j, i] = ((c[(i, j, 1, 1)] - c[(i, j, 1, -1)] - c[(i, j, -1, 1)] + c[(i, j, -1, -1)])
                             / (4 * h[i] * h[j]))
    return H


def test_hessian_errors_match_finite_differences_and_gauss_newton(galaxy, gn_fit):
    data, sig = galaxy
    hs = fit("sersic", data, sigma=sig, zeropoint=S.ZP, sampling=S.SAMPLING, init=TRUTH, starts=1,
             errors="hessian")
    assert hs.status[0] == 0 and gn_fit.status[0] == 0
    assert hs.free_names == gn_fit.free_names == FREE
    e_gn = np.array([gn_fit.errors[n][0] for n in FREE])
    e_hs = np.array([hs.errors[n][0] for n in FREE])
    # the same minimum (the option changes only the covariance)
    for i, n in enumerate(FREE):
        assert abs(hs.values[n][0] - gn_fit.values[n][0]) < 1e-6 * e_gn[i], n
    # the reference: 2 H^-1 with H the central finite-difference Hessian of chi2 at the fit
    # (steps of 0.2 sigma: chi2 is quadratic there to ~1e-4)
    x = np.array([hs.values[n][0] for n in FREE])
    H = fd_hessian(data, sig, x, 0.2 * e_gn)
    cov_fd = 2.0 * np.linalg.inv(H)
    e_fd = np.sqrt(np.diag(cov_fd))
    print("\nerrors: finite-difference Hessian / errors='hessian' / Gauss-Newton")
    for i, n in enumerate(FREE):
        print(f"  {n:12s} {e_fd[i]:.6f} {e_hs[i]:.6f} {e_gn[i]:.6f}  (GN / Hessian {e_gn[i] / e_hs[i]:.4f})")
    np.testing.assert_allclose(e_hs, e_fd, rtol=2e-3)
    corr = lambda c: c / np.sqrt(np.outer(np.diag(c), np.diag(c)))   # noqa: E731
    np.testing.assert_allclose(corr(hs.covariance[0]), corr(cov_fd), atol=2e-3)
    # on a well-fitting simulation the residuals' curvature term is small: GN ~ full Hessian
    np.testing.assert_allclose(e_gn / e_hs, 1.0, atol=0.05)
    # and the errors describe the distance to the truth
    for i, n in enumerate(FREE):
        assert abs(delta(n, x[i], TRUTH[n.split(".")[1]])) < 3.5 * e_hs[i], n


def test_scale_errors_multiplies_by_sqrt_chi2_nu(galaxy, gn_fit):
    """The same stamp with the true sigma and with sigma / 2 (noise under-estimated twice):
    the unscaled errors halve with sigma and chi2_nu quadruples; scaled errors are the
    unscaled ones times sqrt(chi2_nu) exactly, so they are the same for both sigma maps."""
    data, sig = galaxy
    d2, s2 = np.stack([data, data]), np.stack([sig, 0.5 * sig])
    kw = dict(sigma=s2, zeropoint=S.ZP, sampling=S.SAMPLING, init=batch(TRUTH, 2), starts=1)
    plain = fit("sersic", d2, **kw)
    scaled = fit("sersic", d2, scale_errors=True, **kw)
    assert np.all(plain.status == 0) and np.all(scaled.status == 0)
    # chi2_nu recomputed from the model image of the best fit and the pixel count
    best = {k: plain.values[f"sersic.{k}"] for k in S.PARAMS}
    chi2 = chi2_of(d2, s2, best)
    np.testing.assert_allclose(plain.chi2, chi2, rtol=1e-9)
    np.testing.assert_allclose(plain.chi2_nu, chi2 / (N * N - 7), rtol=1e-9)
    np.testing.assert_allclose(plain.chi2_nu[1], 4 * plain.chi2_nu[0], rtol=1e-6)
    for n in FREE:
        np.testing.assert_allclose(plain.values[n], gn_fit.values[n][0], rtol=0, atol=1e-6 * gn_fit.errors[n][0])
        np.testing.assert_array_equal(scaled.values[n], plain.values[n])
        np.testing.assert_allclose(plain.errors[n][0], gn_fit.errors[n][0], rtol=1e-9)
        np.testing.assert_allclose(plain.errors[n][1], 0.5 * plain.errors[n][0], rtol=1e-6)       # cov ~ sigma^2
        np.testing.assert_allclose(scaled.errors[n], plain.errors[n] * np.sqrt(plain.chi2_nu), rtol=1e-12)
        np.testing.assert_allclose(scaled.errors[n][1], scaled.errors[n][0], rtol=1e-6)
    np.testing.assert_allclose(scaled.covariance, plain.covariance * plain.chi2_nu[:, None, None], rtol=1e-12)
    assert np.all(scaled.chi2_nu == plain.chi2_nu)


# three galaxies for the q > 1 test: pa + 90 wraps for the second and third
FOLD_TRUTHS = [dict(TRUTH), dict(TRUTH, n=1.0, r_e=3.0, q=0.5, pa=-75.0, x0=7.4, y0=7.6),
               dict(TRUTH, n=2.5, r_e=2.0, q=0.7, pa=80.0, x0=7.5, y0=7.5)]


def test_q_above_one_is_folded():
    """Each galaxy fitted from the ordinary start (q < 1) and from the swapped one (q' = 1/q,
    pa' = pa + 90, r_e' = r_e q: the same ellipse): both are reported with q <= 1, pa in
    (-90, 90] and the major-axis r_e, match the truth within their errors and each other."""
    clean = np.stack([draw(t) for t in FOLD_TRUTHS])
    sigma = S.noise_sigma(clean, SNR)
    data = clean + np.random.default_rng(17).normal(size=clean.shape) * sigma
    K = len(FOLD_TRUTHS)
    truth = {k: np.array([t[k] for t in FOLD_TRUTHS]) for k in S.PARAMS}
    ordinary = dict(truth, r_e=truth["r_e"] * 1.1, q=truth["q"] * 1.1, pa=truth["pa"] + 5.0, n=truth["n"] * 0.9)
    swapped = dict(truth, r_e=truth["r_e"] * truth["q"] * 1.1, q=1.0 / (truth["q"] * 1.1), pa=truth["pa"] + 95.0,
                   n=truth["n"] * 0.9)
    assert np.all(swapped["q"] > 1)
    init = {k: np.concatenate([ordinary[k], swapped[k]]) for k in S.PARAMS}
    res = fit("sersic", np.concatenate([data, data]), sigma=np.concatenate([sigma, sigma]), zeropoint=S.ZP,
              sampling=S.SAMPLING, init=init, starts=1)
    assert np.all(res.status == 0), res.status_msg
    assert np.all(res["q"] <= 1.0) and np.all((res["pa"] > -90) & (res["pa"] <= 90))
    for k in S.PARAMS:
        n = f"sersic.{k}"
        v, e = res.values[n], res.errors[n]
        pull = delta(k, v, np.concatenate([truth[k], truth[k]])) / e
        print(f"{k:4s} pulls ordinary {np.round(pull[:K], 2)} swapped {np.round(pull[K:], 2)}")
        assert np.all(np.abs(pull) < 3.5), (k, pull)
        # the same minimum, the same (folded) errors
        assert np.all(np.abs(delta(k, v[K:], v[:K])) < 1e-3 * e[:K]), (k, v)
        np.testing.assert_allclose(e[K:], e[:K], rtol=1e-3, err_msg=k)
    np.testing.assert_allclose(res.chi2[K:], res.chi2[:K], rtol=1e-9)


SKY = 2.0       # sky level in units of the per-pixel sigma
N_SKY = 6


def test_sky_component_recovers_added_sky(galaxy, gn_fit):
    """``sersic+sky`` on the galaxy plus a flat sky of 2 sigma per pixel (6 noise draws): the
    sky and every galaxy parameter within 3.5 sigma of the truth, chi2_nu ~ 1.  The plain
    Sérsic fit of the same data takes the sky for galaxy light (magnitudes many sigma too
    bright), so the test sees the component work."""
    _, sig = galaxy
    clean = draw(TRUTH)
    sky = SKY * sig[0, 0]
    rng = np.random.default_rng(29)
    data = clean + sky + rng.normal(size=(N_SKY,) + clean.shape) * sig
    init = dict(batch(TRUTH, N_SKY), **{"sky.sky": np.zeros(N_SKY)})
    res = fit("sersic+sky", data, sigma=sig, zeropoint=S.ZP, sampling=S.SAMPLING,
              init={(k if "." in k else f"sersic.{k}"): v for k, v in init.items()}, starts=1)
    assert np.all(res.status == 0), res.status_msg
    pull_sky = (res.values["sky.sky"] - sky) / res.errors["sky.sky"]
    print("\nsky: fitted / truth", np.round(res.values["sky.sky"] / sky, 3), "pulls", np.round(pull_sky, 2))
    assert np.all(np.abs(pull_sky) < 3.5)
    assert np.all(res.errors["sky.sky"] < 0.3 * sky)                        # measured, not just allowed
    for k in S.PARAMS:
        pull = delta(k, res.values[f"sersic.{k}"], TRUTH[k]) / res.errors[f"sersic.{k}"]
        assert np.all(np.abs(pull) < 3.5), (k, pull)
    assert np.all(np.abs(res.chi2_nu - 1) < 5 * np.sqrt(2.0 / res.dof))
    plain = fit("sersic", data, sigma=sig, zeropoint=S.ZP, sampling=S.SAMPLING, init=batch(TRUTH, N_SKY), starts=1)
    pull_mag = (plain["mag"] - TRUTH["mag"]) / plain.errors["sersic.mag"]
    print("plain Sérsic: mag pulls", np.round(pull_mag, 1), "chi2_nu", np.round(plain.chi2_nu, 2))
    assert np.all(pull_mag < -5)


def test_a_parameter_whose_optimum_lies_beyond_its_bound_ends_on_it(galaxy):
    """n bounded to [2.5, 6] for a galaxy of n = 1.5: the fit stops with n on its lower bound
    (to the 1e-6 margin of the range where the solvers hold it), status 0, finite errors of the
    other parameters, and the Karush-Kuhn-Tucker conditions hold in finite differences of chi2
    from renders: every other parameter at its optimum (gradient x error below 0.02, i.e.
    within 0.01 sigma), and chi2 falling towards lower n."""
    data, sig = galaxy
    model = gj.Model("sersic", bounds={"n": (2.5, 6.0)})
    res = fit(model, data, sigma=sig, zeropoint=S.ZP, sampling=S.SAMPLING, init=dict(TRUTH, n=3.0), starts=1)
    assert int(res.status[0]) == 0, res.status_msg[0]
    assert 2.5 <= float(res.values["sersic.n"][0]) < 2.5 + 1e-5
    err = np.array([float(res.errors[f"sersic.{k}"][0]) for k in S.PARAMS])
    x = np.array([float(res.values[f"sersic.{k}"][0]) for k in S.PARAMS])
    others = [i for i, k in enumerate(S.PARAMS) if k != "n"]
    assert np.all(np.isfinite(err[others]) & (err[others] > 0))
    h = np.where(np.isfinite(err) & (err > 0), 1e-3 * err, 1e-6)
    steps = np.concatenate([np.diag(h), -np.diag(h)])
    c = chi2_of(data, sig, {k: x[i] + steps[:, i] for i, k in enumerate(S.PARAMS)})
    grad = (c[:len(x)] - c[len(x):]) / (2 * h)
    assert np.all(np.abs(grad[others] * err[others]) < 0.02), dict(zip(S.PARAMS, grad * err))
    assert grad[S.PARAMS.index("n")] > 0
