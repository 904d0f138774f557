"""The fitting engine: :func:`solve` fits ONE galaxy in pure JAX.

``solve`` maps the initial values through the model's parameter layout into the unconstrained
space, runs the solver, maps back, and returns a :class:`Solution` (an Equinox module, so a
pytree): it runs under ``jax.jit``, ``jax.vmap`` over galaxies and with sharded inputs, never
touches NumPy, and is differentiable by implicit differentiation at the optimum.  Everything
above it (``fit``, the screen of starts, the bootstrap, surveys) runs this engine vmapped over
chunks of galaxies (:func:`solve_batch`).

Implicit differentiation.  At the optimum ``u*`` of the statistic L(u, theta) (u the
unconstrained free parameters, theta the data, sigma, PSF, zero point and fixed values) the
gradient F = dL/du vanishes, so by the implicit function theorem
``du*/dtheta = -H^-1 dF/dtheta`` with ``H = dF/du`` the Hessian of L at ``u*``.  The solver's
loop is never differentiated (``jax.custom_jvp`` on the minimiser, as Optimistix's
``ImplicitAdjoint``); forward and reverse mode both work.  The derivative is that of the
optimum the solver found: exact at a converged fit (status 0), an approximation where it
stopped early, NaN where the Hessian is singular.  The statistic at the optimum moves with
theta by its partial derivative alone (the envelope theorem: F = 0 there).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import enum
import functools
import os
from typing import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import MemoryLimitError, ParameterError, ShapeError
from ._conventions import fold_axis_ratio
from .likelihood import Statistic, residuals, statistic_value
from .model import Model, Sampling, _render_one, as_model, split_pays
from ._noise import sigma_from_data, usable_pixels
from .psf import as_psf, stamp_psf_transform
from .solvers import LevenbergMarquardt, OptaxSolver, as_solver
from .solvers.lm import LMResult
from .solvers.queue import refill_minimise
from ._status import Status

__all__ = ["solve", "Solution", "Errors", "Problem", "GalaxyData", "solve_batch"]

_HIGHEST = jax.lax.Precision.HIGHEST


class Errors(str, enum.Enum):
    """How the covariance of the free parameters is computed at the optimum (cov = 2 H^-1)."""

    GN = "gn"             #: Gauss-Newton H = 2 J^T J (what GALFIT and Imfit report; J from the solver)
    HESSIAN = "hessian"   #: the full ``jax.hessian`` of the statistic (slow to compile)
    NONE = "none"         #: no covariance (NaN)

    @classmethod
    def of(cls, errors) -> "Errors":
        if errors in (None, False):
            return cls.NONE
        if errors is True:
            return cls.GN
        try:
            return cls(errors)
        except ValueError:
            raise ParameterError(f"errors must be 'gn', 'hessian' or None, got {errors!r}") from None


@dataclasses.dataclass(frozen=True)
class Problem:
    """Everything static about a fit (hashable: one compiled program per Problem and shapes)."""

    model: Model
    shape: tuple
    psf_shape: tuple | None = None
    oversample: int = 1
    sampling: Sampling = Sampling()
    stat: Statistic = Statistic.CHI2
    solver: LevenbergMarquardt | OptaxSolver = LevenbergMarquardt()
    errors: Errors = Errors.GN
    #: ``((name, value), ...)``: fixed parameters whose value every galaxy of the call shares
    #: (the boxiness ``c0`` at its default 0, in almost every fit), rendered as constants of
    #: the compiled program instead of from ``GalaxyData.fixed`` (which holds the same values):
    #: XLA then simplifies what they make trivial (``c0 = 0``: the generalised ellipse's powers
    #: become a square and a square root), which makes a Sérsic fit ~10 % faster (48 galaxies of
    #: 128 x 128 with a 41 x 41 PSF, ``starts=1``, three alternated runs: 2.24-2.36 s against
    #: 2.46-2.65 s).  A value given per galaxy that differs between galaxies stays an input.
    constants: tuple = ()

    @property
    def layout(self):
        return self.model.layout

    def render(self, x, galaxy: "GalaxyData", psf_fft, model: Model | None = None):
        """Model image (H, W) of the free vector ``x`` (physical) of one galaxy; ``model`` a
        sub-model of the same parameters (the screen renders components alone)."""
        p = self.layout.expand(x, galaxy.fixed, dict(self.constants))
        model = self.model if model is None else model
        p = {n: v for n, v in p.items() if n in model.layout.names}
        return _render_one(model, p, self.shape, psf_fft, self.psf_shape, self.oversample,
                           galaxy.zeropoint, self.sampling, split_jacobian=self.split_jacobian)

    @property
    def split_jacobian(self) -> bool:
        """Whether the renders differentiate each surface component in its own parameters, its
        magnitude's derivative written from its light
        (:func:`galmoss_jax.model._surface_light_split`): for a forward-mode solver (Levenberg-
        Marquardt: one Jacobian per step) and a model where that saves work
        (:func:`galmoss_jax.model.split_pays`).  A gradient solver (Optax, reverse mode)
        renders as usual."""
        return isinstance(self.solver, LevenbergMarquardt) and split_pays(self.model)

    # -- what the engine asks of a problem (a multiband problem answers the same:
    #    :class:`galmoss_jax._bands.BandProblem`) ----------------------------------------------
    def psf_transform(self, psf):
        """The PSF's transform on the padded stamp (None without a PSF)."""
        return None if psf is None else stamp_psf_transform(psf, self.shape, self.oversample)

    def residuals_physical(self, x, galaxy: "GalaxyData", psf_fft):
        """Residual vector of the free vector ``x`` (physical): its sum of squares is the statistic."""
        return galaxy.residuals(self.stat, self.render(x, galaxy, psf_fft)).ravel()

    def residuals(self, u, galaxy: "GalaxyData", psf_fft):
        """Residual vector of the unconstrained vector ``u``: its sum of squares is the statistic."""
        return self.residuals_physical(self.layout.to_physical(u), galaxy, psf_fft)

    def statistic_physical(self, x, galaxy: "GalaxyData", psf_fft):
        """The statistic (Cash's C for ``cash``) of the free vector ``x``."""
        return galaxy.statistic(self.stat, self.render(x, galaxy, psf_fft))

    def n_pixels(self, galaxy: "GalaxyData"):
        """Pixels used."""
        return jnp.sum(galaxy.mask, dtype=jnp.int32)

    def report(self, x, galaxy: "GalaxyData", cov):
        """Every named parameter of ``x`` and the covariance, reported as DESIGN.md A says
        (``q <= 1``, ``pa`` wrapped)."""
        return fold_axis_ratio(self.model, self.layout.free, self.layout.expand(x, galaxy.fixed), cov)


