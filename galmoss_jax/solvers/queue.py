"""A batch of small minimisations in lanes that are refilled: the batch costs the sum of its
problems' iterations, not the batch size times the slowest one.

``jax.vmap`` of a single-problem ``lax.while_loop`` (:func:`galmoss_jax.solvers.levenberg_marquardt`)
runs every member until the slowest stops: on the peer benchmark a batch's median galaxy needs
4-18 Levenberg-Marquardt iterations and its slowest 19-51, so most members spend most passes
idle.  :func:`refill_minimise` runs ``lanes`` problems side by side in ONE ``lax.while_loop``
whose body

1. takes one step of every lane's problem (the solver's single-problem ``step``, vmapped over
   the lanes; each lane gathers its own problem's arguments from the device-resident inputs),
2. writes the state of every lane whose problem is now done into the (G, ...) output buffer at
   that problem's index, and
3. loads the next waiting problem into each such lane (its state re-initialised from its own
   start), until the queue is empty; the loop ends when all problems are done.

A lane's arithmetic is exactly the single-problem loop's (the same ``init``, ``step`` and
``done``), so the results are those of one problem at a time, to the rounding of a vmapped
rather than a single evaluation.  The loop's passes are ``max(sum of passes / lanes, slowest)``
roughly, against ``ceil(G / lanes) * slowest`` for vmapped chunks; :class:`RefillStats` counts
them, and the lane occupancy ``evaluations / (lanes * passes)`` is the fraction of lane-steps
that did work (a pass of a problem is one residual + Jacobian evaluation: for Levenberg-Marquardt
the start and then one per trial step, ``n_iter + 1``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["refill_minimise", "RefillStats"]


class RefillStats(NamedTuple):
    """Work counters of :func:`refill_minimise` (int32 scalars; a pytree).

    Attributes:
        passes: passes of the loop (each one vmapped step of every lane).
        evaluations: steps that worked on a problem (sum over problems of their passes).
        lanes: the number of lanes (a Python int).
    """

    passes: jax.Array
    evaluations: jax.Array
    lanes: int

    @property
    def occupancy(self):
        """Fraction of lane-steps that worked on a problem: ``evaluations / (lanes * passes)``."""
        return self.evaluations / jnp.maximum(self.lanes * self.passes, 1)


def _bcast(flag, x):
    """``flag`` (L,) reshaped to broadcast against ``x`` (L, ...)."""
    return flag.reshape(flag.shape + (1,) * (x.ndim - 1))


def refill_minimise(parts, u0, args, *, lanes: int, n_real=None):
    """Minimise G problems in ``lanes`` refilled lanes (module docstring); pure JAX, jit it.

    Args:
        parts: the solver's single-problem pieces with ``init(u0) -> state``,
            ``step(state, args) -> state`` and ``done(state) -> bool``
            (:func:`galmoss_jax.solvers.lm.lm_parts`); ``step`` must leave a done state as
            it is.  Arguments shared by every problem (a common PSF) are closed over by
            ``step``.
        u0: (G, P) starts.
        args: pytree of per-problem arguments, each leaf with leading axis G.
        lanes: problems in flight (the vmapped width), a Python int; more than G is cut to G.
        n_real: only problems ``0 .. n_real - 1`` are solved (an int or traced int32 <= G;
            default G): a queue padded to a fixed length G compiles once for any batch up to
            G.  The states of the others are ``init(u0)``, untouched.

    Returns:
        ``(states, stats)``: the final state of every problem, stacked on a leading axis G
        (``jax.vmap(parts.result)`` turns them into results), and :class:`RefillStats`.
    """
    G = u0.shape[0]
    L = max(1, min(int(lanes), G))
    n_real = jnp.asarray(G if n_real is None else n_real, jnp.int32)
    init = jax.vmap(parts.init)
    step = jax.vmap(parts.step)
    done = jax.vmap(parts.done)

    def load(idx):
        return init(u0[jnp.clip(idx, 0, G - 1)])

    lane_idx = jnp.arange(L, dtype=jnp.int32)
    active = lane_idx < n_real
    carry0 = dict(states=init(u0), lane=load(lane_idx), idx=lane_idx, active=active,
                  next=jnp.minimum(n_real, L), finished=jnp.int32(0), passes=jnp.int32(0),
                  evaluations=jnp.int32(0))

    def cond(c):
        return c["finished"] < n_real

    def body(c):
        idx = c["idx"]
        lane_args = jax.tree.map(lambda a: a[jnp.clip(idx, 0, G - 1)], args)
        lane = step(c["lane"], lane_args)
        fin = c["active"] & done(lane)
        # the states of the problems just finished go to their rows (an out-of-range row is dropped)
        row = jnp.where(fin, idx, G)
        states = jax.tree.map(lambda buf, s: buf.at[row].set(s, mode="drop"), c["states"], lane)
        # each finished lane takes the next waiting problem, in the queue's order
        cand = c["next"] + jnp.cumsum(fin, dtype=jnp.int32) - 1
        take = fin & (cand < n_real)
        idx = jnp.where(take, cand, idx)
        fresh = load(idx)
        lane = jax.tree.map(lambda f, s: jnp.where(_bcast(take, s), f, s), fresh, lane)
        return dict(states=states, lane=lane, idx=idx, active=jnp.where(fin, take, c["active"]),
                    next=c["next"] + jnp.sum(take, dtype=jnp.int32),
                    finished=c["finished"] + jnp.sum(fin, dtype=jnp.int32), passes=c["passes"] + 1,
                    evaluations=c["evaluations"] + jnp.sum(c["active"], dtype=jnp.int32))

    c = jax.lax.while_loop(cond, body, carry0)
    return c["states"], RefillStats(passes=c["passes"], evaluations=c["evaluations"], lanes=L)
