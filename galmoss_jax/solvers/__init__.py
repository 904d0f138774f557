"""Per-problem minimisers written in pure JAX, to be vmapped over a galaxy axis.

* :class:`LevenbergMarquardt` / :func:`levenberg_marquardt` — damped Gauss–Newton on a
  residual vector (the default).
* :class:`OptaxSolver` / :func:`optax_minimise` — any ``optax.GradientTransformation`` on the
  sum of squared residuals.

A batch of Levenberg–Marquardt problems can run in refilled lanes
(:func:`galmoss_jax.solvers.queue.refill_minimise` over :func:`galmoss_jax.solvers.lm.lm_parts`):
a lane whose problem is done takes the next waiting one, inside one compiled loop.

Solvers are values: build one once and pass it to :func:`galmoss_jax.solve` or
:func:`galmoss_jax.fit`; equal solvers reuse the same compiled program.  Both stop each
problem on its own and report an int32 status (:class:`galmoss_jax.Status`).
"""
import dataclasses
import functools
import numbers

from .._errors import ParameterError
from .._status import STATUS_MESSAGES, Status
from .lm import MAX_ITER, NONFINITE, STALLED, SUCCESS, LevenbergMarquardt, LMResult, levenberg_marquardt
from .optax_loop import OptaxResult, OptaxSolver, optax_minimise

__all__ = [
    "LevenbergMarquardt", "OptaxSolver", "as_solver", "levenberg_marquardt", "LMResult", "optax_minimise",
    "OptaxResult", "Status", "SUCCESS", "MAX_ITER", "NONFINITE", "STALLED", "STATUS_MESSAGES",
]


@functools.lru_cache(maxsize=None)
def _default_adam():
    """``optax.adam(0.05)``, built once, so that ``solver="adam"`` never recompiles."""
    import optax

    return optax.adam(0.05)


def as_solver(solver="lm", *, optimizer=None, max_iter=None):
    """The solver value for ``solver`` (``"lm"``, ``"adam"``, a :class:`LevenbergMarquardt`, an
    :class:`OptaxSolver` or an ``optax.GradientTransformation``), with ``max_iter`` applied.

    ``optimizer`` is the older way to give an Optax optimiser; it goes with ``solver="adam"``
    (replacing the default ``optax.adam(0.05)``) and is refused with Levenberg–Marquardt,
    which it would not change.
    """
    import optax

    if optimizer is not None:
        if not (isinstance(solver, str) and solver == "adam"):
            raise ParameterError(f"optimizer is given, but solver={solver!r} does not use it; "
                                 "pass the optimiser as solver= instead")
        solver = optimizer
    if isinstance(solver, str):
        if solver == "lm":
            solver = LevenbergMarquardt()
        elif solver == "adam":
            solver = OptaxSolver(_default_adam())
        else:
            raise ParameterError(f"solver must be 'lm', 'adam', a LevenbergMarquardt, an OptaxSolver or an "
                                 f"optax.GradientTransformation, got {solver!r}")
    elif isinstance(solver, optax.GradientTransformation):
        solver = OptaxSolver(solver)
    elif not isinstance(solver, (LevenbergMarquardt, OptaxSolver)):
        raise ParameterError(f"solver must be 'lm', 'adam', a LevenbergMarquardt, an OptaxSolver or an "
                             f"optax.GradientTransformation, got {type(solver).__name__}")
    if max_iter is not None:
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
            raise ParameterError(f"max_iter must be a positive integer, got {max_iter!r}")
        solver = dataclasses.replace(solver, max_iter=int(max_iter))
    return solver