class GalaxyData(eqx.Module):
    """One galaxy's inputs (a pytree; a batch has a leading galaxy axis on every field).

    Attributes:
        data: image (H, W), image units, finite on every pixel (bad pixels 0 and masked).
        sigma: 1-sigma errors (H, W), image units, positive on every pixel.
        mask: True = pixel used (H, W).
        zeropoint: magnitude zero point.
        gain: electrons per image unit (for ``model-chi2``, ``poisson-mlr`` and ``cash``).
        read_noise: electrons.
        sky: the sky level already subtracted from ``data``, image units.
        fixed: values of the fixed parameters (F,), the layout's order.
    """

    data: jax.Array
    sigma: jax.Array
    mask: jax.Array
    zeropoint: jax.Array
    gain: jax.Array
    read_noise: jax.Array
    sky: jax.Array
    fixed: jax.Array

    def residuals(self, stat, model_image):
        return residuals(stat, self.data, model_image, self.sigma, self.mask, self.gain, self.read_noise, self.sky)

    def statistic(self, stat, model_image):
        return statistic_value(stat, self.data, model_image, self.sigma, self.mask, self.gain, self.read_noise,
                               self.sky)


class Solution(eqx.Module):
    """The fit of one galaxy (a pytree: ``jax.vmap(solve)`` gives a leading galaxy axis).

    Attributes:
        params: ``{"comp.param": value}`` for every parameter (fixed and tied included),
            physical units, reported as DESIGN.md A says (``q <= 1``, ``pa`` in (-90, 90]).
        covariance: (P, P) covariance of the free parameters (order ``free_names``), physical
            units; NaN where undefined (``errors=None``, singular Hessian).
        chi2: the statistic at the optimum (for ``stat="cash"`` the Cash C).
        n_iter: solver iterations.
        status: int32 :class:`galmoss_jax.Status` code (0 = success).
        n_pixels: pixels used.
        free_names: the free parameters (static).
    """

    params: dict
    covariance: jax.Array
    chi2: jax.Array
    n_iter: jax.Array
    status: jax.Array
    n_pixels: jax.Array
    free_names: tuple = eqx.field(static=True)

    @property
    def errors(self) -> dict:
        """1-sigma errors of the free parameters, ``sqrt`` of the covariance diagonal."""
        d = jnp.sqrt(jnp.diagonal(self.covariance, axis1=-2, axis2=-1))
        return {n: d[..., i] for i, n in enumerate(self.free_names)}

    @property
    def dof(self):
        """Degrees of freedom: used pixels minus free parameters."""
        return self.n_pixels - len(self.free_names)

    @property
    def chi2_nu(self):
        return self.chi2 / jnp.maximum(self.dof, 1)


