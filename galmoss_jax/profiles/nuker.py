"""Nuker profile (GALFIT ``nuker``; Lauer et al. 1995)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from ..geometry import boxiness_area_ratio, ellipse_radius, flux_from_mag
from ._spec import Param, ProfileSpec, centre_params, register_profile, shape_params

_LN2 = math.log(2.0)


def cusp_log_radius(r, r_b):
    """``log(r / r_b)`` with the exact centre ``r = 0`` replaced by ``r = 1e-6 r_b``.

    Double-where: the log is never taken of 0, so the value and every gradient stay finite
    (the sampler may evaluate the exact centre at a node it then discards).
    """
    pos = r > 0
    rs = jnp.where(pos, r, 1.0)
    return jnp.where(pos, jnp.log(rs / r_b), jnp.log(1e-6))


def _nuker_log_shape(s, alpha, beta, gamma):
    """log(I / I_b) at s = log(r / r_b): softplus form, no overflow for any alpha."""
    k = (beta - gamma) / alpha
    return k * (_LN2 - jax.nn.softplus(alpha * s)) - gamma * s


def nuker_brightness(p, dx, dy, zeropoint):
    """Nuker profile (GALFIT ``nuker``; Lauer et al. 1995):

    I(r) = I_b 2^((beta - gamma)/alpha) (r/r_b)^(-gamma) [1 + (r/r_b)^alpha]^((gamma - beta)/alpha)

    with ``I_b = 10^(-0.4 (mu_b - zp))`` the surface brightness at the break radius ``r_b``.
    ``gamma`` is the inner power-law slope, ``beta`` the outer one, ``alpha`` the sharpness of
    the transition.  The total flux is finite for ``gamma < 2 < beta``:

    F = 2 pi q r_b^2 I_b 2^((beta-gamma)/alpha) B((2-gamma)/alpha, (beta-2)/alpha) / (alpha R(c0)).

    Parameters: ``mu_b`` (mag / pixel^2), ``r_b`` (pixels, along the major axis), ``alpha``,
    ``beta``, ``gamma`` (dimensionless), ``q``, ``pa``, ``c0``.  Evaluated in log space; the
    exact centre (where the cusp is infinite for gamma > 0) is evaluated at r = 1e-6 r_b.
    """
    r = ellipse_radius(dx, dy, p["q"], p["pa"], p["c0"])
    s = cusp_log_radius(r, p["r_b"])
    log_ib = jnp.log(flux_from_mag(p["mu_b"], zeropoint))
    return jnp.exp(log_ib + _nuker_log_shape(s, p["alpha"], p["beta"], p["gamma"]))


def nuker_total_flux(p, zeropoint):
    alpha, beta, gamma = p["alpha"], p["beta"], p["gamma"]
    a, b = (2.0 - gamma) / alpha, (beta - 2.0) / alpha
    log_f = (jnp.log(flux_from_mag(p["mu_b"], zeropoint) * 2.0 * jnp.pi * p["q"] * p["r_b"] ** 2 / alpha)
             + (beta - gamma) / alpha * _LN2 + gammaln(a) + gammaln(b) - gammaln(a + b))
    return jnp.exp(log_f) / boxiness_area_ratio(p["c0"])


def cusp_grading(gamma):
    """Radial grading for an ``r^(-gamma)`` cusp: under ``r = R u^k`` the integrand
    ``r^(1-gamma) dr`` becomes ``k R^(2-gamma) u^(k(2-gamma)-1)``, smooth (linear) for
    ``k = 2/(2-gamma)``."""
    return jnp.clip(2.0 / (2.0 - gamma), 1.0, 8.0)


NUKER = register_profile(ProfileSpec(
    name="nuker",
    params=centre_params() + (
        Param("mu_b", 20.0, -10.0, 40.0, unit="mag / pixel^2", doc="surface brightness at the break radius"),
        Param("r_b", 5.0, 0.05, 500.0, unit="pixel", doc="break radius along the major axis"),
        Param("alpha", 2.0, 0.1, 10.0, unit="", doc="sharpness of the transition"),
        Param("beta", 3.0, 2.1, 10.0, unit="", doc="outer power-law slope (> 2 for a finite flux)"),
        Param("gamma", 0.5, 0.0, 1.5, unit="", doc="inner power-law slope (< 2 for a finite flux)"),
    ) + shape_params(),
    brightness=nuker_brightness,
    magnitude="mu_b",   # the brightness is 10^(-0.4 (mu_b - zeropoint)) times the rest
    total_flux=nuker_total_flux,
    grading=lambda p: cusp_grading(p["gamma"]),
    doc=nuker_brightness.__doc__,
))
