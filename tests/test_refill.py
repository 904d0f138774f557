"""Refilled lanes (:mod:`galmoss_jax.solvers.queue`, ``fit(chunk_size > 1)`` with
Levenberg-Marquardt): a batch gives the results of one galaxy at a time, and costs the sum of
its galaxies' passes rather than the lanes times the slowest.

References: the single-problem solver (:func:`levenberg_marquardt`, ``fit(chunk_size=1)``)
for the equality, which is the property here; Rosenbrock's known minimum (1, 1) and GalSim's
rendering of the galaxies (their true parameters) as independent checks of the values; a
replay of the lane schedule from the problems' own pass counts for the loop passes.
"""
from __future__ import annotations

import heapq
import math

import galsim
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import galmoss_jax as gj
from galmoss_jax import _engine
from galmoss_jax.solvers import MAX_ITER, NONFINITE, SUCCESS, levenberg_marquardt
from galmoss_jax.solvers.lm import lm_parts
from galmoss_jax.solvers.queue import refill_minimise


def schedule(passes, lanes):
    """Loop passes of ``lanes`` refilled lanes for problems needing ``passes`` passes each, in
    queue order (a lane that frees at pass t takes the next problem, which ends at t + p)."""
    ends = list(passes[:lanes])
    heapq.heapify(ends)
    for p in passes[lanes:]:
        heapq.heappush(ends, heapq.heappop(ends) + p)
    return max(ends)


# --------------------------------------------------------------------------- the driver alone
def rosenbrock(u, a):
    """Rosenbrock's valley scaled by a: minimum (1, 1) with chi2 = 0 for every a > 0."""
    return jnp.stack([a * (u[1] - u[0] ** 2), 1.0 - u[0]])


MAX = 25
STARTS = np.array([[0.9, 0.8], [-1.2, 1.0], [1.1, 1.2], [0.5, 0.2], [1.3, 1.7], [0.95, 0.9], [1.05, 1.1],
                   [0.7, 0.5], [np.nan, 1.0], [1.2, 1.4], [0.8, 0.6], [1.0, 1.05]])
SCALES = np.array([10.0, 40.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0])


def test_refilled_lanes_equal_single_solves_and_cost_the_sum_of_passes():
    parts = lm_parts(rosenbrock, 2, jnp.float64, max_iter=MAX)
    lanes = 3
    run = jax.jit(lambda u0, a: refill_minimise(parts, u0, a, lanes=lanes))
    states, stats = run(jnp.asarray(STARTS), jnp.asarray(SCALES))
    batch = jax.tree.map(np.asarray, jax.vmap(parts.result)(states))
    single = jax.jit(lambda u0, a: levenberg_marquardt(rosenbrock, u0, a, max_iter=MAX))
    for k in range(len(STARTS)):
        one = jax.tree.map(np.asarray, single(jnp.asarray(STARTS[k]), SCALES[k]))
        # the same steps (status and count), to the rounding of a vmapped evaluation: Nielsen's
        # damping factor, a cubic in the gain ratio, carries that rounding from step to step
        # (1.8e-11 relative measured after 25 steps in the steep valley)
        assert batch.status[k] == one.status and batch.n_iter[k] == one.n_iter
        np.testing.assert_allclose(batch.u[k], one.u, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(batch.chi2[k], one.chi2, rtol=1e-10, atol=1e-28)
    # the far start in the steep valley hits the iteration limit; the NaN start stops at once
    assert batch.status[1] == MAX_ITER and batch.n_iter[1] == MAX
    assert batch.status[8] == NONFINITE and batch.n_iter[8] == 0
    np.testing.assert_array_equal(batch.u[8], STARTS[8])
    ok = batch.status == SUCCESS
    assert ok.sum() == len(STARTS) - 2
    np.testing.assert_allclose(batch.u[ok], 1.0, atol=1e-6)      # Rosenbrock's minimum
    # the cost: every pass of a problem is one evaluation (its start, then n_iter trial steps)
    passes = batch.n_iter + 1
    assert int(stats.evaluations) == passes.sum()
    assert int(stats.passes) == schedule(list(passes), lanes)
    slowest, total = passes.max(), passes.sum()
    assert int(stats.passes) <= max(math.ceil(total / lanes), slowest) + passes[passes < slowest].max()
    vmapped_chunks = sum(passes[a:a + lanes].max() for a in range(0, len(passes), lanes))
    assert int(stats.passes) < 0.75 * vmapped_chunks
    assert 0.8 <= float(stats.occupancy) <= 1.0


def test_lanes_stepped_in_blocks_skip_the_idle_ones():
    parts = lm_parts(rosenbrock, 2, jnp.float64, max_iter=MAX)
    run = jax.jit(lambda u0, a, block: refill_minimise(parts, u0, a, lanes=6, block=block), static_argnums=2)
    wide, w = run(jnp.asarray(STARTS), jnp.asarray(SCALES), None)
    narrow, n = run(jnp.asarray(STARTS), jnp.asarray(SCALES), 2)
    for a, b in zip(wide, narrow):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-14)
    passes = np.asarray(wide.n_iter) + 1
    assert int(n.passes) == int(w.passes) == schedule(list(passes), 6)
    assert int(n.evaluations) == int(w.evaluations) == passes.sum()
    assert int(w.lane_steps) == 6 * int(w.passes)
    # the blocks run hold every busy lane, in whole blocks of 2
    assert passes.sum() <= int(n.lane_steps) < passes.sum() + 2 * int(n.passes)
    assert float(n.occupancy) > float(w.occupancy)


