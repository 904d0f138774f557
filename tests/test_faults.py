"""Numerical faults inside a batch: a bad galaxy gets its own status and leaves the others alone.

The reference is the same batch (same size G, so the same compiled function) with every bad
galaxy replaced by a copy of a good one: the good rows must agree to the last bit.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from astropy.io import fits

import galmoss_jax as gj
from galmoss_jax import STATUS_MESSAGES, Status, fit
from galmoss_jax.io import write_imgblocks
from galmoss_jax.solvers import NONFINITE, levenberg_marquardt, optax_minimise

SHAPE = (24, 24)
ZP = 25.0
G = 6
MODEL = gj.Model("sersic")
NAMES = ["x0", "y0", "mag", "r_e", "n", "q", "pa"]


def _truth():
    rng = np.random.default_rng(7)
    return {"x0": 11.5 + rng.uniform(-1, 1, G), "y0": 11.5 + rng.uniform(-1, 1, G),
            "mag": rng.uniform(16.5, 18.0, G), "r_e": rng.uniform(2.0, 4.0, G),
            "n": rng.uniform(0.8, 3.0, G), "q": rng.uniform(0.5, 0.9, G), "pa": rng.uniform(-60, 60, G)}


@pytest.fixture(scope="module")
def good_batch():
    truth = _truth()
    img = np.asarray(gj.render(MODEL, truth, SHAPE, zeropoint=ZP))
    rng = np.random.default_rng(11)
    sigma = np.sqrt(img + 1.0)
    data = img + sigma * rng.standard_normal(img.shape)
    mask = np.ones(img.shape, bool)
    init = {k: v * (1.1 if k in ("r_e", "n") else 1.0) + (0.3 if k in ("x0", "mag") else 0.0)
            for k, v in truth.items()}
    return data, sigma, mask, init


def _with_copies(batch, bad, src=0):
    """The batch with rows ``bad`` replaced by copies of row ``src``."""
    data, sigma, mask, init = (np.array(a, copy=True) if not isinstance(a, dict) else
                               {k: np.array(v, copy=True) for k, v in a.items()} for a in batch)
    for g in bad:
        data[g], sigma[g], mask[g] = data[src], sigma[src], mask[src]
        for k in init:
            init[k][g] = init[k][src]
    return data, sigma, mask, init


def _faulty(batch):
    """Row 1: every pixel NaN; row 3: all masked; row 4: absurd start (r_e 1e4, mag -1000,
    moved inside the bounds with a warning); row 5: sigma 1e-200, so chi2 overflows."""
    data, sigma, mask, init = _with_copies(batch, [])
    data[1] = np.nan
    mask[3] = False
    init["r_e"][4], init["mag"][4], init["n"][4] = 1e4, -1000.0, 9.9
    sigma[5] = 1e-200
    return data, sigma, mask, init


BAD = [1, 3, 4, 5]
GOOD = [0, 2]


def _run(batch, solver, max_iter, blocks=None):
    data, sigma, mask, init = batch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(MODEL, data, sigma=sigma, mask=mask, init=init, zeropoint=ZP, solver=solver,
                  max_iter=max_iter)
    if blocks is not None:  # every galaxy gets its image block, the failed ones too
        paths = write_imgblocks(res, np.where(np.isfinite(data), data, 0.0), sigma, mask, blocks, zeropoint=ZP)
        assert len(paths) == G
        with fits.open(paths[5]) as hd:   # chi2 = inf cannot go in a FITS header: -1, and the status
            assert hd["MODEL"].header["CHI2"] == -1.0 and hd["MODEL"].header["STATUS"] == NONFINITE
    return res.to_table(), [str(w.message) for w in caught]


def _assert_rows_bit_identical(a, b, rows):
    for col in a.colnames:
        if col == "status_msg":
            assert list(a[col][rows]) == list(b[col][rows])
            continue
        x, y = np.asarray(a[col][rows]), np.asarray(b[col][rows])
        # NaN errors compare equal to NaN; every other value must be the same float64 bits
        assert np.array_equal(x.view(np.int64) if x.dtype == np.float64 else x,
                              y.view(np.int64) if y.dtype == np.float64 else y), col


def test_bad_galaxies_do_not_touch_the_others(good_batch, tmp_path):
    ref, _ = _run(_with_copies(good_batch, BAD), "lm", 25)
    bad, msgs = _run(_faulty(good_batch), "lm", 25, blocks=tmp_path)
    _assert_rows_bit_identical(bad, ref, GOOD)
    assert any("non-finite pixels are masked" in m for m in msgs)
    assert any("outside its bounds" in m for m in msgs)
    st = list(bad["status"])
    assert st[1] == Status.NO_DATA and st[3] == Status.NO_DATA          # nothing to fit: own status, no crash
    assert st[5] == NONFINITE and bad["n_iter"][5] == 0    # overflow at the start: stopped at once
    assert bad["dof"][1] == bad["dof"][3] == -len(MODEL.free_names)
    # the absurd start was moved inside the bounds and the galaxy ran its own course
    assert np.isfinite(bad["chi2"][4]) and st[4] in STATUS_MESSAGES
    assert st[0] == st[2] == 0


def _toy_batch(solve, bad_args, good_args, u0, bad):
    """Solve a batch with member ``bad`` faulty, and the same batch with it a copy of member 0."""
    ref_args = tuple(a.at[bad].set(a[0]) for a in good_args)
    return solve(u0, bad_args), solve(u0.at[bad].set(u0[0]), ref_args)


def test_divergence_mid_run_stops_that_member_only():
    """Member 2 of each batch runs away during the fit (an overflow / NaN region), not at the
    start: it stops on its own with its best finite point, the others are bit-identical."""
    t = jnp.array([0.5, -1.0, 0.0, 2.0])
    w = jnp.array([1.0, 1.0, 0.0, 1.0])          # w = 0: the faulty member
    u0 = jnp.array([[0.0], [0.0], [3.0], [0.0]])

    # Optax (plain gradient descent): loss -exp(u) of member 2 grows doubly exponentially
    # to -inf within a few steps
    def loss(u, a):
        tt, ww = a
        return ww * (u[0] - tt) ** 2 - (1 - ww) * jnp.exp(u[0])

    sgd = optax.sgd(0.1)
    solve = jax.jit(jax.vmap(lambda u, a: optax_minimise(loss, u, a, sgd, max_iter=200, patience=5)))
    out, ref = _toy_batch(solve, (t, w), (t, w), u0, 2)
    assert int(out.status[2]) == NONFINITE and 0 < int(out.n_iter[2]) < 10
    assert np.isfinite(float(out.u[2, 0])) and np.isfinite(float(out.loss[2]))
    for f in ("u", "loss", "n_iter", "status"):
        np.testing.assert_array_equal(np.asarray(getattr(out, f))[[0, 1, 3]],
                                      np.asarray(getattr(ref, f))[[0, 1, 3]])

    # LM: member 2's residual sqrt(2 - u) + 1 is NaN beyond u = 2, where its minimum lies:
    # trial steps that land there are rejected, the member stops on its own
    def resid(u, a):
        tt, ww = a
        return jnp.stack([ww * (u[0] - tt) + (1 - ww) * (jnp.sqrt(2.0 - u[0]) + 1.0)])

    lm = jax.jit(jax.vmap(lambda u, a: levenberg_marquardt(resid, u, a, max_iter=50)))
    u0l = u0.at[2, 0].set(0.0)
    out, ref = _toy_batch(lm, (t, w), (t, w), u0l, 2)
    assert int(out.status[2]) in STATUS_MESSAGES and float(out.u[2, 0]) <= 2.0
    assert np.isfinite(float(out.chi2[2]))
    for f in ("u", "chi2", "n_iter", "status", "jtj", "grad", "lam"):
        np.testing.assert_array_equal(np.asarray(getattr(out, f))[[0, 1, 3]],
                                      np.asarray(getattr(ref, f))[[0, 1, 3]])