# ---------------------------------------------------------------------------------------------
# the minimiser, differentiated implicitly
# ---------------------------------------------------------------------------------------------
def _normal_parts(problem: Problem, u, galaxy, psf_fft):
    """(J^T J, J^T r, L = r^T r) at ``u``, from one forward-mode Jacobian of the residuals r.

    The gradient of the statistic L is F = 2 J^T r.  The implicit derivative below takes every
    derivative it needs of this one function in forward mode (forward over forward): that
    compiles in about half the time of a gradient by reverse mode differentiated again, and
    reverse-mode differentiation of a fit still works (the tangent rule is linear in the
    tangents, which JAX transposes)."""
    def res(v):
        r = problem.residuals(v, galaxy, psf_fft)
        return r, r

    jac, r = jax.jacfwd(res, has_aux=True)(u)
    return (jnp.matmul(jac.T, jac, precision=_HIGHEST), jnp.matmul(jac.T, r, precision=_HIGHEST),
            jnp.sum(r * r))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _minimise(problem: Problem, u0, galaxy, psf_fft):
    """(u*, J^T J at u*, n_iter, status, L at u*) from the start ``u0``; L is the sum of squared
    residuals, as the solver found it (no second rendering of the model)."""
    res = problem.solver.minimise(lambda u, a: problem.residuals(u, *a), u0, (galaxy, psf_fft),
                                  *problem.layout.unconstrained_box())
    return _solver_outputs(problem, res, galaxy, psf_fft)


def _solver_outputs(problem: Problem, res, galaxy, psf_fft):
    """(u*, J^T J at u*, n_iter, status, L at u*) of one galaxy from the solver's result (an
    :class:`LMResult` or an ``OptaxResult``): the single fit and the refilled batch share it."""
    if problem.solver.gives_jtj:
        jtj = res.jtj
    elif problem.errors is Errors.GN:
        jtj = _normal_parts(problem, res.u, galaxy, psf_fft)[0]   # J^T r and chi2 unused: dropped by XLA
    else:
        jtj = jnp.zeros((res.u.shape[0],) * 2, res.u.dtype)
    if isinstance(res, LMResult):   # LM keeps chi2 = 0 for a start it could not evaluate
        value = jnp.where(res.status == Status.NONFINITE, jnp.nan, res.chi2)
    else:
        value = res.loss
    return res.u, jtj, res.n_iter, res.status, value


@_minimise.defjvp
def _minimise_jvp(problem, primals, tangents):
    u0, galaxy, psf_fft = primals
    _, d_galaxy, d_psf = tangents
    out = _minimise(problem, u0, galaxy, psf_fft)
    u, jtj = out[0], out[1]
    parts = functools.partial(_normal_parts, problem)
    # derivatives in u (no tangent in them): dF/du = H, and d(J^T J)/du
    djtj_du, djtr_du, _ = jax.jacfwd(parts)(u, galaxy, psf_fft)
    # derivatives along the inputs' tangents: dF/dtheta, d(J^T J)/dtheta and the value's
    # partial derivative (the envelope theorem: dL/du = 0 at the optimum)
    _, (d_jtj, d_jtr, d_value) = jax.jvp(lambda g, k: parts(u, g, k), (galaxy, psf_fft), (d_galaxy, d_psf))
    du = -jnp.linalg.solve(djtr_du, d_jtr)          # -H^-1 dF/dtheta (the factors 2 cancel)
    d_jtj = d_jtj + jnp.tensordot(djtj_du, du, axes=1)
    if problem.errors is Errors.NONE and not problem.solver.gives_jtj:
        d_jtj = jnp.zeros_like(jtj)
    int_zero = np.zeros((), jax.dtypes.float0)
    return out, (du, d_jtj, int_zero, int_zero, d_value)


