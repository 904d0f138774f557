"""Modified Ferrer profile (GALFIT ``ferrer``), used for bars and lenses."""
from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammaln

from ..geometry import boxiness_area_ratio, ellipse_radius, flux_from_mag, safe_pow
from ._spec import Param, ProfileSpec, centre_params, register_profile, shape_params


def _ferrer_shape(r, r_out, alpha, beta):
    """(1 - (r/r_out)^(2-beta))^alpha inside r_out, 0 beyond; finite value and gradient
    everywhere (the centre and the truncation radius included)."""
    x = r / r_out
    base = 1.0 - safe_pow(x, 2.0 - beta)
    base = jnp.where(x < 1.0, base, 0.0)      # never a negative base: no NaN outside r_out
    return safe_pow(base, alpha)


def ferrer_brightness(p, dx, dy, zeropoint):
    """Modified Ferrer profile (GALFIT ``ferrer``; Peng et al. 2010, eq. 8):

    I(r) = I_0 (1 - (r/r_out)^(2 - beta))^alpha   for r < r_out,   I(r) = 0 beyond,

    with ``I_0 = 10^(-0.4 (mu_0 - zp))`` the central surface brightness.  As in GALFIT,
    ``alpha`` sets the sharpness of the outer truncation and ``beta`` (< 2) the central
    slope (``beta = 0``: the classical Ferrers (1 - (r/r_out)^2)^alpha).

    Parameters: ``mu_0`` (mag / pixel^2), ``r_out`` truncation radius (pixels, along the major
    axis), ``alpha``, ``beta`` (dimensionless), ``q``, ``pa``, ``c0``.
    Total flux: ``F = 2 pi q I_0 r_out^2 B(2/(2-beta), alpha+1) / ((2-beta) R(c0))``.
    """
    r = ellipse_radius(dx, dy, p["q"], p["pa"], p["c0"])
    i0 = flux_from_mag(p["mu_0"], zeropoint)
    return i0 * _ferrer_shape(r, p["r_out"], p["alpha"], p["beta"])


def ferrer_total_flux(p, zeropoint):
    a = 2.0 - p["beta"]
    s, t = 2.0 / a, p["alpha"] + 1.0
    log_beta_fn = gammaln(s) + gammaln(t) - gammaln(s + t)
    return (flux_from_mag(p["mu_0"], zeropoint) * 2.0 * jnp.pi * p["q"] * p["r_out"] ** 2
            * jnp.exp(log_beta_fn) / (a * boxiness_area_ratio(p["c0"])))


FERRER = register_profile(ProfileSpec(
    name="ferrer",
    params=centre_params() + (
        Param("mu_0", 20.0, -10.0, 40.0, unit="mag / pixel^2", doc="central surface brightness"),
        Param("r_out", 10.0, 0.1, 2000.0, unit="pixel", doc="outer truncation radius along the major axis"),
        Param("alpha", 2.0, 0.05, 10.0, unit="", doc="outer truncation sharpness"),
        Param("beta", 0.0, -2.0, 1.9, unit="", doc="central slope (< 2)"),
    ) + shape_params(),
    brightness=ferrer_brightness,
    magnitude="mu_0",   # the brightness is 10^(-0.4 (mu_0 - zeropoint)) times the rest
    total_flux=ferrer_total_flux,
    # (r/r_out)^(2-beta) becomes u^(k(2-beta)) under r = R u^k: smooth for k = 1/(2-beta).
    grading=lambda p: jnp.clip(1.0 / (2.0 - p["beta"]), 1.0, 10.0),
    doc=ferrer_brightness.__doc__,
))
