"""Posterior sampling through the same differentiable model (optional extra ``sampling``).

:func:`forward_model` and :func:`log_likelihood` return *pure, jittable* functions of a
parameter dict, for one galaxy (``data`` (H, W), scalar parameters) or a batch (``data``
(G, H, W), (G,) parameters): use them as the forward model inside a larger probabilistic
program (numpyro, blackjax, your own HMC), differentiate them, vmap them.
:func:`sample_nuts` runs numpyro's NUTS on them with flat priors inside the fit bounds::

    from galmoss_jax.posterior import log_likelihood, sample_nuts
    logl = log_likelihood("sersic", data, sigma, psf=psf, zeropoint=25.0)
    logl({"x0": 15.5, "y0": 15.5, "mag": 16.0, "r_e": 3.0, "n": 2.0, "q": 0.6, "pa": 10.0})
    post = sample_nuts("sersic", data, sigma, init=res, psf=psf, zeropoint=25.0)
    post.samples["sersic.r_e"].std()

The likelihood is Gaussian: ``log L = -chi2 / 2`` with ``chi2 = sum mask ((data - model) /
sigma)^2`` (constant terms dropped), exactly the statistic ``fit`` minimises, so for a
well-constrained galaxy the posterior mean and standard deviation agree with the LM fit and
its Gauss-Newton errors (``tests/test_posterior.py``).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import GalmossError, ParameterError, ShapeError
from ._conventions import fold_axis_ratio, wrap_angle
from .model import Renderer, Sampling, as_model
from ._noise import usable_pixels
from .results import FitResult


def forward_model(model, shape, *, psf=None, zeropoint=None, oversample: int = 1,
                  sampling: Sampling | None = None, fixed_values=None) -> Callable:
    """Pure function ``params -> model image (H, W)`` of ONE galaxy (vmap it for a batch).

    ``params`` maps the free parameters (full or bare names) to scalars; fixed parameters
    take their model value, else ``fixed_values``, else the profile default; ties are followed.
    Same rendering as ``fit`` (pixel integration, PSF convolution on the padded stamp).  The
    PSF and the zero point may be traced (a free PSF width or zero point inside a sampler): the
    function is differentiable in them.  Built on :class:`galmoss_jax.Renderer`, which takes the
    PSF and zero point per call.
    """
    psf_shape = None if psf is None else jnp.shape(psf)
    if psf is not None and len(psf_shape) != 2:
        raise ShapeError("psf: forward_model takes one PSF image (H, W)")
    renderer = Renderer(model, shape, psf_shape=psf_shape, oversample=oversample, sampling=sampling,
                        fixed=fixed_values)
    if zeropoint is None:
        renderer.model.require_zeropoint()
        zeropoint = 0.0

    def render(params):
        return renderer(params, psf=psf, zeropoint=zeropoint)

    return render


def log_likelihood(model, data, sigma, *, mask=None, psf=None, zeropoint=None, oversample: int = 1,
                   sampling: Sampling | None = None, fixed_values=None) -> Callable:
    """Pure, jittable ``params -> log L = -chi2 / 2`` (constants dropped).

    Args:
        model: a Model, profile name or spec string.
        data: (H, W) image or (G, H, W) batch, image units.
        sigma: 1-sigma map(s), same shape (or (H, W) shared), image units.
        mask: True = pixel used (same shape or (H, W)); None = all.
        psf, zeropoint, oversample, sampling: as in ``fit`` (one PSF image for all galaxies).
        fixed_values: values of parameters the model holds fixed at "the initial value".

    Returns:
        ``f(params)``: for (H, W) data, ``params`` maps names to scalars and ``f`` returns a
        scalar; for (G, H, W) data, to (G,) arrays and ``f`` returns (G,) values.
    """
    d = jnp.asarray(data, dtype=jnp.result_type(float))
    if d.ndim not in (2, 3):
        raise ShapeError(f"data must be (H, W) or (G, H, W), got shape {d.shape}")
    s = jnp.broadcast_to(jnp.asarray(sigma, d.dtype), d.shape)
    m = jnp.ones(d.shape, bool) if mask is None else jnp.broadcast_to(jnp.asarray(mask, bool), d.shape)
    d, s, m, _, _ = usable_pixels(d, s, m)
    inv = jnp.where(m, 1.0 / s, 0.0)
    psf_shape = None if psf is None else jnp.shape(psf)
    if psf is not None and len(psf_shape) != 2:
        raise ShapeError("psf: log_likelihood takes one PSF image (H, W) for every galaxy")
    renderer = Renderer(model, d.shape[-2:], psf_shape=psf_shape, oversample=oversample, sampling=sampling)
    if zeropoint is None:
        renderer.model.require_zeropoint()
        zeropoint = 0.0
    lay = renderer.model.layout
    fixed = lay.fixed_vector({renderer.model.resolve(k, "fixed_values"): v for k, v in (fixed_values or {}).items()})

    def one(params, dd, ii, fx, zp):
        r = (dd - renderer(params, psf=psf, zeropoint=zp, fixed=fx)) * ii
        return -0.5 * jnp.sum(r * r)

    if d.ndim == 2:
        return lambda params: one(params, d, inv, fixed, zeropoint)
    G = d.shape[0]
    fixed = jnp.broadcast_to(fixed, (G, len(lay.fixed)))
    zps = jnp.broadcast_to(jnp.asarray(zeropoint, d.dtype), (G,))
    return lambda params: jax.vmap(one)(params, d, inv, fixed, zps)


@dataclasses.dataclass
class PosteriorSamples:
    """NUTS draws: ``samples[name]`` is (num_samples,) for one galaxy, (num_samples, G) for a
    batch, physical units, folded like fit results (q <= 1, pa near the start, radii times q)."""

    samples: dict
    num_divergent: int
    mean: dict
    std: dict


def sample_nuts(model, data, sigma, *, init, mask=None, psf=None, zeropoint=None, oversample: int = 1,
                sampling: Sampling | None = None, num_warmup: int = 500, num_samples: int = 500,
                seed: int = 0, dense_mass: bool = True, target_accept: float = 0.8,
                covariance=None, progress_bar: bool = False) -> PosteriorSamples:
    """Sample the posterior of the free parameters with numpyro's NUTS.

    Priors are flat in the physical parameters inside the fit bounds (``Model.bounds``;
    unbounded centre and pa): the sampler works in the unconstrained space of ``fit`` and adds
    the log-Jacobian of the bound transforms.  ``init`` is a :class:`FitResult` (the LM fit:
    the best start, and its fixed values are used) or a dict of starting values.  For a batch
    the galaxies are independent and sampled jointly (their potentials add).

    The sampler runs in coordinates whitened by the fit's covariance carried into the
    unconstrained space (``covariance``: (P, P) or (G, P, P), physical units, order
    ``model.free_names``; by default ``init.covariance`` when ``init`` is a FitResult with
    finite errors): the posterior then has unit scale in every direction, which NUTS's step
    size and mass-matrix adaptation assume (a galaxy's parameters differ in scale by orders of
    magnitude: without it the trajectories are ~20 times longer).  Warm-up still adapts.
    """
    try:
        from numpyro.infer import MCMC, NUTS
    except ImportError:
        raise GalmossError("sample_nuts needs numpyro (pip install 'galmoss_jax[sampling]')") from None
    model = as_model(model)
    model.refuse_band_modes("sample_nuts")
    free = model.free_names
    batched = np.ndim(data) == 3
    if isinstance(init, FitResult):
        start = {n: np.asarray(init.values[n], float) for n in model.param_names}
    elif isinstance(init, dict):
        start = {model.resolve(k, "init"): np.asarray(v, float) for k, v in init.items()}
    else:
        raise ParameterError("init must be a FitResult or a dict of starting values")
    if not batched:
        start = {k: np.ravel(v)[0] for k, v in start.items()}
    lay = model.layout
    missing = [n for n in free if n not in start]
    if missing:
        raise ParameterError(f"init: no starting value for {', '.join(missing)}")
    fixed_values = {n: start[n] for n in lay.fixed if n in start}
    logl = log_likelihood(model, data, sigma, mask=mask, psf=psf, zeropoint=zeropoint, oversample=oversample,
                          sampling=sampling, fixed_values=fixed_values)

    def potential(u):
        x = lay.to_physical(u)
        logj = jnp.sum(jnp.log(jnp.abs(lay.physical_derivative(u))))   # flat priors in x
        return -(jnp.sum(logl({n: x[..., i] for i, n in enumerate(free)})) + logj)

    x0 = jnp.asarray(lay.free_vector(start), dtype=jnp.result_type(float))
    if covariance is None and isinstance(init, FitResult):
        covariance = init.covariance if batched else init.covariance[0]
    u0 = lay.to_unconstrained(x0)
    chol = _whitening(lay, x0, covariance)
    if chol is None:
        to_u = lambda z: z   # noqa: E731
        z0 = u0
    else:
        # sample whitened coordinates, u = u0 + L z: numpyro's mass-matrix adaptation then works
        # on parameters of unit scale (its regularisation adds 1e-3 to the diagonal, which
        # would swamp a magnitude's variance of ~1e-6 and shrink the step size 30-fold)
        to_u = lambda z: u0 + (chol @ z.reshape(-1)).reshape(u0.shape)   # noqa: E731
        z0 = jnp.zeros_like(u0)
    kernel = NUTS(potential_fn=lambda z: potential(to_u(z)), dense_mass=dense_mass,
                  target_accept_prob=target_accept)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, progress_bar=progress_bar)
    mcmc.run(jax.random.PRNGKey(seed), init_params=z0, extra_fields=("diverging",))
    xs = lay.to_physical(jax.vmap(to_u)(mcmc.get_samples()))                    # (N, [G,] P)
    ndiv = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    # fold like a fit result (q <= 1), pa unwrapped around the start
    P = len(free)
    fixed = jnp.broadcast_to(lay.fixed_vector(fixed_values), xs.shape[:-1] + (len(lay.fixed),))
    fold = jax.vmap(lambda x, f: fold_axis_ratio(model, free, lay.expand(x, f), jnp.zeros((P, P)))[0])
    folded = fold(xs.reshape(-1, P), fixed.reshape(-1, len(lay.fixed)))
    out = {}
    for n in free:
        v = np.asarray(folded[n]).reshape(xs.shape[:-1])
        per = model.param(n).periodic
        if per is not None:
            ref = np.asarray(start[n], float)
            v = ref + np.asarray(wrap_angle((v - ref) * (180.0 / per))) * (per / 180.0)
        out[n] = v
    return PosteriorSamples(samples=out, num_divergent=ndiv,
                            mean={n: v.mean(axis=0) for n, v in out.items()},
                            std={n: v.std(axis=0, ddof=1) for n, v in out.items()})


def _whitening(lay, x0, covariance):
    """Cholesky factor L of the covariance of the free parameters (physical, (P, P) or
    (G, P, P)) carried into the flattened unconstrained coordinates (block-diagonal over
    galaxies), or None where it is not usable (missing, non-finite or not positive definite)."""
    if covariance is None:
        return None
    P = lay.n_free
    cov = np.asarray(covariance, float).reshape((-1, P, P))
    d = np.asarray(lay.physical_derivative(lay.to_unconstrained(x0)), float).reshape(-1, P)   # dx/du
    if cov.shape[0] != d.shape[0] or not np.all(np.isfinite(cov)) or np.any(d == 0):
        return None
    G = cov.shape[0]
    out = np.zeros((G * P, G * P))
    try:
        for g in range(G):
            out[g * P:(g + 1) * P, g * P:(g + 1) * P] = np.linalg.cholesky(cov[g] / d[g][:, None] / d[g][None, :])
    except np.linalg.LinAlgError:
        return None
    return jnp.asarray(out)
