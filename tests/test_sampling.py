"""Pixel integration (galmoss_jax.sampling.integrate_pixels) against adaptive quadrature.

Reference: ``scipy.integrate.dblquad`` over each pixel with ``epsrel = 1e-10``, the pixel split
along the lines x = xc and y = yc through the profile centre (so that the cusp of a Sérsic
profile only ever sits on a corner of an integration rectangle), of an independent Sérsic
written here with ``math`` and ``scipy.special.gammaincinv`` (b_n from
Γ(2n) = 2 γ(2n, b_n), total flux 1, DESIGN.md A geometry: ``pa`` CCW from +y, ``q = b/a``,
r_e along the major axis).

Requirement (``galmoss_jax.Sampling`` docstring): for 0.3 <= n <= 8 and r_e >= 0.5 px, every
pixel holding >= 1e-3 of the peak pixel is integrated to better than 1e-3 relative.  The
reference is computed over the pixels within 4 px of the centre plus a few farther out along
the axes, for n in {0.3, 0.5, 1, 2, 4, 8}, r_e in {0.5, 1, 3} px, q in {1, 0.3}.
Tests run in float64 (conftest.py).
"""
from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

import galmoss_jax as gm
from galmoss_jax import integrate_pixels
from galmoss_jax.profiles.sersic import SERSIC, sersic_brightness

SHAPE = (31, 31)
PA = 30.0
NS = (0.3, 0.5, 1.0, 2.0, 4.0, 8.0)
RES = (0.5, 1.0, 3.0)
QS = (1.0, 0.3)
CASES = [(n, r, q) for n in NS for r in RES for q in QS]
TOL = 1e-3          # relative, per pixel
FLOOR = 1e-3        # of the peak pixel: pixels below are not held to TOL

# centre positions (x, y), 0-based: a generic sub-pixel offset, and two a hair from a pixel
# edge (the windows of the sub-pixel quadratures are then as lopsided as they get)
GENERIC = (15.3, 14.8)
NEAR_EDGE_X = (15.5 - 1e-9, 15.2)
NEAR_EDGE_Y = (15.2, 15.5 - 1e-9)
# the earlier rule: 3 x 3 Gauss-Legendre points in every pixel, no ring window
GAUSS3 = gm.Sampling(n_base=3, ring_window=0)


# ---------------------------------------------------------------------------------------------
# independent reference
# ---------------------------------------------------------------------------------------------
def reference_sersic(n, r_e, q, pa):
    """Sérsic surface brightness f(dy, dx) of total flux 1 (argument order of dblquad)."""
    b = special.gammaincinv(2.0 * n, 0.5)
    i_e = 1.0 / (2.0 * math.pi * q * r_e ** 2 * n * math.exp(b) * b ** (-2.0 * n) * math.gamma(2.0 * n))
    t = math.radians(pa)
    ux, uy = -math.sin(t), math.cos(t)          # unit vector along the major axis
    inv_n = 1.0 / n

    def f(dy, dx):
        a = dx * ux + dy * uy                     # along the major axis
        m = -dx * uy + dy * ux                    # along the minor axis
        r = math.sqrt(a * a + (m / q) ** 2)
        return i_e * math.exp(-b * ((r / r_e) ** inv_n - 1.0))

    return f


def _graded_corner_rectangle(f, X, Y):
    """Integral of f over the rectangle between the profile centre (0, 0) and the corner
    (X, Y), with the substitution x = X s^3, y = Y t^3 (Jacobian 9 s^2 t^2 |X Y|), which
    smooths the cusp at the centre so that QUADPACK converges quickly to 1e-10."""
    def g(t, s):
        return f(Y * t ** 3, X * s ** 3) * 9.0 * (s * t) ** 2
    return integrate.dblquad(g, 0.0, 1.0, 0.0, 1.0, epsabs=0.0, epsrel=1e-10)[0] * abs(X * Y)


