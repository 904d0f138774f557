"""The parameter layout of a model: the one map between named parameters, the free vector and
the unconstrained fitting space.

Every caller (the engine, the screen of starts, the bootstrap, the posterior, the renderer of
parameter vectors) goes through :class:`ParamLayout`, which :class:`galmoss_jax.Model` builds
once (``model.layout``).  Three representations of one galaxy's parameters:

* **named**: ``{"bulge.r_e": value, ...}`` for every parameter, physical units;
* **free vector** ``x`` (..., P): the free parameters in ``layout.free`` order, physical units,
  plus a **fixed vector** (..., F) of the values of the fixed parameters (``layout.fixed``
  order); tied parameters follow their source;
* **unconstrained vector** ``u`` (..., P): ``x = to_physical(u)`` maps the real line into each
  parameter's fitting bounds (sigmoid between two bounds, softplus beside one, identity for
  unbounded parameters and for angles, which are periodic and fitted without bounds).

Arrays may carry leading batch axes.  Every method is pure JAX on JAX arrays and tracers; the
vector maps (:meth:`ParamLayout.free_vector`, :meth:`~ParamLayout.fixed_vector`,
:meth:`~ParamLayout.to_unconstrained`, :meth:`~ParamLayout.clip_inside`) give NumPy arrays for
host values (NumPy arrays, Python numbers): the fit prepares its starts with them before its
compiled program runs, without compiling a small program for every operation.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .transforms import array_module, clip_inside, to_physical, to_unconstrained, unconstrained_limits

__all__ = ["ParamLayout"]


@dataclasses.dataclass(frozen=True)
class ParamLayout:
    """Free, fixed and tied parameters of a model, with the fitting bounds of the free ones.

    Attributes:
        names: every parameter, ``"component.param"``, in component then profile order.
        free: the fitted parameters (neither fixed nor tied).
        bounds: fitting bounds ``(lower, upper)`` of each free parameter (``(-inf, inf)`` for
            angles, which are fitted without bounds).
        fixed: the fixed parameters.
        fixed_values: the model's value of each fixed parameter, or None where it is fixed at
            its initial value (the value then comes with each galaxy).
        defaults: the profile default of every parameter.
        tied: ``(parameter, source)`` pairs; a tied parameter equals its source.
        derived: ``(parameter, ((source, weight), ...))``: a parameter that is a fixed linear
            combination of free ones (a band's value of a parameter that is a polynomial in
            wavelength, interpolated from its values in the anchor bands:
            :mod:`galmoss_jax._bands`).  Its error comes from the covariance of its sources.
    """

    names: tuple
    free: tuple
    bounds: tuple
    fixed: tuple
    fixed_values: tuple
    defaults: tuple
    tied: tuple
    derived: tuple = ()

    @property
    def n_free(self) -> int:
        return len(self.free)

    # -- named <-> vectors ---------------------------------------------------------------------
    def fixed_value(self, name: str, given: Mapping | None = None):
        """Value of the fixed parameter ``name``: the model's, else ``given[name]``, else its default."""
        v = dict(zip(self.fixed, self.fixed_values))[name]
        if v is not None:
            return v
        if given is not None and name in given:
            return given[name]
        return dict(zip(self.names, self.defaults))[name]

    def own_constants(self, given=()) -> tuple:
        """``((name, value), ...)`` of the fixed parameters whose value is the model's own (its
        fixed value, or the default of one not named in ``given``): the same for every call, so
        they can be constants of a compiled program (``Problem.constants``)."""
        return tuple((n, float(self.fixed_value(n))) for n in self.fixed if n not in given)

    def expand(self, free, fixed=(), constants: Mapping | None = None) -> dict:
        """Every named parameter from a free vector (..., P) and a fixed vector (..., F);
        ``constants`` ``{name: float}``: fixed parameters that take that value as a constant of
        the program instead of their entry of ``fixed`` (see ``Problem.constants``)."""
        p = {n: free[..., i] for i, n in enumerate(self.free)}
        constants = constants or {}
        for j, n in enumerate(self.fixed):
            p[n] = jnp.asarray(constants[n], free.dtype) if n in constants else fixed[..., j]
        return self._follow(p)

    def _follow(self, p: dict) -> dict:
        """``p`` with the derived and then the tied parameters filled in."""
        for a, terms in self.derived:
            p[a] = sum(w * p[src] for src, w in terms)
        for a, b in self.tied:
            p[a] = p[b]
        return p

    def derived_weights(self, name: str):
        """``((index in free, weight), ...)`` of a derived parameter (tied ones followed), or
        None if ``name`` is not derived."""
        tied = dict(self.tied)
        name = tied.get(name, name)
        terms = dict(self.derived).get(name)
        if terms is None:
            return None
        return tuple((self.free.index(src), w) for src, w in terms)

    def fill(self, given: Mapping) -> dict:
        """Every named parameter from ``given`` (full names; every free parameter present):
        fixed parameters take :meth:`fixed_value`, tied ones their source."""
        p = {n: given[n] for n in self.free}
        p.update({n: self.fixed_value(n, given) for n in self.fixed})
        return self._follow(p)

    def free_vector(self, params: Mapping):
        """The free vector (..., P) of named parameters (scalars or equal-length arrays)."""
        values = [params[n] for n in self.free]
        xp = array_module(*values)
        if not self.free:
            return xp.zeros((0,), jnp.result_type(float))
        return xp.stack(xp.broadcast_arrays(*[xp.asarray(v) for v in values]), -1)

    def fixed_vector(self, given: Mapping | None = None):
        """The fixed vector (..., F) (see :meth:`fixed_value`)."""
        values = [self.fixed_value(n, given) for n in self.fixed]
        xp = array_module(*values)
        if not self.fixed:
            return xp.zeros((0,), jnp.result_type(float))
        vals = [xp.asarray(v, dtype=jnp.result_type(float)) for v in values]
        return xp.stack(xp.broadcast_arrays(*vals), -1)

    # -- physical <-> unconstrained ------------------------------------------------------------
    def to_physical(self, u):
        """Free vector (physical, inside the bounds) of an unconstrained vector (..., P)."""
        if not self.free:
            return u
        return jnp.stack([to_physical(u[..., i], lo, hi) for i, (lo, hi) in enumerate(self.bounds)], -1)

    def to_unconstrained(self, x):
        """Unconstrained vector of a free vector (..., P); values on or beyond a bound are first
        moved just inside it (:func:`galmoss_jax.transforms.clip_inside`)."""
        xp = array_module(x)
        if not self.free:
            return xp.asarray(x)
        return xp.stack([to_unconstrained(clip_inside(x[..., i], lo, hi), lo, hi)
                         for i, (lo, hi) in enumerate(self.bounds)], -1)

    def clip_inside(self, x):
        """Free vector (..., P) moved strictly inside the fitting bounds."""
        xp = array_module(x)
        if not self.free:
            return xp.asarray(x)
        return xp.stack([clip_inside(x[..., i], lo, hi) for i, (lo, hi) in enumerate(self.bounds)], -1)

    def unconstrained_box(self):
        """``(lower, upper)``, NumPy (P,): the unconstrained values of the points just inside
        each parameter's bounds where :func:`galmoss_jax.transforms.clip_inside` puts starts (a
        margin of 1e-6 of the range between two bounds, of 1e-6 of |bound| (at least 1e-6)
        beside one); -inf / +inf where there is no limit.  The solvers keep their trial points in
        this box: beyond it a bounded parameter sits on its bound to that margin, its transform
        flattens (d x / d u -> 0) and a Gauss-Newton step in ``u`` grows without limit (steps to
        u ~ -1e3 left J^T J singular in a fit that had converged with R_e on its bound)."""
        limits = [unconstrained_limits(lo, hi) for lo, hi in self.bounds]
        return np.array([a for a, _ in limits], float), np.array([b for _, b in limits], float)

    def physical_derivative(self, u):
        """d x_i / d u_i (..., P): the (diagonal) Jacobian of :meth:`to_physical`."""
        return jax.jvp(self.to_physical, (u,), (jnp.ones_like(u),))[1]

    def outside(self, x):
        """True where a free vector (..., P) lies outside its bounds (any parameter)."""
        lo = jnp.asarray([b[0] for b in self.bounds])
        hi = jnp.asarray([b[1] for b in self.bounds])
        return jnp.any((x < lo) | (x > hi), axis=-1)

    def has_bounds(self, i: int) -> bool:
        lo, hi = self.bounds[i]
        return math.isfinite(lo) or math.isfinite(hi)
