"""Flux conservation and reference checks of the profiles.

* every registered profile with a ``total_flux`` (looped over ``galmoss_jax.PROFILES``, so new
  profiles are covered automatically; sky components skipped) sums, rendered on a stamp that
  holds it, to its total flux within 1e-3 (the point source through a PSF);
* every ``total_flux`` agrees with SciPy quadrature of the brightness function itself:
  ``2 pi q / R(c0) int I(r) r dr`` along the major axis, or ``dblquad`` over the plane for
  profiles without an axis ratio (the edge-on disk);
* Sérsic identities (n = 1 is the exponential, n = 0.5 the Gaussian, de Vaucouleurs is n = 4),
  b_n against ``scipy.special.gammaincinv``, boxy/disky Sérsic flux;
* the edge-on disk's Bessel function K1 against ``scipy.special.k1``.
"""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

from galmoss_jax import PROFILES, Model, render
from galmoss_jax.geometry import boxiness_area_ratio
from galmoss_jax.profiles.edge_on_disk import k1, xk1
from galmoss_jax.profiles.sersic import sersic_bn

ZP = 25.0

# Parameters (x0, y0 go to the stamp centre) and a stamp side that holds all but < 1e-4 of the
# light.  A profile missing here is rendered with its defaults on a 201 x 201 stamp.
FLUX_CASES = {
    "sersic": (dict(mag=18.0, r_e=3.0, n=2.0, q=0.7, pa=30.0), 121),
    "devaucouleurs": (dict(mag=18.0, r_e=1.5, q=0.8, pa=-20.0), 201),
    "exponential": (dict(mag=18.0, r_s=3.0, q=0.6, pa=50.0), 121),
    "gaussian": (dict(mag=18.0, fwhm=4.0, q=0.7, pa=10.0), 41),
    "moffat": (dict(mag=18.0, fwhm=3.0, beta=4.0, q=0.8, pa=0.0), 121),
    "point": (dict(mag=18.0), 21),
    "ferrer": (dict(mu_0=20.0, r_out=10.0, alpha=2.0, beta=0.5, q=0.7, pa=30.0, c0=0.5), 31),
    "king": (dict(mu_0=20.0, r_c=2.0, r_t=15.0, alpha=2.0, q=0.8, pa=-40.0, c0=-0.5), 41),
    "broken_exponential": (dict(mu_0=20.0, h1=4.0, h2=2.0, r_b=8.0, alpha=1.0, q=0.7, pa=60.0), 101),
    "edge_on_disk": (dict(mu_0=20.0, h_s=1.5, r_s=4.0, pa=30.0), 101),
    "nuker": (dict(mu_b=20.0, r_b=1.5, alpha=2.0, beta=6.0, gamma=0.5, q=0.8, pa=20.0), 101),
    "core_sersic": (dict(mu_b=20.0, r_e=4.0, n=1.5, r_b=1.0, alpha=3.0, gamma=0.5, q=0.75, pa=-10.0), 101),
}
DEFAULT_SIDE = 201
FAST_COMPILE = {"xla_backend_optimization_level": 0}

FLUX_PROFILES = sorted(n for n, s in PROFILES.items() if s.total_flux is not None and s.kind != "sky")


def _psf():
    y, x = np.mgrid[-3:4, -3:4]
    k = np.exp(-0.5 * (x * x + y * y) / 1.2 ** 2)
    return k / k.sum()


def _case(name):
    spec = PROFILES[name]
    extra, side = FLUX_CASES.get(name, ({}, DEFAULT_SIDE))
    p = spec.defaults()
    p.update(extra)
    c = (side - 1) / 2.0
    if "x0" in p:
        p["x0"], p["y0"] = c + 0.2, c - 0.3
    return spec, p, side


def _model(spec):
    return Model(spec.name, free=[p.name for p in spec.params if p.fixed])


@pytest.mark.parametrize("name", FLUX_PROFILES)
def test_rendered_sum_equals_total_flux(name):
    spec, p, side = _case(name)
    psf = _psf() if spec.kind == "point" else None
    img = np.asarray(render(_model(spec), p, (side, side), psf=psf, zeropoint=ZP))
    total = float(spec.total_flux({k: jnp.asarray(v) for k, v in p.items()}, ZP))
    assert np.all(np.isfinite(img))
    assert img.sum() == pytest.approx(total, rel=1e-3), name


# --- total_flux against SciPy quadrature of the brightness function -------------------------
def _radii_of(spec, p):
    return sorted({float(p[q.name]) for q in spec.params
                   if q.unit == "pixel" and q.name not in ("x0", "y0") and float(p[q.name]) > 0})


