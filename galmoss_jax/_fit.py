"""``fit``: the host-side wrapper over the engine (:func:`galmoss_jax.solve`) for one galaxy
or a batch.

The host side (NumPy) validates the inputs with errors that name the argument, masks bad
pixels with a warning, completes the initial values, screens starts, runs the engine vmapped
over chunks of galaxies, and builds a :class:`FitResult`.  A galaxy that fails gets a status
code in its row; it never stops the batch.  Every option lives in :class:`FitOptions`, which
``fit``, the streaming survey and the command line share.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
import warnings
from typing import Mapping

import jax
import numpy as np

from ._errors import DataError, ParameterError, PSFError, ShapeError
from ._engine import Errors, GalaxyData, Problem, default_chunk_size, solve_batch
from .init import guess_batch, measured_from_image, neighbour_mask
from .likelihood import Statistic
from .model import Model, Sampling, as_model
from .multistart import candidate_starts, parse_starts, same_basin, screen_starts
from ._noise import sigma_from_data, usable_pixels
from .psf import check_oversample, check_psf
from .results import FitResult
from .solvers import as_solver
from ._status import STATUS_MESSAGES, Status

__all__ = ["fit", "FitOptions", "FitResult", "Status", "STATUS_MESSAGES"]

# status codes, kept importable from here for older code: galmoss_jax.Status is their home
SINGULAR_HESSIAN = int(Status.SINGULAR_HESSIAN)
NO_DATA = int(Status.NO_DATA)


def _integer_at_least(value, least: int) -> bool:
    """Whether an option's ``value`` is an integer (not a bool) >= ``least``."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= least


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """Every option of :func:`fit` besides the inputs (one owner: ``fit``, the streaming survey
    and the ``galmoss-jax fit`` command all take these, so none is dropped on the way).

    Attributes:
        stat: ``"chi2"`` (default), ``"model-chi2"``, ``"poisson-mlr"`` or ``"cash"``.
        solver: ``"lm"`` (Levenberg-Marquardt, default), ``"adam"``, a
            :class:`galmoss_jax.LevenbergMarquardt`, a :class:`galmoss_jax.OptaxSolver` or an
            ``optax.GradientTransformation``; built once by the caller, it never recompiles.
        optimizer: the older way to give an Optax optimiser (with ``solver="adam"`` only; an
            optimiser given with Levenberg-Marquardt is an error).
        max_iter: iteration limit (default 100 for LM, 3000 for Optax).
        oversample: integer factor by which ``psf`` is finer than the image pixels.
        sampling: pixel-integration settings (:class:`galmoss_jax.Sampling`).
        errors: ``"gn"`` (default): cov = 2 H^-1 with the Gauss-Newton Hessian 2 J^T J at the
            optimum (what GALFIT and Imfit report); ``"hessian"``: the full ``jax.hessian`` of
            the statistic (slow to compile); ``"bootstrap"``: ``bootstrap`` refits of
            resampled data (:mod:`galmoss_jax.uncertainty`), the Gauss-Newton covariance kept
            in ``FitResult.hessian_covariance``; None: no errors.
        scale_errors: multiply the covariance by ``chi2_nu``.  Off by default: with a correct
            sigma map the errors are calibrated as they are (``tests/test_calibration.py``).
            Neither choice corrects for correlated noise (resampled or drizzled images).
        starts: ``"auto"`` (default): screen the caller's start, the automatic one and a grid
            in Sérsic n and radius (:mod:`galmoss_jax.multistart`) and run LM from the best
            candidate; where the caller gave a start of their own (``init``), LM runs from it,
            and from the best candidate too where that lies outside the basin the caller's
            start reached (:func:`galmoss_jax.multistart.same_basin`), the lower statistic
            kept (never above the caller's start); ``S > 1``:
            LM from the best S distinct candidates;
            ``1``: LM from ``init`` alone.
        mask_neighbours: also mask other sources found by ``sep`` (needs the ``detect`` extra).
        bootstrap: refits per galaxy (default 100 with ``errors="bootstrap"``; a number alone
            also asks for bootstrap errors).
        bootstrap_method: ``"pixels"`` (Poisson(1) pixel weights) or ``"residuals"``.
        keep_samples: keep the bootstrap refits in ``FitResult.samples``.
        seed: random seed of the bootstrap.
        chunk_size: galaxies fitted side by side by the compiled engine (default: 1 on CPU
            with the calls running concurrently on the cores; the whole batch on an accelerator
            or with a ``sharding``).  With Levenberg-Marquardt and ``chunk_size > 1`` (no
            ``sharding``) they are refilled lanes (:mod:`galmoss_jax.solvers.queue`): a call
            takes a queue of galaxies and a lane whose galaxy is done takes the next waiting
            one, so a batch costs the sum of its galaxies' iterations, not lanes times the
            slowest (the bootstrap's refits too); Optax solvers run vmapped chunks, each to its
            slowest member's end.  Results do not depend on it beyond float rounding.
        memory_limit: device bytes one compiled call may use (default: the device's free
            memory as JAX reports it; the CPU backend reports none and is then not checked).
            Before a call runs, its compiled program's peak (XLA's memory analysis) is checked
            against it: the default chunk is halved until it fits; a ``chunk_size`` given that
            does not fit raises :class:`~galmoss_jax.MemoryLimitError` (naming a chunk that
            fits), instead of an out-of-memory failure mid-run.
    """

    stat: str = "chi2"
    solver: object = "lm"
    optimizer: object = None
    max_iter: int | None = None
    oversample: int = 1
    sampling: Sampling | None = None
    errors: object = "gn"
    scale_errors: bool = False
    starts: object = "auto"
    mask_neighbours: bool = False
    bootstrap: int | None = None
    bootstrap_method: str = "pixels"
    keep_samples: bool = False
    seed: int = 0
    chunk_size: int | None = None
    memory_limit: int | None = None

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("stat", Statistic.of(self.stat))
        set_("solver", as_solver(self.solver, optimizer=self.optimizer, max_iter=self.max_iter))
        set_("optimizer", None)
        set_("max_iter", self.solver.max_iter)
        check_oversample(self.oversample)
        if self.sampling is not None and not isinstance(self.sampling, Sampling):
            raise ParameterError(f"sampling must be a galmoss_jax.Sampling, got {type(self.sampling).__name__}")
        if self.errors not in (None, False, True, "gn", "hessian", "bootstrap"):
            raise ParameterError(f"errors must be 'gn', 'hessian', 'bootstrap' or None, got {self.errors!r}")
        if self.bootstrap is not None and not _integer_at_least(self.bootstrap, 2):
            raise ParameterError(f"bootstrap must be an integer >= 2, got {self.bootstrap!r}")
        if self.bootstrap_method not in ("pixels", "residuals"):
            raise ParameterError(f"bootstrap_method must be 'pixels' or 'residuals', got {self.bootstrap_method!r}")
        parse_starts(self.starts)
        if self.chunk_size is not None:
            default_chunk_size(self.chunk_size, 1)
        if self.memory_limit is not None and not _integer_at_least(self.memory_limit, 1):
            raise ParameterError(f"memory_limit must be a positive number of bytes, got {self.memory_limit!r}")

    def batch_options(self, sharding) -> dict:
        """The memory keywords of :func:`~galmoss_jax._engine.solve_batch`: the limit, and
        whether the chunk may shrink to meet it (the default chunk of one device)."""
        return dict(memory_limit=self.memory_limit, shrink=self.chunk_size is None and sharding is None)

    @property
    def error_mode(self) -> Errors:
        """The engine's covariance (the bootstrap also reports the Gauss-Newton one)."""
        return Errors.GN if self.errors in (True, "bootstrap") else Errors.of(self.errors)

    @property
    def n_bootstrap(self) -> int | None:
        """Bootstrap refits per galaxy, or None for no bootstrap."""
        if self.errors == "bootstrap" or self.bootstrap:
            return 100 if self.bootstrap is None else int(self.bootstrap)
        return None

    def problem(self, model: Model, shape, psf_shape, constants: tuple = ()) -> Problem:
        return Problem(model=model, shape=tuple(shape), psf_shape=psf_shape, oversample=int(self.oversample),
                       sampling=self.sampling or Sampling(), stat=self.stat, solver=self.solver,
                       errors=self.error_mode, constants=constants)

    def describe(self) -> dict:
        """JSON-able summary (a streaming run records it; a resume must match it)."""
        return {f.name: repr(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclasses.dataclass
class _Inputs:
    """Validated host inputs of a batch: ``galaxies`` (NumPy :class:`GalaxyData`, leading axis
    G, ``fixed`` filled later), the PSF, and what the rest of ``fit`` needs to know."""

    galaxies: GalaxyData
    psf: np.ndarray | None
    psf_batched: bool
    batched: bool
    dtype: type


def fit(model, data, *, sigma=None, mask=None, psf=None, init=None, zeropoint=None, gain=None,
        read_noise=0.0, sky=0.0, sharding=None, wavelength=None, grid=None, options: FitOptions | None = None,
        **option_values) -> FitResult:
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
            NaN for some galaxies) get automatic values from image moments.  Values outside the
            bounds are moved inside with a warning.
        zeropoint: magnitude zero point(s); required when the model has magnitudes.
        gain: electrons per image unit (for a sigma built from the data and for the
            ``model-chi2``, ``poisson-mlr`` and ``cash`` statistics).
        read_noise: read noise, electrons.
        sky: the sky level already subtracted from ``data``, image units (for the noise model).
        sharding: a :class:`jax.sharding.Sharding` of the galaxy axis: the batch runs in one
            call split across those devices.
        options: a :class:`FitOptions`; or give its fields as keywords (``stat=``, ``solver=``,
            ``max_iter=``, ``errors=``, ``starts=``, ``bootstrap=``, ``chunk_size=``, ...).
        wavelength: ``{band: wavelength}`` (any one unit) for a multiband fit where a
            parameter is a polynomial in wavelength.
        grid: ``{band: (scale, dx, dy)}`` for bands on another pixel grid than the first band's
            (:mod:`galmoss_jax._bands`).

    Several bands: ``data`` a mapping ``{band: image or cube}`` fits every galaxy in all bands
    at once, with ``model`` built with ``bands={...}`` (how each parameter changes between
    bands; :class:`Model`).  ``sigma``, ``mask``, ``psf``, ``zeropoint``, ``gain``,
    ``read_noise`` and ``sky`` are then mappings by band, or one value for all bands; stamps
    may differ in size between bands.  ``init`` takes joint names (``"sersic.mag_g"``) or
    one-band names (every band).  Initial values: the deepest band's centre, shape and sizes,
    each band's own magnitudes and sky; with ``starts="auto"`` every band screens the same grid
    of starts around them and a size or index that differs between bands starts at each band's
    best.
    The result's parameters are the joint ones (columns ``sersic_mag_g``, ...), with
    ``chi2_band``.  ``starts=S`` runs the joint fit from S starts (the caller's, where given,
    and the screen's best: each band's own best, then every band at the grid point of the
    next lowest summed statistic) and keeps the lowest.  ``errors="bootstrap"`` is not
    available for several bands.

    Returns:
        :class:`FitResult` with best-fit values, errors, covariance, statistic, dof, iterations,
        a per-galaxy status (:class:`galmoss_jax.Status`, 0 = success) and the mask fitted.
    """
    if options is not None and option_values:
        raise ParameterError(f"give either options= or option keywords ({', '.join(option_values)}), not both")
    if options is None:
        try:
            options = FitOptions(**option_values)
        except TypeError:
            known = {f.name for f in dataclasses.fields(FitOptions)}
            bad = sorted(set(option_values) - known)
            raise ParameterError(f"fit: unknown option(s) {', '.join(bad)}; options are "
                                 f"{', '.join(sorted(known))}") from None
    model = as_model(model)
    if isinstance(data, Mapping):
        from ._fit_bands import fit_bands
        return fit_bands(model, data, sigma=sigma, mask=mask, psf=psf, init=init, zeropoint=zeropoint, gain=gain,
                         read_noise=read_noise, sky=sky, sharding=sharding, options=options, wavelength=wavelength,
                         grid=grid)
    model.refuse_band_modes()
    if wavelength is not None or grid is not None:
        raise ParameterError("wavelength and grid are for several bands (data a mapping {band: image})")
    return _run_prepared(_prepare(model, data, sigma=sigma, mask=mask, psf=psf, init=init, zeropoint=zeropoint,
                                  gain=gain, read_noise=read_noise, sky=sky, options=options), sharding)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """A one-band fit prepared on the host (inputs checked, initial values found), ready for
    the engine: :func:`fit` is ``_run_prepared(_prepare(...))``, and a streaming survey
    prepares the next batch in its reader thread while the engine fits the current one."""

    problem: Problem
    inputs: _Inputs
    start: dict
    guesses: list
    galaxies: GalaxyData
    options: FitOptions


def _prepare(model: Model, data, *, sigma, mask, psf, init, zeropoint, gain, read_noise, sky,
             options: FitOptions, guesses: list | None = None) -> _Prepared:
    """The host side of a one-band :func:`fit` (checks, bad-pixel masking, initial values);
    ``guesses``: the automatic values of each galaxy (:func:`galmoss_jax.init.guess_batch` of
    these inputs) where the caller has measured them already."""
    inputs = _host_inputs(model, data, sigma, mask, psf, zeropoint, gain, read_noise, sky, options)
    start, guesses = _initial_values(model, inputs, init, options, guesses)
    problem, galaxies = _problem_of(model, inputs, start, options)
    return _Prepared(problem, inputs, start, guesses, galaxies, options)


def _problem_of(model, inputs: _Inputs, start, options: FitOptions):
    """The engine's problem for ``inputs`` and their galaxies with the fixed values of
    ``start`` (``{name: (G,) or scalar}``; the model's own fixed values where it has them)."""
    galaxies = dataclasses.replace(inputs.galaxies, fixed=_fixed_vectors(model, start, inputs))
    problem = options.problem(model, galaxies.data.shape[1:], None if inputs.psf is None else inputs.psf.shape[-2:],
                              _shared_fixed(model, galaxies.fixed))
    return problem, galaxies


def _run_prepared(prep: _Prepared, sharding=None) -> FitResult:
    """The engine's fit of a prepared batch (the starts ``options.starts`` asks for), as a
    :class:`FitResult`."""
    problem, inputs, galaxies, options = prep.problem, prep.inputs, prep.galaxies, prep.options
    G = galaxies.data.shape[0]
    put = jax.device_put if sharding is None else functools.partial(jax.device_put, device=sharding)
    run = functools.partial(solve_batch, problem, galaxies=galaxies, psf=inputs.psf, psf_batched=inputs.psf_batched,
                            chunk=G if sharding is not None else default_chunk_size(options.chunk_size, G), put=put,
                            refill=sharding is None, **options.batch_options(sharding))
    sol = _fit_from_starts(problem, run, prep.start, prep.guesses, galaxies, inputs, options)
    return _result(problem, sol, galaxies, inputs, options, run)


def _as_array(a, name):
    try:
        return np.asarray(a)
    except (TypeError, ValueError):  # ragged nested lists
        raise DataError(f"{name} must be a numeric array (H, W) or (G, H, W)") from None


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


def _host_inputs(model, data, sigma, mask, psf, zeropoint, gain, read_noise, sky, options) -> _Inputs:
    """Validate the data, noise, mask, PSF and zero points; mask bad pixels with a warning."""
    d = _as_array(data, "data")
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
        a = _as_array(a, name)
        if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
            raise DataError(f"{name} must be numeric, got dtype {a.dtype}")
        if a.shape == (H, W):
            a = np.broadcast_to(a, (G, H, W))
        if a.shape != (G, H, W):
            raise ShapeError(f"{name} must have the shape of data {d.shape if batched else (H, W)} or (H, W), "
                             f"got {a.shape}")
        return a

    m = np.ones((G, H, W), bool) if mask is None else np.array(per_pixel(mask, "mask"), dtype=bool)
    noise = [_per_galaxy(1.0 if gain is None else gain, G, "gain", dtype), _per_galaxy(read_noise, G, "read_noise", dtype),
             _per_galaxy(sky, G, "sky", dtype)]
    if np.any(noise[0] <= 0):
        raise DataError(f"gain must be positive (electrons per image unit), got {gain!r}")
    if np.any(noise[1] < 0):
        raise DataError(f"read_noise must be >= 0 (electrons), got {read_noise!r}")
    if sigma is None:
        if options.stat.uses_sigma and gain is None:
            raise DataError("sigma is required for stat='chi2' unless gain is given (sigma is then built from the data)")
        s = sigma_from_data(d, *(v[:, None, None] for v in noise))
    else:
        s = np.array(per_pixel(sigma, "sigma"), dtype=dtype)
    if options.mask_neighbours:
        m = np.stack([neighbour_mask(d[g], m[g], None if sigma is None else s[g]) for g in range(G)])
    d, s, used, bad_data, bad_sigma = usable_pixels(d, s, m, uses_sigma=options.stat.uses_sigma)
    if bad_data.any():
        warnings.warn(f"data: {int(bad_data.sum())} non-finite pixels are masked", stacklevel=3)
    if bad_sigma.any() and bad_sigma.sum() == (m & ~bad_data).sum():
        raise DataError("sigma: no used pixel has a positive, finite sigma"
                        + (" (built from the data: check gain, read_noise and sky)" if sigma is None else ""))
    if bad_sigma.any():
        warnings.warn(f"sigma: {int(bad_sigma.sum())} pixels with sigma <= 0 or non-finite are masked", stacklevel=3)
    psf_arr, psf_batched = None, False
    if psf is not None:
        psf_arr = check_psf(psf, oversample=options.oversample).astype(dtype)
        psf_batched = psf_arr.ndim == 3
        if psf_batched and psf_arr.shape[0] != G:
            raise ShapeError(f"psf cube has {psf_arr.shape[0]} PSFs for {G} galaxies")
    elif model.has_psf_components:
        raise PSFError("psf: the model has a point-source component, which needs a PSF")
    if zeropoint is None:
        model.require_zeropoint()
    zp = _per_galaxy(0.0 if zeropoint is None else zeropoint, G, "zeropoint", dtype)
    galaxies = GalaxyData(data=d.astype(dtype), sigma=s.astype(dtype), mask=used, zeropoint=zp, gain=noise[0],
                          read_noise=noise[1], sky=noise[2], fixed=np.zeros((G, 0), dtype))
    return _Inputs(galaxies, psf_arr, psf_batched, batched, dtype)


def _initial_values(model, inputs: _Inputs, init, options, guesses=None):
    """Starting values ``{name: (G,)}`` of the free parameters and of parameters fixed at their
    initial value (given, else automatic), and the automatic values (None when not needed;
    ``guesses``, when given, are used instead of measuring them)."""
    gal = inputs.galaxies
    G = gal.data.shape[0]
    dtype = inputs.dtype
    lay = model.layout
    given = {}
    for k, v in (init or {}).items():
        given[model.resolve(k, "init")] = _per_galaxy(v, G, f"init[{k!r}]", dtype, allow_nan=True)
    open_fixed = [n for n, v in zip(lay.fixed, lay.fixed_values) if v is None]
    wanted = list(lay.free) + open_fixed
    # parameters fixed at their default (a Sérsic's c0 ...) need no measurement of the image
    need_guess = [n for n in wanted if (n not in given or np.isnan(given[n]).any())
                  and not (n in open_fixed and not measured_from_image(model, n))]
    if guesses is None and (need_guess or parse_starts(options.starts)[0] != "none"):
        guesses = guess_batch(model, gal.data, gal.mask, gal.zeropoint, inputs.psf, inputs.psf_batched,
                              int(options.oversample))
    defaults = model.defaults()
    start = {}
    for n in wanted:
        fill = (np.full(G, defaults[n], dtype) if guesses is None
                else np.array([gs[n] for gs in guesses], dtype))
        start[n] = np.where(np.isnan(given[n]), fill, given[n]).astype(dtype) if n in given else fill
    for i, n in enumerate(lay.free):
        v = start[n]
        lo, hi = lay.bounds[i]
        if np.any((v < lo) | (v > hi)):
            warnings.warn(f"init[{n!r}] lies outside its bounds [{lo}, {hi}] for some galaxies; moved inside",
                          stacklevel=3)
    return start, guesses


def _shared_fixed(model, fixed: np.ndarray) -> tuple:
    """``((name, value), ...)`` of the fixed parameters whose value every galaxy shares
    (:attr:`Problem.constants`)."""
    out = []
    for j, n in enumerate(model.layout.fixed):
        col = fixed[:, j]
        if col.size and np.all(col == col[0]) and np.isfinite(col[0]):
            out.append((n, float(col[0])))
    return tuple(out)


def _fixed_vectors(model, start, inputs: _Inputs):
    G = inputs.galaxies.data.shape[0]
    if not model.layout.fixed:
        return np.zeros((G, 0), inputs.dtype)
    return np.broadcast_to(np.asarray(model.layout.fixed_vector(start), inputs.dtype),
                           (G, len(model.layout.fixed))).copy()


def _take(sol, rows):
    return jax.tree.map(lambda a: a[rows], sol)


def _fit_from_starts(problem, run, start, guesses, galaxies, inputs, options):
    """The engine from the starts that ``options.starts`` asks for; per galaxy the best fit."""
    lay = problem.layout
    dtype = inputs.dtype
    mode, S = parse_starts(options.starts)
    given_x = np.asarray(lay.clip_inside(np.asarray(lay.free_vector(start), dtype)), dtype)
    if given_x.ndim == 1:   # no free parameter
        given_x = given_x.reshape(galaxies.data.shape[0], 0)
    u_given = np.asarray(lay.to_unconstrained(given_x), dtype)
    if mode == "none" or not lay.free:
        return run(u_given)
    auto_x = np.stack([[gs[n] for gs in guesses] for n in lay.free], 1).astype(dtype)
    picked, _ = screen_starts(problem, candidate_starts(problem.model, given_x, auto_x), S, galaxies,
                              inputs.psf, inputs.psf_batched)
    u_picked = np.asarray(lay.to_unconstrained(picked), dtype)           # (G, S, P)
    if mode == "grid":
        G, S, P = u_picked.shape
        tiled = jax.tree.map(lambda a: np.repeat(a, S, axis=0), galaxies)
        psf = np.repeat(inputs.psf, S, axis=0) if inputs.psf_batched else inputs.psf
        sols = run(u_picked.reshape(G * S, P), galaxies=tiled, psf=psf)
        chi2 = np.where(np.isfinite(sols.chi2), sols.chi2, np.inf).reshape(G, S)
        return _take(sols, np.arange(G) * S + np.argmin(chi2, axis=1))
    # "auto": LM from the best screened candidate and, where the caller gave a start of their
    # own, from that start too, the lower statistic kept: the screen ranks basins by a cheap
    # statistic and can pick a worse one (compact galaxies, r_e ~ 1 px, went from a perturbed
    # start to n ~ 8 and chi2 +900), so "auto" never ends above the caller's own start.  Where
    # the caller's start is the automatic one, it was itself a screened candidate: LM runs once,
    # from the screen's best (measured on the 400 galaxies of tests/test_init_multistart.py
    # from their automatic values: the automatic start alone ended more than 3 above the
    # truth's chi2 for 10 of them, the screen's best for none, and was lower than the screen's
    # best by more than 0.1 for one galaxy, by 0.4, both below the truth's chi2).  Where the
    # screen's best is the caller's start (its magnitudes re-solved aside), or lies in the basin
    # LM from the caller's start reached (multistart.same_basin), LM runs once too.
    auto_in = np.asarray(lay.clip_inside(auto_x), dtype)
    caller = ~np.all(np.isclose(given_x, auto_in, rtol=1e-6, atol=1e-9), axis=1)
    mags = [i for i, n in enumerate(lay.free) if n.endswith(".mag")]
    same = np.all(np.isclose(np.delete(picked[:, 0], mags, 1), np.delete(given_x, mags, 1), rtol=1e-6, atol=1e-9),
                  axis=1)
    first = run(np.where(caller[:, None], u_given, u_picked[:, 0]))
    redo = np.flatnonzero(caller & ~same & ~(_evaluated(first) & same_basin(problem.model, picked[:, 0],
                                                                              first.params)))
    if redo.size == 0:
        return first
    sub = _take(galaxies, redo)
    again = run(u_picked[redo, 0], galaxies=sub, psf=inputs.psf[redo] if inputs.psf_batched else inputs.psf)
    return _keep_lower(first, redo, again)


def _evaluated(sol) -> np.ndarray:
    """Galaxies whose fit reached a finite statistic (their basin is known)."""
    return np.isfinite(sol.chi2) & (sol.status != Status.NONFINITE)


def _keep_lower(sol, rows, new):
    """``sol`` with the galaxies ``rows`` replaced by their refit ``new`` (solutions of those
    rows, in order) where the refit ends with the lower statistic (non-finite counts as +inf)."""
    old_v = np.where(np.isfinite(sol.chi2[rows]), sol.chi2[rows], np.inf)
    better = np.where(np.isfinite(new.chi2), new.chi2, np.inf) < old_v

    def replace(a, b):
        a = np.array(a, copy=True)
        a[rows[better]] = b[better]
        return a

    return jax.tree.map(replace, sol, new)


def _result(problem, sol, galaxies, inputs, options, run) -> FitResult:
    """The :class:`FitResult` of the engine's solutions (bootstrap errors added if asked)."""
    model = problem.model
    free = model.layout.free
    dof = sol.n_pixels.astype(np.int64) - len(free)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2_nu = np.where(dof > 0, sol.chi2 / np.maximum(dof, 1), np.nan)
    cov = sol.covariance * chi2_nu[:, None, None] if options.scale_errors else sol.covariance
    samples, hess_cov = None, None
    if options.n_bootstrap and free:
        from .uncertainty import bootstrap_refits
        samples, boot_cov = bootstrap_refits(problem, sol, galaxies, inputs.psf, inputs.psf_batched, run,
                                             n=options.n_bootstrap, method=options.bootstrap_method,
                                             seed=options.seed)
        hess_cov, cov = cov, boot_cov
        if not options.keep_samples:
            samples = None
    return FitResult(model=model, free_names=free, values={k: np.asarray(v) for k, v in sol.params.items()},
                     covariance=cov, chi2=sol.chi2, chi2_nu=chi2_nu, dof=dof, n_iter=sol.n_iter.astype(np.int32),
                     status=sol.status.astype(np.int32), stat=str(options.stat), batched=inputs.batched,
                     samples=samples, hessian_covariance=hess_cov, mask=galaxies.mask)
