"""Modified King profile (GALFIT ``king``; Elson 1999), and the radial flux quadrature shared
by the profiles whose total flux has no closed form (King, broken exponential, core-Sérsic).
"""
from __future__ import annotations


import jax.numpy as jnp

from ..geometry import boxiness_area_ratio, ellipse_radius, flux_from_mag
from ._quadrature import log_grid, radial_flux_quadrature
from ._spec import Param, ProfileSpec, centre_params, register_profile, shape_params


# Radial flux quadrature -----------------------------------------------------------------------
def _king_shape(r, r_c, r_t, alpha):
    """King profile divided by its central value, for ``r >= 0`` (0 beyond ``r_t``).

    Written as ``[B expm1((L_t - L_r)/alpha) / (-expm1(-L_t/alpha))]^alpha`` with
    ``L = log1p((r/r_c)^2)`` and ``B = (1 + (r_t/r_c)^2)^(-1/alpha)``: no cancellation for any
    ``r_t / r_c`` (the classical ``1/(1+x^2)^(1/alpha) - 1/(1+x_t^2)^(1/alpha)`` loses every
    digit when ``r_t << r_c``).
    """
    # Guard: the formula is valid for any r_t > 0 (r_t < r_c is an unusual but finite King
    # shape), only r_t -> 0 makes it 0/0; floor r_t / r_c at 1e-6 (far below the bounds).
    xt = jnp.maximum(r_t / r_c, 1e-6)
    lt = jnp.log1p(xt * xt)
    x = r / r_c
    lr = jnp.log1p(x * x)
    num = jnp.exp(-lt / alpha) * jnp.expm1((lt - lr) / alpha)
    den = -jnp.expm1(-lt / alpha)
    v = num / den
    ok = (x < xt) & (v > 0)
    return jnp.where(ok, jnp.exp(alpha * jnp.log(jnp.where(ok, v, 1.0))), 0.0)


def king_brightness(p, dx, dy, zeropoint):
    """Modified King profile (GALFIT ``king``; Elson 1999), truncated at ``r_t``:

    I(r) = I_0 [1 - 1/(1 + (r_t/r_c)^2)^(1/alpha)]^(-alpha)
               [1/(1 + (r/r_c)^2)^(1/alpha) - 1/(1 + (r_t/r_c)^2)^(1/alpha)]^alpha   for r < r_t,
    I(r) = 0 beyond (Peng et al. 2010; Imfit's ModifiedKing).  ``I_0 = 10^(-0.4 (mu_0 -
    zp))`` is the central surface brightness;
    ``alpha = 2`` is the classical King (1962) profile.

    Parameters: ``mu_0`` (mag / pixel^2), ``r_c`` core radius and ``r_t`` truncation radius
    (pixels, along the major axis), ``alpha`` (dimensionless power), ``q``, ``pa``, ``c0``.
    Total flux: ``2 pi q / R(c0) int_0^r_t I(r) r dr`` (fixed-node quadrature).
    """
    r = ellipse_radius(dx, dy, p["q"], p["pa"], p["c0"])
    i0 = flux_from_mag(p["mu_0"], zeropoint)
    return i0 * _king_shape(r, p["r_c"], p["r_t"], p["alpha"])


def king_total_flux(p, zeropoint):
    r_c, r_t, alpha = p["r_c"], p["r_t"], p["alpha"]
    r_t = jnp.maximum(r_t, 1e-6 * r_c)          # same guard as the brightness
    lo = jnp.minimum(r_c, r_t) * 1e-7           # the shape is flat (= 1) below ~1e-3 r_c
    edges = log_grid(lo, r_t, 64)
    integral = radial_flux_quadrature(lambda r: _king_shape(r, r_c, r_t, alpha), edges)
    return (flux_from_mag(p["mu_0"], zeropoint) * 2.0 * jnp.pi * p["q"] * integral
            / boxiness_area_ratio(p["c0"]))


KING = register_profile(ProfileSpec(
    name="king",
    params=centre_params() + (
        Param("mu_0", 20.0, -10.0, 40.0, unit="mag / pixel^2", doc="central surface brightness"),
        Param("r_c", 3.0, 0.05, 500.0, unit="pixel", doc="core radius along the major axis"),
        Param("r_t", 30.0, 0.1, 5000.0, unit="pixel", doc="truncation (tidal) radius along the major axis"),
        Param("alpha", 2.0, 0.1, 10.0, unit="", doc="power-law index (2 = classical King)"),
    ) + shape_params(),
    brightness=king_brightness,
    magnitude="mu_0",   # the brightness is 10^(-0.4 (mu_0 - zeropoint)) times the rest
    total_flux=king_total_flux,
    doc=king_brightness.__doc__,
))
