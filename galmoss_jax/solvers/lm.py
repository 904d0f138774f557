"""Levenberg–Marquardt least squares for ONE small problem, written to be vmapped.

The solver minimises ``chi2(u) = sum(residual_fn(u, args) ** 2)`` over an
unconstrained parameter vector ``u`` of length P (P small, 1–30). It is pure JAX:
``jax.vmap`` it over a leading problem (galaxy) axis and ``jax.jit`` the result.
Each problem keeps its own damping, acceptance and stopping; a problem that has
stopped does not change any more while the others go on (the vmapped
``lax.while_loop`` runs until every member is done; every update is guarded by
the member's own ``done`` flag).

The loop is built from pure single-problem pieces, :func:`lm_parts` (``init``, one ``step``,
``done``, ``result``): :func:`levenberg_marquardt` runs them in a ``lax.while_loop``, and
:func:`galmoss_jax.solvers.queue.refill_minimise` runs a batch in lanes, each lane taking the
next waiting problem as soon as its own one is done, so a batch costs the sum of its
problems' iterations rather than the batch size times the slowest.

Why hand-written
----------------
No well-kept JAX library gave us, at this cost, a per-problem LM that is
vmappable with a bounded iteration count, integer status codes for the result
table, and that hands back J^T J and the gradient at the solution for the
covariance. Optimistix's ``LevenbergMarquardt`` comes closest, but it is not
installed in this environment (a new dependency for ~200 lines of code), its
``RESULTS`` enumeration would have to be mapped to our codes, and J^T J is not
part of its ``Solution``. With P <= 30 the dense normal equations below are the
cheapest correct method. The algorithm and stopping rules follow MINPACK ``lmder`` (as used by
``scipy.optimize.least_squares(method='lm')``, mpfit and Imfit), with
Marquardt's diagonal scaling instead of MINPACK's trust region, Nielsen's damping rule, and
an optional box on ``u`` with an active set (parameters held on an edge by the gradient are
fixed for the step and the gtol test): the engine's box keeps bounded parameters where their
transforms have not flattened, so that a fit whose optimum lies on a bound converges there.

Status codes
------------
The codes of :class:`galmoss_jax.Status`: SUCCESS (ftol, xtol or gtol met), MAX_ITER
(``max_iter`` trial steps; ``u`` is the best point found, never worse than the start),
NONFINITE (non-finite parameters, residuals or Jacobian at the start: ``u = u0``,
``n_iter = 0``), STALLED (the damping exceeded ``lambda_max`` without an accepted step).
The same codes are used by :func:`galmoss_jax.solvers.optax_minimise`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve
from jaxtyping import Array, Float, Int

__all__ = [
    "levenberg_marquardt",
    "lm_parts",
    "LMParts",
    "LMState",
    "LMResult",
    "SUCCESS",
    "MAX_ITER",
    "NONFINITE",
    "STALLED",
    "STATUS_MESSAGES",
]

from .._status import STATUS_MESSAGES, Status

SUCCESS = int(Status.SUCCESS)
MAX_ITER = int(Status.MAX_ITER)
NONFINITE = int(Status.NONFINITE)
STALLED = int(Status.STALLED)

_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 shortcuts on GPU for J^T J


class LMResult(eqx.Module):
    """Result of :func:`levenberg_marquardt` (a pytree; vmapped calls add a leading axis).

    Attributes:
        u: best parameters found, shape (P,) (equal to ``u0`` when ``status`` is
            NONFINITE).
        chi2: ``sum(residual_fn(u, args) ** 2)`` at ``u``.
        n_iter: number of trial steps taken (int32); each costs one residual +
            Jacobian evaluation (``jax.jacfwd``). Rejected steps count.
        status: int32 status code, see ``STATUS_MESSAGES``.
        jtj: ``J^T J`` at ``u`` (P, P), J = d residual / d u. This is half the
            Gauss–Newton Hessian of chi2; when the residuals are
            ``(data - model) / sigma`` the covariance of ``u`` is ``inv(jtj)``.
        grad: gradient of chi2 at ``u``, ``2 J^T r``, shape (P,).
        lam: final Marquardt damping parameter (diagnostic).
    """

    u: Float[Array, " P"]  # noqa: F722 (a jaxtyping shape string)
    chi2: Float[Array, ""]  # noqa: F722 (a jaxtyping shape string)
    n_iter: Int[Array, ""]  # noqa: F722 (a jaxtyping shape string)
    status: Int[Array, ""]  # noqa: F722 (a jaxtyping shape string)
    jtj: Float[Array, "P P"]  # noqa: F722 (a jaxtyping shape string)
    grad: Float[Array, " P"]  # noqa: F722 (a jaxtyping shape string)
    lam: Float[Array, ""]  # noqa: F722 (a jaxtyping shape string)


def _all_finite(x) -> jax.Array:
    return jnp.all(jnp.isfinite(x))


def _gtol_met(chi2, jtj, g, gtol):
    """MINPACK's gtol test: max_j |cos(angle between r and column j of J)| <= gtol.

    cos_j = |J_j . r| / (|J_j| |r|); columns with zero norm count as 0. Scale
    invariant. A zero residual (chi2 == 0) is converged.
    """
    col = jnp.sqrt(jnp.diagonal(jtj))
    rnorm = jnp.sqrt(chi2)
    denom = col * rnorm
    cos = jnp.where(denom > 0, jnp.abs(g) / jnp.where(denom > 0, denom, 1), 0)
    return (chi2 == 0) | (jnp.max(cos, initial=0) <= gtol)


class LMState(NamedTuple):
    """The state of one Levenberg–Marquardt problem between two passes of its loop (a pytree of
    arrays; a batch of problems stacks them on a leading axis).

    ``started`` is False before the first pass, which evaluates the start ``u`` (= ``u0``);
    ``done`` is True once the problem has stopped (``status`` is then final).  ``chi2``,
    ``jtj`` and ``g`` (= J^T r) belong to ``u``, the best point so far; ``nu`` is the factor of
    the next rejection under Nielsen's damping rule."""

    u: jax.Array
    chi2: jax.Array
    jtj: jax.Array
    g: jax.Array
    lam: jax.Array
    n_iter: jax.Array
    status: jax.Array
    done: jax.Array
    started: jax.Array
    nu: jax.Array