def reference_pixel(f, xc, yc, i, j):
    """Integral of f over pixel (row i, column j) = [j-1/2, j+1/2] x [i-1/2, i+1/2], split at
    the centre lines; the pieces with the centre on a corner use a graded substitution."""
    def cuts(lo, hi, c):
        pts = [lo - c, hi - c]
        if lo < c < hi:
            pts.insert(1, 0.0)
        return pts

    xs, ys = cuts(j - 0.5, j + 0.5, xc), cuts(i - 0.5, i + 0.5, yc)
    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for xa, xb in zip(xs[:-1], xs[1:]):
            for ya, yb in zip(ys[:-1], ys[1:]):
                if (xa == 0.0 or xb == 0.0) and (ya == 0.0 or yb == 0.0):
                    total += _graded_corner_rectangle(f, xa + xb, ya + yb)
                else:
                    total += integrate.dblquad(f, xa, xb, ya, yb, epsabs=0.0, epsrel=1e-10)[0]
    return total


def reference_pixels(xc, yc, pa):
    """Pixels checked: all within 4 px of the centre, and a handful farther out along the
    major and minor axes (6, 9 and 12 px from the centre)."""
    H, W = SHAPE
    pix = {(i, j) for i in range(H) for j in range(W) if (i - yc) ** 2 + (j - xc) ** 2 <= 16.0}
    t = math.radians(pa)
    for d in (6.0, 9.0, 12.0):
        for ux, uy in ((-math.sin(t), math.cos(t)), (math.cos(t), math.sin(t))):
            for s in (1, -1):
                i, j = round(yc + s * d * uy), round(xc + s * d * ux)
                if 0 <= i < H and 0 <= j < W:
                    pix.add((i, j))
    return sorted(pix)


@functools.lru_cache(maxsize=None)      # in memory only: shared by the tests of one position
def reference_values(n, r_e, q, xc, yc):
    f = reference_sersic(n, r_e, q, PA)
    return {ij: reference_pixel(f, xc, yc, *ij) for ij in reference_pixels(xc, yc, PA)}


# ---------------------------------------------------------------------------------------------
# galmoss_jax, all cases in one compiled, vmapped call
# ---------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("sampling",))
def _galmoss_images(n, r_e, q, xc, yc, sampling):
    def one(n, r_e, q, xc, yc):
        p = dict(n=n, r_e=r_e, q=q, pa=jnp.asarray(PA, n.dtype), c0=jnp.zeros_like(n), mag=jnp.zeros_like(n))
        return integrate_pixels(lambda dx, dy: sersic_brightness(p, dx, dy, 0.0), xc, yc, SHAPE,
                                grading=SERSIC.grading(p), **sampling.quadrature())
    return jax.vmap(one)(n, r_e, q, xc, yc)


def galmoss_images(xc, yc, sampling):
    n, r_e, q = (jnp.asarray([c[k] for c in CASES], jnp.float64) for k in range(3))
    G = len(CASES)
    return np.asarray(_galmoss_images(n, r_e, q, jnp.full(G, xc), jnp.full(G, yc), sampling))


def worst_errors(xc, yc, sampling):
    """(case, worst relative error over the pixels >= FLOOR * peak, at which pixel)."""
    imgs = galmoss_images(xc, yc, sampling)
    out = []
    for (n, r_e, q), img in zip(CASES, imgs):
        ref = reference_values(n, r_e, q, xc, yc)
        peak = max(ref.values())
        assert img.max() == pytest.approx(peak, rel=TOL)
        worst, where = 0.0, None
        for (i, j), v in ref.items():
            if v >= FLOOR * peak:
                e = abs(img[i, j] - v) / v
                if e > worst:
                    worst, where = e, ((i, j), v / peak)
        out.append(((n, r_e, q), worst, where))
    return out


def check(xc, yc, sampling):
    rows = worst_errors(xc, yc, sampling)
    bad = [r for r in rows if not r[1] <= TOL]
    msg = "\n".join(f"  n={c[0]} r_e={c[1]} q={c[2]}: {e:.3g} relative at pixel (row, col) {w[0]} "
                    f"holding {w[1]:.3g} of the peak" for c, e, w in bad)
    assert not bad, f"centre {(xc, yc)}: {len(bad)} of {len(rows)} cases exceed {TOL:g}:\n{msg}"
    return max(r[1] for r in rows)


