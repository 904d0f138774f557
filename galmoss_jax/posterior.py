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
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import GalmossError, ParameterError, ShapeError
from .model import Sampling, _render_one, as_model
from .psf import check_psf, stamp_psf_transform
from .results import FitResult, _wrap, fold_axis_ratio
from .transforms import clip_inside, to_physical, to_unconstrained


def _complete(model, params, fixed_values):
    p = {model.resolve(k, "params"): v for k, v in params.items()}
    for n, v in model.fixed:
        if n not in p:
            p[n] = fixed_values.get(n, model.param(n).default if v is None else v)
    for a, b in model.tied:
        p[a] = p[b]
    missing = [n for n in model.param_names if n not in p]
    if missing:
        raise ParameterError(f"params: missing values for {', '.join(missing)}")
    return p


def forward_model(model, shape, *, psf=None, zeropoint=None, oversample: int = 1,
                  sampling: Sampling | None = None, fixed_values=None) -> Callable:
    """Pure function ``params -> model image (H, W)`` of ONE galaxy (vmap it for a batch).

    ``params`` maps the free parameters (full or bare names) to scalars; fixed parameters
    take their model value, else ``fixed_values``, else the profile default; ties are followed.
    Same rendering as ``fit`` (pixel integration, PSF convolution on the padded stamp).
    """
    model = as_model(model)
    shape = tuple(int(s) for s in shape)
    sampling = sampling or Sampling()
    fixed_values = {model.resolve(k, "fixed_values"): v for k, v in (fixed_values or {}).items()}
    psf_fft, psf_shape = None, None
    if psf is not None:
        pa = check_psf(psf, oversample=oversample)
        if pa.ndim != 2:
            raise ShapeError("psf: forward_model takes one PSF image (H, W)")
        psf_shape = pa.shape
        psf_fft = stamp_psf_transform(jnp.asarray(pa, dtype=jnp.result_type(float)), shape, oversample)
    zp = 0.0 if zeropoint is None else float(zeropoint)

    def render(params):
        return _render_one(model, _complete(model, params, fixed_values), shape, psf_fft, psf_shape,
                           int(oversample), zp, sampling)

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
    m = m & jnp.isfinite(d) & (s > 0)
    d = jnp.where(m, d, 0.0)
    inv = jnp.where(m, 1.0 / jnp.where(m, s, 1.0), 0.0)
    render = forward_model(model, d.shape[-2:], psf=psf, zeropoint=zeropoint, oversample=oversample,
                           sampling=sampling, fixed_values=fixed_values)

    def one(params, dd, ii):
        r = (dd - render(params)) * ii
        return -0.5 * jnp.sum(r * r)

    if d.ndim == 2:
        return lambda params: one(params, d, inv)
    return lambda params: jax.vmap(one)(params, d, inv)


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
                progress_bar: bool = False) -> PosteriorSamples:
    """Sample the posterior of the free parameters with numpyro's NUTS.

    Priors are flat in the physical parameters inside the fit bounds (``Model.bounds``;
    unbounded centre and pa): the sampler works in the unconstrained space of ``fit`` and adds
    the log-Jacobian of the bound transforms.  ``init`` is a :class:`FitResult` (the LM fit:
    the best start, and its fixed values are used) or a dict of starting values.  For a batch
    the galaxies are independent and sampled jointly (their potentials add).
    """
    try:
        from numpyro.infer import MCMC, NUTS
    except ImportError:
        raise GalmossError("sample_nuts needs numpyro (pip install 'galmoss_jax[sampling]')") from None
    model = as_model(model)
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
    fixed_values = {n: start[n] for n, _ in model.fixed if n in start}
    bounds = [model.bounds_of(n) if model.param(n).periodic is None else (-math.inf, math.inf) for n in free]
    logl = log_likelihood(model, data, sigma, mask=mask, psf=psf, zeropoint=zeropoint, oversample=oversample,
                          sampling=sampling, fixed_values=fixed_values)
    missing = [n for n in free if n not in start]
    if missing:
        raise ParameterError(f"init: no starting value for {', '.join(missing)}")

    def phys(u):
        return {n: to_physical(u[n], lo, hi) for n, (lo, hi) in zip(free, bounds)}

    def potential(u):
        logj = sum(jnp.sum(jnp.log(jnp.abs(jax.grad(lambda t, lo=lo, hi=hi: to_physical(t, lo, hi))(x))))
                   if not batched else
                   jnp.sum(jnp.log(jnp.abs(jax.vmap(jax.grad(lambda t, lo=lo, hi=hi: to_physical(t, lo, hi)))(x))))
                   for (lo, hi), x in zip(bounds, (u[n] for n in free)))
        return -(jnp.sum(logl(phys(u))) + logj)

    u0 = {n: jnp.asarray(to_unconstrained(clip_inside(jnp.asarray(start[n], float), lo, hi), lo, hi))
          for n, (lo, hi) in zip(free, bounds)}
    kernel = NUTS(potential_fn=potential, dense_mass=dense_mass, target_accept_prob=target_accept)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, progress_bar=progress_bar)
    mcmc.run(jax.random.PRNGKey(seed), init_params=u0, extra_fields=("diverging",))
    us = mcmc.get_samples()
    draws = {n: np.asarray(v) for n, v in jax.vmap(phys)(us).items()}
    ndiv = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    # fold like a fit result (q <= 1), pa unwrapped around the start
    N = num_samples
    G = 1 if not batched else np.shape(data)[0]
    flat = {n: np.reshape(np.broadcast_to(np.asarray(start[n], float), (N, G) if batched else (N,)), -1)
            for n in model.param_names if n in start}
    flat.update({n: np.reshape(draws[n], -1) for n in free})
    for a, b in model.tied:
        flat[a] = flat[b]
    folded, _ = fold_axis_ratio(model, free, flat, np.zeros((flat[free[0]].shape[0], len(free), len(free))))
    out = {}
    for n in free:
        v = folded[n].reshape(draws[n].shape)
        per = model.param(n).periodic
        if per is not None:
            ref = np.asarray(start[n], float)
            v = ref + _wrap((v - ref) * (180.0 / per)) * (per / 180.0)
        out[n] = v
    return PosteriorSamples(samples=out, num_divergent=ndiv,
                            mean={n: v.mean(axis=0) for n, v in out.items()},
                            std={n: v.std(axis=0, ddof=1) for n, v in out.items()})
