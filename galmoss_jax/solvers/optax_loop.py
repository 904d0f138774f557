"""Gradient-based minimisation of ONE problem with any Optax optimiser, written to be vmapped.

``optax_minimise`` runs an ``optax.GradientTransformation`` inside a
``jax.lax.while_loop`` on a scalar loss of an unconstrained parameter vector. It
keeps the best-so-far point, stops each problem on its own (patience on the best
loss, a non-finite loss or gradient, or ``max_iter``), and reports the status
codes of :mod:`galmoss_jax.solvers.lm`. ``jax.vmap`` it over a problem axis and
``jax.jit`` the result; a member that has stopped does not change any more.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from .lm import MAX_ITER, NONFINITE, SUCCESS

__all__ = ["optax_minimise", "OptaxResult"]


class OptaxResult(eqx.Module):
    """Result of :func:`optax_minimise` (a pytree; vmapped calls add a leading axis).

    Attributes:
        u: best parameters seen (lowest finite loss), shape (P,); ``u0`` when the
            start is non-finite.
        loss: loss at ``u``.
        n_iter: number of optimiser steps taken (int32).
        status: int32 code (``STATUS_MESSAGES``): SUCCESS = stopped by patience,
            MAX_ITER = ran ``max_iter`` steps, NONFINITE = non-finite loss or
            gradient at the start (then ``u = u0``, ``n_iter = 0``) or at a later
            iterate (then ``u`` is still the best finite point seen).
    """

    u: Float[Array, " P"]
    loss: Float[Array, ""]
    n_iter: Int[Array, ""]
    status: Int[Array, ""]


def optax_minimise(
    loss_fn,
    u0,
    args=None,
    optimizer: optax.GradientTransformation | None = None,
    *,
    max_iter: int = 2000,
    patience: int = 100,
    rtol: float = 1e-7,
    lower=None,
    upper=None,
) -> OptaxResult:
    """Minimise a scalar ``loss_fn(u, args)`` with an Optax optimiser, for one problem.

    Args:
        loss_fn: ``loss_fn(u, args) -> scalar``, JAX-traceable and differentiable
            in ``u`` (e.g. chi2 of the model).
        u0: initial unconstrained parameters, 1-D float array (P,); its dtype sets
            the working precision.
        args: pytree passed through to ``loss_fn``.
        optimizer: any ``optax.GradientTransformation``, built once by the caller
            (it is a pair of pure functions, so one object serves every member of
            a vmapped batch). Default ``optax.adam(0.05)``.
        max_iter: maximum number of optimiser steps.
        patience: stop (SUCCESS) once the best loss has not improved by more than
            ``rtol * |reference|`` for ``patience`` consecutive steps; the
            reference is the loss at the last such significant improvement.
        rtol: relative improvement that resets the patience counter; raised to at
            least ``4 * eps`` of the dtype (smaller changes are rounding noise).
        lower, upper: optional bounds (P,) on ``u`` (-inf / +inf for none): every step is
            projected onto this box (projected gradient steps), as in
            :func:`galmoss_jax.solvers.levenberg_marquardt`.

    Returns:
        :class:`OptaxResult` with the best point ``u``, its ``loss``, ``n_iter``
        and ``status``.

    Stopping rules (per problem): patience exhausted -> SUCCESS; ``max_iter``
    steps -> MAX_ITER; a non-finite loss or gradient -> NONFINITE. A step that
    lands on a non-finite loss never replaces the best point; since the optimiser
    is deterministic it cannot make finite progress from there, so that member
    stops (its result is the best finite point seen). A non-finite start returns
    at once with ``u = u0`` and ``n_iter = 0``.
    """
    if optimizer is None:
        optimizer = optax.adam(0.05)
    u0 = jnp.asarray(u0)
    if not jnp.issubdtype(u0.dtype, jnp.floating):
        u0 = u0.astype(jnp.result_type(float))
    if u0.ndim != 1:
        raise ValueError(f"optax_minimise: u0 must be 1-D (P,), got shape {u0.shape}")
    dtype = u0.dtype
    eps = jnp.finfo(dtype).eps
    rtol_ = jnp.maximum(jnp.asarray(rtol, dtype), 4 * eps)
    box_lo = jnp.full(u0.shape, -jnp.inf, dtype) if lower is None else jnp.asarray(lower, dtype)
    box_hi = jnp.full(u0.shape, jnp.inf, dtype) if upper is None else jnp.asarray(upper, dtype)

    def _loss(v):
        return jnp.asarray(loss_fn(v, args)).astype(dtype).reshape(())

    value_and_grad = jax.value_and_grad(_loss)
    opt_state0 = optimizer.init(u0)

    # The start is the loop's first pass (``started`` False: the point evaluated is u0 and its
    # evaluation fills the state), so that the loss-and-gradient graph is traced and compiled
    # once, not twice (as in the Levenberg-Marquardt loop): that halves the compile time.
    # carry: u, opt_state, grad at u, best_u, best_loss, ref_loss, stall, n_iter, status, done, started
    state0 = (u0, opt_state0, jnp.zeros_like(u0), u0, jnp.asarray(jnp.inf, dtype), jnp.asarray(jnp.inf, dtype),
              jnp.int32(0), jnp.int32(0), jnp.int32(MAX_ITER), jnp.asarray(False), jnp.asarray(False))

    def cond(state):
        return ~state[-2]

    def body(state):
        u, opt_state, g, best_u, best_loss, ref_loss, stall, n_it, status, done, started = state
        updates, opt_state_n = optimizer.update(g, opt_state, u)
        stepped = jnp.clip(optax.apply_updates(u, updates).astype(dtype), box_lo, box_hi)
        u_n = jnp.where(started, stepped, u0)
        loss_n, g_n = value_and_grad(u_n)
        fin_loss = jnp.isfinite(loss_n) & jnp.all(jnp.isfinite(u_n))
        fin_grad = jnp.all(jnp.isfinite(g_n))

        # first pass: the state at u0
        finite0 = fin_loss & fin_grad
        first = (u0, opt_state0, g_n, u0, loss_n, loss_n, jnp.int32(0), jnp.int32(0),
                 jnp.where(finite0, MAX_ITER, NONFINITE).astype(jnp.int32), ~finite0 | (max_iter <= 0),
                 jnp.asarray(True))

        improved = fin_loss & (loss_n < best_loss)
        best_u_n = jnp.where(improved, u_n, best_u)
        best_loss_n = jnp.where(improved, loss_n, best_loss)
        significant = fin_loss & (loss_n < ref_loss - rtol_ * jnp.abs(ref_loss))
        ref_loss_n = jnp.where(significant, loss_n, ref_loss)
        stall_n = jnp.where(significant, 0, stall + 1).astype(jnp.int32)
        n_n = n_it + 1

        nonfinite = ~(fin_loss & fin_grad)
        patience_hit = ~nonfinite & (stall_n >= patience)
        maxed = ~nonfinite & ~patience_hit & (n_n >= max_iter)
        status_n = jnp.where(
            nonfinite,
            NONFINITE,
            jnp.where(patience_hit, SUCCESS, jnp.where(maxed, MAX_ITER, status)),
        ).astype(jnp.int32)
        done_n = nonfinite | patience_hit | maxed

        new = (
            u_n, opt_state_n, g_n, best_u_n, best_loss_n, ref_loss_n, stall_n, n_n, status_n, done_n, started
        )
        new = jax.tree_util.tree_map(lambda nw, f: jnp.where(started, nw, f), new, first)
        # A member that has stopped must not change: guard every leaf with its own flag.
        return jax.tree_util.tree_map(lambda o, nw: jnp.where(done, o, nw), state, new)

    final = jax.lax.while_loop(cond, body, state0)
    _, _, _, best_u, best_loss, _, _, n_it, status, _, _ = final
    return OptaxResult(u=best_u, loss=best_loss, n_iter=n_it, status=status)


class OptaxSolver(eqx.Module):
    """Any ``optax.GradientTransformation`` as a solver value: it minimises the sum of squared
    residuals (the statistic) by gradient steps in the unconstrained space.

    The optimiser object is part of the solver's identity: build it once and pass the same
    ``OptaxSolver`` (or the same optimiser) to every call, and a jit-compiled fit compiles once.
    ``max_iter``, ``patience`` and ``rtol`` as in :func:`optax_minimise`.
    """

    optimizer: optax.GradientTransformation = eqx.field(static=True)
    max_iter: int = eqx.field(default=3000, static=True)
    patience: int = eqx.field(default=100, static=True)
    rtol: float = eqx.field(default=1e-7, static=True)

    gives_jtj = False

    def __check_init__(self):
        from .._errors import ParameterError
        if not isinstance(self.optimizer, optax.GradientTransformation):
            raise ParameterError(f"OptaxSolver: optimizer must be an optax.GradientTransformation, "
                                 f"got {type(self.optimizer).__name__}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ParameterError(f"max_iter must be a positive integer, got {self.max_iter!r}")

    def minimise(self, residual_fn, u0, args=None, lower=None, upper=None) -> OptaxResult:
        """Minimise ``sum(residual_fn(u, args) ** 2)`` from ``u0`` (one problem; vmap it),
        ``u`` kept inside ``[lower, upper]`` (optional, (P,))."""
        return optax_minimise(lambda u, a: jnp.sum(jnp.square(residual_fn(u, a))), u0, args, self.optimizer,
                              max_iter=self.max_iter, patience=self.patience, rtol=self.rtol, lower=lower,
                              upper=upper)
