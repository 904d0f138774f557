"""``fit``: one jit-compiled entry point that fits a batch of galaxies, one solver per galaxy.

Host side (NumPy): inputs are validated, bad pixels masked with a warning, initial values
completed and mapped into the unconstrained space.  Device side (one ``jax.jit``): the solver
runs under ``jax.vmap`` over the galaxy axis with per-galaxy damping and stopping, then the
Hessian of the statistic in the physical parameters gives the covariance.  A galaxy that fails
gets a status code in its row; it never stops the batch.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import os
import warnings


import jax
import jax.numpy as jnp
import numpy as np

from ._errors import DataError, ParameterError, PSFError, ShapeError
from .init import guess_initial, measured_from_image, neighbour_mask
from .multistart import _amplitude_layout, candidate_starts, parse_starts, screen_starts
from .likelihood import STATISTICS, residuals, statistic_value
from .model import Model, Sampling, _render_one, as_model
from .psf import check_oversample, check_psf, stamp_psf_transform
from .results import FitResult, fold_axis_ratio
from .solvers import levenberg_marquardt, optax_minimise
from .solvers.lm import MAX_ITER, NONFINITE, STALLED, SUCCESS
from .transforms import clip_inside, to_physical, to_unconstrained

# fit status codes: the solver's, then these
SINGULAR_HESSIAN = 4
NO_DATA = 5
STATUS_MESSAGES = {
    SUCCESS: "success",
    MAX_ITER: "maximum number of iterations reached",
    NONFINITE: "non-finite values met (data, model or parameters)",
    STALLED: "no downhill step found",
    SINGULAR_HESSIAN: "converged, but the Hessian is singular: errors undefined",
    NO_DATA: "no usable pixels (all masked)",
}


@dataclasses.dataclass(frozen=True)
class _Problem:
    model: Model
    shape: tuple
    psf_shape: tuple | None
    oversample: int
    sampling: Sampling
    stat: str
    free: tuple
    free_bounds: tuple
    fixed: tuple
    tied: tuple
    solver: str
    optimizer: object
    max_iter: int
    errors: object


def _params_from_free(prob: _Problem, pf, fvals):
    p = {n: pf[i] for i, n in enumerate(prob.free)}
    p.update({n: fvals[j] for j, n in enumerate(prob.fixed)})
    for a, b in prob.tied:
        p[a] = p[b]
    return p


def _solve_one(prob: _Problem, u0, fvals, data, sigma, mask, psf_fft, zp, gain, rn, sky):
    def phys(u):
        return jnp.stack([to_physical(u[i], lo, hi) for i, (lo, hi) in enumerate(prob.free_bounds)])

    def model_of(pf):
        p = _params_from_free(prob, pf, fvals)
        return _render_one(prob.model, p, prob.shape, psf_fft, prob.psf_shape, prob.oversample, zp, prob.sampling)

    def resid_phys(pf):
        return residuals(prob.stat, data, model_of(pf), sigma, mask, gain, rn, sky).ravel()

    def resid(u, args):
        return resid_phys(phys(u))

    jtj_u = None
    if prob.solver == "lm":
        res = levenberg_marquardt(resid, u0, None, max_iter=prob.max_iter)
        u, n_iter, status, jtj_u = res.u, res.n_iter, res.status, res.jtj
    else:
        res = optax_minimise(lambda u, a: jnp.sum(resid(u, a) ** 2), u0, None, prob.optimizer, max_iter=prob.max_iter)
        u, n_iter, status = res.u, res.n_iter, res.status
    pf = phys(u)
    model_img = model_of(pf)
    value = statistic_value(prob.stat, data, model_img, sigma, mask, gain, rn, sky)
    P = len(prob.free)
    if prob.errors and P > 0:
        if prob.errors == "hessian":
            # full Hessian of the sum of squared residuals in the physical parameters
            hess = 0.5 * jax.hessian(lambda q: jnp.sum(resid_phys(q) ** 2))(pf)
        else:
            # Gauss-Newton: H/2 = J^T J with J the Jacobian in the physical parameters
            # (from the solver's J^T J in unconstrained space and the transform's derivative)
            if jtj_u is None:
                jac = jax.jacfwd(resid)(u, None)
                jtj_u = jnp.matmul(jac.T, jac, precision=jax.lax.Precision.HIGHEST)
            dpdu = jax.jacfwd(phys)(u).diagonal()
            inv = jnp.where(dpdu != 0, 1.0 / jnp.where(dpdu != 0, dpdu, 1.0), 0.0)
            hess = jtj_u * inv[:, None] * inv[None, :]
        hess = 0.5 * (hess + hess.T)
        # scale to unit diagonal before the Cholesky so that parameters of very different
        # magnitude (pixels, magnitudes, degrees) do not make it fail in float32
        dg = jnp.sqrt(jnp.abs(jnp.diagonal(hess)))
        dg = jnp.where(dg > 0, dg, 1.0)
        hs = hess / dg[:, None] / dg[None, :]
        L = jnp.linalg.cholesky(hs)
        ok = jnp.all(jnp.isfinite(L)) & jnp.all(jnp.diagonal(hess) > 0)
        eye = jnp.eye(P, dtype=hess.dtype)
        cov = jax.scipy.linalg.cho_solve((jnp.where(ok, L, eye), True), eye) / dg[:, None] / dg[None, :]
        cov = jnp.where(ok, cov, jnp.nan)
        status = jnp.where((status == SUCCESS) & ~ok, SINGULAR_HESSIAN, status)
    else:
        cov = jnp.full((P, P), jnp.nan, dtype=pf.dtype)
    return pf, cov, value, n_iter, status


@functools.partial(jax.jit, static_argnames=("prob", "psf_batched"))
def _fit_core(prob, u0, fvals, data, sigma, mask, psf, zp, gain, rn, sky, psf_batched):
    psf_fft = None
    if psf is not None:
        psf_fft = stamp_psf_transform(psf, prob.shape, prob.oversample)
    in_psf = 0 if psf_batched else None
    fn = functools.partial(_solve_one, prob)
    return jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, in_psf, 0, 0, 0, 0))(
        u0, fvals, data, sigma, mask, psf_fft, zp, gain, rn, sky)


def _chunk_size(chunk_size, G: int) -> int:
    """Galaxies per call of the compiled core.  On CPU one galaxy a call, the calls running
    concurrently on the cores (``_run_chunks``): measured 26 gal/s against 21 for chunks of 2
    run one after another, and 15 for chunks of 4 (128x128 + PSF, 2 cores), because a
    vmapped while_loop runs every member until the slowest stops and a small working set
    stays in cache; accelerators want the whole batch at once."""
    if chunk_size is None:
        chunk_size = 1 if jax.default_backend() == "cpu" else G
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ParameterError(f"chunk_size must be a positive integer, got {chunk_size}")
    return min(chunk_size, G)


def _cpu_workers() -> int:
    """Concurrent calls of the compiled core on CPU: one per core, plus one that prepares the
    next call's inputs while the others compute (measured 27 gal/s with 3 on 2 cores, 26 with
    2).  JAX releases the GIL while a compiled call runs."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return n + 1


