"""The reporting conventions of DESIGN.md A for fitted parameters, in pure JAX for ONE galaxy
(vmap for a batch): ``q <= 1`` (a fit at ``q > 1`` is the same ellipse as ``1/q`` with
``pa + 90`` and radii times ``q``) and ``pa`` wrapped to (-90, 90] degrees."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .profiles._shape import ellipse_radii, fold_phases, other_angles

__all__ = ["fold_axis_ratio", "fold_ellipse", "wrap_angle"]


def wrap_angle(pa, period: float = 180.0):
    """Angles (degrees) wrapped to (-period/2, period/2]."""
    h = 0.5 * period
    w = jnp.mod(pa + h, period) - h
    return jnp.where(w == -h, h, w)


def fold_ellipse(values: dict, J, idx: dict, qn: str, pas, radii, phases=(), angles=()):
    """Fold one ellipse in place: where ``values[qn] > 1``, q -> 1/q, every angle in ``pas``
    + 90 (all wrapped to (-90, 90]), every radius in ``radii`` times q and every Fourier mode
    in ``phases`` (``(amplitude, phase, period, names of the angles that turn it)``) has its
    phase - 90, plus the turns of those angles by their wraps, and a negative amplitude made
    positive with the phase + period/2 (wrapped to its period); the angles in
    ``angles`` (``(name, period)``) are only wrapped.  ``J`` is the Jacobian of the map so far
    over the free parameters ``idx`` (name -> index); returns it with this ellipse's terms (the
    shifts of angles have none)."""
    q = values[qn]
    flip = q > 1
    for r in radii:
        if r in idx and qn in idx:   # d(r q)/dq = r
            J = J.at[idx[r], idx[qn]].set(jnp.where(flip, values[r], 0.0))
        if r in idx:
            J = J.at[idx[r], idx[r]].set(jnp.where(flip, q, 1.0))
        values[r] = jnp.where(flip, values[r] * q, values[r])
    if qn in idx:
        J = J.at[idx[qn], idx[qn]].set(jnp.where(flip, -1.0 / q ** 2, 1.0))
    values[qn] = jnp.where(flip, 1.0 / q, q)
    turn = {}
    for pa in pas:
        raw = jnp.where(flip, values[pa] + 90.0, values[pa])
        values[pa] = wrap_angle(raw)
        turn[pa] = values[pa] - raw        # the wrap: a multiple of 180 degrees
    for a, period in angles:
        raw = values[a]
        values[a] = wrap_angle(raw, period)
        turn[a] = values[a] - raw
    for amp, ph, period, refs in phases:
        # pa (or sky_pa) + 180 turns the azimuth by 180 degrees, which odd modes see: their
        # phases follow the wraps of the angles in refs; a negative amplitude a at phase phi is
        # the mode -a at phi + period / 2
        neg = values[amp] < 0
        if amp in idx:
            J = J.at[idx[amp], idx[amp]].set(jnp.where(neg, -1.0, 1.0))
        values[amp] = jnp.abs(values[amp])
        values[ph] = wrap_angle(jnp.where(flip, values[ph] - 90.0, values[ph]) + sum(turn[r] for r in refs)
                                + jnp.where(neg, 0.5 * period, 0.0), period)
    return J


def fold_axis_ratio(model, free, values: dict, cov):
    """Report a ``q > 1`` fit of one galaxy as ``1/q`` with ``pa + 90`` and radii times ``q``;
    wrap every ``pa`` to (-90, 90].

    Args:
        model: the :class:`galmoss_jax.Model`.
        free: names of the free parameters, the order of ``cov``.
        values: every parameter of one galaxy (scalars), physical units.
        cov: (P, P) covariance of the free parameters, carried through the Jacobian of the map.

    Returns:
        ``(values, cov)``, folded.
    """
    values = dict(values)
    idx = {n: i for i, n in enumerate(free)}
    cov = jnp.asarray(cov)
    J = jnp.eye(len(free), dtype=cov.dtype)
    for c, spec in model.components:
        names = spec.param_names
        if "pa" in names and "q" not in names:
            values[f"{c}.pa"] = wrap_angle(values[f"{c}.pa"])
        if "q" not in names or "pa" not in names:
            continue
        J = fold_ellipse(values, J, idx, f"{c}.q", [f"{c}.pa"], [f"{c}.{r}" for r in ellipse_radii(spec)],
                         [(f"{c}.{a}", f"{c}.{n}", t, tuple(f"{c}.{r}" for r in refs))
                          for a, n, t, refs in fold_phases(spec)],
                         [(f"{c}.{n}", t) for n, t in other_angles(spec)])
    if free:
        hi = jax.lax.Precision.HIGHEST
        cov = jnp.matmul(jnp.matmul(J, cov, precision=hi), J.T, precision=hi)
    return values, cov
