"""Fit statistics, written as residual vectors so that Levenberg-Marquardt can use them.

=============  ========================================================================
``chi2``       sum mask ((data - model) / sigma)^2 with a given sigma map, or sigma built
               from the data (:func:`galmoss_jax.sigma_from_data`)
``model-chi2`` Imfit's "model errors": sigma^2 = (model + sky) / gain + read_noise^2 / gain^2
``poisson-mlr`` Imfit's Poisson maximum-likelihood-ratio statistic
               2 sum (m - d + d ln(d / m)) with d, m in counts (gain x (image + sky));
               as residuals r = sign(d - m) sqrt(2 (m - d + d ln(d / m)))
``cash``       Cash (1979) C = 2 sum (m - d ln m) (counts); minimised through the same
               residuals as ``poisson-mlr`` (they differ by a model-independent constant)
=============  ========================================================================

Units: ``data``, ``model`` and ``sky`` in image units (e.g. ADU), ``gain`` in electrons per
image unit, ``read_noise`` in electrons.
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


def residuals(stat, data, model, sigma, mask, gain=1.0, read_noise=0.0, sky=0.0):
    """Residual vector whose sum of squares is the statistic (masked pixels give 0).

    ``data`` must already be finite on every pixel (bad pixels set to 0 and masked out).
    """
    stat = Statistic(stat)
    if stat is Statistic.CHI2:
        r = (data - model) / jnp.where(mask, sigma, 1.0)
    elif stat is Statistic.MODEL_CHI2:
        var = (model + sky) / gain + (read_noise / gain) ** 2
        r = (data - model) / jnp.sqrt(jnp.where(mask & (var > 0), var, 1.0))
    else:   # poisson-mlr, cash
        d = gain * (data + sky)
        m = gain * (model + sky)
        m_safe = jnp.where(m > 0, m, 1.0)
        d_pos = d > 0
        d_safe = jnp.where(d_pos, d, 1.0)
        term = jnp.where(d_pos, m - d + d * jnp.log(d_safe / m_safe), m)
        term = jnp.where(m > 0, term, jnp.inf)
        r = jnp.sign(d - m) * jnp.sqrt(2.0 * jnp.maximum(term, 0.0))
    return jnp.where(mask, r, 0.0)


def statistic_value(stat, data, model, sigma, mask, gain=1.0, read_noise=0.0, sky=0.0):
    """The statistic itself (for ``cash`` the Cash C, otherwise the sum of squared residuals)."""
    if Statistic(stat) is Statistic.CASH:
        m = gain * (model + sky)
        d = gain * (data + sky)
        c = 2.0 * (m - d * jnp.log(jnp.where(m > 0, m, 1.0)))
        return jnp.sum(jnp.where(mask, c, 0.0))
    r = residuals(stat, data, model, sigma, mask, gain, read_noise, sky)
    return jnp.sum(r * r)
