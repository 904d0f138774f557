"""Broken exponential disk (Imfit ``BrokenExponential``; Erwin et al. 2008)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..geometry import boxiness_area_ratio, ellipse_radius, flux_from_mag
from ._spec import Param, ProfileSpec, centre_params, register_profile, shape_params
from ._quadrature import log_grid, radial_flux_quadrature


def _broken_exp_log_shape(r, h1, h2, r_b, alpha):
    """log(I / I_0): -r/h1 + (1/alpha)(1/h1 - 1/h2) [softplus(alpha (r - r_b)) - softplus(-alpha r_b)].

    The second term is log S + log[1 + exp(alpha (r - r_b))]^(...): never overflows, and
    log I(0) = 0 exactly.
    """
    c = (1.0 / h1 - 1.0 / h2) / alpha
    return -r / h1 + c * (jax.nn.softplus(alpha * (r - r_b)) - jax.nn.softplus(-alpha * r_b))


def broken_exponential_brightness(p, dx, dy, zeropoint):
    """Broken exponential (Imfit ``BrokenExponential``; Erwin, Pohlen & Beckman 2008):

    I(r) = S I_0 exp(-r/h1) [1 + exp(alpha (r - r_b))]^((1/alpha)(1/h1 - 1/h2)),
    S = (1 + exp(-alpha r_b))^(-(1/alpha)(1/h1 - 1/h2)),

    an exponential of scale length ``h1`` inside the break radius ``r_b`` and ``h2`` outside,
    joined over a width ~1/alpha.  ``I_0 = 10^(-0.4 (mu_0 - zp))`` is the central surface
    brightness (S makes I(0) = I_0).

    Parameters: ``mu_0`` (mag / pixel^2), ``h1``, ``h2``, ``r_b`` (pixels, along the major axis),
    ``alpha`` (1 / pixel), ``q``, ``pa``, ``c0``.  Evaluated in log space with softplus.
    Total flux: ``2 pi q / R(c0) int_0^inf I(r) r dr`` (fixed-node quadrature).
    """
    r = ellipse_radius(dx, dy, p["q"], p["pa"], p["c0"])
    log_i0 = jnp.log(flux_from_mag(p["mu_0"], zeropoint))
    return jnp.exp(log_i0 + _broken_exp_log_shape(r, p["h1"], p["h2"], p["r_b"], p["alpha"]))


def broken_exponential_total_flux(p, zeropoint):
    h1, h2, r_b, alpha = p["h1"], p["h2"], p["r_b"], p["alpha"]
    # geometric panels from far inside the smaller scale length to 60 scale lengths past the
    # break, plus panels of width ~1/alpha clustered around the break and of width ~h2 past it.
    lo = 1e-4 * jnp.minimum(h1, h2)
    hi = r_b + 60.0 * jnp.maximum(h1, h2)
    steps = jnp.asarray([0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    near = r_b + jnp.concatenate([-steps[::-1] / alpha, jnp.zeros(1), steps / alpha,
                                  2.0 * steps * h2])   # and steps of h2 past a break at r_b >> h2
    edges = jnp.sort(jnp.concatenate([log_grid(lo, hi, 64), jnp.clip(near, lo, hi)]))
    integral = radial_flux_quadrature(
        lambda r: jnp.exp(_broken_exp_log_shape(r, h1, h2, r_b, alpha)), edges)
    return (flux_from_mag(p["mu_0"], zeropoint) * 2.0 * jnp.pi * p["q"] * integral
            / boxiness_area_ratio(p["c0"]))


BROKEN_EXPONENTIAL = register_profile(ProfileSpec(
    name="broken_exponential",
    params=centre_params() + (
        Param("mu_0", 20.0, -10.0, 40.0, unit="mag / pixel^2", doc="central surface brightness"),
        Param("h1", 10.0, 0.05, 500.0, unit="pixel", doc="inner exponential scale length"),
        Param("h2", 5.0, 0.05, 500.0, unit="pixel", doc="outer exponential scale length"),
        Param("r_b", 20.0, 0.0, 1000.0, unit="pixel", doc="break radius along the major axis"),
        Param("alpha", 1.0, 0.01, 20.0, unit="1 / pixel", doc="sharpness of the break"),
    ) + shape_params(),
    brightness=broken_exponential_brightness,
    magnitude="mu_0",   # the brightness is 10^(-0.4 (mu_0 - zeropoint)) times the rest
    total_flux=broken_exponential_total_flux,
    doc=broken_exponential_brightness.__doc__,
))
