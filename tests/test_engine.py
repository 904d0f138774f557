"""The public, pure fitting core: ``gj.solve`` under jit / vmap / grad, solvers as values, the
compiled-once renderer, and implicit differentiation of a fit.

References: ``fit`` (a host-side wrapper, but a separate code path: validation, chunking and
threads) for the batch, analytic derivatives (the zero point moves a fitted magnitude one to
one; a least-squares flux is linear in the data), and central finite differences of refits
for the derivative with respect to the PSF width.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import galmoss_jax as gj
from galmoss_jax import _engine

S, ZP = 24, 25.0
TRUTH = {"x0": 11.3, "y0": 12.1, "mag": 17.0, "r_e": 3.0, "n": 1.5, "q": 0.7, "pa": 20.0}
INIT = {"x0": 11.0, "y0": 12.0, "mag": 17.3, "r_e": 4.0, "n": 2.0, "q": 0.8, "pa": 10.0}
YY, XX = np.mgrid[-3:4, -3:4]


def moffat(fwhm, beta=3.0):
    """A Moffat PSF of FWHM ``fwhm`` px on the 7x7 grid (unnormalised; traced or concrete)."""
    alpha = fwhm / (2.0 * jnp.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return (1.0 + (XX ** 2 + YY ** 2) / alpha ** 2) ** -beta


PSF = np.asarray(moffat(2.4) / moffat(2.4).sum())


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(5)
    G = 3
    p = {k: np.full(G, v) for k, v in TRUTH.items()}
    p["r_e"] = np.array([2.5, 3.0, 4.0])
    p["n"] = np.array([1.0, 1.5, 2.5])
    clean = np.asarray(gj.render("sersic", p, (S, S), psf=PSF, zeropoint=ZP))
    sigma = np.full_like(clean, 0.02 * clean.max())
    data = clean + sigma * rng.normal(size=clean.shape)
    return data, sigma


_TRACES = []


@jax.jit
@jax.vmap
def _pipeline(d, s, m):
    """The fit of a batch under jit(vmap(solve)) (one compiled program for the tests below)."""
    _TRACES.append(1)
    return gj.solve("sersic", d, sigma=s, mask=m, init=INIT, psf=PSF, zeropoint=ZP)


def test_jit_vmap_solve_equals_fit_and_traces_once(batch):
    data, sigma = batch
    every = jnp.ones(data.shape, bool)
    sol = _pipeline(jnp.asarray(data), jnp.asarray(sigma), every)
    traces = len(_TRACES)
    res = gj.fit("sersic", data, sigma=sigma, psf=PSF, zeropoint=ZP, init=INIT, starts=1)
    np.testing.assert_allclose(np.asarray(sol.chi2), res.chi2, rtol=1e-4)
    assert np.all(np.asarray(sol.status) == 0) and np.all(res.status == 0)
    for k in ("x0", "r_e", "n", "q", "mag"):
        np.testing.assert_allclose(np.asarray(sol.params[f"sersic.{k}"]), res[k], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diagonal(np.asarray(sol.covariance), axis1=1, axis2=2)),
                               np.sqrt(np.diagonal(res.covariance, axis1=1, axis2=2)), rtol=1e-3)
    # a second batch of the same shapes: no new trace, no new compile
    again = _pipeline(jnp.asarray(data[::-1]), jnp.asarray(sigma), every)
    assert len(_TRACES) == traces
    np.testing.assert_allclose(np.asarray(again.chi2), np.asarray(sol.chi2)[::-1], rtol=1e-6)


def test_solution_is_a_pytree_with_the_documented_fields(batch):
    data, sigma = batch
    sol = gj.solve("sersic", data[0], sigma=sigma[0], init=INIT, psf=PSF, zeropoint=ZP)
    assert isinstance(sol, gj.Solution)
    assert set(sol.params) == set(gj.Model("sersic").param_names)
    assert sol.covariance.shape == (7, 7) and sol.free_names == gj.Model("sersic").free_names
    assert int(sol.status) == gj.Status.SUCCESS and int(sol.n_iter) > 0
    assert int(sol.n_pixels) == S * S and int(sol.dof) == S * S - 7
    leaves = jax.tree.leaves(sol)
    assert all(isinstance(x, jax.Array) for x in leaves)
    # same compiled program for new data of the same shapes
    before = _engine._solve_jit._cache_size()
    gj.solve("sersic", data[1], sigma=sigma[1], init=INIT, psf=PSF, zeropoint=ZP)
    assert _engine._solve_jit._cache_size() == before


def test_fit_compiles_once_per_solver_value(batch):
    """solver="adam" twice (and the default LM twice) compiles once; an optimiser given with
    the LM solver is an error, not ignored."""
    data, sigma = batch
    kw = dict(sigma=sigma[:1], psf=PSF, zeropoint=ZP, init=INIT, starts=1, chunk_size=1)
    gj.fit("sersic", data[:1], solver="adam", max_iter=30, **kw)
    n = _engine._solve_jit._cache_size()   # chunk_size=1: solve's program of one galaxy
    assert n > 0
    gj.fit("sersic", data[1:2], solver="adam", max_iter=30, **kw)
    gj.fit("sersic", data[1:2], solver=gj.OptaxSolver(gj.solvers._default_adam(), max_iter=30), **kw)
    assert _engine._solve_jit._cache_size() == n
    with pytest.raises(gj.ParameterError, match="optimizer is given"):
        gj.fit("sersic", data[:1], optimizer=optax.adam(0.1), **kw)
    with pytest.raises(gj.ParameterError, match="optimizer is given"):
        gj.FitOptions(solver="lm", optimizer=optax.adam(0.1))
    assert gj.LevenbergMarquardt() == gj.LevenbergMarquardt() and hash(gj.LevenbergMarquardt(max_iter=7)) == \
        hash(gj.LevenbergMarquardt(max_iter=7))


def test_derivatives_in_zeropoint_and_psf_width(batch):
    """One forward-mode Jacobian of the fit in (zero point, PSF width):

    * mag = zp - 2.5 log10(F), and the fitted flux F depends on the data alone: d mag / d zp = 1
      and the other parameters do not move;
    * d r_e / d FWHM equals central finite differences of refits (a wider PSF leaves a smaller
      galaxy)."""
    data, sigma = batch

    def fitted(zp, fwhm):
        return gj.solve("sersic", data[1], sigma=sigma[1], init={**INIT, "mag": INIT["mag"] + zp - ZP},
                        psf=moffat(fwhm), zeropoint=zp).params

    with pytest.warns(UserWarning, match="normalised"):
        jac = jax.jacfwd(fitted, argnums=(0, 1))(ZP, 2.4)
        h = 1e-3
        fd = (float(fitted(ZP, 2.4 + h)["sersic.r_e"]) - float(fitted(ZP, 2.4 - h)["sersic.r_e"])) / (2 * h)
    d_zp = {k: float(v[0]) for k, v in jac.items()}
    assert math.isclose(d_zp["sersic.mag"], 1.0, rel_tol=1e-6)
    for k in ("sersic.r_e", "sersic.n", "sersic.x0", "sersic.q"):
        assert abs(d_zp[k]) < 1e-6
    assert abs(fd) > 0.05
    assert math.isclose(float(jac["sersic.r_e"][1]), fd, rel_tol=2e-3)


def test_data_derivative_of_a_linear_flux_fit():
    """Only the magnitude free: the least-squares flux is F = sum(d t / s^2) / sum(t^2 / s^2)
    for the unit-flux template t, so d mag / d data_i = -2.5 / (F ln 10) t_i / s_i^2 / sum(t^2 / s^2);
    and chi2 at the optimum moves as 2 (d_i - F t_i) / s_i^2 (reverse mode, one program for both)."""
    model = gj.Model("sersic", fixed={k: v for k, v in TRUTH.items() if k != "mag"})
    t = np.asarray(gj.render(model, {"mag": ZP}, (S, S), psf=PSF, zeropoint=ZP))    # flux 1
    rng = np.random.default_rng(2)
    sigma = 0.01 + 0.02 * rng.uniform(size=(S, S))
    data = 50.0 * t + sigma * rng.normal(size=(S, S))
    F = np.sum(data * t / sigma ** 2) / np.sum(t ** 2 / sigma ** 2)
    want = -2.5 / (F * np.log(10)) * t / sigma ** 2 / np.sum(t ** 2 / sigma ** 2)

    def mag_and_chi2(d):
        sol = gj.solve(model, d, sigma=sigma, init={"mag": 20.0}, psf=PSF, zeropoint=ZP)
        return sol.params["sersic.mag"], sol.chi2

    grad, grad_chi2 = jax.jacrev(mag_and_chi2)(jnp.asarray(data))
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-5, atol=1e-8 * np.abs(want).max())
    want_chi2 = 2.0 * (data - F * t) / sigma ** 2
    np.testing.assert_allclose(np.asarray(grad_chi2), want_chi2, rtol=1e-5, atol=1e-8 * np.abs(want_chi2).max())


def test_render_is_differentiable_in_a_traced_psf_and_zeropoint():
    p = dict(TRUTH)

    def total(fwhm, zp):
        img = gj.render("sersic", p, (S, S), psf=moffat(fwhm), zeropoint=zp)
        return jnp.sum(img * jnp.arange(S)[None, :] ** 2)    # a statistic that depends on the width

    g = jax.grad(total, argnums=(0, 1))(2.4, ZP)
    h = 1e-4
    with pytest.warns(UserWarning, match="normalised"):
        fd_w = (float(total(2.4 + h, ZP)) - float(total(2.4 - h, ZP))) / (2 * h)
        fd_z = (float(total(2.4, ZP + h)) - float(total(2.4, ZP - h))) / (2 * h)
        value = float(total(2.4, ZP))
    assert math.isclose(float(g[0]), fd_w, rel_tol=1e-5)
    assert math.isclose(float(g[1]), fd_z, rel_tol=1e-6)
    assert math.isclose(float(g[1]), math.log(10) / 2.5 * value, rel_tol=1e-9)   # flux times 10^(0.4 zp)


def test_render_outside_the_domain_is_nan_when_traced_and_an_error_when_concrete():
    bad = {**TRUTH, "r_e": -1.0}
    img = jax.jit(lambda p: gj.render("sersic", p, (S, S), zeropoint=ZP))(bad)
    assert np.all(np.isnan(np.asarray(img)))
    with pytest.raises(gj.ParameterError, match="positive"):
        gj.render("sersic", bad, (S, S), zeropoint=ZP)
    r = gj.Renderer("sersic", (S, S))
    x = np.array([bad[k] for k in ("x0", "y0", "mag", "r_e", "n", "q", "pa")])
    assert np.all(np.isnan(np.asarray(r(x, zeropoint=ZP))))


def test_renderer_of_a_vector_equals_render_and_compiles_once():
    model = gj.Model("bulge:sersic+disk:exponential", tied={"disk.x0": "bulge.x0", "disk.y0": "bulge.y0"},
                     fixed={"disk.q": 0.5})
    p = {"bulge.x0": 11.0, "bulge.y0": 12.0, "bulge.mag": 19.0, "bulge.r_e": 1.5, "bulge.n": 3.0, "bulge.q": 0.8,
         "bulge.pa": 10.0, "disk.mag": 18.0, "disk.r_s": 4.0, "disk.pa": 15.0}
    r = gj.Renderer(model, (S, S), psf_shape=PSF.shape)
    assert r.names == model.free_names
    x = jnp.array([p[n] for n in r.names])
    want = np.asarray(gj.render(model, p, (S, S), psf=PSF, zeropoint=ZP))
    np.testing.assert_allclose(np.asarray(r(x, psf=PSF, zeropoint=ZP)), want, rtol=1e-10, atol=1e-12 * want.max())
    np.testing.assert_allclose(np.asarray(r(p, psf=PSF, zeropoint=ZP)), want, rtol=1e-10, atol=1e-12 * want.max())
    n = gj.model._render_vector._cache_size()
    xs = jnp.stack([x, x.at[2].add(0.5)])
    imgs = jax.jit(jax.vmap(lambda v: r(v, psf=PSF, zeropoint=ZP)))(xs)
    np.testing.assert_allclose(np.asarray(imgs[0]), want, rtol=1e-10, atol=1e-12 * want.max())
    # the bulge 0.5 mag fainter: the image loses 1 - 10^-0.2 of the bulge's light
    bulge = np.asarray(gj.render(gj.Model({"bulge": "sersic"}), {k[6:]: v for k, v in p.items() if k[:5] == "bulge"},
                                 (S, S), psf=PSF, zeropoint=ZP))
    np.testing.assert_allclose(np.asarray(imgs[1]), want - (1 - 10 ** -0.2) * bulge, rtol=1e-9,
                               atol=1e-12 * want.max())
    r(x.at[3].set(2.0), psf=PSF, zeropoint=ZP)
    assert gj.model._render_vector._cache_size() == n
    # the renderer as an argument of a jitted function (its fixed vector traced): the same image
    np.testing.assert_allclose(np.asarray(jax.jit(lambda rr, v: rr(v, psf=PSF, zeropoint=ZP))(r, x)), want,
                               rtol=1e-10, atol=1e-12 * want.max())
    # the boxiness c0, fixed at its default 0 (a constant of the renderer's program), takes the
    # value of a call's own fixed vector
    lay = model.layout
    fixed = np.asarray(r.fixed).copy()
    fixed[lay.fixed.index("bulge.c0")] = 0.4
    boxy = np.asarray(gj.render(model, {**p, "bulge.c0": 0.4}, (S, S), psf=PSF, zeropoint=ZP))
    assert np.abs(boxy - want).max() > 1e-3 * want.max()
    np.testing.assert_allclose(np.asarray(r(x, psf=PSF, zeropoint=ZP, fixed=fixed)), boxy, rtol=1e-10,
                               atol=1e-12 * want.max())
    with pytest.raises(gj.ShapeError, match="vector of the 10 free parameters"):
        r(x[:3], psf=PSF, zeropoint=ZP)
    with pytest.raises(gj.PSFError, match="differs"):
        r(x, psf=np.ones((5, 5)) / 25, zeropoint=ZP)


def test_solve_refuses_structural_mistakes(batch):
    data, sigma = batch
    with pytest.raises(gj.ShapeError, match="one galaxy"):
        gj.solve("sersic", data, sigma=sigma, init=INIT, zeropoint=ZP)
    with pytest.raises(gj.ParameterError, match="no starting value for sersic.n"):
        gj.solve("sersic", data[0], sigma=sigma[0], init={k: v for k, v in INIT.items() if k != "n"}, zeropoint=ZP)
    with pytest.raises(gj.ParameterError, match="stat must be one of"):
        gj.solve("sersic", data[0], sigma=sigma[0], init=INIT, zeropoint=ZP, stat="l1")
    with pytest.raises(gj.ParameterError, match="sigma is required"):
        gj.solve("sersic", data[0], init=INIT, zeropoint=ZP)
    with pytest.raises(gj.ParameterError, match="zeropoint is required"):
        gj.solve("sersic", data[0], sigma=sigma[0], init=INIT)


def test_bad_pixels_and_empty_stamps_are_values_not_errors(batch):
    """Under jit nothing can be raised: NaN pixels are not used, an all-masked stamp is status 5."""
    data, sigma = batch
    d = data.copy()
    d[0, 3, 4] = np.nan
    mask = np.ones(data.shape, bool)
    mask[1] = False                       # galaxy 1: nothing left to fit
    sol = _pipeline(jnp.asarray(d), jnp.asarray(sigma), jnp.asarray(mask))
    assert int(sol.n_pixels[0]) == S * S - 1 and int(sol.status[0]) == 0 and np.isfinite(float(sol.chi2[0]))
    assert int(sol.status[1]) == gj.Status.NO_DATA
    # the third galaxy is untouched by its neighbours' NaN pixel and empty stamp
    clean = _pipeline(jnp.asarray(data), jnp.asarray(sigma), jnp.ones(data.shape, bool))
    np.testing.assert_allclose(float(sol.chi2[2]), float(clean.chi2[2]), rtol=1e-9)
    assert int(sol.status[2]) == 0


# the disc without its declared magnitude: its magnitude's and the zero point's derivatives go
# through the pixel integration, the bulge's are written from the light
PLAIN_EXPONENTIAL = dataclasses.replace(gj.PROFILES["exponential"], name="exponential_plain", magnitude=None)
BD = gj.Model({"bulge": "sersic", "disk": PLAIN_EXPONENTIAL}, tied={"disk.x0": "bulge.x0", "disk.y0": "bulge.y0"})
BD_TRUTH = {"bulge.x0": 11.3, "bulge.y0": 12.1, "bulge.mag": 18.0, "bulge.r_e": 1.5, "bulge.n": 3.5,
            "bulge.q": 0.8, "bulge.pa": 20.0, "disk.mag": 17.3, "disk.r_s": 4.0, "disk.q": 0.5, "disk.pa": -40.0}


def test_jacobian_of_several_components_split_by_component():
    """The Levenberg-Marquardt problem of a bulge + disc differentiates each component in its
    own parameters (``model._surface_light_split``; the bulge's magnitude and the zero point
    from its light, the disc's through the integration).  Its Jacobian equals central finite
    differences of the render (which never runs that rule), in float64 to 1e-6 of each column;
    the derivative in the zero point is the analytic 0.4 ln(10) x the image; and reverse mode
    through the rule gives J^T r."""
    problem = _engine.Problem(model=BD, shape=(S, S), psf_shape=PSF.shape)
    assert problem.split_jacobian
    assert not _engine.Problem(model=BD, shape=(S, S), psf_shape=PSF.shape,
                               solver=gj.OptaxSolver(optax.adam(0.01))).split_jacobian
    assert _engine.Problem(model=gj.Model("sersic"), shape=(S, S)).split_jacobian       # its magnitude
    assert not _engine.Problem(model=gj.Model(PLAIN_EXPONENTIAL), shape=(S, S)).split_jacobian
    x = jnp.asarray([BD_TRUTH[n] for n in BD.free_names])
    one = jnp.ones((S, S))
    psf_fft = problem.psf_transform(jnp.asarray(PSF))

    def galaxy(zp):
        return _engine.GalaxyData(data=one, sigma=one, mask=one > 0, zeropoint=zp, gain=jnp.asarray(1.0),
                                  read_noise=jnp.asarray(0.0), sky=jnp.asarray(0.0),
                                  fixed=jnp.zeros(len(BD.layout.fixed)))

    def render(v, zp):
        return problem.render(v, galaxy(zp), psf_fft)

    zp = jnp.asarray(ZP)
    img = jax.jit(render)
    jac, d_zp = jax.jit(jax.jacfwd(render, argnums=(0, 1)))(x, zp)
    for i, name in enumerate(BD.free_names):
        h = 1e-5 * max(1.0, abs(float(x[i])))
        fd = (np.asarray(img(x.at[i].add(h), zp)) - np.asarray(img(x.at[i].add(-h), zp))) / (2 * h)
        col = np.asarray(jac[..., i])
        assert np.abs(col).max() > 0, name
        assert np.abs(col - fd).max() <= 1e-6 * np.abs(col).max(), name
    np.testing.assert_allclose(d_zp, 0.4 * np.log(10.0) * np.asarray(img(x, zp)), rtol=1e-10, atol=1e-14)

    def residuals(v):
        return problem.residuals_physical(v, galaxy(zp), psf_fft)

    grad, jtr = jax.jit(lambda v: (jax.grad(lambda w: 0.5 * jnp.sum(residuals(w) ** 2))(v),
                                   jax.jacfwd(residuals)(v).T @ residuals(v)))(x)
    np.testing.assert_allclose(grad, jtr, rtol=1e-9, atol=1e-12 * float(jnp.abs(jtr).max()))