def _quad_radial(spec, p):
    """2 pi q / R(c0) int_0^inf I(r) r dr, with I along the major axis (pa = 0: the +y axis)."""
    p = dict(p, x0=0.0, y0=0.0, pa=0.0)
    pj = {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}
    f = jax.jit(lambda r: spec.brightness(pj, jnp.zeros_like(r), r, ZP))
    radii = _radii_of(spec, p)
    # split at every scale of the profile and at decades, so quad never misses a feature
    pts = sorted(set([0.0] + radii + [10.0 ** k for k in range(-4, 6)]
                     + [r * m for r in radii for m in (0.5, 2.0, 5.0, 20.0)]))
    total = 0.0
    for a, b in zip(pts[:-1], pts[1:]):
        total += integrate.quad(lambda r: float(f(r)) * r, a, b, epsabs=0.0, epsrel=1e-10, limit=200)[0]
    with warnings.catch_warnings():   # the tail beyond 1e5 px holds < 1e-9 of any case here
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        total += integrate.quad(lambda r: float(f(r)) * r, pts[-1], np.inf, epsabs=0.0, epsrel=1e-10,
                                limit=200)[0]
    c0 = float(p.get("c0", 0.0))
    return 2.0 * math.pi * float(p["q"]) / float(boxiness_area_ratio(c0)) * total


def _dblquad_plane(spec, p, scale):
    """int int I(x, y) dx dy over the plane, by quadrants (pa = 0); ``scale`` only sets the
    absolute tolerance (1e-10 of it), so that quad does not chase relative precision on the
    vanishing far wings."""
    p = dict(p, x0=0.0, y0=0.0)
    if "pa" in p:
        p["pa"] = 0.0
    pj = {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}
    # the four quadrants folded into one integrand (one dispatch per node)
    f = jax.jit(lambda x, y: (spec.brightness(pj, x, y, ZP) + spec.brightness(pj, -x, y, ZP)
                              + spec.brightness(pj, x, -y, ZP) + spec.brightness(pj, -x, -y, ZP)))
    L = 60.0 * max(_radii_of(spec, p) + [1.0])
    return integrate.dblquad(lambda y, x: float(f(x, y)), 0.0, L, 0.0, L,
                             epsabs=1e-10 * scale, epsrel=1e-9)[0]


def _quad_sets(name):
    spec, p, _ = _case(name)
    return [spec.defaults(), p]


@pytest.mark.parametrize("name", [n for n in FLUX_PROFILES if PROFILES[n].kind == "surface"])
def test_total_flux_against_quadrature(name):
    spec = PROFILES[name]
    for p in _quad_sets(name):
        analytic = float(spec.total_flux({k: jnp.asarray(v, jnp.float64) for k, v in p.items()}, ZP))
        ref = _quad_radial(spec, p) if "q" in p else _dblquad_plane(spec, p, analytic)
        assert analytic == pytest.approx(ref, rel=1e-6), (name, p)


def test_point_total_flux_is_the_magnitude():
    spec = PROFILES["point"]
    assert float(spec.total_flux({"x0": 0.0, "y0": 0.0, "mag": 20.0}, ZP)) == pytest.approx(100.0, rel=1e-12)


@pytest.mark.parametrize("name,params", [
    ("king", dict(r_c=0.05, r_t=5000.0, alpha=0.5)),          # r_t / r_c = 1e5
    ("king", dict(r_c=50.0, r_t=2.0, alpha=2.0)),             # r_t < r_c: finite, still a King shape
    ("broken_exponential", dict(h1=500.0, h2=3.0, r_b=1000.0, alpha=20.0)),
    ("broken_exponential", dict(h1=0.5, h2=30.0, r_b=3.0, alpha=0.05)),
    ("core_sersic", dict(r_e=500.0, n=10.0, r_b=0.05, alpha=0.5, gamma=1.4)),
    ("core_sersic", dict(r_e=2.0, n=0.3, r_b=0.5, alpha=15.0, gamma=0.2)),
    ("nuker", dict(r_b=3.0, alpha=0.5, beta=4.0, gamma=1.2)),
    ("ferrer", dict(r_out=20.0, alpha=0.3, beta=1.5)),
])
def test_total_flux_quadrature_extremes(name, params):
    """The fixed-node quadratures hold 1e-6 at scale ratios far from the defaults."""
    spec = PROFILES[name]
    p = dict(spec.defaults(), **params)
    analytic = float(spec.total_flux({k: jnp.asarray(v, jnp.float64) for k, v in p.items()}, ZP))
    assert analytic == pytest.approx(_quad_radial(spec, p), rel=1e-6)