def test_a_queue_padded_past_the_batch_fits_only_its_real_problems():
    parts = lm_parts(rosenbrock, 2, jnp.float64, max_iter=MAX)
    run = jax.jit(lambda u0, a, n: refill_minimise(parts, u0, a, lanes=4, n_real=n))
    full, _ = run(jnp.asarray(STARTS), jnp.asarray(SCALES), 12)
    part, stats = run(jnp.asarray(STARTS), jnp.asarray(SCALES), 5)
    for f, p in zip(full, part):
        np.testing.assert_array_equal(np.asarray(p)[:5], np.asarray(f)[:5])
    assert not np.any(np.asarray(part.started)[5:])     # the padding was never run
    assert int(stats.evaluations) == int(np.sum(np.asarray(full.n_iter)[:5] + 1))


# --------------------------------------------------------------------------- fit
# Elliptical Gaussian galaxies (the refill machinery does not depend on the profile; this one
# compiles fastest) with a plain midpoint pixel integration, which GalSim's exact rendering
# confirms on these smooth profiles: each program compiles in a few seconds.
S, ZP = 24, 25.0
PSF_SIGMA = 1.0
NAMES = ("x0", "y0", "mag", "fwhm", "q", "pa")
TRUTH = dict(x0=[11.3, 12.2, 11.6, 11.9, 12.4, 11.1, 11.7], y0=[11.8, 11.4, 12.3, 11.6, 11.2, 12.0, 11.9],
             mag=[17.0, 17.6, 16.8, 17.3, 17.1, 16.9, 17.4], fwhm=[4.0, 3.2, 5.1, 3.7, 4.4, 3.5, 4.6],
             q=[0.7, 0.55, 0.85, 0.6, 0.75, 0.9, 0.5], pa=[20.0, -35.0, 60.0, 5.0, -70.0, 40.0, -10.0])
G = len(TRUTH["q"])
HARD, BAD = 4, 5            # galaxy 4 starts far off; galaxy 5's data overflow its chi2
OPTIONS = dict(starts=1, max_iter=8, sampling=gj.Sampling(ring_window=0, mid_window=0, window=0, psf_window=0))


def galsim_image(fwhm, q, pa, mag, x0, y0):
    """GalSim's PSF-convolved, pixel-integrated Gaussian (conventions as tests/test_galsim.py)."""
    gal = galsim.Gaussian(fwhm=fwhm * math.sqrt(q), flux=10.0 ** (-0.4 * (mag - ZP)))
    gal = gal.shear(galsim.Shear(q=q, beta=(pa + 90.0) * galsim.degrees))
    off = galsim.PositionD(x0 - (S - 1) / 2.0, y0 - (S - 1) / 2.0)
    return galsim.Convolve([gal, galsim.Gaussian(sigma=PSF_SIGMA)]).drawImage(
        nx=S, ny=S, scale=1.0, method="auto", offset=off).array.astype(np.float64)


@pytest.fixture(scope="module")
def galaxies():
    rng = np.random.default_rng(16)
    clean = np.stack([galsim_image(*(TRUTH[k][g] for k in ("fwhm", "q", "pa", "mag", "x0", "y0")))
                      for g in range(G)])
    peak = clean.max(axis=(1, 2), keepdims=True)
    sigma = 0.01 * peak * np.sqrt(1.0 + clean / peak)
    data = clean + sigma * rng.normal(size=clean.shape)
    data[BAD] *= 1e200          # finite, but its squared residuals overflow: a NONFINITE start
    psf = galsim.Gaussian(sigma=PSF_SIGMA).drawImage(nx=9, ny=9, scale=1.0, method="no_pixel").array
    init = {k: np.array(TRUTH[k], float) for k in NAMES}
    init["fwhm"] = init["fwhm"] * 1.15
    init["mag"] = init["mag"] + 0.2
    init["fwhm"][HARD], init["q"][HARD], init["pa"][HARD] = 12.0, 0.3, -20.0
    return data, sigma, psf / psf.sum(), init


def _fit(galaxies, chunk, psf=None, **kw):
    data, sigma, p, init = galaxies
    with _engine.refill_counters() as record:
        res = gj.fit("gaussian", data, sigma=sigma, psf=p if psf is None else psf, init=init, zeropoint=ZP,
                     chunk_size=chunk, **OPTIONS, **kw)
    return res, record


