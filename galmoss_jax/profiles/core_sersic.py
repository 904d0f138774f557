"""Core-Sérsic profile (Imfit ``Core-Sersic``; Graham et al. 2003, Trujillo et al. 2004)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..geometry import boxiness_area_ratio, ellipse_radius, flux_from_mag
from ._spec import Param, ProfileSpec, centre_params, register_profile, shape_params
from ._quadrature import radial_flux_quadrature
from .nuker import cusp_grading, cusp_log_radius
from .sersic import sersic_bn

_LN2 = math.log(2.0)
# Soft ceiling on log(I / I_b).  Inside the bounds, combinations such as r_b >> r_e with a
# small n make the profile rise above I_b by exp(1e19) towards the centre (the Sérsic factor is
# normalised at r_b); the ceiling keeps the image and its gradient finite.  It is 30% of the
# largest exponent of the floating type (213 in float64, 27 in float32), and changes I by a
# factor exp(-exp(log I/I_b - ceiling)): nothing for any realistic profile in float64.
def _log_cap(x):
    return 0.3 * float(np.log(jnp.finfo(jnp.result_type(x, float)).max))


def _core_sersic_log_shape(s, r_e, n, r_b, alpha, gamma):
    """log(I / I_b) at s = log(r / r_b), with rho = (r^alpha + r_b^alpha)^(1/alpha):

    log I/I_b = (gamma/alpha) [softplus(-alpha s) - ln 2]                  (= gamma log(rho/r) - ...)
                - b X_b expm1([softplus(alpha s) - ln 2] / (alpha n)),    X_b = (2^(1/alpha) r_b / r_e)^(1/n)

    (``b [(rho/r_e)^(1/n) - (2^(1/alpha) r_b/r_e)^(1/n)]`` without the cancellation of two
    large numbers), then the soft ceiling ``_log_cap``.
    """
    b = sersic_bn(n)
    log_xb = (_LN2 / alpha + jnp.log(r_b / r_e)) / n
    cusp = gamma / alpha * (jax.nn.softplus(-alpha * s) - _LN2)
    ser = -b * jnp.exp(log_xb) * jnp.expm1((jax.nn.softplus(alpha * s) - _LN2) / (alpha * n))
    log_i = cusp + ser
    cap = _log_cap(log_i)
    return cap - jax.nn.softplus(cap - log_i)


def core_sersic_brightness(p, dx, dy, zeropoint):
    """Core-Sérsic (Imfit ``Core-Sersic``; Graham et al. 2003, Trujillo et al. 2004):

    I(r) = I' [1 + (r_b/r)^alpha]^(gamma/alpha) exp(-b_n [(r^alpha + r_b^alpha) / r_e^alpha]^(1/(n alpha))),
    I'   = I_b 2^(-gamma/alpha) exp(b_n (2^(1/alpha) r_b / r_e)^(1/n)),

    a Sérsic profile (index ``n``, effective radius ``r_e``) outside the break radius ``r_b``
    and a power law ``r^(-gamma)`` inside it, joined with sharpness ``alpha``; ``b_n`` is the
    Sérsic b_n (:func:`galmoss_jax.profiles.sersic.sersic_bn`) and
    ``I_b = 10^(-0.4 (mu_b - zp))`` is the surface brightness at ``r_b``.

    Parameters: ``mu_b`` (mag / pixel^2), ``r_e``, ``r_b`` (pixels, along the major axis), ``n``,
    ``alpha``, ``gamma`` (dimensionless), ``q``, ``pa``, ``c0``.  Evaluated in log space; the
    exact centre is evaluated at r = 1e-6 r_b; log(I / I_b) has a soft ceiling (213 in float64,
    see ``_log_cap``) that keeps absurd parameter combinations finite.
    Total flux: ``2 pi q / R(c0) int_0^inf I(r) r dr`` (fixed-node quadrature).
    """
    r = ellipse_radius(dx, dy, p["q"], p["pa"], p["c0"])
    s = cusp_log_radius(r, p["r_b"])
    log_ib = jnp.log(flux_from_mag(p["mu_b"], zeropoint))
    return jnp.exp(log_ib + _core_sersic_log_shape(s, p["r_e"], p["n"], p["r_b"], p["alpha"], p["gamma"]))


def core_sersic_total_flux(p, zeropoint):
    r_e, n, r_b, alpha, gamma = p["r_e"], p["n"], p["r_b"], p["alpha"], p["gamma"]
    b = sersic_bn(n)
    # Work in s = log(r / r_b).  Inside r_b, log(I / I_b) <= -gamma s + M with M the (capped)
    # rise of the Sérsic factor towards the centre, so below s_lo = -(25 + M) / (2 - gamma)
    # lies < e^-25 of the flux (integrated exactly for a pure power law by the graded first
    # panel).  Beyond r_b the Sérsic variable X = b (rho/r_e)^(1/n) runs from X_b to
    # X_hi = X_b + 2n + 8 sqrt(2n) + 40, past the incomplete-gamma tail of order 2n.
    log_xb = (_LN2 / alpha + jnp.log(r_b / r_e)) / n
    x_b = b * jnp.exp(log_xb)
    rise = jnp.minimum(-b * jnp.exp(log_xb) * jnp.expm1(-_LN2 / (alpha * n)), _log_cap(x_b))
    s_lo = -(25.0 + rise) / (2.0 - gamma)
    x_hi = x_b + 2.0 * n + 8.0 * jnp.sqrt(2.0 * n) + 40.0
    s_hi = n * jnp.log(x_hi / b) + jnp.log(r_e / r_b)
    # 96 panels inside r_b, 128 beyond it, and panels of width ~1/alpha around it
    steps = jnp.asarray([0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    near = jnp.concatenate([-steps[::-1], steps]) / alpha
    inner = s_lo * jnp.linspace(1.0, 0.0, 97)
    outer = s_hi * jnp.linspace(0.0, 1.0, 129)[1:]
    s_edges = jnp.sort(jnp.concatenate([inner, outer, jnp.clip(near, s_lo, s_hi)]))

    def shape(r):
        return jnp.exp(_core_sersic_log_shape(jnp.log(r / r_b), r_e, n, r_b, alpha, gamma))

    integral = radial_flux_quadrature(shape, r_b * jnp.exp(s_edges), grading=cusp_grading(gamma))
    return (flux_from_mag(p["mu_b"], zeropoint) * 2.0 * jnp.pi * p["q"] * integral
            / boxiness_area_ratio(p["c0"]))


CORE_SERSIC = register_profile(ProfileSpec(
    name="core_sersic",
    params=centre_params() + (
        Param("mu_b", 20.0, -10.0, 40.0, unit="mag / pixel^2", doc="surface brightness at the break radius"),
        Param("r_e", 10.0, 0.05, 500.0, unit="pixel", doc="effective radius of the Sérsic part"),
        Param("n", 4.0, 0.2, 10.0, unit="", doc="Sérsic index of the outer part"),
        Param("r_b", 1.0, 0.01, 500.0, unit="pixel", doc="break radius along the major axis"),
        Param("alpha", 2.0, 0.1, 20.0, unit="", doc="sharpness of the transition"),
        Param("gamma", 0.3, 0.0, 1.5, unit="", doc="inner power-law slope"),
    ) + shape_params(),
    brightness=core_sersic_brightness,
    magnitude="mu_b",   # the brightness is 10^(-0.4 (mu_b - zeropoint)) times the rest
    total_flux=core_sersic_total_flux,
    # the cusp needs k = 2/(2-gamma); a break well inside the central pixel leaves a Sérsic
    # r^(1/n) cusp outside it, which wants k ~ n, but k = n over-grades breaks of ~0.2 px and
    # more.  k = max(2/(2-gamma), 1.5 sqrt(n)) was the best compromise against dblquad of the
    # central 3x3 pixels (r_b = 0.01 ... 1 px, n = 2 ... 8): <= 7e-5 for n <= 4, <= 6e-4 at n = 8.
    grading=lambda p: jnp.clip(jnp.maximum(cusp_grading(p["gamma"]), 1.5 * jnp.sqrt(p["n"])), 1.0, 10.0),
    doc=core_sersic_brightness.__doc__,
))