# ---------------------------------------------------------------------------------------------
# one galaxy
# ---------------------------------------------------------------------------------------------
def _covariance(problem: Problem, u, jtj, galaxy, psf_fft):
    """(P, P) covariance of the free parameters (physical), and whether the Hessian is regular."""
    P = u.shape[0]
    x = problem.layout.to_physical(u)
    if problem.errors is Errors.HESSIAN:
        def chi2_x(xx):
            r = problem.residuals_physical(xx, galaxy, psf_fft)
            return jnp.sum(r * r)
        hess = 0.5 * jax.hessian(chi2_x)(x)
    else:
        # Gauss-Newton: H/2 = J^T J with J in the physical parameters, from J^T J in the
        # unconstrained space and the transform's (diagonal) derivative
        dxdu = problem.layout.physical_derivative(u)
        inv = jnp.where(dxdu != 0, 1.0 / jnp.where(dxdu != 0, dxdu, 1.0), 0.0)
        hess = jtj * inv[:, None] * inv[None, :]
    hess = 0.5 * (hess + hess.T)
    # scale to unit diagonal before the Cholesky so that parameters of very different
    # magnitude (pixels, magnitudes, degrees) do not make it fail in float32
    dg = jnp.sqrt(jnp.abs(jnp.diagonal(hess)))
    dg = jnp.where(dg > 0, dg, 1.0)
    L = jnp.linalg.cholesky(hess / dg[:, None] / dg[None, :])
    ok = jnp.all(jnp.isfinite(L)) & jnp.all(jnp.diagonal(hess) > 0)
    eye = jnp.eye(P, dtype=hess.dtype)
    cov = jax.scipy.linalg.cho_solve((jnp.where(ok, L, eye), True), eye) / dg[:, None] / dg[None, :]
    return jnp.where(ok, cov, jnp.nan), ok


def _solve_one(problem: Problem, u0, galaxy: GalaxyData, psf) -> Solution:
    """The engine for one galaxy: ``u0`` (P,) unconstrained start, ``psf`` (h, w) or None."""
    psf_fft = problem.psf_transform(psf)
    return _solution(problem, *_minimise(problem, u0, galaxy, psf_fft), galaxy, psf_fft)


def _solution(problem: Problem, u, jtj, n_iter, status, value, galaxy: GalaxyData, psf_fft) -> Solution:
    """The :class:`Solution` of one galaxy from the minimiser's outputs (u*, J^T J, n_iter,
    status, L): the covariance and its SINGULAR_HESSIAN status, NO_DATA, Cash's C and the q
    folding.  The single fit (:func:`_solve_one`) and the refilled batch share it."""
    x = problem.layout.to_physical(u)
    if problem.stat is Statistic.CASH:
        # Cash's C differs from the sum of squared (PMLR) residuals the solver minimised by a
        # term of the data alone
        value = problem.statistic_physical(x, galaxy, psf_fft)
    P = u.shape[0]
    if problem.errors is Errors.NONE or P == 0:
        cov = jnp.full((P, P), jnp.nan, x.dtype)
    else:
        cov, ok = _covariance(problem, u, jtj, galaxy, psf_fft)
        status = jnp.where((status == Status.SUCCESS) & ~ok, int(Status.SINGULAR_HESSIAN), status)
    n_pixels = problem.n_pixels(galaxy)
    status = jnp.where(n_pixels == 0, int(Status.NO_DATA), status).astype(jnp.int32)
    params, cov = problem.report(x, galaxy, cov)
    return Solution(params=params, covariance=cov, chi2=value, n_iter=n_iter.astype(jnp.int32), status=status,
                    n_pixels=n_pixels, free_names=problem.layout.free)


_solve_jit = jax.jit(_solve_one, static_argnums=0)


@functools.partial(jax.jit, static_argnames=("problem", "psf_batched"))
def _solve_vmapped(problem: Problem, u0, galaxies: GalaxyData, psf, psf_batched: bool):
    return jax.vmap(functools.partial(_solve_one, problem), in_axes=(0, 0, 0 if psf_batched else None))(
        u0, galaxies, psf)


@functools.partial(jax.jit, static_argnames=("problem", "psf_batched", "lanes", "block"))
def _solve_refill(problem: Problem, u0, galaxies: GalaxyData, psf, n_real, psf_batched: bool, lanes: int,
                  block: int | None = None):
    """The batch ``u0`` (Q, P) in ``lanes`` refilled lanes (:mod:`galmoss_jax.solvers.queue`),
    stepped in blocks of ``block``: the galaxies ``0 .. n_real - 1`` are fitted, one compiled
    program per (problem, Q, lanes, block).
    Returns the (Q,) :class:`Solution` (rows from ``n_real`` on are not fits) and the
    :class:`RefillStats`.  Each galaxy's result is that of :func:`_solve_one` (same solver
    pieces, same post-processing), to the rounding of a vmapped evaluation."""
    P = u0.shape[1]
    psf_fft = jax.vmap(problem.psf_transform)(psf) if psf_batched else problem.psf_transform(psf)
    if psf_batched:
        parts = problem.solver.parts(lambda u, a: problem.residuals(u, *a), P, u0.dtype,
                                     *problem.layout.unconstrained_box())
        args = (galaxies, psf_fft)
    else:   # a shared PSF's transform is computed once and closed over by every lane's step
        parts = problem.solver.parts(lambda u, g: problem.residuals(u, g, psf_fft), P, u0.dtype,
                                     *problem.layout.unconstrained_box())
        args = galaxies
    states, stats = refill_minimise(parts, u0, args, lanes=lanes, block=block, n_real=n_real)

    def finish(state, galaxy, k):
        out = _solver_outputs(problem, parts.result(state), galaxy, k)
        return _solution(problem, *out, galaxy, k)

    return jax.vmap(finish, in_axes=(0, 0, 0 if psf_batched else None))(states, galaxies, psf_fft), stats