class LMParts(NamedTuple):
    """Levenberg–Marquardt for ONE problem as pure pieces (:func:`lm_parts`).

    ``init(u0) -> state``; ``step(state, args) -> state`` (one pass of the loop: the first
    evaluates the start, every later one is a trial step; a state that is ``done`` comes back
    unchanged); ``done(state) -> bool``; ``result(state) -> LMResult``.
    :func:`levenberg_marquardt` is ``result(while_loop(not done, step, init(u0)))``; a batch
    driver (:func:`galmoss_jax.solvers.queue.refill_minimise`) vmaps ``step`` over lanes and
    reloads a lane whose problem is done with ``init`` of the next one."""

    init: Callable
    step: Callable
    done: Callable
    result: Callable


def lm_parts(residual_fn, n_par: int, dtype, *, max_iter: int = 100, lambda0: float = 1e-3, ftol: float = 1e-8,
             xtol: float = 1e-8, gtol: float = 1e-8, lambda_up: float | None = None,
             lambda_down: float | None = None, lambda_max: float = 1e16, lower=None, upper=None) -> LMParts:
    """The pieces of :func:`levenberg_marquardt` (same arguments; ``n_par`` and ``dtype`` are
    those of ``u0``) for ``residual_fn(u, args)``.  Pure and single-problem: vmap ``step``
    over a batch of states and of ``args``."""
    dtype = jnp.dtype(dtype)
    nielsen = lambda_up is None and lambda_down is None
    lambda_up = 10.0 if lambda_up is None else lambda_up
    lambda_down = 0.1 if lambda_down is None else lambda_down
    box_lo = jnp.full((n_par,), -jnp.inf, dtype) if lower is None else jnp.asarray(lower, dtype)
    box_hi = jnp.full((n_par,), jnp.inf, dtype) if upper is None else jnp.asarray(upper, dtype)
    eps = jnp.finfo(dtype).eps
    floor_tol = 10 * eps
    ftol_ = jnp.maximum(jnp.asarray(ftol, dtype), floor_tol)
    xtol_ = jnp.maximum(jnp.asarray(xtol, dtype), floor_tol)
    gtol_ = jnp.maximum(jnp.asarray(gtol, dtype), floor_tol)
    lam_min = jnp.asarray(eps, dtype)
    lam_max = jnp.asarray(lambda_max, dtype)
    up = jnp.asarray(lambda_up, dtype)
    down = jnp.asarray(lambda_down, dtype)
    eye = jnp.eye(n_par, dtype=dtype)

    def evaluate(v, args):
        """chi2, J^T J and J^T r at v (one forward-mode Jacobian, P tangents)."""
        def _fr(w):
            r = jnp.ravel(residual_fn(w, args)).astype(dtype)
            return r, r

        jac, r = jax.jacfwd(_fr, has_aux=True)(v)
        chi2 = jnp.sum(r * r)
        jtj = jnp.matmul(jac.T, jac, precision=_HIGHEST)
        g = jnp.matmul(jac.T, r, precision=_HIGHEST)
        ok = jnp.isfinite(chi2) & _all_finite(jtj) & _all_finite(g)
        return chi2, jtj, g, ok

    def damped_step(jtj, g, lam):
        """Solve (J^T J + lam D) du = -g in scaled variables."""
        d = jnp.diagonal(jtj)
        dmax = jnp.max(d)
        floor = eps * jnp.where(dmax > 0, dmax, 1)
        dd = jnp.maximum(d, floor)
        s = 1 / jnp.sqrt(dd)
        m = jtj * s[:, None] * s[None, :] + lam * eye
        chol = jnp.linalg.cholesky(m)
        z = cho_solve((chol, True), -s * g)
        return s * z

    # The start is the loop's first pass (``started`` False: a zero step, so the trial point
    # is u0 and its evaluation fills the state), so that the residual + Jacobian graph is
    # traced and compiled once, not twice: that halves the compile time of a fit.
    zero = jnp.zeros((), dtype)

    def init(u0):
        u0 = jnp.asarray(u0, dtype)
        return LMState(u0, jnp.asarray(jnp.inf, dtype), jnp.zeros((n_par, n_par), dtype), jnp.zeros((n_par,), dtype),
                       jnp.asarray(lambda0, dtype), jnp.int32(0), jnp.int32(MAX_ITER), jnp.asarray(False),
                       jnp.asarray(False), jnp.asarray(2, dtype))

    def done(state):
        return state.done

    def projected(u, g):
        """``g`` (= J^T r) without the components of parameters held on the box by it (on the
        lower edge with the descent direction -g pointing down, or on the upper edge pointing
        up): the step and the gtol test treat those parameters as fixed (an active set), so
        that the others converge as in an unconstrained fit."""
        held = ((u <= box_lo) & (g > 0)) | ((u >= box_hi) & (g < 0))
        return jnp.where(held, 0, g), held

    def step(state, args):
        u, chi2, jtj, g, lam, n_it, status, done, started, nu = state
        g_free, held = projected(u, g)
        jtj_free = jnp.where(held[:, None] | held[None, :], 0, jtj)
        du = damped_step(jnp.where(started, jtj_free, eye), g_free, lam)
        du = jnp.clip(u + du, box_lo, box_hi) - u       # the trial point stays in the box
        # predicted reduction of chi2 by the linear model: -2 g.du - du^T J^T J du (for the
        # unprojected step this is du^T J^T J du + 2 lam du^T D du >= 0)
        pred = -2 * jnp.dot(g, du) - jnp.dot(du, jnp.matmul(jtj, du, precision=_HIGHEST))
        step_ok = _all_finite(du) & jnp.isfinite(pred) & ~done & started
        du = jnp.where(step_ok, du, 0)  # never evaluate the model at a NaN point
        pred = jnp.where(step_ok, pred, 0)
        u_t = u + du
        chi2_t, jtj_t, g_t, ok_t = evaluate(u_t, args)

        # first pass: the state at the start (u is u0 until the first pass is done)
        finite0 = ok_t & _all_finite(u)
        conv0 = finite0 & _gtol_met(chi2_t, jtj_t, projected(u_t, g_t)[0], gtol_)
        maxed0 = finite0 & ~conv0 & (max_iter <= 0)
        status0 = jnp.where(~finite0, NONFINITE, jnp.where(conv0, SUCCESS, MAX_ITER)).astype(jnp.int32)
        first = (u, jnp.where(finite0, chi2_t, zero), jnp.where(finite0, jtj_t, 0), jnp.where(finite0, g_t, 0),
                 lam, n_it, status0, ~finite0 | conv0 | maxed0, jnp.asarray(True), nu)

        trial_ok = step_ok & ok_t
        accept = trial_ok & (chi2_t < chi2)

        safe_chi2 = jnp.where(chi2 > 0, chi2, 1)
        actred = jnp.where(trial_ok, (chi2 - chi2_t) / safe_chi2, -1)
        prered = pred / safe_chi2
        f_conv = trial_ok & (jnp.abs(actred) <= ftol_) & (prered <= ftol_) & (actred <= 2 * prered)
        x_conv = trial_ok & (jnp.linalg.norm(du) <= xtol_ * (jnp.linalg.norm(u) + xtol_))

        u_n = jnp.where(accept, u_t, u)
        chi2_n = jnp.where(accept, chi2_t, chi2)
        jtj_n = jnp.where(accept, jtj_t, jtj)
        g_n = jnp.where(accept, g_t, g)
        if nielsen:   # Nielsen's rule: lam follows the gain ratio rho = actual / predicted drop
            rho = jnp.where(prered > 0, actred / jnp.where(prered > 0, prered, 1), 0)
            shrink = jnp.maximum(1 / 3, 1 - (2 * rho - 1) ** 3)
            lam_n = jnp.where(accept, jnp.maximum(lam * shrink, lam_min), lam * nu)
            nu_n = jnp.where(accept, 2, 2 * nu).astype(dtype)
        else:         # Marquardt's fixed factors
            lam_n = jnp.where(accept, jnp.maximum(lam * down, lam_min), lam * up)
            nu_n = nu
        g_conv = accept & _gtol_met(chi2_n, jtj_n, projected(u_n, g_n)[0], gtol_)
        conv = f_conv | x_conv | g_conv
        n_n = n_it + 1
        stalled = ~conv & (lam_n > lam_max)
        maxed = ~conv & ~stalled & (n_n >= max_iter)
        status_n = jnp.where(
            conv, SUCCESS, jnp.where(stalled, STALLED, jnp.where(maxed, MAX_ITER, status))
        ).astype(jnp.int32)
        done_n = conv | stalled | maxed

        new = (u_n, chi2_n, jtj_n, g_n, lam_n, n_n, status_n, done_n, started, nu_n)
        new = tuple(jnp.where(started, nw, f) for nw, f in zip(new, first))
        # A problem that has stopped must not change: guard with its own flag.
        return LMState(*(jnp.where(done, o, nw) for o, nw in zip(state, new)))

    def result(state):
        return LMResult(u=state.u, chi2=state.chi2, n_iter=state.n_iter, status=state.status, jtj=state.jtj,
                        grad=2 * state.g, lam=state.lam)

    return LMParts(init=init, step=step, done=done, result=result)


