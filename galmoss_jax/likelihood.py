"""Fit statistics, written as residual vectors so that Levenberg-Marquardt can use them.

=============  ========================================================================
``chi2``       sum mask ((data - model) / sigma)^2 with a given sigma map, or sigma built
               from the data (:func:`galmoss_jax.sigma_from_data`)
``model-chi2`` Imfit's "model errors": sigma^2 = (model + sky) / gain + read_noise^2 / gain^2
``poisson-mlr`` Imfit's Poisson maximum-likelihood-ratio statistic
               PMLR = 2 sum mask |m - d ln m + d ln d - d|, d and m in counts
               (d = gain (data + sky), m = gain (model + sky))
``cash``       Imfit's Cash (1979) statistic C = 2 sum mask (m - d ln m); minimised through
               the PMLR residuals (the two differ by a model-independent constant)
=============  ========================================================================

Units: ``data``, ``model`` and ``sky`` in image units (e.g. ADU), ``gain`` in electrons per
image unit, ``read_noise`` in electrons (not used by the Poisson statistics, as in Imfit).

The Poisson statistics follow Imfit's ``ModelObject`` (``CashStatistic``,
``ComputePoissonMLRDeviate``, ``GenerateExtraCashTerms``) term for term: the sky level already
subtracted is added back to data and model and both are multiplied by the gain; the extra
PMLR term ``d ln d - d`` is 0 where ``d <= 0``; ``ln m`` is replaced by Imfit's
``LOG_SMALL_VALUE = 1e-25`` where ``m <= 0``; PMLR takes the absolute value of each term.

PMLR residuals.  Where ``d > 0`` and ``m > 0`` the term is
``d (t - ln(1 + t))`` with ``t = m / d - 1``, so the residual
``sign(d - m) sqrt(2 term)`` is written ``(d - m) / sqrt(d) * sqrt(G(t))`` with
``G(t) = 2 (t - ln(1 + t)) / t^2`` (``G(0) = 1``; a power series for ``|t| < 0.1``).  This is
the same number, but smooth where the model meets the data: the textbook form takes the
square root of a difference of nearly equal numbers, which rounding makes 0 or negative near
``m = d`` (in float32 on ~0.4 % of the pixels of a fit near convergence), and the derivative
of ``sqrt`` there is infinite, so the Jacobian was NaN and Levenberg-Marquardt stopped.  ``d - m``
is formed as ``gain (data - model)`` so that the sky level does not cancel either.
"""
from __future__ import annotations

import enum

import jax.numpy as jnp

from ._errors import ParameterError
from ._noise import sigma_from_data  # noqa: F401  (the noise model's home is galmoss_jax._noise)


class Statistic(str, enum.Enum):
    """The statistic a fit minimises (its value is the name used by ``stat=`` and ``--stat``)."""

    CHI2 = "chi2"
    MODEL_CHI2 = "model-chi2"
    POISSON_MLR = "poisson-mlr"
    CASH = "cash"

    @property
    def uses_sigma(self) -> bool:
        """True for the statistic that weights by a sigma map (``chi2``)."""
        return self is Statistic.CHI2

    @classmethod
    def of(cls, stat) -> "Statistic":
        """``stat`` (a Statistic or its name) as a Statistic, or a ParameterError naming ``stat``."""
        try:
            return cls(stat)
        except ValueError:
            raise ParameterError(f"stat must be one of {STATISTICS}, got {stat!r}") from None

    def __str__(self) -> str:
        return self.value


STATISTICS = tuple(s.value for s in Statistic)


#: Imfit's LOG_SMALL_VALUE: the value Imfit takes for ln(m) where the model m <= 0 (counts)
LOG_SMALL_VALUE = 1e-25

# G(t) = 2 (t - ln(1 + t)) / t^2 = sum_k 2 (-t)^k / (k + 2) for |t| < 1; 16 terms reach 1e-17
# at |t| = 0.1, below which the closed form loses digits
_G_SERIES = tuple(2.0 * (-1.0) ** k / (k + 2) for k in range(16))
_G_SWITCH = 0.1


def _g(t):
    """G(t) = 2 (t - log1p(t)) / t^2 for t > -1, accurate (and smooth) at t = 0."""
    small = jnp.abs(t) < _G_SWITCH
    ts = jnp.where(small, t, 0.0)
    series = jnp.zeros_like(t)
    for c in reversed(_G_SERIES):
        series = series * ts + c
    tl = jnp.where(small, 0.5, t)
    return jnp.where(small, series, 2.0 * (tl - jnp.log1p(tl)) / (tl * tl))


def _safe_sqrt(a):
    """sqrt(a) for a >= 0 with a finite derivative (0) at a = 0."""
    pos = a > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, a, 1.0)), 0.0)


def _counts(data, model, gain, sky):
    """Data and model in counts, and their difference formed before the sky is added."""
    return gain * (data + sky), gain * (model + sky), gain * (data - model)


def _imfit_log_model(m):
    """ln m, or Imfit's LOG_SMALL_VALUE where m <= 0."""
    pos = m > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, m, 1.0)), LOG_SMALL_VALUE)


def _pmlr_residuals(data, model, gain, sky):
    """Signed PMLR residuals sign(d - m) sqrt(2 |m - d ln m + d ln d - d|) (Imfit's deviates, with
    the sign of data - model), smooth where m = d (module docstring)."""
    d, m, diff = _counts(data, model, gain, sky)
    d_pos = d > 0
    d1 = jnp.where(d_pos, d, 1.0)
    t = -diff / d1                          # m / d - 1
    main = d_pos & (m > 0) & (t > -1.0)
    r_main = diff / jnp.sqrt(d1) * jnp.sqrt(_g(jnp.where(main, t, 0.0)))
    # elsewhere (d <= 0 or m <= 0) Imfit's term as it is written, with its absolute value
    extra = jnp.where(d_pos, d * jnp.log(d1) - d, 0.0)
    term = m - d * _imfit_log_model(m) + extra
    r_other = jnp.where(diff < 0, -1.0, 1.0) * _safe_sqrt(2.0 * jnp.abs(term))
    return jnp.where(main, r_main, r_other)


def residuals(stat, data, model, sigma, mask, gain=1.0, read_noise=0.0, sky=0.0):
    """Residual vector whose sum of squares is the statistic (masked pixels give 0); for
    ``cash`` the PMLR residuals (C differs from their sum of squares by a constant).

    ``data`` must already be finite on every pixel (bad pixels set to 0 and masked out).
    """
    stat = Statistic(stat)
    if stat is Statistic.CHI2:
        r = (data - model) / jnp.where(mask, sigma, 1.0)
    elif stat is Statistic.MODEL_CHI2:
        var = (model + sky) / gain + (read_noise / gain) ** 2
        r = (data - model) / jnp.sqrt(jnp.where(mask & (var > 0), var, 1.0))
    else:   # poisson-mlr, cash
        r = _pmlr_residuals(data, model, gain, sky)
    return jnp.where(mask, r, 0.0)


def statistic_value(stat, data, model, sigma, mask, gain=1.0, read_noise=0.0, sky=0.0):
    """The statistic itself (for ``cash`` Imfit's Cash C, otherwise the sum of squared residuals)."""
    if Statistic(stat) is Statistic.CASH:
        d, m, _ = _counts(data, model, gain, sky)
        c = 2.0 * (m - d * _imfit_log_model(m))
        return jnp.sum(jnp.where(mask, c, 0.0))
    r = residuals(stat, data, model, sigma, mask, gain, read_noise, sky)
    return jnp.sum(r * r)