def solve(model, data, *, init: Mapping, sigma=None, mask=None, psf=None, zeropoint=None, stat="chi2",
          solver="lm", max_iter: int | None = None, gain=None, read_noise=0.0, sky=0.0,
          oversample: int = 1, sampling: Sampling | None = None, errors="gn", wavelength=None,
          grid=None) -> Solution:
    """Fit ``model`` to ONE galaxy, in pure JAX.

    Usable under ``jax.jit`` and ``jax.vmap`` (over galaxies) and with sharded inputs; the same
    compiled program serves new data of the same shapes.  Differentiable (``jax.grad``,
    ``jax.jvp``) with respect to ``data``, ``sigma``, ``psf``, ``zeropoint``, the noise model
    and the values of fixed parameters given in ``init``, by implicit differentiation at the
    optimum (module docstring).  Numerical failures are the ``status`` of the solution, never
    exceptions.

    Args:
        model: a :class:`Model`, profile name or spec string.
        data: image (H, W), image units.  Non-finite pixels are not used.
        init: starting values ``{name: scalar}`` of every free parameter (and of parameters
            fixed at their initial value), physical units; values outside the fitting bounds
            are moved just inside.  :func:`galmoss_jax.guess_initial` gives automatic ones.
        sigma: 1-sigma errors (H, W), image units; pixels with sigma <= 0 or non-finite are not
            used.  None: built from the data with ``gain``, ``read_noise`` and ``sky``
            (:func:`galmoss_jax.sigma_from_data`); not needed for the Poisson statistics.
        mask: True = pixel used (H, W); None = all.
        psf: PSF image (odd sides, centred), concrete or traced (normalised to sum 1).
        zeropoint: magnitude zero point (required when the model has magnitudes).
        stat: ``"chi2"``, ``"model-chi2"``, ``"poisson-mlr"`` or ``"cash"`` (:class:`Statistic`).
        solver: ``"lm"`` (default), ``"adam"``, a :class:`LevenbergMarquardt`, an
            :class:`OptaxSolver` or an ``optax.GradientTransformation``.
        max_iter: iteration limit (default: the solver's, 100 for LM, 3000 for Optax).
        gain, read_noise, sky: the noise model (e-/image unit, e-, image units).
        oversample: integer factor by which ``psf`` is finer than the image pixels.
        sampling: pixel-integration settings.
        errors: ``"gn"`` (Gauss-Newton, default), ``"hessian"`` or None.
        wavelength, grid: for several bands (below).

    Several bands: ``data`` a mapping ``{band: image}`` fits them jointly
    (:mod:`galmoss_jax._bands`), with ``model`` built with ``bands={...}``; ``sigma``,
    ``mask``, ``psf``, ``zeropoint``, ``gain``, ``read_noise`` and ``sky`` are mappings by band
    or one value for all; ``wavelength={band: value}`` where a parameter is a polynomial in
    wavelength; ``grid={band: (scale, dx, dy)}`` for bands on other pixel grids.  ``init``
    takes joint names (``"sersic.mag_g"``) or one-band names (every band).  The solution's
    parameters are the joint ones; ``jax.jit``, ``jax.vmap`` and the implicit derivative work
    as for one band.

    Returns:
        :class:`Solution`.
    """
    model = as_model(model)
    if isinstance(data, Mapping):
        from ._bands import solve_bands
        return solve_bands(model, data, init=init, sigma=sigma, mask=mask, psf=psf, zeropoint=zeropoint,
                           stat=stat, solver=solver, max_iter=max_iter, gain=gain, read_noise=read_noise, sky=sky,
                           oversample=oversample, sampling=sampling, errors=errors, wavelength=wavelength,
                           grid=grid)
    model.refuse_band_modes()
    if wavelength is not None or grid is not None:
        raise ParameterError("wavelength and grid are for several bands (data a mapping {band: image})")
    stat = Statistic.of(stat)
    solver = as_solver(solver, max_iter=max_iter)
    dtype = jnp.result_type(float)
    data = _image(data, "data", dtype)
    if data.ndim != 2:
        raise ShapeError(f"data: solve fits one galaxy (H, W), got shape {data.shape}; "
                         "jax.vmap solve over a batch, or use fit")
    noise = [jnp.asarray(1.0 if gain is None else gain, dtype), jnp.asarray(read_noise, dtype),
             jnp.asarray(sky, dtype)]
    if sigma is None:
        if stat.uses_sigma and gain is None:
            raise ParameterError("sigma is required for stat='chi2' unless gain is given "
                                 "(sigma is then built from the data)")
        sigma = sigma_from_data(data, *noise)
    sigma = _image(sigma, "sigma", dtype, data.shape)
    mask = jnp.ones(data.shape, bool) if mask is None else _image(mask, "mask", bool, data.shape)
    data, sigma, mask, _, _ = usable_pixels(data, sigma, mask, uses_sigma=stat.uses_sigma)
    if zeropoint is None:
        model.require_zeropoint()
        zeropoint = 0.0
    psf_shape = None
    if psf is not None:
        psf = as_psf(psf, oversample=oversample).astype(dtype)
        if psf.ndim != 2:
            raise ShapeError(f"psf: solve takes one PSF image (h, w), got shape {psf.shape}")
        psf_shape = tuple(psf.shape)
    x0, fixed = _start(model, init, dtype)
    galaxy = GalaxyData(data=data, sigma=sigma, mask=mask, zeropoint=jnp.asarray(zeropoint, dtype),
                        gain=noise[0], read_noise=noise[1], sky=noise[2], fixed=fixed)
    problem = Problem(model=model, shape=tuple(data.shape), psf_shape=psf_shape, oversample=int(oversample),
                      sampling=sampling or Sampling(), stat=stat, solver=solver, errors=Errors.of(errors),
                      constants=_constants_not_in(model, init))
    return _solve_jit(problem, model.layout.to_unconstrained(x0).astype(dtype), galaxy, psf)