# ---------------------------------------------------------------------------------------------
def test_reference_flux():
    """The independent reference integrates to the total flux (over a large area)."""
    for n, r_e, q in ((0.5, 1.0, 0.3), (4.0, 0.5, 1.0), (8.0, 3.0, 0.3)):
        f = reference_sersic(n, r_e, q, PA)
        # the profile is symmetric: 4 x the quadrant, in polar coordinates about the centre
        b = special.gammaincinv(2 * n, 0.5)
        r_max = r_e * (60.0 / b) ** n         # exp(-60) of I_e: nothing left beyond
        tot = integrate.dblquad(lambda r, t: r * f(r * math.sin(t), r * math.cos(t)),
                                0.0, 2 * math.pi, 0.0, r_max, epsrel=1e-10)[0]
        assert tot == pytest.approx(1.0, rel=1e-8)


def test_reference_graded_split_equals_plain_split():
    """The graded substitution on the centre pixel gives the plain dblquad answer."""
    xc, yc = NEAR_EDGE_Y
    for n in (0.5, 2.0):
        f = reference_sersic(n, 1.0, 0.3, PA)
        xs, ys = (15 - 0.5 - xc, 0.0, 15 + 0.5 - xc), (15 - 0.5 - yc, 0.0, 15 + 0.5 - yc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            plain = sum(integrate.dblquad(f, xa, xb, ya, yb, epsabs=0.0, epsrel=1e-10)[0]
                        for xa, xb in zip(xs[:-1], xs[1:]) for ya, yb in zip(ys[:-1], ys[1:]))
        assert reference_pixel(f, xc, yc, 15, 15) == pytest.approx(plain, rel=1e-11)


def test_integrate_pixels_generic_position():
    check(*GENERIC, gm.Sampling())


@pytest.mark.parametrize("where", ["x", "y"])
def test_integrate_pixels_near_pixel_edge(where):
    """Centre a hair from a pixel edge, compact flattened profiles (q=0.3, r_e=0.5 px): the
    default quadrature (n_mid=8, n_theta=48, n_r=24) holds 1e-3 (measured <= 7e-5)."""
    check(*(NEAR_EDGE_X if where == "x" else NEAR_EDGE_Y), gm.Sampling())


@pytest.mark.parametrize("where", ["generic", "x", "y"])
def test_integrate_pixels_gauss_legendre_base(where):
    """The 3 x 3 Gauss-Legendre base rule: the same grid within 1e-3 (measured <= 7e-5)."""
    check(*{"generic": GENERIC, "x": NEAR_EDGE_X, "y": NEAR_EDGE_Y}[where], GAUSS3)


WIDE = (81, 81)
WIDE_CENTRE = (40.3, 39.8)
WIDE_CASES = [(n, r, q) for n in (0.3, 0.5, 1.0, 2.0, 4.0) for r in (2.0, 4.0, 6.0, 10.0) for q in (1.0, 0.3)]


def _wide_pixels():
    """Pixels 8 to 38 px from the centre along the axes of the ellipse, the diagonal and the
    grid axes: where only the corrected midpoint rule and the ring window integrate."""
    xc, yc = WIDE_CENTRE
    t = math.radians(PA)
    dirs = ((-math.sin(t), math.cos(t)), (math.cos(t), math.sin(t)), (math.sqrt(0.5), math.sqrt(0.5)), (1.0, 0.0),
            (0.0, 1.0))
    out = {(round(yc + s * d * uy), round(xc + s * d * ux)) for d in range(8, 40, 3) for ux, uy in dirs
           for s in (1, -1)}
    return sorted((i, j) for i, j in out if 0 <= i < WIDE[0] and 0 <= j < WIDE[1])


@functools.partial(jax.jit, static_argnames=("sampling",))
def _wide_images(n, r_e, q, sampling):
    def one(n, r_e, q):
        p = dict(n=n, r_e=r_e, q=q, pa=jnp.asarray(PA, n.dtype), c0=jnp.zeros_like(n), mag=jnp.zeros_like(n))
        return integrate_pixels(lambda dx, dy: sersic_brightness(p, dx, dy, 0.0), *WIDE_CENTRE, WIDE,
                                grading=SERSIC.grading(p), **sampling.quadrature())
    return jax.vmap(one)(n, r_e, q)


def test_integrate_pixels_outskirts_of_larger_profiles():
    """Away from the centre of larger profiles (r_e up to 10 px on an 81 x 81 grid), where the
    default rule is the sixth-order corrected midpoint (beyond the 31-pixel ring window):
    every pixel holding >= 1e-3 of the peak within 1e-3 of dblquad (measured <= 5e-5; the
    tails of low-n profiles are the hardest: a 21-pixel ring gives 1.3e-3 for n = 0.3)."""
    n, r_e, q = (jnp.asarray([c[k] for c in WIDE_CASES], jnp.float64) for k in range(3))
    imgs = np.asarray(_wide_images(n, r_e, q, gm.Sampling()))
    xc, yc = WIDE_CENTRE
    bad = []
    for (n_, r_, q_), img in zip(WIDE_CASES, imgs):
        f = reference_sersic(n_, r_, q_, PA)
        for i, j in _wide_pixels():
            if img[i, j] < FLOOR * img.max():
                continue
            v = integrate.dblquad(f, j - 0.5 - xc, j + 0.5 - xc, i - 0.5 - yc, i + 0.5 - yc, epsabs=0.0,
                                  epsrel=1e-10)[0]
            if abs(img[i, j] - v) > TOL * v:
                bad.append((n_, r_, q_, (i, j), abs(img[i, j] - v) / v))
    assert not bad, bad


def test_render_uses_the_same_integration():
    """render() without a PSF returns exactly these pixel integrals (flux scaled by mag/zp)."""
    n, r_e, q = 4.0, 1.0, 0.3
    img = gm.render("sersic", dict(x0=GENERIC[0], y0=GENERIC[1], mag=21.0, r_e=r_e, n=n, q=q, pa=PA),
                    SHAPE, zeropoint=23.5)
    ref = reference_values(n, r_e, q, *GENERIC)
    flux = 10 ** (-0.4 * (21.0 - 23.5))
    for (i, j), v in ref.items():
        if v >= FLOOR * max(ref.values()):
            assert float(img[i, j]) == pytest.approx(flux * v, rel=TOL)


# ---------------------------------------------------------------------------------------------
# centre on a pixel corner / edge / centre: finite values and gradients
# ---------------------------------------------------------------------------------------------
POSITIONS = {"corner": (15.5, 14.5), "vertical edge": (15.5, 14.0), "horizontal edge": (15.0, 14.5),
             "centre": (15.0, 14.0)}
GRAD_NS = (0.3, 0.5, 1.0, 2.0, 4.0, 8.0)
_W = np.random.default_rng(0).normal(size=SHAPE)


def _loss(xc, yc, n):
    p = dict(n=n, r_e=jnp.asarray(1.0), q=jnp.asarray(0.6), pa=jnp.asarray(PA), c0=jnp.asarray(0.0),
             mag=jnp.asarray(0.0))
    img = integrate_pixels(lambda dx, dy: sersic_brightness(p, dx, dy, 0.0), xc, yc, SHAPE,
                           grading=SERSIC.grading(p))
    return jnp.sum(jnp.asarray(_W) * img), img


_value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(_loss, argnums=(0, 1), has_aux=True)))
_value = jax.jit(jax.vmap(lambda xc, yc, n: _loss(xc, yc, n)[0]))


