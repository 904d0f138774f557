"""Ellipse geometry shared by every elliptical profile.

Conventions (DESIGN.md A): ``pa`` is in degrees, counter-clockwise from the +y axis (up = 0,
left = 90); ``q = b/a``; radii are measured along the semi-major axis in pixels; the
generalised ellipse radius is ``r = (|x'|^(c0+2) + |y'/q|^(c0+2))^(1/(c0+2))`` with GALFIT's
boxiness ``c0`` (0 = ellipse, < 0 disky, > 0 boxy).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammaln


def rotate(dx, dy, pa):
    """Offsets from the centre (pixels) -> (major-axis, minor-axis) coordinates.

    ``dx, dy`` are offsets in pixels along the image x (column) and y (row) axes; ``pa`` is the
    position angle of the major axis in degrees counter-clockwise from +y.  Returns
    ``(xm, ym)``: the coordinate along the major axis and along the minor axis, in pixels.
    """
    t = jnp.deg2rad(pa)
    c, s = jnp.cos(t), jnp.sin(t)
    xm = -dx * s + dy * c
    ym = -dx * c - dy * s
    return xm, ym


def _safe_pow_sum(a, b, p):
    """(a^p + b^p)^(1/p) for a, b >= 0 with a finite gradient at a = b = 0."""
    # double-where: the untaken branch must not produce NaN gradients at the origin.
    zero = (a <= 0) & (b <= 0)
    a1 = jnp.where(zero, 1.0, a)
    b1 = jnp.where(zero, 1.0, b)
    # factor out the larger value to avoid overflow/underflow for large p
    m = jnp.maximum(a1, b1)
    r = m * ((a1 / m) ** p + (b1 / m) ** p) ** (1.0 / p)
    return jnp.where(zero, 0.0, r)


def ellipse_radius(dx, dy, q, pa, c0=0.0):
    """Generalised elliptical radius (pixels, along the major axis) of offsets ``dx, dy``.

    ``r = (|x'|^(c0+2) + |y'/q|^(c0+2))^(1/(c0+2))`` with ``x'`` along the major axis.
    The gradient is finite everywhere, the centre included.
    """
    xm, ym = rotate(dx, dy, pa)
    return _safe_pow_sum(jnp.abs(xm), jnp.abs(ym) / q, c0 + 2.0)


def boxiness_area_ratio(c0):
    """GALFIT's R(c0): area of the ellipse over that of the generalised ellipse (1 at c0 = 0).

    Total fluxes of elliptical profiles are divided by this factor
    (Peng et al. 2002, eq. 8: R = pi (c0+2) / (4 B(1/(c0+2), 1 + 1/(c0+2)))).
    """
    p = c0 + 2.0
    a, b = 1.0 / p, 1.0 + 1.0 / p
    log_beta = gammaln(a) + gammaln(b) - gammaln(a + b)
    return jnp.pi * p / (4.0 * jnp.exp(log_beta))


def safe_pow(x, p):
    """``x ** p`` for ``x >= 0`` with value 0 and a finite (zero) gradient at ``x = 0``."""
    pos = x > 0
    xs = jnp.where(pos, x, 1.0)
    return jnp.where(pos, xs ** p, 0.0)


def flux_from_mag(mag, zeropoint):
    """Total flux (image units) of a component of magnitude ``mag``: 10^(-0.4 (mag - zp))."""
    return 10.0 ** (-0.4 * (mag - zeropoint))


def mag_from_flux(flux, zeropoint):
    """Magnitude of a total flux (image units): zp - 2.5 log10(F)."""
    return zeropoint - 2.5 * jnp.log10(flux)
