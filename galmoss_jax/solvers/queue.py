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

Once the queue is empty the lanes fall idle one by one while the slowest problems finish: a
queue only a few times longer than the lanes leaves them idle for a good part of its passes.
With ``block`` narrower than ``lanes`` a pass steps only the blocks that hold a busy lane (the
busy lanes gathered first), so that tail costs what its busy lanes do; that is the choice where
a lane-step costs the same at any width (a CPU core), not on an accelerator, where one wide
block is one kernel launch.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["refill_minimise", "RefillStats"]


class RefillStats(NamedTuple):
    """Work counters of :func:`refill_minimise` (int32 scalars; a pytree).

    Attributes:
        passes: passes of the loop (each one step of every lane in flight).
        evaluations: steps that worked on a problem (sum over problems of their passes).
        lane_steps: steps computed, idle lanes included: ``lanes * passes``, or with blocks
            ``block`` times the blocks run.
        lanes: the number of lanes (a Python int).
    """

    passes: jax.Array
    evaluations: jax.Array
    lane_steps: jax.Array
    lanes: int

    @property
    def occupancy(self):
        """Fraction of the computed lane-steps that worked on a problem: ``evaluations /
        lane_steps`` (``lane_steps = lanes * passes`` unless the lanes run in blocks)."""
        return self.evaluations / jnp.maximum(self.lane_steps, 1)


def _bcast(flag, x):
    """``flag`` (L,) reshaped to broadcast against ``x`` (L, ...)."""
    return flag.reshape(flag.shape + (1,) * (x.ndim - 1))


def refill_minimise(parts, u0, args, *, lanes: int, block: int | None = None, n_real=None):
    """Minimise G problems in ``lanes`` refilled lanes (module docstring); pure JAX, jit it.

    Args:
        parts: the solver's single-problem pieces with ``init(u0) -> state``,
            ``step(state, args) -> state`` and ``done(state) -> bool``
            (:func:`galmoss_jax.solvers.lm.lm_parts`); ``step`` must leave a done state as
            it is.  Arguments shared by every problem (a common PSF) are closed over by
            ``step``.
        u0: (G, P) starts.
        args: pytree of per-problem arguments, each leaf with leading axis G.
        lanes: problems in flight, a Python int; more than G is cut to G.
        block: the vmapped width (default ``lanes``).  With ``block < lanes`` a pass steps the
            lanes in flight in blocks of ``block``, the busy lanes first, and runs only the
            blocks that hold a busy lane: when the queue has run dry and lanes fall idle, the
            pass gets cheaper instead of stepping idle lanes.  That pays where a lane-step
            costs the same at any width (one CPU core); an accelerator wants one wide block.
        n_real: only problems ``0 .. n_real - 1`` are solved (an int or traced int32 <= G;
            default G): a queue padded to a fixed length G compiles once for any batch up to
            G.  The states of the others are ``init(u0)``, untouched.

    Returns:
        ``(states, stats)``: the final state of every problem, stacked on a leading axis G
        (``jax.vmap(parts.result)`` turns them into results), and :class:`RefillStats`.
    """
    G = u0.shape[0]
    L = max(1, min(int(lanes), G))
    B = L if block is None else max(1, min(int(block), L))
    L = -(-L // B) * B           # whole blocks
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
                  evaluations=jnp.int32(0), lane_steps=jnp.int32(0))

    def cond(c):
        return c["finished"] < n_real

    def step_lanes(lane, sel, idx):
        """One step of the lanes ``sel``: each gathers its own problem's arguments."""
        sub = jax.tree.map(lambda a: a[sel], lane)
        sub_args = jax.tree.map(lambda a: a[jnp.clip(idx[sel], 0, G - 1)], args)
        return jax.tree.map(lambda a, n: a.at[sel].set(n), lane, step(sub, sub_args))

    def body(c):
        idx = c["idx"]
        if B == L:
            lane = step_lanes(c["lane"], jnp.arange(L), idx)
            n_blocks = jnp.int32(1)
        else:   # the busy lanes first, in blocks of B; only the blocks that hold one are run
            order = jnp.argsort(~c["active"], stable=True).astype(jnp.int32)
            n_blocks = (jnp.sum(c["active"], dtype=jnp.int32) + B - 1) // B
            lane = jax.lax.fori_loop(
                0, n_blocks, lambda k, ln: step_lanes(ln, jax.lax.dynamic_slice(order, (k * B,), (B,)), idx),
                c["lane"])
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
                    evaluations=c["evaluations"] + jnp.sum(c["active"], dtype=jnp.int32),
                    lane_steps=c["lane_steps"] + n_blocks * B)

    c = jax.lax.while_loop(cond, body, carry0)
    return c["states"], RefillStats(passes=c["passes"], evaluations=c["evaluations"], lane_steps=c["lane_steps"],
                                    lanes=L)
