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
Each refit runs the engine (:func:`galmoss_jax.solve`, vmapped in the same chunks as the fit,
so no new program is compiled) on the batch tiled G x N, started from the best fit.  Samples
are folded like the best fit (q <= 1, radii times q, pa + 90) and pa is unwrapped around the
best-fit pa before the covariance is taken; refits that fail (status other than 0 or 1) are
left out.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from ._errors import ParameterError
from ._conventions import wrap_angle
from ._engine import GalaxyData, Problem, Solution
from .psf import stamp_psf_transform
from ._status import Status


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


def resample(problem: Problem, model_img, galaxies: GalaxyData, n: int, method: str, rng) -> GalaxyData:
    """The batch tiled ``n`` times (galaxy-major, ``G * n``) with resampled data, sigma and mask
    around the best-fit model images ``model_img`` (G, H, W; used by ``"residuals"`` only)."""
    d, s, m = (np.asarray(a) for a in (galaxies.data, galaxies.sigma, galaxies.mask))
    G, H, W = d.shape
    P = problem.layout.n_free
    tiled = jax.tree.map(lambda a: np.repeat(np.asarray(a), n, axis=0), galaxies)
    if method == "pixels":
        w = rng.poisson(1.0, size=(G, n, H, W)).astype(d.dtype)
        s_new = np.where(w > 0, s[:, None] / np.sqrt(np.maximum(w, 1.0)), s[:, None]).reshape(G * n, H, W)
        m_new = (m[:, None] & (w > 0)).reshape(G * n, H, W)
        return dataclasses.replace(tiled, sigma=s_new, mask=m_new)
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
    return dataclasses.replace(tiled, data=d_new.reshape(G * n, H, W))


def bootstrap_refits(problem: Problem, best: Solution, galaxies: GalaxyData, psf, psf_batched: bool, run, *,
                     n: int = 100, method: str = "pixels", seed: int = 0):
    """Bootstrap samples and covariance of the free parameters of a batch of fits.

    Args:
        problem: the fit problem; ``best`` its batch of solutions (NumPy, leading axis G).
        galaxies, psf, psf_batched: the inputs the fits were made on.
        run: the engine over a batch (``fit``'s :func:`galmoss_jax._engine.solve_batch` with
            its chunking and device placement), called as ``run(u0, galaxies=..., psf=...)``.
        n: refits per galaxy.
        method: ``"pixels"`` or ``"residuals"`` (module docstring).
        seed: NumPy random seed.

    Returns:
        ``(samples, cov)``: ``samples`` maps every free parameter to a (G, n) array of refit
        values (folded like the best fit; NaN for failed refits) and ``"status"`` to the refit
        status codes; ``cov`` is the (G, P, P) sample covariance (NaN with < 3 good refits).
    """
    rng = np.random.default_rng(seed)
    lay = problem.layout
    G = best.chi2.shape[0]
    x_best = np.asarray(lay.free_vector(best.params)).reshape(G, lay.n_free)
    model_img = (np.asarray(_render_batch(problem, x_best, galaxies, psf, psf_batched)) if method == "residuals"
                 else None)
    tiled = resample(problem, model_img, galaxies, n, method, rng)
    u0 = np.asarray(lay.to_unconstrained(np.repeat(x_best, n, axis=0)), x_best.dtype)
    refits = run(u0, galaxies=tiled, psf=np.repeat(psf, n, axis=0) if psf_batched else psf)
    status = refits.status.reshape(G, n)
    good = np.isin(status, (int(Status.SUCCESS), int(Status.MAX_ITER)))
    samples = {}
    for name in lay.free:
        v = np.asarray(refits.params[name]).reshape(G, n)
        per = problem.model.param(name).periodic
        if per is not None:   # unwrap around the best fit
            ref = np.asarray(best.params[name])[:, None]
            v = ref + np.asarray(wrap_angle((v - ref) * (180.0 / per))) * (per / 180.0)
        samples[name] = np.where(good, v, np.nan)
    samples["status"] = status
    X = np.stack([samples[nm] for nm in lay.free], -1)   # (G, n, P)
    cov = np.full((G, lay.n_free, lay.n_free), np.nan)
    for g in range(G):
        ok = np.all(np.isfinite(X[g]), axis=1)
        if ok.sum() >= 3:
            cov[g] = np.atleast_2d(np.cov(X[g][ok], rowvar=False))
    return samples, cov


@functools.partial(jax.jit, static_argnames=("problem", "psf_batched"))
def _render_batch(problem: Problem, x, galaxies: GalaxyData, psf, psf_batched: bool):
    """Model images (G, H, W) of free vectors ``x`` (G, P)."""
    def one(xx, gal, k):
        psf_fft = None if k is None else stamp_psf_transform(k, problem.shape, problem.oversample)
        return problem.render(xx, gal, psf_fft)
    return jax.vmap(one, in_axes=(0, 0, 0 if psf_batched else None))(x, galaxies, psf)
