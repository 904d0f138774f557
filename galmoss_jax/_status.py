"""Per-galaxy status codes: one enumeration, its messages, used by every solver and table.

A numerical failure of one galaxy is never an exception: it is the galaxy's ``status`` (an
int32 inside compiled code, a column of every result table, ``status_msg`` beside it).

======  ==================  ===================================================================
code    name                meaning
======  ==================  ===================================================================
0       SUCCESS             converged (LM: ftol, xtol or gtol met; Optax: patience reached)
1       MAX_ITER            stopped at the iteration limit; the result is the best point found
2       NONFINITE           non-finite data, model, parameters or gradient at the start (the
                            start is returned) or, in the Optax loop, later in the run
3       STALLED             no downhill step found (LM damping above its ceiling); best point
4       SINGULAR_HESSIAN    converged, but the Hessian is singular: errors undefined (NaN)
5       NO_DATA             no usable pixels (all masked)
10      INPUT_MISSING       survey: an input file is missing (galaxy not fitted)
11      INPUT_INVALID       survey: an input is unusable (galaxy not fitted)
======  ==================  ===================================================================
"""
from __future__ import annotations

import enum

__all__ = ["Status", "STATUS_MESSAGES", "status_message"]


class Status(enum.IntEnum):
    """Status of one fit.  ``int(status)`` is the table code; ``.message`` its text."""

    SUCCESS = 0
    MAX_ITER = 1
    NONFINITE = 2
    STALLED = 3
    SINGULAR_HESSIAN = 4
    NO_DATA = 5
    INPUT_MISSING = 10
    INPUT_INVALID = 11

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def ok(self) -> bool:
        """True when the fitted values can be used (SUCCESS, or MAX_ITER's best point)."""
        return self in (Status.SUCCESS, Status.MAX_ITER)


_MESSAGES = {
    Status.SUCCESS: "success",
    Status.MAX_ITER: "maximum number of iterations reached; result is the best point found",
    Status.NONFINITE: "non-finite values met (data, model, parameters or gradient)",
    Status.STALLED: "no downhill step found; result is the best point found",
    Status.SINGULAR_HESSIAN: "converged, but the Hessian is singular: errors undefined",
    Status.NO_DATA: "no usable pixels (all masked)",
    Status.INPUT_MISSING: "input file missing",
    Status.INPUT_INVALID: "input unusable (unreadable, wrong shape, invalid PSF or no noise model)",
}

#: ``{code: message}`` for every status (the same texts as ``Status(code).message``).
STATUS_MESSAGES = {int(s): m for s, m in _MESSAGES.items()}


def status_message(code) -> str:
    """The message of a status code (``"status N"`` for a code this version does not know)."""
    try:
        return Status(int(code)).message
    except ValueError:
        return f"status {int(code)}"
