"""Maps between physical parameters (inside their bounds) and unconstrained fitting space.

* two finite bounds ``[lo, hi]``: ``p = lo + (hi - lo) * sigmoid(u)``;
* a lower bound only: ``p = lo + softplus(u)``; an upper bound only: ``p = hi - softplus(u)``;
* no bounds (and periodic angles such as ``pa``): ``p = u``.

:func:`to_unconstrained` and :func:`clip_inside` compute with NumPy on host values (the fit's
starts, prepared before its compiled program runs: op-by-op JAX would compile ~20 small
programs for every new batch size and layout, 0.3-0.5 s) and with JAX on JAX arrays and
tracers (:func:`array_module`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def _kind(lo: float, hi: float) -> str:
    if math.isfinite(lo) and math.isfinite(hi):
        return "both"
    if math.isfinite(lo):
        return "lower"
    if math.isfinite(hi):
        return "upper"
    return "none"


def array_module(*xs):
    """``jax.numpy`` if any of ``xs`` is a JAX array (concrete or traced), else ``numpy``."""
    return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def to_physical(u, lo: float, hi: float):
    """Unconstrained ``u`` -> physical value inside ``(lo, hi)``."""
    k = _kind(lo, hi)
    if k == "both":
        return lo + (hi - lo) * jax.nn.sigmoid(u)
    if k == "lower":
        return lo + jax.nn.softplus(u)
    if k == "upper":
        return hi - jax.nn.softplus(u)
    return u


def to_unconstrained(p, lo: float, hi: float):
    """Physical ``p`` (strictly inside its bounds) -> unconstrained value."""
    k, xp = _kind(lo, hi), array_module(p)
    if k == "both":
        t = (p - lo) / (hi - lo)
        return xp.log(t) - xp.log1p(-t)
    if k == "lower":
        return _inv_softplus(p - lo, xp)
    if k == "upper":
        return _inv_softplus(hi - p, xp)
    return p


def _inv_softplus(y, xp):
    # log(exp(y) - 1) = y + log(1 - exp(-y)): no overflow for large y, exact to rounding for
    # every y > 0 (a cut-over to plain y at some threshold would be off by exp(-threshold))
    return y + xp.log(-xp.expm1(-y))


#: how far inside its bounds a start is put, as a fraction of the range (or of |bound|, at least
#: 1e-6, beside one bound): :func:`clip_inside`, and the solvers' box in the unconstrained space
#: (:func:`unconstrained_limits`)
BOUND_MARGIN = 1e-6


def _one_side_margin(bound: float, frac: float) -> float:
    """Distance inside a single bound (softplus side): ``frac`` of |bound|, at least 1e-6."""
    return max(frac * abs(bound), 1e-6)


def clip_inside(p, lo: float, hi: float, frac: float = BOUND_MARGIN):
    """Move ``p`` strictly inside ``[lo, hi]`` (a margin of ``frac`` of the range, or 1e-6 abs)."""
    k, xp = _kind(lo, hi), array_module(p)
    # never less than one float step inside, or the map would give an infinite u
    if k == "both":
        m = frac * (hi - lo)
        return xp.clip(p, max(lo + m, math.nextafter(lo, hi)), min(hi - m, math.nextafter(hi, lo)))
    if k == "lower":
        return xp.maximum(p, max(lo + _one_side_margin(lo, frac), math.nextafter(lo, math.inf)))
    if k == "upper":
        return xp.minimum(p, min(hi - _one_side_margin(hi, frac), math.nextafter(hi, -math.inf)))
    return p


def unconstrained_limits(lo: float, hi: float, frac: float = BOUND_MARGIN) -> tuple[float, float]:
    """``(lower, upper)``: the unconstrained values of the points where :func:`clip_inside`
    puts a value on a bound (-inf / +inf where there is no limit).  Plain ``math``, so that it
    gives Python floats while a caller is being traced by JAX."""
    k = _kind(lo, hi)
    if k == "both":             # logit of the fraction frac of the range
        u = math.log(frac) - math.log1p(-frac)
        return u, -u
    if k in ("lower", "upper"):  # softplus: u -> -inf approaches the bound; the inverse as _inv_softplus
        y = _one_side_margin(lo if k == "lower" else hi, frac)
        return y + math.log(-math.expm1(-y)), math.inf
    return -math.inf, math.inf
