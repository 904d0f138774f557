"""Per-problem minimisers written in pure JAX, to be vmapped over a galaxy axis.

* :func:`levenberg_marquardt` — damped Gauss–Newton on a residual vector (default).
* :func:`optax_minimise` — any ``optax.GradientTransformation`` on a scalar loss.

Both stop each problem on its own and report an int32 ``status``; see
``STATUS_MESSAGES`` (0 = SUCCESS, 1 = MAX_ITER, 2 = NONFINITE, 3 = STALLED).
"""

from .lm import (
    MAX_ITER,
    NONFINITE,
    STALLED,
    STATUS_MESSAGES,
    SUCCESS,
    LMResult,
    levenberg_marquardt,
)
from .optax_loop import OptaxResult, optax_minimise

__all__ = [
    "levenberg_marquardt",
    "LMResult",
    "optax_minimise",
    "OptaxResult",
    "SUCCESS",
    "MAX_ITER",
    "NONFINITE",
    "STALLED",
    "STATUS_MESSAGES",
]