def _image(a, name, dtype, shape=None):
    try:
        a = jnp.asarray(a, dtype)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a numeric array") from None
    if shape is not None and a.shape != shape:
        raise ShapeError(f"{name} must have the shape of data {shape}, got {a.shape}")
    return a


def _constants_not_in(model, init: Mapping) -> tuple:
    """:attr:`Problem.constants` of :func:`solve`: the fixed parameters not given in ``init``
    (their model value or default, the same for any call)."""
    return model.layout.own_constants({model.resolve(k, "init") for k in init})


def _start(model: Model, init: Mapping, dtype):
    """Free and fixed vectors (physical) of one galaxy's starting values."""
    if not isinstance(init, Mapping):
        raise ParameterError("init must be a mapping {parameter name: starting value}")
    given = {model.resolve(k, "init"): v for k, v in init.items()}
    missing = [n for n in model.layout.free if n not in given]
    if missing:
        raise ParameterError(f"init: no starting value for {', '.join(missing)} "
                             "(galmoss_jax.guess_initial gives automatic ones)")
    for n, v in given.items():
        if jnp.ndim(v) != 0:
            raise ShapeError(f"init[{n!r}]: solve fits one galaxy, so each value is a scalar; got shape "
                             f"{jnp.shape(v)} (jax.vmap solve over a batch)")
    x0 = model.layout.free_vector(given).astype(dtype)
    return x0, model.layout.fixed_vector(given).astype(dtype)


# ---------------------------------------------------------------------------------------------
# batches, in chunks (the host side of fit, the screen's refits and the bootstrap)
# ---------------------------------------------------------------------------------------------
def default_chunk_size(chunk_size, G: int) -> int:
    """Galaxies fitted side by side by the compiled engine.  On CPU one galaxy a call, the calls
    running concurrently on the cores (:func:`solve_batch`): measured 26 gal/s against 21 for
    vmapped chunks of 2 run one after another, and 15 for chunks of 4 (128x128 + PSF, 2
    cores), when every member of a vmapped chunk ran until the slowest stopped.  Refilled lanes
    (``chunk > 1`` with Levenberg-Marquardt) removed that cost (benchmarks/refill.py, one core:
    64 lanes 0.82-0.92 x the time of one galaxy per call), but a refilled call runs on one core
    and a batch below ``QUEUE_FACTOR`` times the lanes is one call, so the default stays one
    galaxy a call on CPU.  Accelerators want the whole batch at once."""
    if chunk_size is None:
        chunk_size = 1 if jax.default_backend() == "cpu" else G
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return min(int(chunk_size), G)


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_workers() -> int:
    """Concurrent calls of the compiled engine on CPU: one per core, plus one that prepares
    the next call's inputs while the others compute (measured 27 gal/s with 3 on 2 cores, 26
    with 2).  JAX releases the GIL while a compiled call runs."""
    return cpu_cores() + 1