@functools.lru_cache(maxsize=None)
def _on_grid_lines():
    """Values, images and gradients for every (position, n), in one compiled call."""
    keys = [(w, n) for w in sorted(POSITIONS) for n in GRAD_NS]
    xc = jnp.asarray([POSITIONS[w][0] for w, _ in keys])
    yc = jnp.asarray([POSITIONS[w][1] for w, _ in keys])
    ns = jnp.asarray([n for _, n in keys])
    (val, imgs), (gx, gy) = _value_and_grad(xc, yc, ns)
    h = 1e-4
    fdx = (_value(xc + h, yc, ns) - _value(xc - h, yc, ns)) / (2 * h)
    fdy = (_value(xc, yc + h, ns) - _value(xc, yc - h, ns)) / (2 * h)
    # one-sided differences that stay on one side of a pixel edge (the windows do not move)
    d = 1e-6
    fdx_side = ((_value(xc + 2 * d, yc, ns) - _value(xc + d, yc, ns)) / d,
                (_value(xc - d, yc, ns) - _value(xc - 2 * d, yc, ns)) / d)
    fdy_side = ((_value(xc, yc + 2 * d, ns) - _value(xc, yc + d, ns)) / d,
                (_value(xc, yc - d, ns) - _value(xc, yc - 2 * d, ns)) / d)
    out = {}
    for k, key in enumerate(keys):
        out[key] = tuple(np.asarray(a[k]) for a in (val, imgs, gx, gy, fdx, fdy)) + (
            tuple(float(a[k]) for a in fdx_side), tuple(float(a[k]) for a in fdy_side))
    return out