def _run_chunks(prob, per_galaxy, psf, psf_batched, chunk, put=jnp.asarray):
    """``_fit_core`` over consecutive chunks of ``chunk`` galaxies (the last one padded with
    copies of its last galaxy, so that every call has the same shapes and one compile serves
    all), concatenated on the host.  ``put`` places each per-galaxy array on its device(s).
    On CPU the chunks run concurrently in a thread pool (each call is independent, so the
    results do not depend on the order); elsewhere one after another."""
    G = per_galaxy[0].shape[0]
    k_shared = None if psf_batched or psf is None else jnp.asarray(psf)

    def one(a):
        idx = np.minimum(np.arange(a, a + chunk), G - 1)
        arrs = [put(x[idx]) for x in per_galaxy]
        u0, fvals, d, s, m = arrs[:5]
        k = arrs[5] if psf_batched else k_shared
        zp, gain, rn, sky = arrs[-4:]
        res = _fit_core(prob, u0, fvals, d, s, m, k, zp, gain, rn, sky, psf_batched)
        n_real = min(chunk, G - a)
        return [np.asarray(r)[:n_real] for r in res]

    starts = range(0, G, chunk)
    workers = min(_cpu_workers(), len(starts)) if jax.default_backend() == "cpu" else 1
    if workers > 1:
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="galmoss-fit") as ex:
            outs = list(ex.map(one, starts))
    else:
        outs = [one(a) for a in starts]
    pf, cov, value, n_iter, status = (np.concatenate(parts) for parts in zip(*outs))
    return pf, cov, value, n_iter.astype(np.int32), status.astype(np.int32)