#: a refilled batch's queue holds at most this many times its lanes (one call; a bigger batch
#: is split into calls of this size): a few compiled queue lengths (lanes x 1, 2, 4, ...) serve
#: every batch, and the inputs of a call stay a small multiple of what its lanes need
QUEUE_FACTOR = 64

_refill_records: list = []


@contextlib.contextmanager
def refill_counters():
    """Collect the :class:`~galmoss_jax.solvers.queue.RefillStats` (NumPy values) of every
    refilled batch run inside the block, in a list (benchmarks and tests count loop passes
    with it)."""
    record: list = []
    _refill_records.append(record)
    try:
        yield record
    finally:
        _refill_records.remove(record)


def uses_refill(problem: Problem, chunk: int) -> bool:
    """Whether :func:`solve_batch` runs chunks of ``chunk`` galaxies in refilled lanes: with a
    solver that comes as single-problem pieces (Levenberg-Marquardt) and ``chunk > 1``.  The
    Optax solvers keep the vmapped chunks (every member runs until the slowest stops)."""
    return chunk > 1 and hasattr(problem.solver, "parts")


#: the vmapped width of refilled lanes on CPU.  There a wider step is not cheaper per lane
#: (benchmarks/refill.py, one core: 64 lanes in blocks of 1, 2, 4, 8 took 0.82, 0.88, 1.03,
#: 0.99 x the CPU time of one galaxy per call), so a pass steps each busy lane on its own:
#: the arithmetic of a galaxy is then exactly that of a single fit, and no lane-step is idle.
#: An accelerator steps all lanes at once.
CPU_BLOCK = 1


def lane_block(lanes: int) -> int:
    """The vmapped width of ``lanes`` refilled lanes on this backend."""
    return min(lanes, CPU_BLOCK) if jax.default_backend() == "cpu" else lanes


def queue_length(G: int, lanes: int) -> int:
    """Galaxies per refilled call: ``lanes`` times the smallest power of two that holds ``G``,
    at most ``lanes * QUEUE_FACTOR``."""
    m = 1
    while lanes * m < G and m < QUEUE_FACTOR:
        m *= 2
    return lanes * m


