"""Sérsic-family profiles: Sérsic, exponential disk, de Vaucouleurs, Gaussian, Moffat.

All follow GALFIT's definitions (Peng et al. 2002, 2010) with the total magnitude ``mag`` as
the amplitude parameter; radii along the semi-major axis in pixels; ``pa`` in degrees CCW
from +y; ``c0`` GALFIT boxiness (held fixed at 0 unless freed), with GALFIT's flux
correction ``R(c0)``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..geometry import boxiness_area_ratio, ellipse_radius, flux_from_mag, safe_pow
from ._spec import MAG, Param, ProfileSpec, centre_params, register_profile, shape_params


# b_n ------------------------------------------------------------------------------------------
def _bn_guess(n):
    # Ciotti & Bertin (1999) asymptotic series for n > 0.36, MacArthur et al. (2003) below.
    cb = (2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n ** 2)
          + 131.0 / (1148175.0 * n ** 3) - 2194697.0 / (30690717750.0 * n ** 4))
    poly = 0.01945 - 0.8902 * n + 10.95 * n ** 2 - 19.67 * n ** 3 + 13.43 * n ** 4
    return jnp.where(n > 0.36, cb, poly)


# log b_n as a Chebyshev series in log n over [BN_N_MIN, BN_N_MAX]: degree 60 interpolates it
# to ~2e-13 relative (measured against SciPy's gammaincinv on 30,000 points).  Above BN_N_MAX
# the Ciotti & Bertin series is exact to < 3e-12 (measured), below BN_N_MIN b_n is NaN.  The
# table replaces a Newton iteration on the incomplete gamma function (five 160-term series,
# seven log-gamma calls, their derivatives): the same values to float rounding, and a sixth
# of the compiled graph of a Sérsic model's Jacobian.
BN_N_MIN = 0.02
BN_N_MAX = 50.0
_BN_DEGREE = 60


@functools.lru_cache(maxsize=None)
def _bn_nodes():
    """(x, 2n, b_n) at the Chebyshev nodes x of the table: b_n from SciPy's ``gammaincinv``,
    each polished by one Newton step on P(2n, b) = 1/2.  Computed once, on the host."""
    from scipy.special import gammainc, gammaincinv, gammaln as sp_gammaln

    k = np.arange(_BN_DEGREE + 1)
    x = np.cos(np.pi * (k + 0.5) / (_BN_DEGREE + 1))
    lo, hi = math.log(BN_N_MIN), math.log(BN_N_MAX)
    a = 2.0 * np.exp(lo + 0.5 * (x + 1.0) * (hi - lo))
    b = gammaincinv(a, 0.5)
    b = b - (gammainc(a, b) - 0.5) / np.exp((a - 1.0) * np.log(b) - b - sp_gammaln(a))
    return x, a, b


@functools.lru_cache(maxsize=None)
def _bn_chebyshev():
    """Chebyshev coefficients (a tuple of floats) of log b_n in x = the affine map of log n
    onto [-1, 1] (interpolation at the Chebyshev nodes)."""
    x, _, b = _bn_nodes()
    return tuple(float(c) for c in np.polynomial.chebyshev.chebfit(x, np.log(b), _BN_DEGREE))


@functools.lru_cache(maxsize=None)
def _norm_chebyshev():
    """Chebyshev coefficients of ``b_n - 2n log b_n + log Γ(2n)`` (the part of the log of a
    Sérsic profile's total-flux integral that depends on n alone) in the same x: degree 60
    interpolates it to ~1e-13 (absolute, measured against SciPy on 30,000 points).  It
    replaces the log-gamma function and its derivative, which XLA compiled into ~15 separate
    kernels of a Sérsic model's Jacobian."""
    from scipy.special import gammaln as sp_gammaln

    x, a, b = _bn_nodes()
    h = b - a * np.log(b) + sp_gammaln(a)
    return tuple(float(c) for c in np.polynomial.chebyshev.chebfit(x, h, _BN_DEGREE))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _chebyshev(x, coefs):
    """sum_k coefs[k] T_k(x) for |x| <= 1, with T_k(x) = cos(k arccos x) (one vector op
    instead of a recurrence); derivatives are the series of the differentiated coefficients."""
    k = jnp.arange(len(coefs), dtype=x.dtype)
    theta = jnp.arccos(jnp.clip(x, -1.0, 1.0))
    return jnp.sum(jnp.asarray(coefs, x.dtype) * jnp.cos(k * theta[..., None]), axis=-1)


@_chebyshev.defjvp
def _chebyshev_jvp(coefs, primals, tangents):
    (x,), (dx,) = primals, tangents
    der = tuple(float(c) for c in np.polynomial.chebyshev.chebder(np.asarray(coefs)))
    return _chebyshev(x, coefs), _chebyshev(x, der) * dx


def _table_coordinate(n):
    """``(n, inside, x)``: ``n`` as a float array, whether it lies in the tables' range
    ``BN_N_MIN <= n <= BN_N_MAX``, and the tables' coordinate x in [-1, 1] (the affine map of
    log n; 0 outside the range)."""
    n = jnp.asarray(n, jnp.result_type(n, float))
    lo, hi = math.log(BN_N_MIN), math.log(BN_N_MAX)
    inside = (n >= BN_N_MIN) & (n <= BN_N_MAX)
    n_in = jnp.where(inside, n, 1.0)
    return n, inside, (2.0 * jnp.log(n_in) - (lo + hi)) / (hi - lo)


def sersic_bn(n):
    """Sérsic b_n, the root of ``Γ(2n) = 2 γ(2n, b_n)`` (half the light inside r_e).

    Float precision (~1e-13 relative in float64) for ``BN_N_MIN <= n``, NaN below; smooth and
    differentiable to any order (the derivatives are those of the interpolating series, which
    match b_n's to ~1e-11)."""
    n, inside, x = _table_coordinate(n)
    table = jnp.exp(_chebyshev(x, _bn_chebyshev()))
    n_big = jnp.where(n > BN_N_MAX, n, BN_N_MAX)
    return jnp.where(inside, table, jnp.where(n > BN_N_MAX, _bn_guess(n_big), jnp.nan))


def _sersic_log_norm_n(n, b):
    """``b - 2n log b + log Γ(2n)`` for Sérsic index ``n`` and its ``b = sersic_bn(n)``: the
    Chebyshev table for ``BN_N_MIN <= n <= BN_N_MAX``, Stirling's series for log Γ(2n) above
    (2n > 100: its first omitted term is < 1e-17), NaN below (as b_n)."""
    n, inside, x = _table_coordinate(n)
    table = _chebyshev(x, _norm_chebyshev())
    z = 2.0 * jnp.where(n > BN_N_MAX, n, BN_N_MAX)
    stirling = ((z - 0.5) * jnp.log(z) - z + 0.5 * math.log(2.0 * math.pi)
                + 1.0 / (12.0 * z) - 1.0 / (360.0 * z ** 3) + 1.0 / (1260.0 * z ** 5))
    big = b - z * jnp.log(b) + stirling
    return jnp.where(inside, table, jnp.where(n > BN_N_MAX, big, jnp.nan))


# Sérsic ---------------------------------------------------------------------------------------
def _sersic_log_ie(mag, r_e, n, q, c0, zeropoint):
    """log of the surface brightness at r_e (image units / pixel^2) for total magnitude mag."""
    b = sersic_bn(n)
    log_f = jnp.log(flux_from_mag(mag, zeropoint))
    log_norm = (jnp.log(2.0 * jnp.pi * q * r_e ** 2 * n) + _sersic_log_norm_n(n, b)
                - jnp.log(boxiness_area_ratio(c0)))
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
    magnitude="mag",   # the brightness is 10^(-0.4 (mag - zeropoint)) times the rest
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
    magnitude="mag",   # the brightness is 10^(-0.4 (mag - zeropoint)) times the rest
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
    magnitude="mag",   # the brightness is 10^(-0.4 (mag - zeropoint)) times the rest
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
    magnitude="mag",   # the brightness is 10^(-0.4 (mag - zeropoint)) times the rest
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
    magnitude="mag",   # the brightness is 10^(-0.4 (mag - zeropoint)) times the rest
    total_flux=_total_from_mag,
    doc=moffat_brightness.__doc__,
))