def test_total_flux_is_differentiable():
    """The quadrature fluxes have finite, correct gradients (central differences)."""
    for name in ("king", "broken_exponential", "core_sersic"):
        spec = PROFILES[name]
        p = {k: jnp.asarray(v, jnp.float64) for k, v in spec.defaults().items()}
        def log_flux_fn(q, spec=spec):
            return jnp.log(spec.total_flux(q, ZP))

        # compiled without LLVM optimisation: same arithmetic, less compile time
        log_flux = jax.jit(log_flux_fn).lower(p).compile(compiler_options=FAST_COMPILE)
        g = jax.jit(jax.grad(log_flux_fn)).lower(p).compile(compiler_options=FAST_COMPILE)(p)
        for k in p:
            h = 1e-5 * max(abs(float(p[k])), 1.0)
            fd = (float(log_flux(dict(p, **{k: p[k] + h}))) - float(log_flux(dict(p, **{k: p[k] - h})))) / (2 * h)
            assert np.isfinite(float(g[k]))
            assert float(g[k]) == pytest.approx(fd, rel=1e-5, abs=1e-8), (name, k)


# --- Sérsic identities -------------------------------------------------------------------------
def _render(name, params, side=61, **model_kw):
    c = (side - 1) / 2.0
    p = dict(params, x0=c + 0.25, y0=c - 0.4)
    return np.asarray(render(Model(name, **model_kw), p, (side, side), zeropoint=ZP))


def test_sersic_n1_is_exponential():
    r_s = 4.0
    b1 = float(sersic_bn(1.0))
    a = _render("sersic", dict(mag=17.0, r_e=r_s * b1, n=1.0, q=0.6, pa=35.0))
    b = _render("exponential", dict(mag=17.0, r_s=r_s, q=0.6, pa=35.0))
    assert np.max(np.abs(a - b)) <= 1e-6 * b.max()


def test_sersic_n05_is_gaussian():
    r_e = 3.0
    b05 = float(sersic_bn(0.5))
    sigma = r_e / math.sqrt(2.0 * b05)       # exp(-b (r/r_e)^2) = exp(-r^2 / (2 sigma^2))
    fwhm = 2.0 * math.sqrt(2.0 * math.log(2.0)) * sigma
    a = _render("sersic", dict(mag=17.0, r_e=r_e, n=0.5, q=0.7, pa=-20.0))
    b = _render("gaussian", dict(mag=17.0, fwhm=fwhm, q=0.7, pa=-20.0))
    assert np.max(np.abs(a - b)) <= 1e-6 * b.max()


def test_devaucouleurs_is_sersic_n4():
    a = _render("devaucouleurs", dict(mag=17.0, r_e=5.0, q=0.8, pa=10.0))
    b = _render("sersic", dict(mag=17.0, r_e=5.0, n=4.0, q=0.8, pa=10.0))
    assert np.max(np.abs(a - b)) <= 1e-6 * b.max()


def test_sersic_bn_against_scipy():
    """b_n (a Chebyshev table in log n, and the Ciotti-Bertin series above it) against SciPy's
    gammaincinv: values to float rounding over the whole table and beyond it, derivatives
    (first and second) against central differences of SciPy's, NaN below the table."""
    from galmoss_jax.profiles.sersic import BN_N_MAX, BN_N_MIN

    n = np.exp(np.linspace(math.log(BN_N_MIN), math.log(2.0 * BN_N_MAX), 2003))
    ours = np.asarray(jax.vmap(sersic_bn)(jnp.asarray(n)))
    np.testing.assert_allclose(ours, special.gammaincinv(2.0 * n, 0.5), rtol=1e-11)
    m = np.exp(np.linspace(math.log(0.05), math.log(40.0), 97))
    h = 1e-5 * m
    fd1 = (special.gammaincinv(2.0 * (m + h), 0.5) - special.gammaincinv(2.0 * (m - h), 0.5)) / (2.0 * h)
    np.testing.assert_allclose(np.asarray(jax.vmap(jax.grad(sersic_bn))(jnp.asarray(m))), fd1, rtol=1e-7)
    h = 1e-3 * m
    fd2 = (special.gammaincinv(2.0 * (m + h), 0.5) - 2.0 * special.gammaincinv(2.0 * m, 0.5)
           + special.gammaincinv(2.0 * (m - h), 0.5)) / h ** 2
    d2 = np.asarray(jax.vmap(jax.grad(jax.grad(sersic_bn)))(jnp.asarray(m)))
    np.testing.assert_allclose(d2, fd2, rtol=1e-4, atol=1e-6)
    assert np.isnan(float(sersic_bn(0.5 * BN_N_MIN)))


