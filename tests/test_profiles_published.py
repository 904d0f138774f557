"""The less common profiles against their published formulas, point by point.

Each formula is written out here from its publication, in plain NumPy/SciPy, independently of
the library's (log-space, softplus) implementation, and compared with the profile's
``brightness(p, dx, dy, zeropoint)`` (not the pixel-integrated render) on a grid of offsets at
several parameter sets (axis ratio, position angle, boxiness and shape parameters varied):

* Nuker: Lauer et al. (1995) as in GALFIT (Peng et al. 2010, AJ 139, 2097, eq. 9; GALFIT manual):
  I(r) = I_b 2^((beta - gamma)/alpha) (r/r_b)^-gamma [1 + (r/r_b)^alpha]^((gamma - beta)/alpha);
* modified Ferrer, GALFIT ``ferrer`` (Peng et al. 2010, eq. 8):
  I(r) = I_0 (1 - (r/r_out)^(2 - beta))^alpha inside r_out, 0 beyond;
* edge-on disk, GALFIT ``edgedisk`` (van der Kruit & Searle 1981; Peng et al. 2010):
  Sigma(x, y) = Sigma_0 (|x|/r_s) K1(|x|/r_s) sech^2(y/h_s), x along the disk plane;
* core-Sérsic, Imfit ``Core-Sersic`` (Graham et al. 2003; Imfit manual, Erwin 2015 ApJ 799, 226):
  I(r) = I' [1 + (r_b/r)^alpha]^(gamma/alpha) exp(-b_n [(r^alpha + r_b^alpha)/r_e^alpha]^(1/(alpha n))),
  I' = I_b 2^(-gamma/alpha) exp(b_n (2^(1/alpha) r_b/r_e)^(1/n)), b_n the Sérsic b_n;
* broken exponential, Imfit ``BrokenExponential`` (Erwin, Pohlen & Beckman 2008; Imfit manual):
  I(r) = S I_0 e^(-r/h1) [1 + e^(alpha (r - r_b))]^((1/alpha)(1/h1 - 1/h2)),
  S = (1 + e^(-alpha r_b))^(-(1/alpha)(1/h1 - 1/h2)).

Surface-brightness parameters are mag / pixel^2: I = 10^(-0.4 (mu - zp)).  Geometry (DESIGN.md
A, as GALFIT/Imfit): pa counter-clockwise from +y (up = 0, left = 90), q = b/a, generalised
ellipse radius r = (|x'|^(c0+2) + |y'/q|^(c0+2))^(1/(c0+2)).  The total fluxes are checked
against SciPy quadrature of the same brightness functions in test_profiles_flux.py.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from galmoss_jax import get_profile

ZP = 25.0

# a grid of offsets from the centre (pixels), off the exact centre (a cusp there for Nuker and
# core-Sérsic), plus points on the major axis around the breaks (added per case)
_g = np.linspace(-14.6, 15.4, 11)
DX, DY = (a.ravel() for a in np.meshgrid(_g, _g + 0.35))


def _sb(mu):
    return 10.0 ** (-0.4 * (mu - ZP))


def _axes(dx, dy, pa):
    """(along the major axis, along the minor axis) for pa counter-clockwise from +y."""
    t = math.radians(pa)
    major = (-math.sin(t), math.cos(t))       # up at pa = 0, left at pa = 90
    minor = (math.cos(t), math.sin(t))
    return dx * major[0] + dy * major[1], dx * minor[0] + dy * minor[1]


def _radius(dx, dy, q, pa, c0):
    xm, ym = _axes(dx, dy, pa)
    k = c0 + 2.0
    return (np.abs(xm) ** k + np.abs(ym / q) ** k) ** (1.0 / k)


def _on_major_axis(radii, pa):
    t = math.radians(pa)
    r = np.asarray(radii, float)
    return -r * math.sin(t), r * math.cos(t)


def _points(p, radii):
    """The grid plus points on the major axis at ``radii``."""
    ax, ay = _on_major_axis(radii, p["pa"])
    return np.concatenate([DX, ax]), np.concatenate([DY, ay])


@functools.lru_cache(maxsize=None)
def _compiled(name):
    # one small program per profile (parameters traced): cheaper than op-by-op dispatch
    return jax.jit(lambda p, dx, dy: get_profile(name).brightness(p, dx, dy, ZP))


def _library(name, p, dx, dy):
    pj = {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}
    return np.asarray(_compiled(name)(pj, jnp.asarray(dx, jnp.float64), jnp.asarray(dy, jnp.float64)))


def _compare(name, p, dx, dy, want, rtol=1e-11):
    got = _library(name, p, dx, dy)
    assert np.all(np.isfinite(want)) and np.all(want >= 0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-14 * want.max(), err_msg=f"{name} {p}")


# --- Nuker ----------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [
    dict(mu_b=19.0, r_b=4.0, alpha=2.0, beta=3.5, gamma=0.5, q=0.7, pa=30.0, c0=0.0),
    dict(mu_b=21.5, r_b=1.5, alpha=0.7, beta=5.0, gamma=1.2, q=0.45, pa=-75.0, c0=0.4),
    dict(mu_b=18.0, r_b=8.0, alpha=6.0, beta=2.4, gamma=0.0, q=0.9, pa=100.0, c0=-0.6),
])
def test_nuker_is_the_published_formula(p):
    dx, dy = _points(p, p["r_b"] * np.array([0.01, 0.3, 0.9, 1.0, 1.1, 3.0, 20.0]))
    x = _radius(dx, dy, p["q"], p["pa"], p["c0"]) / p["r_b"]
    a, b, g = p["alpha"], p["beta"], p["gamma"]
    want = _sb(p["mu_b"]) * 2.0 ** ((b - g) / a) * x ** -g * (1.0 + x ** a) ** ((g - b) / a)
    _compare("nuker", p, dx, dy, want)
    # at the break radius on the major axis I = I_b exactly
    bx, by = _on_major_axis([p["r_b"]], p["pa"])
    assert _library("nuker", p, bx, by)[0] == pytest.approx(_sb(p["mu_b"]), rel=1e-12)


# --- Ferrer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [
    dict(mu_0=20.0, r_out=12.0, alpha=2.0, beta=0.0, q=0.6, pa=20.0, c0=0.0),    # classical Ferrers
    dict(mu_0=18.5, r_out=9.0, alpha=0.6, beta=1.4, q=0.35, pa=-50.0, c0=0.8),   # bar: boxy, cuspy
    dict(mu_0=21.0, r_out=25.0, alpha=4.5, beta=-1.5, q=0.85, pa=95.0, c0=-0.4),
])
def test_ferrer_is_the_published_formula(p):
    dx, dy = _points(p, p["r_out"] * np.array([0.05, 0.5, 0.99, 1.0, 1.01, 1.5]))
    x = _radius(dx, dy, p["q"], p["pa"], p["c0"]) / p["r_out"]
    inside = x < 1.0
    want = np.where(inside, _sb(p["mu_0"]) * np.clip(1.0 - x ** (2.0 - p["beta"]), 0.0, None) ** p["alpha"], 0.0)
    assert inside.any() and (~inside).any()
    _compare("ferrer", p, dx, dy, want)


# --- edge-on disk -----------------------------------------------------------------------------
@pytest.mark.parametrize("p", [
    dict(mu_0=20.0, h_s=1.5, r_s=6.0, pa=0.0),
    dict(mu_0=19.0, h_s=3.0, r_s=4.0, pa=63.0),
    dict(mu_0=22.0, h_s=0.6, r_s=15.0, pa=-120.0),
])
def test_edge_on_disk_is_the_published_formula(p):
    # the grid, points along the disk plane (and its centre line |x'| = 0: x K1(x) -> 1)
    t = math.radians(p["pa"])
    s = np.array([0.0, 0.5, 2.0, 7.0, 30.0])
    dx = np.concatenate([DX, -s * math.sin(t), s * math.cos(t)])
    dy = np.concatenate([DY, s * math.cos(t), s * math.sin(t)])
    along, across = _axes(dx, dy, p["pa"])
    u = np.abs(along) / p["r_s"]
    xk1 = np.where(u > 0, u * special.k1(np.where(u > 0, u, 1.0)), 1.0)
    want = _sb(p["mu_0"]) * xk1 / np.cosh(across / p["h_s"]) ** 2
    _compare("edge_on_disk", p, dx, dy, want, rtol=1e-12)
    # the disk plane is the direction pa: at a point on it the vertical factor is 1
    px, py = _on_major_axis([2.0], p["pa"])
    assert _library("edge_on_disk", p, px, py)[0] == pytest.approx(
        _sb(p["mu_0"]) * 2.0 / p["r_s"] * special.k1(2.0 / p["r_s"]), rel=1e-12)


# --- core-Sérsic ------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [
    dict(mu_b=19.0, r_e=10.0, n=4.0, r_b=1.0, alpha=2.0, gamma=0.3, q=0.75, pa=15.0, c0=0.0),
    dict(mu_b=20.5, r_e=6.0, n=1.5, r_b=2.5, alpha=8.0, gamma=0.8, q=0.5, pa=-40.0, c0=0.5),
    dict(mu_b=18.0, r_e=25.0, n=6.0, r_b=0.4, alpha=0.8, gamma=0.05, q=0.9, pa=110.0, c0=-0.3),
])
def test_core_sersic_is_the_published_formula(p):
    dx, dy = _points(p, p["r_b"] * np.array([0.02, 0.5, 1.0, 2.0, 10.0]))
    r = _radius(dx, dy, p["q"], p["pa"], p["c0"])
    n, r_e, r_b, a, g = p["n"], p["r_e"], p["r_b"], p["alpha"], p["gamma"]
    b = special.gammaincinv(2.0 * n, 0.5)          # the Sérsic b_n, as Imfit's Calculate_bn
    i_prime = _sb(p["mu_b"]) * 2.0 ** (-g / a) * np.exp(b * (2.0 ** (1.0 / a) * r_b / r_e) ** (1.0 / n))
    want = (i_prime * (1.0 + (r_b / r) ** a) ** (g / a)
            * np.exp(-b * ((r ** a + r_b ** a) / r_e ** a) ** (1.0 / (a * n))))
    _compare("core_sersic", p, dx, dy, want, rtol=1e-10)
    # I = I_b at the break radius on the major axis
    bx, by = _on_major_axis([r_b], p["pa"])
    assert _library("core_sersic", p, bx, by)[0] == pytest.approx(_sb(p["mu_b"]), rel=1e-12)


# --- broken exponential -------------------------------------------------------------------------
@pytest.mark.parametrize("p", [
    dict(mu_0=19.0, h1=6.0, h2=2.5, r_b=10.0, alpha=1.0, q=0.6, pa=25.0, c0=0.0),     # truncation
    dict(mu_0=20.0, h1=3.0, h2=8.0, r_b=6.0, alpha=0.3, q=0.8, pa=-65.0, c0=0.6),     # anti-truncation
    dict(mu_0=21.0, h1=10.0, h2=4.0, r_b=15.0, alpha=5.0, q=0.4, pa=140.0, c0=-0.5),  # sharp break
])
def test_broken_exponential_is_the_published_formula(p):
    dx, dy = _points(p, p["r_b"] * np.array([0.0, 0.5, 0.95, 1.0, 1.05, 2.0, 4.0]))
    r = _radius(dx, dy, p["q"], p["pa"], p["c0"])
    h1, h2, r_b, a = p["h1"], p["h2"], p["r_b"], p["alpha"]
    e = (1.0 / a) * (1.0 / h1 - 1.0 / h2)
    s = (1.0 + np.exp(-a * r_b)) ** -e
    want = s * _sb(p["mu_0"]) * np.exp(-r / h1) * (1.0 + np.exp(a * (r - r_b))) ** e
    _compare("broken_exponential", p, dx, dy, want)
    # I(0) = I_0: S normalises the centre
    assert _library("broken_exponential", p, np.zeros(1), np.zeros(1))[0] == pytest.approx(_sb(p["mu_0"]), rel=1e-13)