def levenberg_marquardt(
    residual_fn,
    u0,
    args=None,
    *,
    max_iter: int = 100,
    lambda0: float = 1e-3,
    ftol: float = 1e-8,
    xtol: float = 1e-8,
    gtol: float = 1e-8,
    lambda_up: float | None = None,
    lambda_down: float | None = None,
    lambda_max: float = 1e16,
    lower=None,
    upper=None,
) -> LMResult:
    """Minimise ``sum(residual_fn(u, args)**2)`` by Levenberg–Marquardt, for one problem.

    Pure JAX: ``jax.vmap(lambda u, a: levenberg_marquardt(f, u, a))`` solves a
    batch with per-problem damping and stopping; wrap that in ``jax.jit``.

    Args:
        residual_fn: ``residual_fn(u, args) -> r``, a JAX-traceable function
            returning the residuals (any shape; flattened). The objective is
            ``sum(r ** 2)``; for a chi-square fit pass ``mask * (data - model) / sigma``.
        u0: initial unconstrained parameters, 1-D float array of length P. Its
            dtype (float32 or float64) sets the working precision; the residuals
            are cast to it.
        args: pytree passed through to ``residual_fn`` (data, sigma, ...).
        max_iter: maximum number of trial steps (each one Jacobian evaluation).
        lambda0: initial Marquardt damping.
        ftol: stop when both the actual and the predicted relative reduction of
            chi2 in a step are <= ftol (MINPACK ``info=1``).
        xtol: stop when the step is small: ``|du| <= xtol * (|u| + xtol)``
            (Euclidean norms; as ``scipy.optimize.least_squares``).
        gtol: stop when the largest cosine between the residual vector and a
            Jacobian column is <= gtol (MINPACK ``info=4``), or chi2 == 0.
            ftol, xtol and gtol are raised to at least ``10 * eps`` of the dtype
            (1.2e-6 in float32, 2.2e-15 in float64): smaller values cannot be
            resolved and would only burn iterations.
        lambda_up, lambda_down: fixed damping multipliers after a rejected / accepted step
            (Marquardt's rule; giving either selects it, the other then defaults to 10 / 0.1).
            By default (both None) the damping follows Nielsen's rule (below).
        lambda_max: damping ceiling; exceeding it ends the problem with STALLED.
        lower, upper: optional bounds (P,) on ``u`` (-inf / +inf for none): every trial point
            is projected onto this box (the engine passes the points just inside the fitting
            bounds, where the parameter transforms flatten).  ``u0`` should lie inside it.

    Returns:
        :class:`LMResult` with the best parameters ``u``, ``chi2``, ``n_iter``,
        ``status``, ``jtj = J^T J`` and ``grad = 2 J^T r`` at ``u``.

    Algorithm / stopping rules:
        Each iteration solves the scaled damped normal equations
        ``(J^T J + lam * D) du = -J^T r`` with ``D = diag(J^T J)`` (entries
        floored at ``eps * max(D)`` so a parameter with no influence gets a zero
        step, not NaN) by Cholesky, and projects ``u + du`` onto the box. The trial point
        is accepted only if its residuals and Jacobian are finite and chi2 strictly
        decreases.  Nielsen's damping rule (H. B. Nielsen 1999; Madsen, Nielsen & Tingleff
        2004, "Methods for non-linear least squares problems", Algorithm 3.16): after an
        accepted step lam is multiplied by ``max(1/3, 1 - (2 rho - 1)^3)`` (floored at eps),
        rho being the ratio of the actual to the predicted drop of chi2, and ``nu = 2``;
        after a rejected one by ``nu``, and ``nu`` doubles.  With the engine's box, compared
        with the fixed factors 10 / 0.1 and no box: on the 200 simulated galaxies of
        tests/test_init_multistart.py from their automatic values 11 % fewer trial steps (1317
        against 1483), every fit SUCCESS (against four singular Hessians of parameters run onto
        a bound and one MAX_ITER), the same chi2; from one poor start for all (``starts=1``) 1
        instead of 27 fits end more than 3 above the truth's chi2; on the 26-parameter
        spiral-arm model of notebooks/spiral.ipynb (float64) 118 steps to a chi2 0.5 lower,
        where the fixed factors stopped at the 300-step limit.  With fixed factors lam is
        multiplied by ``lambda_down`` after an accepted step, by ``lambda_up`` after a rejected
        one; ``u`` is kept after a rejection either way. Convergence (SUCCESS) is tested after
        every trial step, accepted or not, exactly as MINPACK does: ftol
        (``|actred| <= ftol`` and ``prered <= ftol`` and ``actred <= 2 prered``)
        or xtol (on a finite trial), and gtol at the start and at each accepted
        point. Otherwise the problem ends with STALLED when lam > lambda_max, or
        MAX_ITER after ``max_iter`` trial steps. A non-finite start returns at
        once with NONFINITE, ``u = u0`` and ``n_iter = 0``; it never touches the
        other members of a vmapped batch.
    """
    u0 = jnp.asarray(u0)
    if not jnp.issubdtype(u0.dtype, jnp.floating):
        u0 = u0.astype(jnp.result_type(float))
    if u0.ndim != 1:
        raise ValueError(f"levenberg_marquardt: u0 must be 1-D (P,), got shape {u0.shape}")
    parts = lm_parts(residual_fn, u0.shape[0], u0.dtype, max_iter=max_iter, lambda0=lambda0, ftol=ftol,
                     xtol=xtol, gtol=gtol, lambda_up=lambda_up, lambda_down=lambda_down, lambda_max=lambda_max,
                     lower=lower, upper=upper)
    state = jax.lax.while_loop(lambda s: ~parts.done(s), lambda s: parts.step(s, args), parts.init(u0))
    return parts.result(state)