def test_sersic_normalisation_against_scipy():
    """The n-dependent part of a Sérsic profile's log total-flux integral, b - 2n log b +
    log Γ(2n) (a Chebyshev table in log n, Stirling's series above it), against SciPy's
    gammaincinv and gammaln: values to 1e-12 over the table and beyond it, the derivative
    against central differences of SciPy's, NaN below the table."""
    from galmoss_jax.profiles.sersic import BN_N_MAX, BN_N_MIN, _sersic_log_norm_n

    def exact(n):
        b = special.gammaincinv(2.0 * n, 0.5)
        return b - 2.0 * n * np.log(b) + special.gammaln(2.0 * n)

    def ours(n):
        return _sersic_log_norm_n(n, sersic_bn(n))

    n = np.exp(np.linspace(math.log(BN_N_MIN), math.log(2.0 * BN_N_MAX), 2003))
    np.testing.assert_allclose(np.asarray(jax.vmap(ours)(jnp.asarray(n))), exact(n), rtol=0, atol=1e-11)
    m = np.exp(np.linspace(math.log(0.05), math.log(90.0), 97))
    h = 1e-5 * m
    fd1 = (exact(m + h) - exact(m - h)) / (2.0 * h)
    np.testing.assert_allclose(np.asarray(jax.vmap(jax.grad(ours))(jnp.asarray(m))), fd1, rtol=1e-6, atol=1e-8)
    assert np.isnan(float(ours(0.5 * BN_N_MIN)))


@pytest.mark.parametrize("c0", [-0.8, 1.0])
def test_boxy_sersic_sums_to_total_flux(c0):
    img = _render("sersic", dict(mag=18.0, r_e=3.0, n=1.5, q=0.7, pa=25.0, c0=c0), side=101, free=["c0"])
    assert img.sum() == pytest.approx(10.0 ** (-0.4 * (18.0 - ZP)), rel=1e-3)


# --- K1 ------------------------------------------------------------------------------------------
def test_k1_against_scipy():
    x = np.concatenate([np.geomspace(1e-6, 50.0, 4001), [2.0 - 1e-12, 2.0, 2.0 + 1e-12]])
    np.testing.assert_allclose(np.asarray(k1(jnp.asarray(x))), special.k1(x), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(xk1(jnp.asarray(x))), x * special.k1(x), rtol=1e-12)
    # derivative: K1'(x) = -K0(x) - K1(x)/x
    d = np.asarray(jax.vmap(jax.grad(k1))(jnp.asarray(x)))
    np.testing.assert_allclose(d, -special.k0(x) - special.k1(x) / x, rtol=1e-10)


def test_xk1_at_zero_and_far_out():
    assert float(xk1(0.0)) == 1.0
    assert float(jax.grad(xk1)(0.0)) == 0.0
    for x in (0.0, 1e-300, 1e-12, 700.0, 1e4):
        assert np.isfinite(float(xk1(x))) and np.isfinite(float(jax.grad(xk1)(x)))


@pytest.mark.parametrize("alpha", [2.0, 1.3, 3.5])
def test_king_follows_the_modified_king_law(alpha):
    """Modified King (Elson 1999; Peng et al. 2010; Imfit's ModifiedKing, func_king.cpp):
    I = I_0 (1 - C)^-alpha ((1 + (r/r_c)^2)^(-1/alpha) - C)^alpha with
    C = (1 + (r_t/r_c)^2)^(-1/alpha), written here directly; the power is alpha, not 2."""
    from galmoss_jax.profiles.king import king_brightness

    r_c, r_t, mu_0, zp = 2.0, 15.0, 20.0, 25.0
    r = np.array([0.0, 0.5, 1.0, 3.0, 7.0, 12.0, 14.9, 15.5])
    c = (1 + (r_t / r_c) ** 2) ** (-1 / alpha)
    i0 = 10 ** (-0.4 * (mu_0 - zp))
    ref = np.where(r < r_t, i0 * (1 - c) ** -alpha * np.clip((1 + (r / r_c) ** 2) ** (-1 / alpha) - c, 0, None) ** alpha,
                   0.0)
    p = dict(mu_0=mu_0, r_c=r_c, r_t=r_t, alpha=alpha, q=1.0, pa=0.0, c0=0.0)
    got = np.asarray(king_brightness(p, jnp.zeros_like(r), jnp.asarray(r), zp))
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14 * i0)