@pytest.mark.parametrize("where", sorted(POSITIONS))
def test_centre_on_grid_lines_finite_values_and_gradients(where):
    """Centre exactly on a pixel corner / edge / centre: finite, non-negative images, finite
    jax.grad with respect to (xc, yc); along a coordinate that is an integer (the integration
    windows do not move there) the gradient equals central finite differences.  Along a
    coordinate on a pixel edge the windows switch, and the image jumps by the integration
    error (<= 4e-4 of the peak), so central differences across it are meaningless; there the
    gradient lies between the one-sided differences taken on either side (1e-6 px away, the
    windows fixed), which bracket the derivative.  (A centre on a pixel edge once lost the
    derivative of the corner function along that edge: a Jacobian in x0 wrong by 100 %.)"""
    xc, yc = POSITIONS[where]
    res = _on_grid_lines()
    for n in GRAD_NS:
        val, img, gx, gy, fdx, fdy, sides_x, sides_y = res[(where, n)]
        for g, sides in ((float(gx), sides_x), (float(gy), sides_y)):
            slack = 1e-3 * abs(g) + 1e-6
            assert min(sides) - slack <= g <= max(sides) + slack, (where, n, g, sides)
        assert np.isfinite(val) and np.all(np.isfinite(img)), n
        assert np.all(img >= 0), n
        assert np.isfinite(gx) and np.isfinite(gy), n
        if n <= 2.0:    # flux: 1 minus what falls off the 31 x 31 stamp (n = 4, 8: >= 1e-2)
            assert abs(img.sum() - 1.0) < 1e-3, n
        if float(xc).is_integer():
            assert gx == pytest.approx(fdx, rel=1e-4, abs=1e-6), n
        if float(yc).is_integer():
            assert gy == pytest.approx(fdy, rel=1e-4, abs=1e-6), n


def test_render_gradient_on_pixel_corner():
    """jax.grad through render() with the centre on a pixel corner and on a pixel centre."""
    def loss(x0, y0):
        img = gm.render("sersic", dict(x0=x0, y0=y0, mag=20.0, r_e=0.8, n=4.0, q=0.5, pa=-20.0),
                        (21, 21), zeropoint=25.0)
        return jnp.sum(img ** 2)

    for x0, y0 in ((10.5, 10.5), (10.0, 10.0), (10.5, 10.0)):
        g = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x0), jnp.asarray(y0))
        assert all(np.isfinite(float(v)) for v in g)


def test_positive_profiles_give_no_negative_pixels():
    """The corrected midpoint rule has negative outer weights; in the far tail of a very
    compact profile (a Gaussian of FWHM 0.8 px falls by many decades between neighbouring
    pixels) and beyond a truncation (Ferrer) no pixel may come out negative: the Poisson
    statistics take the model's logarithm."""
    img = np.asarray(gm.render("gaussian", dict(x0=20.2, y0=20.1, mag=10.0, fwhm=0.8, q=0.5, pa=10.0), (41, 41),
                               zeropoint=20.0))
    assert img.min() >= 0.0 and img.max() > 0.0
    img = np.asarray(gm.render("ferrer", dict(x0=30.2, y0=30.1, mu_0=10.0, r_out=25.0, alpha=0.5, beta=0.5, q=0.8,
                                              pa=10.0), (61, 61), zeropoint=20.0))
    assert img.min() >= 0.0 and img.max() > 0.0