def _errors_mode(errors):
    if errors in (None, False):
        return False
    if errors is True or errors == "bootstrap":   # the bootstrap also reports the GN covariance
        return "gn"
    if errors not in ("gn", "hessian"):
        raise ParameterError(f"errors must be 'gn', 'hessian', 'bootstrap' or None, got {errors!r}")
    return errors


def _per_galaxy(value, G, name, dtype, *, allow_nan=False):
    """A scalar or (G,) value as a (G,) array of finite numbers (NaN allowed if ``allow_nan``)."""
    try:
        a = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number or one number per galaxy, got {value!r}") from None
    if a.ndim == 0:
        a = np.full((G,), a, dtype=dtype)
    if a.shape != (G,):
        raise ShapeError(f"{name} must be a scalar or one value per galaxy ({G}), got shape {a.shape}")
    if np.any(np.isinf(a) if allow_nan else ~np.isfinite(a)):
        raise ParameterError(f"{name} must be finite, got {a[~np.isfinite(a)][0]}")
    return a


def fit(model, data, *, sigma=None, mask=None, psf=None, init=None, zeropoint=None,
        gain=None, read_noise=0.0, sky=0.0, stat: str = "chi2", solver="lm", optimizer=None,
        max_iter: int | None = None, oversample: int = 1, sampling: Sampling | None = None,
        errors="gn", scale_errors: bool = False, starts="auto", mask_neighbours: bool = False,
        bootstrap: int | None = None, bootstrap_method: str = "pixels", keep_samples: bool = False,
        seed: int = 0, chunk_size: int | None = None, sharding=None) -> FitResult:
    """Fit ``model`` to one galaxy (``data`` of shape (H, W)) or a batch ((G, H, W)).

    Args:
        model: a :class:`Model` (fixed, tied, bounded parameters), profile name or spec string.
        data: image(s), image units (e.g. ADU); sky already subtracted unless the model has a
            sky component.
        sigma: 1-sigma error per pixel, same shape as ``data`` (or (H, W) shared).  If None,
            built from the data with ``gain``, ``read_noise`` and ``sky`` as GALFIT/Imfit do.
            Pixels with sigma <= 0 or non-finite are masked with a warning (an error if that
            leaves no pixel at all); so are non-finite data pixels.
        mask: boolean, True = pixel used; same shape as ``data`` (or (H, W) shared).  A galaxy
            left without pixels gets status 5 in its row.
        psf: PSF image (odd sides, centre on the middle pixel; normalised with a warning) or a
            (G, h, w) cube, one per galaxy.
        init: initial values ``{name: scalar or (G,) array}``; parameters without one (or with
            NaN for some galaxies) get automatic values from image moments.  Values outside the bounds are moved inside
            with a warning.
        zeropoint: magnitude zero point(s); required when the model has magnitudes.
        gain: electrons per image unit (for a sigma built from the data and for the
            ``model-chi2``, ``poisson-mlr`` and ``cash`` statistics).
        read_noise: read noise, electrons.
        sky: the sky level already subtracted from ``data``, image units (for the noise model).
        stat: ``"chi2"``, ``"model-chi2"``, ``"poisson-mlr"`` or ``"cash"``.
        solver: ``"lm"`` (Levenberg-Marquardt, default), ``"adam"``, or an
            ``optax.GradientTransformation`` (built once by the caller).
        max_iter: iteration limit (default 100 for LM, 3000 for Optax).
        oversample: integer factor by which ``psf`` is finer than the image pixels.
        sampling: pixel-integration settings.
        errors: covariance of the physical parameters: ``"gn"`` (default) inverts the
            Gauss-Newton Hessian ``2 J^T J`` at the optimum (what GALFIT and Imfit report; free,
            since the solver has J); ``"hessian"`` inverts the full ``jax.hessian`` of the
            statistic (includes the curvature of the model times the residuals; slow to
            compile); ``None``/``False`` skips errors.  In both, cov = 2 H^-1.
            ``"bootstrap"``: refits of ``bootstrap`` (default 100) resampled data sets, see
            :mod:`galmoss_jax.uncertainty`; the Gauss-Newton covariance is kept in
            ``hessian_covariance``.
        scale_errors: multiply the covariance by ``chi2_nu`` (errors by sqrt(chi2_nu)).  Off by
            default: with a correct sigma map the errors are calibrated as they are (the pulls
            (fit - truth) / err of every parameter have unit width on simulations,
            ``tests/test_calibration.py``); turn it on when sigma is known only up to a factor.
            Neither choice corrects for *correlated* noise (resampled or drizzled images):
            the errors then come out too small by roughly the square root of the number of
            pixels per noise correlation area, and the pixel bootstrap, which resamples pixels
            independently, shares that limitation.  Errors of ``q`` and the radii are carried
            through the fold of q > 1 fits (Jacobian of q -> 1/q, r -> r q); ``pa`` is wrapped
            to (-90, 90] and its error is in degrees, meaningful only while it is small against
            90 deg (a round galaxy, q -> 1, has an undefined pa and a large pa error).
        starts: ``"auto"`` (default): screen the caller's start, the automatic one and a grid
            in Sérsic n and radius around it by their statistic at the best linear amplitudes
            (one coarse batched render per candidate); run LM from the caller's start (the
            automatic one where none is given) and, for the galaxies where the screen ranks
            another candidate first, again from that one, keeping the lower statistic
            (:mod:`galmoss_jax.multistart`); an integer ``S > 1``: LM from the best ``S``
            distinct candidates in one vmapped call (the batch tiled G x S), keeping per galaxy
            the lowest statistic; ``1``: LM from ``init`` alone.
        mask_neighbours: mask the other sources of each stamp found by ``sep`` detection and
            deblending (:func:`galmoss_jax.init.neighbour_mask`; needs the ``detect`` extra),
            on top of ``mask``.
        bootstrap: number of bootstrap refits per galaxy (default 100 with
            ``errors="bootstrap"``; a number alone also asks for bootstrap errors).
        bootstrap_method: ``"pixels"`` (GALMOSS's method: Poisson(1) weights on the pixels) or
            ``"residuals"`` (best-fit model plus resampled normalised residuals times sigma).
        keep_samples: keep the bootstrap refits in ``FitResult.samples``.
        seed: random seed of the bootstrap.
        chunk_size: galaxies per call of the compiled solver (default: 1 on CPU, the calls
            running concurrently on the cores, where small chunks are faster per galaxy; the
            whole batch on a GPU or with ``sharding``).  The results do not depend on it
            beyond float rounding.
        sharding: a :class:`jax.sharding.Sharding` of the galaxy axis (e.g. a ``NamedSharding``
            over a 1-D device mesh, as :mod:`galmoss_jax.survey` builds): the per-galaxy
            inputs are placed with it and the batch runs split across those devices.

    Returns:
        :class:`FitResult` with best-fit values, errors, covariance, statistic, dof, iterations
        and a per-galaxy status (0 = success).
    """
    model = as_model(model)
    if stat not in STATISTICS:
        raise ParameterError(f"stat must be one of {STATISTICS}, got {stat!r}")
    if isinstance(solver, str):
        if solver not in ("lm", "adam"):
            raise ParameterError(f"solver must be 'lm', 'adam' or an optax.GradientTransformation, got {solver!r}")
        kind = solver
        if solver == "adam" and optimizer is None:
            import optax
            optimizer = optax.adam(0.05)
    else:
        kind, optimizer = "optax", solver
    if kind == "adam":
        kind = "optax"
    if max_iter is None:
        max_iter = 100 if kind == "lm" else 3000
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ParameterError(f"max_iter must be a positive integer, got {max_iter!r}")
    check_oversample(oversample)

    def as_array(a, name):
        try:
            return np.asarray(a)
        except (TypeError, ValueError):  # ragged nested lists
            raise DataError(f"{name} must be a numeric array (H, W) or (G, H, W)") from None

    d = as_array(data, "data")
    if not np.issubdtype(d.dtype, np.number):
        raise DataError(f"data must be numeric, got dtype {d.dtype}")
    if d.ndim not in (2, 3):
        raise ShapeError(f"data must be an image (H, W) or a cube (G, H, W), got shape {d.shape}")
    batched = d.ndim == 3
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    d = np.array(d if batched else d[None], dtype=dtype)
    G, H, W = d.shape
    if G == 0 or H == 0 or W == 0:
        raise ShapeError(f"data is empty (shape {d.shape if batched else (H, W)})")

    def per_pixel(a, name):
        a = as_array(a, name)
        if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
            raise DataError(f"{name} must be numeric, got dtype {a.dtype}")
        if a.shape == (H, W):
            a = np.broadcast_to(a, (G, H, W))
        if a.shape != (G, H, W):
            raise ShapeError(f"{name} must have the shape of data {d.shape if batched else (H, W)} or (H, W), got {a.shape}")
        return a

    m = np.ones((G, H, W), bool) if mask is None else per_pixel(mask, "mask").astype(bool)
    gain_arr = _per_galaxy(1.0 if gain is None else gain, G, "gain", dtype)
    rn_arr = _per_galaxy(read_noise, G, "read_noise", dtype)
    sky_arr = _per_galaxy(sky, G, "sky", dtype)
    if np.any(gain_arr <= 0):
        raise DataError(f"gain must be positive (electrons per image unit), got {gain!r}")
    if np.any(rn_arr < 0):
        raise DataError(f"read_noise must be >= 0 (electrons), got {read_noise!r}")
    if sigma is None:
        if stat == "chi2" and gain is None:
            raise DataError("sigma is required for stat='chi2' unless gain is given (sigma is then built from the data)")
        with np.errstate(invalid="ignore"):
            s = np.sqrt(np.maximum((d + sky_arr[:, None, None]) / gain_arr[:, None, None]
                                   + (rn_arr / gain_arr)[:, None, None] ** 2, 0.0))
    else:
        s = np.array(per_pixel(sigma, "sigma"), dtype=dtype)
    m = np.array(m)
    if mask_neighbours:
        m = np.stack([neighbour_mask(d[g], m[g], None if sigma is None else s[g]) for g in range(G)])
    bad_data = ~np.isfinite(d) & m
    if bad_data.any():
        warnings.warn(f"data: {int(bad_data.sum())} non-finite pixels are masked", stacklevel=2)
    bad_sigma = (~np.isfinite(s) | (s <= 0)) & m & ~bad_data if stat == "chi2" else np.zeros_like(m)
    if bad_sigma.any() and bad_sigma.sum() == (m & ~bad_data).sum():
        raise DataError("sigma: no used pixel has a positive, finite sigma"
                        + (" (built from the data: check gain, read_noise and sky)" if sigma is None else ""))
    if bad_sigma.any():
        warnings.warn(f"sigma: {int(bad_sigma.sum())} pixels with sigma <= 0 or non-finite are masked", stacklevel=2)
    m &= ~bad_data & ~bad_sigma
    d = np.where(np.isfinite(d), d, 0.0).astype(dtype)
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0).astype(dtype)

    psf_arr, psf_shape, psf_batched = None, None, False
    if psf is not None:
        psf_arr = check_psf(psf, oversample=oversample).astype(dtype)
        psf_shape = tuple(psf_arr.shape[-2:])
        psf_batched = psf_arr.ndim == 3
        if psf_batched and psf_arr.shape[0] != G:
            raise ShapeError(f"psf cube has {psf_arr.shape[0]} PSFs for {G} galaxies")
    elif model.has_psf_components:
        raise PSFError("psf: the model has a point-source component, which needs a PSF")

    if zeropoint is None:
        model.require_zeropoint()
    zp_arr = _per_galaxy(0.0 if zeropoint is None else zeropoint, G, "zeropoint", dtype)

    # initial values: given, else automatic
    given = {}
    for k, v in (init or {}).items():
        given[model.resolve(k, "init")] = _per_galaxy(v, G, f"init[{k!r}]", dtype, allow_nan=True)
    need_guess = [n for n in model.param_names if (n not in given or np.isnan(given[n]).any())
                  and n not in dict(model.tied) and not (n in dict(model.fixed) and dict(model.fixed)[n] is not None)]
    start_mode, n_starts = parse_starts(starts)
    if bootstrap_method not in ("pixels", "residuals"):
        raise ParameterError(f"bootstrap_method must be 'pixels' or 'residuals', got {bootstrap_method!r}")
    defaults = model.defaults()
    # parameters fixed at their default (a Sérsic's c0 ...) need no measurement of the image
    need_guess = [n for n in need_guess if not (n in dict(model.fixed) and not measured_from_image(model, n))]
    if need_guess or start_mode != "none":
        guesses = [guess_initial(model, d[g], m[g], zp_arr[g], psf=None if psf_arr is None else
                                 (psf_arr[g] if psf_batched else psf_arr), oversample=int(oversample))
                   for g in range(G)]
    else:
        guesses = None
    start = {}
    fixed_vals = dict(model.fixed)
    for n in model.param_names:
        # a value fixed in the model wins over an init value (an init table is often a
        # previous result table, with a column for every parameter); tied ones follow their source
        if fixed_vals.get(n) is not None:
            start[n] = np.full(G, fixed_vals[n], dtype)
        elif n in dict(model.tied):
            continue
        elif n in given:  # a missing (NaN) value in the init table: the fitter chooses one
            fill = [defaults[n]] * G if guesses is None else [gs[n] for gs in guesses]
            start[n] = (np.where(np.isnan(given[n]), fill, given[n]).astype(dtype)
                        if np.isnan(given[n]).any() else given[n])
        elif guesses is None:
            start[n] = np.full(G, defaults[n], dtype)
        else:
            start[n] = np.array([gs[n] for gs in guesses], dtype)
    free = model.free_names
    bounds = tuple(model.bounds_of(n) if model.param(n).periodic is None else (-math.inf, math.inf) for n in free)
    u0 = np.zeros((G, len(free)), dtype)
    for i, (n, (lo, hi)) in enumerate(zip(free, bounds)):
        v = start[n]
        if not np.all(np.isfinite(v)):
            raise ParameterError(f"init[{n!r}] is not finite")
        inside = np.asarray(clip_inside(v, lo, hi))
        if np.any((v < lo) | (v > hi)):
            warnings.warn(f"init[{n!r}] lies outside its bounds [{lo}, {hi}] for some galaxies; moved inside", stacklevel=2)
        u0[:, i] = np.asarray(to_unconstrained(inside, lo, hi))
    fixed_names = tuple(n for n in model.param_names if n in fixed_vals)
    fvals = np.stack([start[n] for n in fixed_names], axis=1) if fixed_names else np.zeros((G, 0), dtype)

    prob = _Problem(model=model, shape=(H, W), psf_shape=psf_shape, oversample=int(oversample),
                    sampling=sampling or Sampling(), stat=stat, free=free, free_bounds=bounds,
                    fixed=fixed_names, tied=model.tied, solver=kind, optimizer=optimizer,
                    max_iter=int(max_iter), errors=_errors_mode(errors))
    put = jnp.asarray if sharding is None else functools.partial(jax.device_put, device=sharding)
    host = (fvals, d, s, m, psf_arr, zp_arr, gain_arr, rn_arr, sky_arr)
    # on the device(s) for the screen and the bootstrap; the solver takes the host arrays and
    # places them chunk by chunk (no device -> host -> device round trip of the whole batch)
    args = tuple(None if a is None else (jnp.asarray if a is psf_arr and not psf_batched else put)(a)
                 for a in host)
    chunk = G if sharding is not None else _chunk_size(chunk_size, G)
    if start_mode != "none" and free:
        given_pf = np.stack([np.asarray(clip_inside(start[n], lo, hi)) for n, (lo, hi) in zip(free, bounds)], 1)
        auto_pf = np.stack([[gs[n] for gs in guesses] for n in free], 1).astype(dtype)
        picked, _ = screen_starts(prob, candidate_starts(model, free, bounds, given_pf, auto_pf), n_starts,
                                  *args, psf_batched)
        u0s = _to_unconstrained(picked, bounds, dtype)
    if start_mode == "grid" and free:
        pf, cov, value, n_iter, status = _run_starts(prob, u0s, host, psf_batched, chunk, put)
    else:
        pf, cov, value, n_iter, status = _run_starts(prob, u0[:, None], host, psf_batched, chunk, put)
        if start_mode == "auto" and free:
            # LM from the caller's start and from the best screened candidate, the lower
            # statistic kept: the screen ranks basins by a cheap statistic and can pick a worse
            # one (compact galaxies, r_e ~ 1 px, went from a perturbed start to n ~ 8 and chi2
            # +900), so "auto" never ends above a single start.  Where the screen's best is the
            # caller's start (its magnitude re-solved aside), there is nothing to run again.
            mag_idx = [i for _, i in _amplitude_layout(prob)]
            same = np.all(np.isclose(np.delete(picked[:, 0], mag_idx, 1), np.delete(given_pf, mag_idx, 1),
                                     rtol=1e-6, atol=1e-9), axis=1)
            pf, cov, value, n_iter, status = _second_start(prob, (pf, cov, value, n_iter, status), u0s[:, 0],
                                                           np.flatnonzero(~same), host, psf_batched, chunk,
                                                           put)
    n_iter, status = np.asarray(n_iter).astype(np.int32), np.asarray(status).astype(np.int32)
    n_used = m.reshape(G, -1).sum(axis=1)
    dof = (n_used - len(free)).astype(np.int64)
    status = np.where(n_used == 0, NO_DATA, status).astype(np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2_nu = np.where(dof > 0, value / np.maximum(dof, 1), np.nan)
    if scale_errors:
        cov = cov * chi2_nu[:, None, None]
    values = {n: pf[:, i] for i, n in enumerate(free)}
    for j, n in enumerate(fixed_names):
        values[n] = fvals[:, j]
    for a, b in model.tied:
        values[a] = values[b]
    samples, hess_cov = None, None
    if (errors == "bootstrap" or bootstrap) and free:
        from .uncertainty import bootstrap_refits
        samples, boot_cov = bootstrap_refits(prob, pf, values, args, psf_batched, psf_arr,
                                             n=100 if bootstrap is None else int(bootstrap),
                                             method=bootstrap_method, seed=seed)
        values, hess_cov = fold_axis_ratio(model, free, values, cov)
        cov = boot_cov
        if not keep_samples:
            samples = None
    else:
        values, cov = fold_axis_ratio(model, free, values, cov)
    return FitResult(model=model, free_names=free, values=values, covariance=cov, chi2=value,
                     chi2_nu=chi2_nu, dof=dof, n_iter=n_iter, status=status, stat=stat,
                     batched=batched, status_messages=STATUS_MESSAGES, samples=samples,
                     hessian_covariance=hess_cov)


def _to_unconstrained(pf, bounds, dtype):
    """Physical free vectors (..., P) -> unconstrained ones (clipped inside the bounds)."""
    return np.stack([np.asarray(to_unconstrained(np.asarray(clip_inside(pf[..., i], lo, hi)), lo, hi))
                     for i, (lo, hi) in enumerate(bounds)], -1).astype(dtype)


def _galaxy_inputs(args, psf_batched):
    """The per-galaxy arrays of ``args`` (fvals, data, sigma, mask, psf, zp, gain, read_noise,
    sky), in the order of ``_run_chunks`` after the starts: a shared PSF is not one of them."""
    fvals, d, s, m, psf, zp, gain, rn, sky = (None if a is None else np.asarray(a) for a in args)
    return [fvals, d, s, m] + ([psf] if psf_batched else []) + [zp, gain, rn, sky]


def _second_start(prob, first, u_best, redo, host, psf_batched, chunk, put):
    """``starts="auto"``: LM again from the best screened candidates ``u_best`` (G, P) for the
    galaxies ``redo``, those where it differs from the caller's start (``first`` is the fit from
    there); per galaxy the lower statistic is kept.  Where the screen ranks the caller's start
    first, as it mostly does for a start near the answer, the second run would repeat the
    first and is skipped.  The refits go through the same compiled core in chunks of the same
    size (padded), never recompiling."""
    if redo.size == 0:
        return first
    value = first[2]
    per_galaxy = [a[redo] for a in [u_best] + _galaxy_inputs(host, psf_batched)]
    again = _run_chunks(prob, per_galaxy, host[4], psf_batched, chunk, put)
    v_old = np.where(np.isfinite(value[redo]), value[redo], np.inf)
    v_new = np.where(np.isfinite(again[2]), again[2], np.inf)
    take = v_new < v_old
    out = [np.array(o, copy=True) for o in first]
    for o, a in zip(out, again):
        o[redo[take]] = a[take]
    return tuple(out)


def _run_starts(prob, u0s, args, psf_batched, chunk=None, put=jnp.asarray):
    """Run the fit core from ``u0s`` (G, S, P) on the batch tiled G x S (in chunks of ``chunk``
    galaxies' starts, see ``_run_chunks``; all at once when ``chunk >= G``); per galaxy the
    start with the lowest statistic wins.  ``args``: (fvals, data, sigma, mask, psf, zp, gain,
    read_noise, sky) as in ``_fit_core``, NumPy or device arrays.  NumPy outputs."""
    G, S, P = u0s.shape
    psf = None if args[4] is None else np.asarray(args[4])
    per_galaxy = _galaxy_inputs(args, psf_batched)
    if S > 1:
        per_galaxy = [np.repeat(a, S, axis=0) for a in per_galaxy]   # a shared PSF is not tiled
    chunk = _chunk_size(chunk, G)
    chunk = G * S if chunk >= G else chunk
    out = _run_chunks(prob, [u0s.reshape(G * S, P)] + per_galaxy, psf, psf_batched, chunk, put)
    if S == 1:
        return out
    out = [o.reshape((G, S) + o.shape[1:]) for o in out]
    value = np.where(np.isfinite(out[2]), out[2], np.inf)
    best = np.argmin(value, axis=1)
    return tuple(o[np.arange(G), best] for o in out)
