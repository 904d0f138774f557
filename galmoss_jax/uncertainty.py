"""Bootstrap errors: vmapped refits of resampled data sets, started from the best fit.

Two resampling schemes (``fit(..., errors="bootstrap", bootstrap=N, bootstrap_method=...)``):

``"pixels"`` (default; GALMOSS's method)
    every used pixel gets an independent Poisson(1) weight w (the large-sample form of
    resampling the pixels with replacement); the refit minimises sum w r^2, i.e. the same fit
    with sigma / sqrt(w) and the pixels with w = 0 masked.  Makes no assumption about the
    model being right; it measures the scatter the *data* support (a sandwich estimator).
``"residuals"``
    the data are replaced by the best-fit model plus the normalised residuals
    (data - model) / sigma of the used pixels, resampled with replacement, times sigma, and
    inflated by sqrt(n / (n - P)) for the degrees of freedom the fit absorbed.  Assumes the
    model and the *shape* of the noise distribution are right, not its level.

Both keep pixels independent: neither is right for correlated noise (see ``fit``'s docstring).
Each refit reuses the jitted fit core on the batch tiled G x N, so no new program is
compiled when G x N equals a batch size already fitted.  Samples are folded like the best
fit (q <= 1, radii times q, pa + 90) and pa is unwrapped around the best-fit pa before the
covariance is taken; refits that fail (status other than 0 or 1) are left out.
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from ._errors import ParameterError
from .results import _wrap, fold_axis_ratio
from .transforms import clip_inside, to_unconstrained


def parse_errors_option(text: str):
    """CLI ``--errors``: ``gn``, ``hessian``, ``bootstrap`` or ``bootstrap=N`` -> (errors, N)."""
    if text in ("gn", "hessian"):
        return text, None
    if text == "bootstrap":
        return "bootstrap", 100
    if text.startswith("bootstrap="):
        try:
            n = int(text.split("=", 1)[1])
        except ValueError:
            n = 0
        if n >= 2:
            return "bootstrap", n
    raise ParameterError(f"--errors: expected gn, hessian, bootstrap or bootstrap=N (N >= 2), got {text!r}")


def _full_values(prob, pf, fvals):
    vals = {n: pf[:, i] for i, n in enumerate(prob.free)}
    for j, n in enumerate(prob.fixed):
        vals[n] = fvals[:, j]
    for a, b in prob.tied:
        vals[a] = vals[b]
    return vals


def resample(prob, values, args, psf_batched, n: int, method: str, rng):
    """Resampled data, sigma and mask ``(G * n, H, W)`` (galaxy-major) around the best fit."""
    from .model import _render_jit

    fvals, d, s, m, psf, zp, gain, rn, sky = (None if a is None else np.asarray(a) for a in args)
    G, H, W = d.shape
    P = len(prob.free)
    params = {k: jnp.asarray(v, dtype=d.dtype) for k, v in values.items()}
    model_img = np.asarray(_render_jit(prob.model, params, prob.shape, None if psf is None else jnp.asarray(psf),
                                       prob.psf_shape, prob.oversample, jnp.asarray(zp), prob.sampling,
                                       True, psf_batched))
    rep = lambda a: np.repeat(a, n, axis=0)   # noqa: E731
    if method == "pixels":
        w = rng.poisson(1.0, size=(G, n, H, W)).astype(d.dtype)
        s_new = np.where(w > 0, s[:, None] / np.sqrt(np.maximum(w, 1.0)), s[:, None]).reshape(G * n, H, W)
        m_new = (m[:, None] & (w > 0)).reshape(G * n, H, W)
        d_new = rep(d)
    else:
        d_new = np.empty((G, n, H, W), d.dtype)
        for g in range(G):
            used = m[g]
            r = ((d[g] - model_img[g]) / s[g])[used]
            k = r.size
            infl = np.sqrt(k / max(k - P, 1))
            draw = r[rng.integers(0, k, size=(n, k))] * infl
            dd = np.broadcast_to(d[g], (n, H, W)).copy()
            dd[:, used] = model_img[g][used] + draw * s[g][used]
            d_new[g] = dd
        d_new = d_new.reshape(G * n, H, W)
        s_new, m_new = rep(s), rep(m)
    return d_new, s_new, m_new, model_img


def bootstrap_refits(prob, pf, values, args, psf_batched, psf_arr, *, n: int = 100, method: str = "pixels",
                     seed: int = 0):
    """Bootstrap samples and covariance of the free parameters of a batch of fits.

    Args:
        prob, args, psf_batched: the fit problem and its device arguments (see ``fit``).
        pf: (G, P) best-fit free parameters (physical, before the fold of q > 1).
        values: best-fit values of every parameter, ``{name: (G,)}``, before the fold.
        n: refits per galaxy.
        method: ``"pixels"`` or ``"residuals"`` (module docstring).
        seed: NumPy random seed.

    Returns:
        ``(samples, cov)``: ``samples`` maps every free parameter to a (G, n) array of refit
        values (folded like the best fit; NaN for failed refits) and ``"status"`` to the refit
        status codes; ``cov`` is the (G, P, P) sample covariance (NaN with < 3 good refits).
    """
    from .fit import _run_starts

    rng = np.random.default_rng(seed)
    fvals = np.asarray(args[0])
    G, P = pf.shape
    d_new, s_new, m_new, _ = resample(prob, values, args, psf_batched, n, method, rng)
    u0 = np.stack([np.asarray(to_unconstrained(np.asarray(clip_inside(pf[:, i], lo, hi)), lo, hi))
                   for i, (lo, hi) in enumerate(prob.free_bounds)], -1)
    rep = lambda a: None if a is None else jnp.asarray(np.repeat(np.asarray(a), n, axis=0))   # noqa: E731
    psf_arg = rep(args[4]) if psf_batched else args[4]
    targs = (rep(fvals), jnp.asarray(d_new), jnp.asarray(s_new), jnp.asarray(m_new), psf_arg,
             rep(args[5]), rep(args[6]), rep(args[7]), rep(args[8]))
    pf_s, _, _, _, status = _run_starts(prob, np.repeat(u0, n, axis=0)[:, None], targs, psf_batched)
    status = np.asarray(status).reshape(G, n)
    vals_s = _full_values(prob, np.asarray(pf_s), np.repeat(fvals, n, axis=0))
    dummy = np.zeros((G * n, P, P))
    folded, _ = fold_axis_ratio(prob.model, prob.free, vals_s, dummy)
    best, _ = fold_axis_ratio(prob.model, prob.free, {k: np.asarray(v) for k, v in values.items()},
                              np.zeros((G, P, P)))
    good = (status == 0) | (status == 1)
    samples = {}
    for name in prob.free:
        v = folded[name].reshape(G, n)
        if prob.model.param(name).periodic is not None:   # unwrap around the best fit
            per = prob.model.param(name).periodic
            v = best[name][:, None] + _wrap((v - best[name][:, None]) * (180.0 / per)) * (per / 180.0)
        samples[name] = np.where(good, v, np.nan)
    samples["status"] = status
    X = np.stack([samples[nm] for nm in prob.free], -1)   # (G, n, P)
    cov = np.full((G, P, P), np.nan)
    for g in range(G):
        ok = np.all(np.isfinite(X[g]), axis=1)
        if ok.sum() >= 3:
            cov[g] = np.atleast_2d(np.cov(X[g][ok], rowvar=False))
    return samples, cov