def device_free_bytes(device=None) -> int | None:
    """Bytes ``device`` (default: JAX's first device) can still allocate, as JAX reports it
    (``bytes_limit - bytes_in_use`` of ``Device.memory_stats()``); None where it reports
    nothing (the CPU backend)."""
    stats = (device or jax.devices()[0]).memory_stats()
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def program_bytes(compiled) -> int | None:
    """Device bytes one call of a compiled program holds at its peak, from XLA's own
    accounting (``memory_analysis()``: arguments + outputs + temporaries - aliased), or None
    where the backend does not report it."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def solve_batch(problem: Problem, u0, galaxies: GalaxyData, psf=None, *, psf_batched: bool = False,
                chunk: int | None = None, put=jax.device_put, refill: bool = True, memory_limit: int | None = None,
                shrink: bool = False) -> Solution:
    """The engine over a batch (host arrays in, NumPy :class:`Solution` out).

    ``u0`` (G, P) unconstrained starts; ``galaxies`` a :class:`GalaxyData` of NumPy arrays
    with a leading axis G; ``psf`` shared (h, w) or one per galaxy (G, h, w) with
    ``psf_batched``.  ``put`` places each call's arrays on its device(s).

    ``chunk`` galaxies are fitted side by side (the vmapped width).  With Levenberg-Marquardt
    and ``chunk > 1`` (and ``refill``), they are ``chunk`` refilled lanes
    (:mod:`galmoss_jax.solvers.queue`): a call takes a queue of up to ``chunk *
    QUEUE_FACTOR`` galaxies (padded to :func:`queue_length`, the padding never fitted), and a
    lane whose galaxy is done takes the next waiting one, so a call costs the sum of its
    galaxies' iterations, not ``chunk`` times the slowest (on CPU the busy lanes are stepped
    in blocks of :data:`CPU_BLOCK`, idle ones skipped: :func:`lane_block`).  Otherwise (``chunk == 1``, Optax
    solvers, ``refill=False``) consecutive chunks of ``chunk`` galaxies each run one vmapped
    program to the slowest member's end (a short chunk is padded with copies of its last
    galaxy; a chunk of one galaxy runs :func:`solve`'s program, without the vmap).  Either way
    one compiled program serves every call of a batch, and each galaxy's result is that of
    :func:`solve` to float rounding.  On CPU the calls run concurrently in a
    thread pool (each call is independent, so the results do not depend on the order).

    Memory: where a limit is known (``memory_limit`` in bytes, else the device's free memory,
    :func:`device_free_bytes`; the CPU backend reports none and is not checked unless a limit
    is given), the call's program is compiled first and its peak bytes read from XLA
    (:func:`program_bytes`).  If it needs more, the chunk is halved until it fits when
    ``shrink`` (the chunk is the default), else :class:`MemoryLimitError` is raised before
    anything runs, naming the bytes needed and a chunk (the given one halved) that fits.
    """
    G = int(np.shape(u0)[0])
    chunk = default_chunk_size(chunk, G) if chunk is None else int(chunk)
    shared = None if psf is None or psf_batched else jax.tree.map(jax.device_put, psf)
    # the caller's precision, also in the worker threads: jax.enable_x64(...) is thread-local
    x64 = bool(jax.config.jax_enable_x64)
    limit = device_free_bytes() if memory_limit is None else int(memory_limit)

    def layout(chunk):
        refilled = refill and uses_refill(problem, chunk)
        return refilled, (queue_length(G, chunk) if refilled else chunk)

    def call(a, chunk, lower=False):
        """The call of the galaxies from ``a`` on (or its lowered program, with ``lower``)."""
        refilled, per_call = layout(chunk)
        # one galaxy, not sharded: the program of :func:`solve` (no vmap: traced in ~60 % of the
        # time, and shared with ``solve`` of the same shapes)
        single = per_call == 1 and put is jax.device_put
        rows = a if single else np.minimum(np.arange(a, a + per_call), G - 1)
        take = lambda x: put(np.asarray(x)[rows])   # noqa: E731
        n_real = min(per_call, G - a)
        with jax.enable_x64(x64):
            args = (take(u0), jax.tree.map(take, galaxies), jax.tree.map(take, psf) if psf_batched else shared)
            if single:
                if lower:
                    return _solve_jit.lower(problem, *args)
                return jax.tree.map(lambda v: np.asarray(v)[None], _solve_jit(problem, *args))
            if refilled:
                rest = (np.int32(n_real), psf_batched, chunk, lane_block(chunk))
                if lower:
                    return _solve_refill.lower(problem, *args, *rest)
                sol, stats = _solve_refill(problem, *args, *rest)
                stats = jax.tree.map(np.asarray, stats)
                for record in list(_refill_records):
                    record.append(stats)
            else:
                if lower:
                    return _solve_vmapped.lower(problem, *args, psf_batched)
                sol = _solve_vmapped(problem, *args, psf_batched)
        return jax.tree.map(lambda v: np.asarray(v)[:n_real], sol)

    if limit is not None:   # each program compiled first (the calls below reuse it), then run
        def peak(c):
            return program_bytes(call(0, c, lower=True).compile())

        need = peak(chunk)
        if need is not None and need > limit:
            trial, need_t = chunk, need
            while trial > 1 and need_t > limit:
                trial = max(1, trial // 2)
                need_t = peak(trial)
            if need_t > limit:
                raise MemoryLimitError(
                    f"one call of the compiled fit of a single galaxy needs {need_t / 2**20:.2f} MiB of device memory "
                    f"and {limit / 2**20:.2f} MiB are available (memory_limit, or the device's free memory): use "
                    "smaller stamps or a lighter Sampling")
            if not shrink:
                raise MemoryLimitError(
                    f"chunk_size={chunk}: one call of the compiled fit needs {need / 2**20:.2f} MiB of device memory "
                    f"and {limit / 2**20:.2f} MiB are available (memory_limit, or the device's free memory); "
                    f"chunk_size={trial} fits ({need_t / 2**20:.2f} MiB)")
            chunk = trial
    per_call = layout(chunk)[1]

    def one(a):
        return call(a, chunk)

    starts = range(0, G, per_call)
    workers = min(_cpu_workers(), len(starts)) if jax.default_backend() == "cpu" else 1
    if workers > 1:
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="galmoss-fit") as ex:
            parts = list(ex.map(one, starts))
    else:
        parts = [one(a) for a in starts]
    return jax.tree.map(lambda *p: np.concatenate(p), *parts)
