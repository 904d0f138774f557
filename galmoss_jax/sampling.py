"""Exact pixel integration of a profile, with fixed array shapes (jit- and vmap-friendly).

Each pixel's value is the integral of the surface brightness over the pixel's area, not the
value at its centre.  Nested fixed-size quadratures do this, each finer one overwriting a
smaller square around the profile centre:

* every pixel: the sixth-order corrected midpoint rule (``n_base=0``, the default: one
  evaluation per pixel, the centre values of each pixel and its neighbours two deep weighted
  so that the rule is exact for quintics), or an ``n_base x n_base`` Gauss-Legendre rule;
  profiles are smooth on the pixel scale away from the centre;
* a ``ring_window`` square: ``n_ring x n_ring`` Gauss-Legendre points (the tails of compact
  low-n profiles, which still curve on the pixel scale);
* a ``mid_window`` square: ``n_mid x n_mid`` Gauss-Legendre points (steep, not singular);
* a ``window x window`` block of pixels around the profile centre, where profiles are steep
  or cuspy (Sérsic n >> 1, Nuker cusps): the integral over any rectangle is written with the
  corner function ``C(X, Y) = int_0^X int_0^Y f`` measured from the profile centre,
  ``P = C(x2, y2) - C(x1, y2) - C(x2, y1) + C(x1, y1)``, and ``C`` is computed in polar
  coordinates about the centre: two triangles with a vertex at the centre, each mapped to the
  unit square by a Duffy transformation ``(x, y) = u^k (edge point)``, Gauss-Legendre along the
  far edge and in ``u``.  The ``r dr`` area element and the grading remove the cusp, so the
  quadrature converges like that of a smooth function.  ``k`` comes from the profile
  (``k = n`` for a Sérsic: the integrand then becomes ``u^(2n-1) exp(-beta u)``).

This replaces the nested sub-pixel grids of GALFIT and Imfit (Imfit: 20x20 sub-pixels within
4 px of the centre): it reaches 1e-5 relative on the central pixels of n = 8 profiles at a fixed
cost of ``(window + 1)^2 * 2 * n_theta * n_r`` evaluations, independent of the profile.  On a
168 x 168 padded grid the defaults evaluate the profile ~0.1 M times (3x3 Gauss-Legendre on
every pixel: ~0.3 M), and a Jacobian of the render costs about a third of what it did then.
Written by hand: no library offers a vmappable fixed-shape pixel integrator of this kind.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def _gauss_legendre01(n: int):
    """Gauss-Legendre nodes and weights on [0, 1] (NumPy float64)."""
    t, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (t + 1.0), 0.5 * w


def _corner_nodes(X, Y, k, n_theta, n_r):
    """Quadrature nodes of the corner function ``C(X, Y) = int_0^X int_0^Y f`` and a function
    that turns the values of ``f`` at those nodes into ``C``.

    ``C`` is signed (it changes sign with ``X`` and with ``Y``), so rectangle integrals follow by
    inclusion-exclusion.  ``X, Y``: arrays of the same shape (offsets from the centre).
    """
    dtype = X.dtype
    tn, tw = (jnp.asarray(a, dtype) for a in _gauss_legendre01(n_theta))
    un, uw = (jnp.asarray(a, dtype) for a in _gauss_legendre01(n_r))
    # C = X Y * (the mean of f over the rectangle [0, X] x [0, Y]), written in the signed X, Y
    # so that it is smooth where a pixel edge passes through the centre (X = 0: C = 0, but
    # dC/dX = int_0^Y f(0, y) dy is not; taking |X| and sign(X) there lost that derivative and
    # gave a wrong Jacobian in x0 for a centre on a pixel edge).  Only X = Y = 0, where C and
    # its derivatives are 0, avoids evaluating f (a cusp may be infinite at the centre).
    empty = (X == 0) & (Y == 0)
    Xs = jnp.where(empty, 1.0, X)[..., None, None]
    Ys = jnp.where(empty, 1.0, Y)[..., None, None]
    kk = jnp.asarray(k, dtype)
    uk = (un ** kk)[:, None]                                  # (n_r, 1)
    # Duffy map of each triangle with a vertex at the centre: (x, y) = u^k (edge point);
    # Jacobian k u^(2k-1) times the edge's distance from the centre.
    w_u = (uw * kk * un ** (2.0 * kk - 1.0))[:, None]         # (n_r, 1)
    t = tn[None, :]                                           # (1, n_theta)
    # triangle 1: far edge x = X, y = s Y (s in [0, 1]);  triangle 2: far edge y = Y, x = s X
    full = jnp.broadcast_shapes(Xs.shape, (n_r, n_theta))
    dx = jnp.stack([jnp.broadcast_to(uk * Xs, full), jnp.broadcast_to(uk * (t * Xs), full)], axis=-3)
    dy = jnp.stack([jnp.broadcast_to(uk * (t * Ys), full), jnp.broadcast_to(uk * Ys, full)], axis=-3)
    w = w_u * tw[None, :]

    def combine(vals):
        C = jnp.sum(vals * w, axis=(-3, -2, -1)) * Xs[..., 0, 0] * Ys[..., 0, 0]
        return jnp.where(empty, 0.0, C)

    return dx, dy, combine


def _gl_nodes(x_first, y_first, nx, ny, pixel, n, dtype):
    """Tensor Gauss-Legendre (n x n) nodes over a (ny, nx) block of pixels, and the combiner."""
    tb, wb = (jnp.asarray(a, dtype) for a in _gauss_legendre01(n))
    px = x_first + pixel * jnp.arange(nx, dtype=dtype)
    py = y_first + pixel * jnp.arange(ny, dtype=dtype)
    xs = (px[:, None] + pixel * (tb - 0.5)).reshape(-1)
    ys = (py[:, None] + pixel * (tb - 0.5)).reshape(-1)
    X, Y = jnp.broadcast_arrays(xs[None, :], ys[:, None])

    def combine(vals):
        return jnp.einsum("ianb,a,b->in", vals.reshape(ny, n, nx, n), wb, wb) * (pixel * pixel)

    return X, Y, combine


# Weights of the sixth-order corrected midpoint rule on the centre values at offsets -2..2
# pixels.  The integral over a pixel of side h is h (f + h^2 f2 / 24 + h^4 f4 / 1920 + O(h^6))
# with f2, f4 the second and fourth derivatives at its centre; taking them from the five-point
# differences gives these weights (exact for quintics; they sum to 1).
_MID6 = (-1 / 288 + 1 / 1920, 16 / 288 - 4 / 1920, 1 - 30 / 288 + 6 / 1920)


def _midpoint6_nodes(x_first, y_first, nx, ny, pixel, dtype):
    """Pixel-centre nodes over a (ny, nx) block grown by two pixels on every side, and the
    combiner of the sixth-order corrected midpoint rule (weights ``_MID6`` along each axis; the
    tensor product also carries the mixed terms of the 2-D Taylor expansion).

    One evaluation per pixel where a Gauss-Legendre rule costs ``n_base^2``; it holds where the
    profile is smooth on the pixel scale, i.e. outside the central windows (which have their
    own rules).  In the far tail of a compact Gaussian-like profile (a few sigma out, sigma of
    2.5 px) it is within 1e-4 where the 3-point (4th-order) correction is off by 5e-3."""
    px = x_first + pixel * jnp.arange(-2, nx + 2, dtype=dtype)
    py = y_first + pixel * jnp.arange(-2, ny + 2, dtype=dtype)
    X, Y = jnp.broadcast_arrays(px[None, :], py[:, None])
    w2, w1, w0 = _MID6

    def combine(vals):
        rows = w2 * (vals[:-4] + vals[4:]) + w1 * (vals[1:-3] + vals[3:-1]) + w0 * vals[2:-2]
        cols = w2 * (rows[:, :-4] + rows[:, 4:]) + w1 * (rows[:, 1:-3] + rows[:, 3:-1]) + w0 * rows[:, 2:-2]
        # the outer weights are negative: where the profile falls by >~ 300x over two pixels
        # (the far tail of a very compact profile, a truncation edge) the corrected value
        # could take the wrong sign; keep the centre value there, so that a positive profile
        # never integrates to a negative pixel (Poisson statistics take its logarithm)
        centre = vals[2:-2, 2:-2]
        cols = jnp.where((cols < 0) != (centre < 0), centre, cols)
        return cols * (pixel * pixel)

    return X, Y, combine


def _window_start(c, start, pixel, size, K):
    """First index of a K-pixel window centred on the pixel holding ``c``, clipped to the grid."""
    ic = jnp.round((c - start) / pixel).astype(jnp.int32)
    return jnp.clip(ic - K // 2, 0, size - K)


def integrate_pixels(f, xc, yc, shape, *, x_start=0.0, y_start=0.0, pixel=1.0, grading=1.0,
                     n_base=3, ring_window=0, n_ring=3, mid_window=15, n_mid=8, window=3, n_theta=48,
                     n_r=24):
    """Integrals of a surface brightness over the pixels of a grid.

    Args:
        f: ``f(dx, dy) -> surface brightness`` (per unit area in the caller's units), vectorised,
            with ``dx, dy`` offsets from the profile centre.  It is called ONCE, on the nodes of
            all three quadratures at once, so that per-galaxy constants inside it are computed
            once.
        xc, yc: profile centre (same coordinates as the grid).
        shape: static ``(H, W)``.
        x_start, y_start: coordinates of the centre of pixel ``[0, 0]``.
        pixel: pixel side length (1 for image pixels, ``1/f`` for an ``f``-times finer grid).
        grading: radial grading exponent ``k >= 1`` for the central window (may be traced).
        n_base: Gauss-Legendre points per axis for every pixel, or 0 for the sixth-order
            corrected midpoint rule (one evaluation per pixel; see ``_midpoint6_nodes``).
        ring_window, n_ring: a ``ring_window``-pixel square around the centre gets
            ``n_ring x n_ring`` Gauss-Legendre points per pixel (0 = none): with the corrected
            midpoint base (``n_base=0``) it covers the pixels whose profile still curves on the
            pixel scale (the tails of compact low-n profiles).
        mid_window, n_mid: a ``mid_window``-pixel square around the centre gets
            ``n_mid x n_mid`` Gauss-Legendre points per pixel (steep but not singular there).
        window: side (in pixels) of the block around the centre integrated with the corner
            function (the pixel holding the centre and its neighbours).
        n_theta, n_r: nodes along each triangle's far edge and along the radius.

    Returns:
        ``(H, W)`` array: the integral of ``f`` over each pixel (surface brightness x area).
    """
    dx, dy, assemble = pixel_nodes(xc, yc, shape, x_start=x_start, y_start=y_start, pixel=pixel,
                                   grading=grading, n_base=n_base, ring_window=ring_window, n_ring=n_ring,
                                   mid_window=mid_window, n_mid=n_mid, window=window, n_theta=n_theta, n_r=n_r)
    # one evaluation of f on every node
    return assemble(f(dx, dy))


def pixel_nodes(xc, yc, shape, *, x_start=0.0, y_start=0.0, pixel=1.0, grading=1.0, n_base=3, ring_window=0,
                n_ring=3, mid_window=15, n_mid=8, window=3, n_theta=48, n_r=24):
    """The nodes of :func:`integrate_pixels` (same arguments, less ``f``) and how to combine
    them: ``(dx, dy, assemble)``, where ``dx, dy`` (N,) are the offsets of every node from the
    centre and ``assemble(values)`` turns ``f``'s values at them into the ``(H, W)`` pixel
    integrals.  A caller that integrates one profile over two grids (the renderer: the image
    and the sub-pixel window around the centre) evaluates the profile once on both grids'
    nodes: the compiled program then holds one copy of the profile's arithmetic, not two."""
    H, W = shape
    dtype = jnp.result_type(xc, yc, float)
    xc = jnp.asarray(xc, dtype)
    yc = jnp.asarray(yc, dtype)
    stages = []  # (dx, dy, combine, (i0, j0) or None)
    if n_base == 0:
        X, Y, comb = _midpoint6_nodes(x_start, y_start, W, H, pixel, dtype)
    else:
        X, Y, comb = _gl_nodes(x_start, y_start, W, H, pixel, n_base, dtype)
    stages.append((X - xc, Y - yc, comb, None))

    finest = max(n_base, 1)
    for K2, n_gl in ((ring_window, n_ring), (mid_window, n_mid)):
        K2 = min(K2, H, W)
        if K2 > 0 and n_gl > finest:
            finest = n_gl
            j0 = _window_start(xc, x_start, pixel, W, K2)
            i0 = _window_start(yc, y_start, pixel, H, K2)
            X, Y, comb = _gl_nodes(x_start + pixel * j0.astype(dtype), y_start + pixel * i0.astype(dtype),
                                   K2, K2, pixel, n_gl, dtype)
            stages.append((X - xc, Y - yc, comb, (i0, j0)))

    K = min(window, H, W)
    if K > 0:
        j0 = _window_start(xc, x_start, pixel, W, K)
        i0 = _window_start(yc, y_start, pixel, H, K)
        m = jnp.arange(K + 1, dtype=dtype)
        cx = x_start + pixel * (j0.astype(dtype) + m - 0.5) - xc    # corner offsets (K + 1,)
        cy = y_start + pixel * (i0.astype(dtype) + m - 0.5) - yc
        CX, CY = jnp.meshgrid(cx, cy)                                # (K+1, K+1), [row, col]
        dx, dy, ccomb = _corner_nodes(CX, CY, grading, n_theta, n_r)

        def comb_pixels(vals, ccomb=ccomb):
            C = ccomb(vals)
            return C[1:, 1:] - C[:-1, 1:] - C[1:, :-1] + C[:-1, :-1]

        stages.append((dx, dy, comb_pixels, (i0, j0)))

    sizes = [a.size for a, _, _, _ in stages]
    dx = jnp.concatenate([a.reshape(-1) for a, _, _, _ in stages])
    dy = jnp.concatenate([b.reshape(-1) for _, b, _, _ in stages])

    def assemble(vals):
        img = None
        offset = 0
        for (a, _, comb, where), n in zip(stages, sizes):
            v = vals[offset: offset + n].reshape(a.shape)
            offset += n
            block = comb(v)
            img = block if where is None else jax.lax.dynamic_update_slice(img, block.astype(img.dtype), where)
        return img

    return dx, dy, assemble
