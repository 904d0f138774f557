"""Sérsic-family profiles: Sérsic, exponential disk, de Vaucouleurs, Gaussian, Moffat.

All follow GALFIT's definitions (Peng et al. 2002, 2010) with the total magnitude ``mag`` as
the amplitude parameter; radii along the semi-major axis in pixels; ``pa`` in degrees CCW
from +y; ``c0`` GALFIT boxiness (held fixed at 0 unless freed), with GALFIT's flux
correction ``R(c0)``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from ..geometry import boxiness_area_ratio, ellipse_radius, flux_from_mag, safe_pow
from ._spec import MAG, Param, ProfileSpec, centre_params, register_profile, shape_params


# b_n ------------------------------------------------------------------------------------------
def _bn_guess(n):
    # Ciotti & Bertin (1999) asymptotic series for n > 0.36, MacArthur et al. (2003) below.
    cb = (2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n ** 2)
          + 131.0 / (1148175.0 * n ** 3) - 2194697.0 / (30690717750.0 * n ** 4))
    poly = 0.01945 - 0.8902 * n + 10.95 * n ** 2 - 19.67 * n ** 3 + 13.43 * n ** 4
    return jnp.where(n > 0.36, cb, poly)


_SERIES_TERMS = 160


def _gammainc_series(a, x):
    """Regularised lower incomplete gamma P(a, x) by its power series (fixed length).

    P(a, x) = x^a e^(-x) / Γ(a + 1) * sum_k x^k / ((a + 1) ... (a + k)).  Used only where
    x < a + 1 (b_n < 2n), where 160 terms reach float64 precision for a <= 20.  Written out
    because it is twice differentiable in ``a`` (XLA's igamma is not) and cheap under vmap.
    """
    k = jnp.arange(1, _SERIES_TERMS, dtype=jnp.result_type(a, float))
    log_terms = jnp.cumsum(jnp.log(x) - jnp.log(a + k))
    s = 1.0 + jnp.sum(jnp.exp(log_terms))
    return jnp.exp(a * jnp.log(x) - x - gammaln(a + 1.0)) * s


@jax.custom_jvp
def sersic_bn(n):
    """Sérsic b_n, the root of ``Γ(2n) = 2 γ(2n, b_n)`` (half the light inside r_e).

    Newton's method on the regularised incomplete gamma function from the Ciotti-Bertin /
    MacArthur starting value; accurate to float precision for 0.2 <= n <= 10, and
    differentiable to any order (implicit-function derivative).
    """
    n = jnp.asarray(n, jnp.result_type(n, float))
    a = 2.0 * n
    b = _bn_guess(n)
    lg = gammaln(a)
    for _ in range(5):  # quadratic convergence from a guess good to ~1e-2
        f = _gammainc_series(a, b) - 0.5
        dfdb = jnp.exp((a - 1.0) * jnp.log(b) - b - lg)
        b = jnp.maximum(b - f / dfdb, 1e-3 * b)
    return b


def _sersic_dbdn(n):
    """d b_n / d n by implicit differentiation of P(2n, b_n) = 1/2."""
    b = sersic_bn(n)
    a = 2.0 * n
    dPda = jax.grad(_gammainc_series, argnums=0)(a, b)
    dPdb = jnp.exp((a - 1.0) * jnp.log(b) - b - gammaln(a))
    return -2.0 * dPda / dPdb


@sersic_bn.defjvp
def _sersic_bn_jvp(primals, tangents):
    (n,), (dn,) = primals, tangents
    return sersic_bn(n), _sersic_dbdn(n) * dn


# Sérsic ---------------------------------------------------------------------------------------
def _sersic_log_ie(mag, r_e, n, q, c0, zeropoint):
    """log of the surface brightness at r_e (image units / pixel^2) for total magnitude mag."""
    b = sersic_bn(n)
    log_f = jnp.log(flux_from_mag(mag, zeropoint))
    log_norm = (jnp.log(2.0 * jnp.pi * q * r_e ** 2 * n) + b - 2.0 * n * jnp.log(b)
                + gammaln(2.0 * n) - jnp.log(boxiness_area_ratio(c0)))
    return log_f - log_norm, b


def _sersic_sb(mag, r_e, n, q, pa, c0, dx, dy, zeropoint):
    log_ie, b = _sersic_log_ie(mag, r_e, n, q, c0, zeropoint)
    r = ellipse_radius(dx, dy, q, pa, c0)
    return jnp.exp(log_ie - b * (safe_pow(r / r_e, 1.0 / n) - 1.0))


def sersic_brightness(p, dx, dy, zeropoint):
    """Sérsic: I(r) = I_e exp(-b_n [(r/r_e)^(1/n) - 1]).

    Total flux F = 2 pi q r_e^2 I_e n e^(b_n) b_n^(-2n) Γ(2n) / R(c0) = 10^(-0.4 (mag - zp)).
    """
    return _sersic_sb(p["mag"], p["r_e"], p["n"], p["q"], p["pa"], p["c0"], dx, dy, zeropoint)


def _total_from_mag(p, zeropoint):
    return flux_from_mag(p["mag"], zeropoint)


SERSIC = register_profile(ProfileSpec(
    name="sersic",
    params=centre_params() + (
        MAG,
        Param("r_e", 5.0, 0.2, 500.0, unit="pixel", doc="effective (half-light) radius along the major axis"),
        Param("n", 2.0, 0.2, 10.0, unit="", doc="Sérsic index"),
    ) + shape_params(),
    brightness=sersic_brightness,
    total_flux=_total_from_mag,
    grading=lambda p: jnp.clip(p["n"], 1.0, 10.0),
    doc=sersic_brightness.__doc__,
))


def devaucouleurs_brightness(p, dx, dy, zeropoint):
    """de Vaucouleurs: the Sérsic profile with n = 4 (GALFIT ``devauc``)."""
    return _sersic_sb(p["mag"], p["r_e"], 4.0, p["q"], p["pa"], p["c0"], dx, dy, zeropoint)


DEVAUCOULEURS = register_profile(ProfileSpec(
    name="devaucouleurs",
    params=centre_params() + (
        MAG,
        Param("r_e", 5.0, 0.2, 500.0, unit="pixel", doc="effective (half-light) radius along the major axis"),
    ) + shape_params(),
    brightness=devaucouleurs_brightness,
    total_flux=_total_from_mag,
    grading=lambda p: 4.0,
    doc=devaucouleurs_brightness.__doc__,
))


# Exponential disk -----------------------------------------------------------------------------
def exponential_brightness(p, dx, dy, zeropoint):
    """Exponential disk (GALFIT ``expdisk``): I(r) = I_0 exp(-r / r_s).

    Total flux F = 2 pi q r_s^2 I_0 / R(c0) = 10^(-0.4 (mag - zp)).
    """
    q, r_s = p["q"], p["r_s"]
    i0 = flux_from_mag(p["mag"], zeropoint) * boxiness_area_ratio(p["c0"]) / (2.0 * jnp.pi * q * r_s ** 2)
    r = ellipse_radius(dx, dy, q, p["pa"], p["c0"])
    return i0 * jnp.exp(-r / r_s)


EXPONENTIAL = register_profile(ProfileSpec(
    name="exponential",
    params=centre_params() + (
        MAG,
        Param("r_s", 5.0, 0.2, 500.0, unit="pixel", doc="scale length along the major axis"),
    ) + shape_params(),
    brightness=exponential_brightness,
    total_flux=_total_from_mag,
    doc=exponential_brightness.__doc__,
))


# Gaussian -------------------------------------------------------------------------------------
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))   # a plain float: nothing runs at import


def gaussian_brightness(p, dx, dy, zeropoint):
    """Gaussian (GALFIT ``gaussian``): I(r) = I_0 exp(-r^2 / (2 sigma^2)), sigma = fwhm / 2.3548.

    Total flux F = 2 pi q sigma^2 I_0 / R(c0) = 10^(-0.4 (mag - zp)).
    """
    q = p["q"]
    sigma = p["fwhm"] * _FWHM_TO_SIGMA
    i0 = flux_from_mag(p["mag"], zeropoint) * boxiness_area_ratio(p["c0"]) / (2.0 * jnp.pi * q * sigma ** 2)
    r = ellipse_radius(dx, dy, q, p["pa"], p["c0"])
    return i0 * jnp.exp(-0.5 * (r / sigma) ** 2)


GAUSSIAN = register_profile(ProfileSpec(
    name="gaussian",
    params=centre_params() + (
        MAG,
        Param("fwhm", 3.0, 0.2, 500.0, unit="pixel", doc="full width at half maximum along the major axis"),
    ) + shape_params(),
    brightness=gaussian_brightness,
    total_flux=_total_from_mag,
    doc=gaussian_brightness.__doc__,
))


# Moffat ---------------------------------------------------------------------------------------
def moffat_brightness(p, dx, dy, zeropoint):
    """Moffat (GALFIT ``moffat``): I(r) = I_0 / (1 + (r / r_d)^2)^beta.

    ``fwhm = 2 r_d sqrt(2^(1/beta) - 1)``; ``beta`` is GALFIT's "powerlaw" (> 1 for a finite
    flux).  Total flux F = pi q r_d^2 I_0 / ((beta - 1) R(c0)) = 10^(-0.4 (mag - zp)).
    """
    q, beta = p["q"], p["beta"]
    r_d = p["fwhm"] / (2.0 * jnp.sqrt(2.0 ** (1.0 / beta) - 1.0))
    i0 = flux_from_mag(p["mag"], zeropoint) * boxiness_area_ratio(p["c0"]) * (beta - 1.0) / (jnp.pi * q * r_d ** 2)
    r = ellipse_radius(dx, dy, q, p["pa"], p["c0"])
    return i0 * (1.0 + (r / r_d) ** 2) ** (-beta)


MOFFAT = register_profile(ProfileSpec(
    name="moffat",
    params=centre_params() + (
        MAG,
        Param("fwhm", 3.0, 0.2, 500.0, unit="pixel", doc="full width at half maximum along the major axis"),
        Param("beta", 3.0, 1.05, 20.0, unit="", doc="power-law index (GALFIT 'powerlaw')"),
    ) + shape_params(),
    brightness=moffat_brightness,
    total_flux=_total_from_mag,
    doc=moffat_brightness.__doc__,
))