class LevenbergMarquardt(eqx.Module):
    """The Levenberg–Marquardt solver as a value (the default of :func:`galmoss_jax.solve` and
    :func:`galmoss_jax.fit`): its settings, and :meth:`minimise`.

    Instances with equal settings are equal and hash alike, so passing a new
    ``LevenbergMarquardt()`` to a jit-compiled fit reuses the compiled program.  Settings as in
    :func:`levenberg_marquardt`; ``max_iter`` counts trial steps (one Jacobian each).
    """

    max_iter: int = eqx.field(default=100, static=True)
    ftol: float = eqx.field(default=1e-8, static=True)
    xtol: float = eqx.field(default=1e-8, static=True)
    gtol: float = eqx.field(default=1e-8, static=True)
    lambda0: float = eqx.field(default=1e-3, static=True)

    #: the solver returns J^T J at the optimum (the engine's Gauss-Newton errors reuse it)
    gives_jtj = True

    def __check_init__(self):
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            from .._errors import ParameterError
            raise ParameterError(f"max_iter must be a positive integer, got {self.max_iter!r}")

    def minimise(self, residual_fn, u0, args=None, lower=None, upper=None) -> LMResult:
        """Minimise ``sum(residual_fn(u, args) ** 2)`` from ``u0`` (one problem; vmap it),
        ``u`` kept inside ``[lower, upper]`` (optional, (P,))."""
        return levenberg_marquardt(residual_fn, u0, args, max_iter=self.max_iter, lambda0=self.lambda0,
                                   ftol=self.ftol, xtol=self.xtol, gtol=self.gtol, lower=lower, upper=upper)

    def parts(self, residual_fn, n_par: int, dtype, lower=None, upper=None) -> LMParts:
        """This solver as pure single-problem pieces (:func:`lm_parts`), for a batch driver that
        refills finished lanes (:func:`galmoss_jax.solvers.queue.refill_minimise`)."""
        return lm_parts(residual_fn, n_par, dtype, max_iter=self.max_iter, lambda0=self.lambda0, ftol=self.ftol,
                        xtol=self.xtol, gtol=self.gtol, lower=lower, upper=upper)
