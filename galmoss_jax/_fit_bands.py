"""``fit`` of several bands at once: the host side of a multiband fit (:mod:`galmoss_jax._bands`).

Each band's inputs go through the one-band checks (:func:`galmoss_jax._fit._host_inputs`: the
same errors, warnings and bad-pixel masking); the joint problem then runs on the same engine
(:func:`galmoss_jax._engine.solve_batch`: refilled lanes, threads, sharding) and gives a
:class:`FitResult` whose parameters are the joint ones (``sersic_mag_g``, ...) with a
``chi2_band`` per band.

Initial values come from the bands: the deepest band (highest S/N over its used pixels) gives
the centre, shape and sizes, each band its own magnitudes, surface brightnesses and sky.  With
``starts="auto"`` (the default) the deepest band is first fitted alone (its own screen of
starts), and the joint fit starts from that fit, each band's magnitude offset by the
difference of the bands' automatic magnitudes; where a size or index differs between bands,
each (anchor) band is also fitted alone from there, and the joint fit runs again, from a start
in which each anchor band takes its own fit, for the galaxies where that start lies outside
the basin the first joint fit reached (:func:`galmoss_jax.multistart.same_basin`, band by
band); each galaxy keeps the lower statistic.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._bands import BandData, BandProblem, band_model, joint_values, per_band
from ._engine import default_chunk_size, solve_batch
from ._errors import GalmossError, ParameterError, ShapeError
from ._fit import _evaluated, _host_inputs, _keep_lower, _shared_fixed, _take
from .init import guess_batch, measured_from_image
from .model import Model, Sampling
from .multistart import parse_starts, same_basin
from .results import FitResult
from ._status import Status

__all__ = ["fit_bands"]


class _JointStart(NamedTuple):
    """One start of the joint fit: ``values`` ``{joint name: (G,)}``; ``basin``: run only for
    the galaxies where it lies outside the basin the fit so far reached."""

    values: dict
    basin: bool = False


def _own_band_value(model: Model, name: str) -> bool:
    """Whether a parameter that differs between bands starts from its own band's measurement
    (brightnesses and sky) rather than from the deepest band's (centre, shape, sizes)."""
    c, pname = name.split(".", 1)
    return pname == "mag" or pname.startswith("mu_") or dict(model.components)[c].kind == "sky"


