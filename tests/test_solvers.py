"""Tests of galmoss_jax.solvers against independent references (NumPy, SciPy, plain loops).

The suite runs in float64 (conftest.py); the float32 tests switch x64 off inside their own
body (``x32``: the ``jax.enable_x64(False)`` context manager), so that they run what a GPU or a
default JAX install runs, and nothing leaks into other tests.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import least_squares

import galmoss_jax as gj
from galmoss_jax.solvers import (
    MAX_ITER,
    NONFINITE,
    STALLED,
    STATUS_MESSAGES,
    SUCCESS,
    LMResult,
    OptaxResult,
    levenberg_marquardt,
    optax_minimise,
)

TIGHT = dict(ftol=1e-14, xtol=1e-14, gtol=1e-14)


def x32(test):
    """Run the test body with x64 off (float32 JAX defaults, as on a GPU or a default install);
    the rest of the suite runs in float64 (conftest.py)."""

    @functools.wraps(test)
    def wrapper(*a, **k):
        with jax.enable_x64(False):
            return test(*a, **k)

    return wrapper


# --------------------------------------------------------------------------- problems


def exp_residual(u, args):
    x, y = args
    return u[0] * jnp.exp(-u[1] * x) + u[2] - y


def exp_data(seed, a=2.5, b=1.3, c=0.5, n=40):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 4.0, n)
    y = a * np.exp(-b * x) + c + 0.02 * rng.normal(size=n)
    return x, y


_YY, _XX = np.mgrid[0:15, 0:15].astype(np.float64)


def blob_model(u, xx, yy):
    """Circular Gaussian: u = (amp, x0, y0, log sigma, background)."""
    r2 = (xx - u[1]) ** 2 + (yy - u[2]) ** 2
    return u[0] * jnp.exp(-r2 / (2 * jnp.exp(2 * u[3]))) + u[4]


def blob_residual(u, args):
    data, sigma = args
    xx = jnp.asarray(_XX, data.dtype)
    yy = jnp.asarray(_YY, data.dtype)
    return (data - blob_model(u, xx, yy)) / sigma


def blob_loss(u, args):
    return jnp.sum(blob_residual(u, args) ** 2)


BLOB_U0 = np.array([0.5, 6.0, 8.0, 0.0, 0.0])


def blob_data(seed=1, truth=(1.0, 7.3, 6.6, np.log(2.0), 0.1), noise=0.05):
    rng = np.random.default_rng(seed)
    clean = np.asarray(blob_model(np.asarray(truth), _XX, _YY))
    return clean + noise * rng.normal(size=clean.shape), np.full(clean.shape, noise)


def rosenbrock(u, args):
    return jnp.stack([10.0 * (u[1] - u[0] ** 2), 1.0 - u[0]])


def scipy_lm(fun, u0):
    return least_squares(
        lambda u: np.asarray(fun(jnp.asarray(u)), dtype=np.float64).ravel(),
        np.asarray(u0, dtype=np.float64),
        method="lm",
        ftol=1e-15,
        xtol=1e-15,
        gtol=1e-15,
    )


def central_jacobian(fun, u, h=1e-6):
    u = np.asarray(u, dtype=np.float64)
    cols = []
    for j in range(u.size):
        e = np.zeros_like(u)
        e[j] = h * max(1.0, abs(u[j]))
        cols.append((np.asarray(fun(u + e)).ravel() - np.asarray(fun(u - e)).ravel()) / (2 * e[j]))
    return np.stack(cols, axis=1)


@functools.lru_cache(maxsize=None)
def jit_lm(res_fn, **kw):
    """One compiled single-problem solve per (residual, options): reused across calls."""
    return jax.jit(lambda u, a: levenberg_marquardt(res_fn, u, a, **kw))


def to_np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


# --------------------------------------------------------------------------- LM: accuracy


def test_status_table():
    assert (SUCCESS, MAX_ITER, NONFINITE, STALLED) == (0, 1, 2, 3)
    # one enumeration of statuses and messages, used by the solvers, fit and the survey
    assert set(STATUS_MESSAGES) == {0, 1, 2, 3, 4, 5, 10, 11}
    assert all(isinstance(m, str) and m for m in STATUS_MESSAGES.values())
    assert (SUCCESS, MAX_ITER, NONFINITE, STALLED) == (gj.Status.SUCCESS, gj.Status.MAX_ITER,
                                                       gj.Status.NONFINITE, gj.Status.STALLED)
    assert all(gj.Status(c).message == m for c, m in STATUS_MESSAGES.items())


def test_linear_least_squares_matches_lstsq():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 4)) * np.array([1.0, 10.0, 0.1, 3.0])
    b = rng.normal(size=60)
    res = levenberg_marquardt(lambda u, ab: ab[0] @ u - ab[1], jnp.zeros(4), (a, b))
    ref = np.linalg.lstsq(a, b, rcond=None)[0]
    assert isinstance(res, LMResult)
    assert res.u.dtype == jnp.float64
    assert int(res.status) == SUCCESS
    np.testing.assert_allclose(res.u, ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.chi2, np.sum((a @ ref - b) ** 2), rtol=1e-12)
    np.testing.assert_allclose(res.jtj, a.T @ a, rtol=1e-12)
    np.testing.assert_allclose(res.grad, 2 * a.T @ (a @ np.asarray(res.u) - b), atol=1e-8)


def test_exponential_fit_matches_scipy_and_jtj():
    x, y = exp_data(0)
    u0 = jnp.array([1.0, 1.0, 0.0])
    res = jit_lm(exp_residual, **TIGHT)(u0, (x, y))
    fun = lambda u: exp_residual(u, (x, y))  # noqa: E731
    ref = scipy_lm(fun, u0)
    assert int(res.status) == SUCCESS
    np.testing.assert_allclose(res.u, ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.chi2, 2 * ref.cost, rtol=1e-10)
    jac_fd = central_jacobian(fun, ref.x)
    np.testing.assert_allclose(res.jtj, jac_fd.T @ jac_fd, rtol=1e-5)
    np.testing.assert_allclose(res.jtj, ref.jac.T @ ref.jac, rtol=1e-5)
    # at the optimum the gradient of chi2 vanishes relative to its scale
    assert np.max(np.abs(res.grad)) < 1e-8


def test_gaussian_blob_fit_matches_scipy_and_jtj():
    data, sigma = blob_data()
    res = jit_lm(blob_residual, **TIGHT)(jnp.asarray(BLOB_U0), (data, sigma))
    fun = lambda u: blob_residual(u, (jnp.asarray(data), jnp.asarray(sigma)))  # noqa: E731
    ref = scipy_lm(fun, BLOB_U0)
    assert int(res.status) == SUCCESS
    np.testing.assert_allclose(res.u, ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.chi2, 2 * ref.cost, rtol=1e-10)
    jac_fd = central_jacobian(fun, ref.x)
    scale = 1e-5 * np.abs(res.jtj).max()
    np.testing.assert_allclose(res.jtj, jac_fd.T @ jac_fd, rtol=1e-5, atol=scale)
    np.testing.assert_allclose(res.jtj, ref.jac.T @ ref.jac, rtol=1e-5, atol=scale)


def test_default_tolerances_end_at_the_minimum():
    """With the default tolerances (ftol, xtol, gtol 1e-8) LM ends where SciPy's MINPACK ends
    with every tolerance at 1e-15: chi2 within 1e-8 of it, every parameter within 0.02 of its
    standard error, and the reduction the Gauss-Newton model still predicts at the returned
    point, g^T (J^T J)^-1 g with g = J^T r, below ftol * chi2.  (Stopping as soon as that
    decrement is below ftol * chi2, one Jacobian before the ftol test, saves ~14 % of the steps of
    a 128 x 128 Sérsic fit but leaves the parameters up to 0.01 sigma from the minimum and the
    fit's implicit derivatives 1e-5 off: not done.)"""
    data, sigma = blob_data(seed=3)
    args = (jnp.asarray(data), jnp.asarray(sigma))
    fun = lambda u: blob_residual(u, args)  # noqa: E731
    ref = scipy_lm(fun, BLOB_U0)
    res = jit_lm(blob_residual)(jnp.asarray(BLOB_U0), args)
    assert int(res.status) == SUCCESS
    chi2_ref = 2 * ref.cost
    assert chi2_ref <= float(res.chi2) <= chi2_ref * (1 + 1e-8)
    err = np.sqrt(np.diag(np.linalg.inv(ref.jac.T @ ref.jac)))
    assert np.max(np.abs(np.asarray(res.u) - ref.x) / err) < 0.02
    g = np.asarray(res.grad) / 2
    decrement = g @ np.linalg.solve(np.asarray(res.jtj), g)
    assert decrement <= 1e-8 * float(res.chi2)


def test_rosenbrock_converges():
    res = jit_lm(rosenbrock)(jnp.array([-1.2, 1.0]), None)
    assert int(res.status) == SUCCESS
    np.testing.assert_allclose(res.u, [1.0, 1.0], atol=1e-10)
    assert float(res.chi2) < 1e-20


@x32
def test_rosenbrock_float32():
    u0 = jnp.array([-1.2, 1.0], dtype=jnp.float32)
    res = jit_lm(rosenbrock)(u0, None)
    assert res.u.dtype == jnp.float32 and res.chi2.dtype == jnp.float32
    assert int(res.status) == SUCCESS
    np.testing.assert_allclose(res.u, [1.0, 1.0], atol=1e-5)


@x32
def test_float32_matches_float64_reference():
    x, y = exp_data(3)
    args32 = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    res = jit_lm(exp_residual)(jnp.array([1.0, 1.0, 0.0], jnp.float32), args32)
    # float64 NumPy reference (this test runs without x64, so keep JAX out of it)
    ref = least_squares(
        lambda u: u[0] * np.exp(-u[1] * x) + u[2] - y,
        [1.0, 1.0, 0.0],
        method="lm",
        ftol=1e-15,
        xtol=1e-15,
        gtol=1e-15,
    )
    assert res.u.dtype == jnp.float32
    assert int(res.status) == SUCCESS
    assert int(res.n_iter) < 30  # the clamped tolerances stop it; it does not spin to max_iter
    np.testing.assert_allclose(res.u, ref.x, rtol=1e-4)


def test_max_iter_returns_best_so_far():
    u0 = jnp.array([-1.2, 1.0])
    chi2_0 = float(jnp.sum(rosenbrock(u0, None) ** 2))
    res = jit_lm(rosenbrock, max_iter=3)(u0, None)
    assert int(res.status) == MAX_ITER and int(res.n_iter) == 3
    assert float(res.chi2) <= chi2_0
    chi2_at_u = np.sum(np.asarray(rosenbrock(res.u, None)) ** 2)
    np.testing.assert_allclose(res.chi2, chi2_at_u, rtol=1e-12)


def test_parameter_without_influence_gives_no_nan():
    x, y = exp_data(2)
    # u[3] does not enter the residuals: its column of J is zero.
    fun = lambda u, a: exp_residual(u[:3], a) + 0.0 * u[3]  # noqa: E731
    res = jit_lm(fun, **TIGHT)(jnp.array([1.0, 1.0, 0.0, 0.7]), (x, y))
    ref = scipy_lm(lambda u: exp_residual(u, (x, y)), [1.0, 1.0, 0.0])
    assert int(res.status) == SUCCESS
    assert np.all(np.isfinite(res.u))
    assert float(res.u[3]) == 0.7
    np.testing.assert_allclose(res.u[:3], ref.x, rtol=1e-6)


def test_nonfinite_trial_step_is_rejected():
    # From u = 1 the Gauss-Newton step for log(u) - log(0.01) lands at u < 0 (NaN residual);
    # it must be rejected (damping up), never accepted, and the fit must still converge.
    fun = lambda u, a: jnp.log(u) - jnp.log(0.01)  # noqa: E731
    res = jit_lm(fun, **TIGHT)(jnp.array([1.0]), None)
    assert int(res.status) == SUCCESS
    np.testing.assert_allclose(res.u, [0.01], rtol=1e-10)


def test_both_damping_rules_reach_the_rosenbrock_minimum():
    """Nielsen's rule (the default) and Marquardt's fixed factors (``lambda_up``/``lambda_down``
    given) both end at the analytic minimum (1, 1) of Rosenbrock's function."""
    for kw in ({}, {"lambda_up": 10.0}, {"lambda_down": 0.1}, {"lambda_up": 4.0, "lambda_down": 0.5}):
        res = jax.jit(lambda u: levenberg_marquardt(rosenbrock, u, None, **TIGHT, **kw))(jnp.array([-1.2, 1.0]))
        assert int(res.status) == SUCCESS, kw
        np.testing.assert_allclose(res.u, [1.0, 1.0], atol=1e-10, err_msg=str(kw))


def _on_the_bound(u, _):
    """x1 = softplus(u1) >= 0 (a lower bound), x2 = u2; unconstrained minimum at x1 < 0, so the
    minimum over x1 >= 0 is x1 = 0 with x2 = 2.2 (d/dx2 [(x2 - 2)^2 + (3 - x2)^2 / 4] = 0),
    where the gradient in x1, 2 + (3 - 2.2) / 2 = 2.4, still points below the bound."""
    x1, x2 = jax.nn.softplus(u[0]), u[1]
    return jnp.stack([x1 + 1.0, x2 - 2.0, 0.5 * (x1 - x2 + 3.0)])


@pytest.mark.parametrize("damping", [{}, {"lambda_up": 10.0, "lambda_down": 0.1}], ids=["nielsen", "marquardt"])
def test_box_holds_a_parameter_whose_minimum_lies_beyond_its_bound(damping):
    """With the box (``lower``) a bounded parameter whose optimum lies beyond its bound stops on
    the box edge, the others reach the analytic constrained optimum, and the fit converges
    (SUCCESS) with a regular J^T J.  Without it the Gauss-Newton steps in u run off towards
    -inf, where softplus flattens and J^T J becomes singular."""
    edge = float(np.log(np.expm1(1e-6)))            # softplus(edge) = 1e-6: the engine's margin
    u0 = jnp.array([1.0, 0.0])
    res = jax.jit(lambda u: levenberg_marquardt(_on_the_bound, u, None, lower=jnp.array([edge, -jnp.inf]),
                                                upper=jnp.array([jnp.inf, jnp.inf]), **damping))(u0)
    assert int(res.status) == SUCCESS
    assert float(res.u[0]) == pytest.approx(edge, abs=1e-9)
    assert float(res.u[1]) == pytest.approx(2.2, abs=1e-6)
    assert np.linalg.cond(np.asarray(res.jtj)) < 1e13
    free = jax.jit(lambda u: levenberg_marquardt(_on_the_bound, u, None, **damping))(u0)
    assert float(free.u[0]) < edge - 5                    # ran past the edge without the box
    assert float(free.u[1]) == pytest.approx(2.2, abs=1e-3)


def test_optax_steps_stay_in_the_box():
    """Projected Adam steps: started 0.02 inside the box edge, with steps of ~0.05 pulling
    out of it, the bounded parameter stops on the edge (not past it), and the other one
    reaches the analytic constrained optimum (x2 = 2.2)."""
    edge = float(np.log(np.expm1(1e-6)))
    res = jax.jit(lambda u: optax_minimise(lambda v, a: jnp.sum(_on_the_bound(v, a) ** 2), u, None,
                                           optax.adam(0.05), max_iter=3000, lower=jnp.array([edge, -jnp.inf]),
                                           upper=jnp.array([jnp.inf, jnp.inf])))(jnp.array([edge + 0.02, 0.0]))
    assert float(res.u[0]) == edge
    assert float(res.u[1]) == pytest.approx(2.2, abs=1e-3)


def test_no_downhill_step_gives_stalled():
    # Residuals are finite only at the start point, so every trial step is rejected and
    # the damping climbs past lambda_max: STALLED, with the start returned unchanged.
    fun = lambda u, a: u + jnp.where(u == 3.0, 0.0, jnp.nan)  # noqa: E731
    res = jit_lm(fun)(jnp.array([3.0]), None)
    assert int(res.status) == STALLED
    assert float(res.u[0]) == 3.0 and float(res.chi2) == 9.0
    assert float(res.lam) > 1e16 and int(res.n_iter) < 30


# --------------------------------------------------------------------------- LM: batching


def _batched_lm(res_fn, **kw):
    return jax.vmap(lambda u, a: levenberg_marquardt(res_fn, u, a, **kw))


def test_vmap_equals_loop_of_single_solves():
    rng = np.random.default_rng(7)
    xs, ys, u0s = [], [], []
    for k in range(8):
        x, y = exp_data(10 + k, a=rng.uniform(1, 4), b=rng.uniform(0.3, 2.5), c=rng.uniform(-1, 1))
        xs.append(x)
        ys.append(y)
        u0s.append([1.0, 1.0, 0.0])
    xs, ys, u0s = np.stack(xs), np.stack(ys), np.asarray(u0s)
    batch = to_np(_batched_lm(exp_residual)(jnp.asarray(u0s), (xs, ys)))
    single_solve = jit_lm(exp_residual)
    singles = [to_np(single_solve(jnp.asarray(u0s[k]), (xs[k], ys[k]))) for k in range(8)]
    for k, single in enumerate(singles):
        assert single.status == SUCCESS
        assert batch.status[k] == single.status
        # what the fit determines: the minimum chi2 (to rounding), and the parameters to a tiny
        # fraction of their 1-sigma error (the valley is flat there: vmapped and single
        # programs round differently and stop a rounding step apart)
        np.testing.assert_allclose(batch.chi2[k], single.chi2, rtol=1e-10)
        err = np.sqrt(np.diag(np.linalg.inv(single.jtj)) * single.chi2 / (xs[k].size - 3))
        assert np.all(np.abs(batch.u[k] - single.u) <= 1e-3 * err)
        np.testing.assert_allclose(batch.jtj[k], single.jtj, rtol=1e-6)
        assert abs(int(batch.n_iter[k]) - int(single.n_iter)) <= 1
    # per-problem stopping: the members did not all take the same number of steps
    assert len(set(batch.n_iter.tolist())) > 1


def test_nan_member_does_not_poison_batch():
    datas, sigmas = [], []
    for seed in (1, 2, 3):
        d, s = blob_data(seed, truth=(1.0 + 0.2 * seed, 7.0 + 0.1 * seed, 6.6, np.log(2.0), 0.1))
        datas.append(d)
        sigmas.append(s)
    datas[1] = datas[1].copy()
    datas[1][4, 5] = np.nan  # bad member: NaN in its data
    datas, sigmas = np.stack(datas), np.stack(sigmas)
    u0s = jnp.asarray(np.stack([BLOB_U0] * 3))
    solve = jax.jit(_batched_lm(blob_residual))
    three = to_np(solve(u0s, (datas, sigmas)))
    two = to_np(solve(u0s[::2], (datas[::2], sigmas[::2])))

    assert three.status.tolist() == [SUCCESS, NONFINITE, SUCCESS]
    assert three.n_iter[1] == 0
    np.testing.assert_array_equal(three.u[1], BLOB_U0)
    for field in ("u", "chi2", "n_iter", "status", "jtj", "grad"):
        good3 = getattr(three, field)[::2]
        assert np.all(np.isfinite(good3))
        np.testing.assert_array_equal(good3, getattr(two, field))  # bit-identical
    single_solve = jit_lm(blob_residual)
    for k in (0, 2):
        alone = to_np(single_solve(jnp.asarray(BLOB_U0), (datas[k], sigmas[k])))
        assert alone.n_iter == three.n_iter[k]
        np.testing.assert_allclose(three.u[k], alone.u, rtol=1e-12, atol=1e-14)


def test_nonfinite_start_gets_nonfinite_status():
    x, y = exp_data(4)
    # sqrt(u[0]) is NaN for a negative start: only that member is NONFINITE.
    fun = lambda u, a: jnp.sqrt(u[0]) * jnp.exp(-u[1] * a[0]) + u[2] - a[1]  # noqa: E731
    u0s = jnp.array([[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [2.0, 1.0, 0.0], [jnp.nan, 1.0, 0.0]])
    xs, ys = np.stack([x] * 4), np.stack([y] * 4)
    out = to_np(_batched_lm(fun)(u0s, (xs, ys)))
    assert out.status.tolist() == [SUCCESS, NONFINITE, SUCCESS, NONFINITE]
    assert out.n_iter[1] == 0 and out.n_iter[3] == 0
    np.testing.assert_array_equal(out.u[1], [-1.0, 1.0, 0.0])
    np.testing.assert_allclose(out.u[0], out.u[2], rtol=1e-6)  # same data, same optimum
    assert np.all(np.isfinite(out.u[[0, 2]]))


def test_jit_of_vmap_equals_eager():
    xs, ys = zip(*(exp_data(20 + k, b=0.5 + 0.4 * k) for k in range(4)))
    args = (np.stack(xs), np.stack(ys))
    u0s = jnp.tile(jnp.array([1.0, 1.0, 0.0]), (4, 1))
    solve = _batched_lm(exp_residual)
    eager = to_np(solve(u0s, args))
    jitted = to_np(jax.jit(solve)(u0s, args))
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(eager.n_iter, jitted.n_iter)
    np.testing.assert_array_equal(eager.status, jitted.status)


# --------------------------------------------------------------------------- Optax loop


def test_adam_reaches_lm_chi2_on_blob():
    data, sigma = blob_data()
    args = (jnp.asarray(data), jnp.asarray(sigma))
    lm = jit_lm(blob_residual, **TIGHT)(jnp.asarray(BLOB_U0), args)
    res = optax_minimise(blob_loss, jnp.asarray(BLOB_U0), args)  # default optax.adam(0.05)
    assert isinstance(res, OptaxResult)
    assert int(res.status) == SUCCESS
    assert int(res.n_iter) < 2000
    np.testing.assert_allclose(res.loss, lm.chi2, rtol=1e-4)
    np.testing.assert_allclose(res.loss, blob_loss(res.u, args), rtol=1e-12)


def test_optax_keeps_best_point_when_diverging():
    data, sigma = blob_data()
    args = (jnp.asarray(data), jnp.asarray(sigma))
    opt = optax.sgd(1.0)  # far too large for a chi2 of this scale: it blows up
    res = optax_minimise(blob_loss, jnp.asarray(BLOB_U0), args, opt, max_iter=200, patience=50)
    # independent reference: the same SGD trajectory in a plain Python loop
    u = np.asarray(BLOB_U0, dtype=np.float64)
    grad = jax.jit(jax.grad(blob_loss))
    losses, points = [float(blob_loss(u, args))], [u]
    for _ in range(int(res.n_iter)):
        u = u - 1.0 * np.asarray(grad(u, args))
        losses.append(float(blob_loss(u, args)))
        points.append(u)
    finite = np.isfinite(losses)
    assert not finite.all() or max(losses) > 1e3 * losses[0]  # it really diverged
    best = int(np.nanargmin(np.where(finite, losses, np.nan)))
    assert np.isfinite(res.loss)
    np.testing.assert_allclose(res.loss, losses[best], rtol=1e-10)
    np.testing.assert_allclose(res.u, points[best], rtol=1e-10)
    assert int(res.status) in (NONFINITE, SUCCESS)


def test_optax_vmap_nonfinite_member_and_loop_equality():
    datas, sigmas = [], []
    for seed in (5, 6, 7):
        d, s = blob_data(seed, truth=(1.0, 7.0 + 0.3 * seed, 6.6, np.log(1.5 + 0.2 * seed), 0.1))
        datas.append(d)
        sigmas.append(s)
    datas[1] = np.full_like(datas[1], np.nan)
    datas, sigmas = jnp.asarray(np.stack(datas)), jnp.asarray(np.stack(sigmas))
    u0s = jnp.asarray(np.stack([BLOB_U0] * 3))
    opt = optax.adam(0.05)
    solve = jax.jit(jax.vmap(lambda u, a: optax_minimise(blob_loss, u, a, opt, max_iter=1500)))
    out = to_np(solve(u0s, (datas, sigmas)))
    assert out.status.tolist() == [SUCCESS, NONFINITE, SUCCESS]
    assert out.n_iter[1] == 0
    np.testing.assert_array_equal(out.u[1], BLOB_U0)
    assert out.n_iter[0] != out.n_iter[2]
    single_solve = jax.jit(lambda u, a: optax_minimise(blob_loss, u, a, opt, max_iter=1500))
    for k in (0, 2):
        single = to_np(single_solve(u0s[k], (datas[k], sigmas[k])))
        assert single.n_iter == out.n_iter[k]
        np.testing.assert_allclose(out.u[k], single.u, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out.loss[k], single.loss, rtol=1e-12)


@x32
def test_optax_float32_and_max_iter():
    data, sigma = blob_data()
    args = (jnp.asarray(data, jnp.float32), jnp.asarray(sigma, jnp.float32))
    res = optax_minimise(blob_loss, jnp.asarray(BLOB_U0, jnp.float32), args, max_iter=50)
    assert res.u.dtype == jnp.float32
    assert int(res.status) == MAX_ITER and int(res.n_iter) == 50
    assert float(res.loss) < float(blob_loss(jnp.asarray(BLOB_U0, jnp.float32), args))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_optax_nonfinite_start(bad):
    u0 = jnp.array([bad, 1.0], dtype=jnp.float32)
    res = optax_minimise(lambda u, a: jnp.sum((u - 1.0) ** 2), u0, None)
    assert int(res.status) == NONFINITE and int(res.n_iter) == 0
    np.testing.assert_array_equal(res.u, u0)