@pytest.fixture(scope="module")
def singles(galaxies):
    res, record = _fit(galaxies, 1)
    assert record == []            # one galaxy per call: no refilled lanes
    return res


def _assert_same_fits(res, ref):
    """Status and n_iter as one galaxy at a time; the statistic to rounding, the parameters
    and errors to a tiny fraction of their 1-sigma errors."""
    np.testing.assert_array_equal(res.status, ref.status)
    assert np.all(np.abs(res.n_iter - ref.n_iter) <= 1)
    good = ref.status != NONFINITE
    np.testing.assert_allclose(res.chi2[good], ref.chi2[good], rtol=1e-9)
    err = ref.errors
    for k in NAMES:
        e = err[f"gaussian.{k}"][good]
        assert np.all(np.abs(res[k][good] - ref[k][good]) <= 1e-4 * e), k
        np.testing.assert_allclose(res.errors[f"gaussian.{k}"][good], e, rtol=1e-5)


def test_fit_in_refilled_lanes_equals_one_galaxy_at_a_time(galaxies, singles, monkeypatch):
    monkeypatch.setattr(_engine, "CPU_BLOCK", 3)     # all lanes in one vmapped step, as on a GPU
    res, record = _fit(galaxies, 3)
    _assert_same_fits(res, singles)
    # one call: the 7 galaxies in a queue of 12 (3 lanes x 4; the padding is never fitted)
    (stats,) = record
    assert int(stats.lanes) == 3
    passes = res.n_iter + 1
    assert int(stats.evaluations) == passes.sum()
    assert int(stats.passes) == schedule(list(passes), 3)
    # the galaxy that could not be evaluated stopped at once, the far start hit the limit,
    # and neither touched the others (equal to their fits one at a time, above)
    assert res.status[BAD] == NONFINITE and res.n_iter[BAD] == 0 and np.isnan(res.chi2[BAD])
    assert res.status[HARD] == MAX_ITER and res.n_iter[HARD] == OPTIONS["max_iter"]
    # ... nor held them: the others finish while the slow one runs, so the loop is as long as
    # the slowest galaxy plus what is queued behind it, not a chunk's slowest per chunk
    slowest = passes.max()
    assert passes[HARD] == slowest
    assert int(stats.passes) <= slowest + np.sort(passes)[-2]
    assert int(stats.passes) < sum(passes[a:a + 3].max() for a in range(0, G, 3))
    # GalSim's truth: the converged fits recover it within their errors
    ok = res.status == SUCCESS
    assert ok.sum() == G - 2
    for k in NAMES:
        pull = (res[k][ok] - np.array(TRUTH[k])[ok]) / res.errors[f"gaussian.{k}"][ok]
        assert np.all(np.abs(pull) < 5), (k, pull)


def test_per_galaxy_psf_in_refilled_lanes_stepped_in_blocks(galaxies, singles, monkeypatch):
    data, sigma, psf, init = galaxies
    cube = np.broadcast_to(psf, (G,) + psf.shape)
    monkeypatch.setattr(_engine, "CPU_BLOCK", 2)
    res, record = _fit(galaxies, 3, psf=cube)
    _assert_same_fits(res, singles)
    (stats,) = record
    passes = res.n_iter + 1
    if jax.default_backend() == "cpu":   # 3 lanes in blocks of 2: 4 lanes
        assert int(stats.lanes) == 4 and int(stats.passes) == schedule(list(passes), 4)
        assert int(stats.lane_steps) < 4 * int(stats.passes)


def test_cpu_default_steps_each_busy_lane_alone(galaxies, singles):
    res, record = _fit(galaxies, 3)
    (stats,) = record
    passes = res.n_iter + 1
    assert int(stats.passes) == schedule(list(passes), 3)
    if jax.default_backend() == "cpu":
        # no idle lane-step, and each galaxy takes the steps of its single fit (the single fit
        # is solve's program, without a batch axis, so XLA may round differently)
        assert int(stats.lane_steps) == int(stats.evaluations) == passes.sum()
        np.testing.assert_array_equal(res.n_iter, singles.n_iter)
        for k in NAMES:
            np.testing.assert_allclose(res[k], singles[k], rtol=1e-10, err_msg=k)
    # a batch of another size that pads to the same queue (8 galaxies: 3 lanes x 4) reuses the
    # compiled program, and its galaxies get the same fits
    compiled = _engine._solve_refill._cache_size()
    data, sigma, psf, init = galaxies
    more = (np.concatenate([data, data[:1]]), np.concatenate([sigma, sigma[:1]]), psf,
            {k: np.concatenate([v, v[:1]]) for k, v in init.items()})
    res8, _ = _fit(more, 3)
    assert _engine._solve_refill._cache_size() == compiled
    np.testing.assert_array_equal(res8.status[:G], res.status)
    np.testing.assert_allclose(res8["fwhm"][[0, G]], res["fwhm"][[0, 0]], rtol=1e-10)