def _depth(gal) -> np.ndarray:
    """S/N of each galaxy over its used pixels, (G,)."""
    m = gal.mask
    signal = np.where(m, gal.data, 0.0).sum(axis=(1, 2))
    noise = np.sqrt(np.where(m, gal.sigma ** 2, 0.0).sum(axis=(1, 2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(noise > 0, signal / noise, -np.inf)


@functools.partial(jax.jit, static_argnames=("problem", "psf_batched"))
def _band_statistics(problem: BandProblem, x, galaxies, psf, psf_batched: bool):
    def one(xx, g, k):
        return problem.band_statistics(xx, g, problem.psf_transform(k))
    return jax.vmap(one, in_axes=(0, 0, 0 if psf_batched else None))(x, galaxies, psf)


def fit_bands(model: Model, data: Mapping, *, sigma, mask, psf, init, zeropoint, gain, read_noise, sky, sharding,
              options, wavelength, grid) -> FitResult:
    """:func:`galmoss_jax.fit` of ``data`` = ``{band: image (H, W) or cube (G, H, W)}``."""
    if options.n_bootstrap:
        raise ParameterError("errors='bootstrap' is not available for multiband fits; use errors='gn' or 'hessian'")
    mode, _ = parse_starts(options.starts)
    if mode == "grid":
        raise ParameterError("starts: a multiband fit takes starts='auto' (the deepest band fitted alone first) "
                             "or 1 (LM from the initial values); several starts are not available")
    bands = tuple(data)
    bm = band_model(model, bands, wavelength, grid)
    one = model.without_bands()
    args = {n: per_band(v, bands, n) for n, v in (("sigma", sigma), ("mask", mask), ("psf", psf),
                                                    ("zeropoint", zeropoint), ("gain", gain),
                                                    ("read_noise", read_noise), ("sky", sky))}
    inputs = {}
    for b in bands:
        try:
            inputs[b] = _host_inputs(one, data[b], args["sigma"][b], args["mask"][b], args["psf"][b],
                                     args["zeropoint"][b], args["gain"][b], args["read_noise"][b], args["sky"][b],
                                     options)
        except GalmossError as e:   # name the band
            raise type(e)(f"band {b!r}: {e}") from None
    Gs = {b: i.galaxies.data.shape[0] for b, i in inputs.items()}
    if len(set(Gs.values())) > 1:
        raise ShapeError(f"data: every band needs the same number of galaxies, got {Gs}")
    if len({i.batched for i in inputs.values()}) > 1:
        raise ShapeError("data: give every band as one image (H, W) or every band as a cube (G, H, W)")
    G = next(iter(Gs.values()))
    dtype = inputs[bands[0]].dtype
    starts = _starts(bm, one, inputs, init, options, G, dtype)
    lay = bm.layout
    fixed = (np.broadcast_to(np.asarray(lay.fixed_vector(starts[0].values), dtype), (G, len(lay.fixed))).copy()
             if lay.fixed else np.zeros((G, 0), dtype))
    galaxies = BandData(bands=tuple(inputs[b].galaxies for b in bands), fixed=fixed)
    psf_batched = any(inputs[b].psf_batched for b in bands)
    psfs = None
    if any(inputs[b].psf is not None for b in bands):
        psfs = tuple(None if inputs[b].psf is None else
                     (inputs[b].psf if inputs[b].psf_batched or not psf_batched
                      else np.broadcast_to(inputs[b].psf, (G,) + inputs[b].psf.shape)) for b in bands)
    problem = BandProblem(model=bm, shapes=tuple(inputs[b].galaxies.data.shape[1:] for b in bands),
                          psf_shapes=tuple(None if inputs[b].psf is None else tuple(inputs[b].psf.shape[-2:])
                                           for b in bands),
                          oversample=int(options.oversample), sampling=options.sampling or Sampling(),
                          stat=options.stat, solver=options.solver, errors=options.error_mode,
                          constants=_shared_fixed(bm, fixed))
    put = jax.device_put if sharding is None else functools.partial(jax.device_put, device=sharding)
    run = functools.partial(solve_batch, problem, galaxies=galaxies, psf=psfs, psf_batched=psf_batched,
                            chunk=G if sharding is not None else default_chunk_size(options.chunk_size, G), put=put,
                            refill=sharding is None, **options.batch_options(sharding))
    sol = None
    for start, basin in starts:   # per galaxy the lower statistic (each a _JointStart)
        x0 = np.asarray(lay.clip_inside(np.asarray(lay.free_vector(start), dtype)), dtype).reshape(G, lay.n_free)
        u0 = np.asarray(lay.to_unconstrained(x0), dtype)
        if sol is None:
            sol = run(u0)
            continue
        rows = np.arange(G)
        if basin:   # only where this start lies outside the basin the fit so far reached
            rows = np.flatnonzero(~(_evaluated(sol) & _same_joint_basin(bm, one, start, sol.params)))
            if rows.size == 0:
                continue
        sol = _keep_lower(sol, rows, run(u0[rows], galaxies=_take(galaxies, rows),
                                         psf=_take(psfs, rows) if psf_batched else psfs))
    x_fit = np.asarray(lay.free_vector({n: sol.params[n] for n in lay.free}), dtype).reshape(G, lay.n_free)
    stats = np.asarray(_band_statistics(problem, jnp.asarray(x_fit), jax.tree.map(jnp.asarray, galaxies),
                                        None if psfs is None else jax.tree.map(jnp.asarray, psfs), psf_batched))
    dof = sol.n_pixels.astype(np.int64) - lay.n_free
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2_nu = np.where(dof > 0, sol.chi2 / np.maximum(dof, 1), np.nan)
    cov = sol.covariance * chi2_nu[:, None, None] if options.scale_errors else sol.covariance
    return FitResult(model=bm, free_names=lay.free, values={k: np.asarray(v) for k, v in sol.params.items()},
                     covariance=cov, chi2=sol.chi2, chi2_nu=chi2_nu, dof=dof, n_iter=sol.n_iter.astype(np.int32),
                     status=sol.status.astype(np.int32), stat=str(options.stat), batched=inputs[bands[0]].batched,
                     mask={b: inputs[b].galaxies.mask for b in bands},
                     chi2_band={b: stats[:, k] for k, b in enumerate(bands)})


def _same_joint_basin(bm, one: Model, start: Mapping, fitted: Mapping) -> np.ndarray:
    """Whether the joint start ``start`` (``{joint name: (G,)}``) lies, in every band, in the
    basin the joint fit reached (``fitted``: its reported joint parameters): the one-band rule
    :func:`galmoss_jax.multistart.same_basin` applied to each band's own values (a band value
    interpolated in wavelength, not in the start, is the fit's)."""
    G = len(next(iter(fitted.values())))
    ok = np.ones(G, bool)
    for table in bm.per_band:
        table = dict(table)
        x = np.stack([np.asarray(start[table[n]] if table[n] in start else fitted[table[n]], float)
                      for n in one.layout.free], axis=1).reshape(G, len(one.layout.free))
        ok &= same_basin(one, x, {n: np.asarray(fitted[table[n]], float) for n in one.layout.free})
    return ok


def _starts(bm, one: Model, inputs: dict, init, options, G: int, dtype) -> list[_JointStart]:
    """Joint starting values (:class:`_JointStart`; every galaxy runs the first) of the free
    parameters and of parameters fixed at their initial value (module docstring): with
    ``starts=1`` the caller's values completed by automatic ones; with ``"auto"`` the start
    from the deepest band's own fit, the anchor bands' own fits (``basin`` True: run only where
    outside the basin the fit so far reached), and the caller's start too where the caller gave
    values (the lower statistic is kept)."""
    from ._fit import _per_galaxy

    bands = bm.bands
    lay = bm.layout
    mode = parse_starts(options.starts)[0]
    given = {n: _per_galaxy(v, G, f"init[{n!r}]", dtype, allow_nan=True) for n, v in joint_values(bm, init).items()}
    open_fixed = [n for n, v in zip(lay.fixed, lay.fixed_values) if v is None]
    wanted = list(lay.free) + open_fixed
    # parameters fixed at their default (a Sérsic's c0) need no measurement of the images
    default = dict(zip(lay.names, lay.defaults))
    by_default = {n for n in open_fixed if not measured_from_image(one, bm.base_name(n))}
    if mode == "none" and all(n in given and not np.isnan(given[n]).any() for n in wanted if n not in by_default):
        return [_JointStart({n: given[n] if n in given else np.full(G, default[n], dtype) for n in wanted})]
    # automatic values in every band (reference-band pixels)
    own_pixels = [guess_batch(one, inputs[b].galaxies.data, inputs[b].galaxies.mask, inputs[b].galaxies.zeropoint,
                              inputs[b].psf, inputs[b].psf_batched, int(options.oversample)) for b in bands]
    guesses = [[bm.to_band_grid(gs, k, inverse=True) for gs in own] for k, own in enumerate(own_pixels)]
    deep = np.argmax(np.stack([_depth(inputs[b].galaxies) for b in bands]), axis=0)   # (G,)

    def combine(shape_from):
        start = {}
        for k in range(len(bands)):
            table = dict(bm.per_band[k])
            for n in one.layout.names:
                j = table[n]
                if j not in wanted or j in start:
                    continue
                own = n in bm.banded and _own_band_value(one, n)
                bright = own and (n.endswith(".mag") or ".mu_" in n)
                start[j] = np.array([guesses[k][g][n] + shape_from[g][n] - guesses[deep[g]][g][n] if bright else
                                     guesses[k][g][n] if own else shape_from[g][n] for g in range(G)], dtype)
        return start

    def with_given(start):
        return {n: (np.where(np.isnan(given[n]), v, given[n]).astype(dtype) if n in given else v)
                for n, v in start.items()}

    automatic = combine([guesses[deep[g]][g] for g in range(G)])
    if mode == "none":
        return [_JointStart(with_given(automatic))]
    caller = with_given(automatic)
    # the deepest band's own fit, from the caller's values where given
    deep_start = [{n: caller[dict(bm.per_band[deep[g]])[n]][g] for n in one.layout.names
                   if dict(bm.per_band[deep[g]])[n] in caller} for g in range(G)]
    refined = _refine_alone(bm, one, inputs, deep, deep_start, own_pixels, options, G, dtype)
    start = combine([{**guesses[deep[g]][g], **refined[g]} for g in range(G)])
    # A shape parameter that differs between bands (R_e, n: free, or a polynomial's anchor
    # bands) gets a second start, in which each band takes that band's own fit (begun at the
    # deepest band's values, with its own screen of starts: from the deepest band's values
    # alone, GalfitM's five-band simulation ends 14 higher in chi2); the joint fit runs from it
    # where it lies outside the basin the first joint fit reached, and keeps the lower
    # statistic per galaxy.  The deepest band's R_e can be far from another band's basin (a
    # compact blue core, an extended red disc): GalfitM's five-band simulation went to the
    # n = 10 bound from the first start alone (n free: chi2 12434 -> 12346; its own file's
    # cubic: 12496 -> 12349), while a faint band's own fit can mislead (one of
    # tests/test_bands.py's 64 galaxies: 133 higher from the second start alone).  The cost:
    # one single-band fit per anchor band and a second joint fit where the starts differ
    # (starts=1 does none of this).
    own_shape = [n for n in one.layout.names if n in bm.banded and not _own_band_value(one, n)]
    starts = [_JointStart(start)]
    if own_shape:
        start, changed = dict(start), False
        for k in range(len(bands)):
            table = dict(bm.per_band[k])
            rows = deep != k
            if not rows.any() or not any(table[n] in lay.free for n in own_shape):
                continue   # an interpolated band follows its anchors
            band_start = [{n: (start[table[n]][g] if table[n] in start else refined[g].get(n, guesses[k][g][n]))
                           for n in deep_start[g]} for g in range(G)]
            own = _refine_alone(bm, one, inputs, np.where(rows, k, -1), band_start, own_pixels, options, G, dtype)
            changed = True
            for n in own_shape:
                j = table[n]
                if j in start:
                    start[j] = np.array([own[g].get(n, start[j][g]) if rows[g] else start[j][g]
                                         for g in range(G)], dtype)
        if changed:
            starts.append(_JointStart(start, basin=True))
    if given:
        starts.append(_JointStart(caller))
    return starts


def _refine_alone(bm, one, inputs, deep, deep_start, own_pixels, options, G, dtype) -> list:
    """Fit band ``deep[g]`` of each galaxy alone (its own screen of starts, ``starts="auto"``;
    no fit where ``deep[g]`` is -1) from ``deep_start`` (one-band names, reference pixels); the
    values reached, in reference pixels, per galaxy ({} where that fit failed).
    ``own_pixels[k][g]``: band k's automatic values of galaxy g in its own pixels (measured
    once by :func:`_starts`, not again by each band's fit)."""
    from ._fit import _prepare, _run_prepared

    refined = [{} for _ in range(G)]
    for k, b in enumerate(bm.bands):
        rows = np.flatnonzero(deep == k)
        if rows.size == 0:
            continue
        inp = inputs[b]
        gal = inp.galaxies
        sub_opts = dataclasses.replace(options, errors=None, bootstrap=None, keep_samples=False,
                                       mask_neighbours=False)
        init = {n: np.array([bm.to_band_grid(deep_start[g], k)[n] for g in rows], dtype) for n in deep_start[rows[0]]}
        res = _run_prepared(_prepare(one, gal.data[rows], sigma=gal.sigma[rows], mask=gal.mask[rows],
                                     psf=None if inp.psf is None else (inp.psf[rows] if inp.psf_batched else inp.psf),
                                     zeropoint=gal.zeropoint[rows], gain=gal.gain[rows],
                                     read_noise=gal.read_noise[rows], sky=gal.sky[rows], init=init, options=sub_opts,
                                     guesses=[own_pixels[k][g] for g in rows]))
        for i, g in enumerate(rows):
            vals = bm.to_band_grid({n: float(res.values[n][i]) for n in res.values}, k, inverse=True)
            # a fit stopped at the iteration limit is still a better start than the guess
            if res.status[i] in (Status.SUCCESS, Status.MAX_ITER) and all(np.isfinite(v) for v in vals.values()):
                refined[g] = vals
    return refined

