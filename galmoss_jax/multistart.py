"""Insensitivity to the starting point: a batched screen of candidate starts, then LM.

``fit(..., starts="auto")`` (the default) does, per galaxy:

1. **candidates**: the caller's start (its ``init``, completed by automatic values) and the
   automatic start of :mod:`galmoss_jax.init`, plus a coarse grid around the automatic start:
   every Sérsic index ``n`` of the first free-``n`` component in ``N_GRID`` and all radii
   (``r_e``, ``r_s``, ``fwhm``, ...) scaled together by ``R_FACTORS`` (5 x 6 = 30 points; the
   smallest factor, 0.2, reaches barely resolved galaxies, whose image moments are mostly the
   PSF's);
   centre, q and pa stay at the moments' values; for Fourier modes m = 1, 2 with free phases
   (``sersic[f1,f2]``), also the automatic start with that mode at amplitude 0.1 and each of
   four phases;
2. **screen**: each candidate is rendered once, with a coarser pixel integration
   (:func:`screen_problem`), in float32 (:func:`screen_starts`) and no Jacobian, with
   the *amplitudes* of the light components solved by weighted linear least squares (the
   model is linear in each component's flux, so every grid point is compared at its best
   magnitudes, which also sets the bulge/disk flux split); the statistic of each candidate is
   evaluated in ONE jitted call, vectorised over galaxies and looping over candidates;
3. **LM**: with ``starts="auto"`` from the screen's best candidate and, for the galaxies
   whose caller gave a start of their own (``init``), from that start first and then from
   the screen's best where it is another candidate outside the basin that first fit reached
   (:func:`same_basin`), each galaxy keeping the lower statistic
   (``galmoss_jax._fit._fit_from_starts``); with ``starts=S`` from the best ``S``
   distinct candidates: the batch is tiled G x S, the existing jitted fit core runs once on
   it, and each galaxy keeps the start that ends with the lowest statistic.

``starts=1`` skips all this and starts from ``init`` (automatic values where none is given).
The cost of the screen is 32 coarse renders per galaxy; ``benchmarks/starts.py`` measures it
against ``starts=1``.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import ParameterError
from ._engine import GalaxyData, Problem
from .model import Model
from .profiles._shape import ellipse_radii, fourier_modes
from .psf import stamp_psf_transform

N_GRID = (0.6, 1.0, 1.8, 3.2, 5.5)           # Sérsic indices of the grid
R_FACTORS = (0.2, 0.4, 0.63, 1.0, 1.6, 2.5)  # radius scale factors of the grid
_RADIUS_UNITS = ("pixel",)
BASIN_FACTOR = 1.6                           # about one step of the grid in n and in radius
BASIN_DQ = 0.2                               # axis ratio difference within one basin


def parse_starts(starts):
    """``"auto"`` -> ("auto", 1); an integer S >= 1 -> ("grid", S), 1 -> ("none", 1)."""
    if isinstance(starts, str):
        if starts != "auto":
            raise ParameterError(f"starts must be 'auto' or a positive integer, got {starts!r}")
        return "auto", 1
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
        raise ParameterError(f"starts must be 'auto' or a positive integer, got {starts!r}")
    return ("none", 1) if starts == 1 else ("grid", int(starts))


def parse_starts_option(text: str):
    """CLI ``--starts``: ``"auto"`` or a positive integer."""
    if text == "auto":
        return "auto"
    try:
        v = int(text)
    except ValueError:
        raise ParameterError(f"--starts: expected 'auto' or a positive integer, got {text!r}") from None
    if v < 1:
        raise ParameterError(f"--starts: expected 'auto' or a positive integer, got {text!r}")
    return v


def candidate_starts(model: Model, given: np.ndarray, auto: np.ndarray) -> np.ndarray:
    """Candidate starts ``(G, C, P)`` in physical units (order ``model.layout.free``) for every
    galaxy.

    ``given`` (G, P): the caller's start; ``auto`` (G, P): the automatic start.  The grid
    varies the first free Sérsic ``n`` over :data:`N_GRID` and every free radius by
    :data:`R_FACTORS` around ``auto``, then tries phases of Fourier modes 1 and 2
    (:func:`_phase_candidates`); values are kept inside their bounds.
    """
    free, bounds = model.layout.free, model.layout.bounds
    radii = [i for i, n in enumerate(free)
             if model.param(n).unit in _RADIUS_UNITS and n.split(".", 1)[1] not in ("x0", "y0")]
    n_idx = next((i for i, n in enumerate(free) if n.split(".", 1)[1] == "n"), None)
    cands = [given, auto]
    ns = N_GRID if n_idx is not None else (None,)
    rs = R_FACTORS if radii else (1.0,)
    if n_idx is None and not radii:
        grid = []
    else:
        grid = [(nv, rf) for nv in ns for rf in rs]
    for nv, rf in grid:
        c = auto.copy()
        if nv is not None:
            c[:, n_idx] = nv
        for i in radii:
            c[:, i] = auto[:, i] * rf
        cands.append(c)
    cands += _phase_candidates(model, auto)
    out = np.stack(cands, axis=1)
    for i, (lo, hi) in enumerate(bounds):
        if math.isfinite(lo) or math.isfinite(hi):
            m = 1e-3 * (hi - lo) if math.isfinite(lo) and math.isfinite(hi) else 1e-3
            out[:, :, i] = np.clip(out[:, :, i], lo + m if math.isfinite(lo) else -np.inf,
                                   hi - m if math.isfinite(hi) else np.inf)
    return out


def same_basin(model: Model, x: np.ndarray, fitted: dict) -> np.ndarray:
    """Whether each candidate start ``x`` (G, P; physical, ``model.layout.free`` order) lies in
    the basin that a fit has already reached (``fitted``: the fit's reported parameters,
    ``{name: (G,)}``, ``q <= 1``): every free radius and Sérsic ``n`` within a factor
    :data:`BASIN_FACTOR` (about one step of the screen's grid) of the fit's and every free
    ``q`` within :data:`BASIN_DQ`, an axis ratio above 1 first folded as the fit reports it
    (``1/q``, radii times ``q``).  The other parameters are not compared (the grid's
    candidates share them with the automatic start; magnitudes are re-solved).  False for
    every galaxy when a Fourier mode of the model is free: the phase candidates differ in it.

    ``fit(..., starts="auto")`` runs LM again from the screen's best candidate only where it is
    not in the basin that LM from the caller's start reached (measured on the 800 fits of
    ``tests/test_init_multistart.py`` from poor and from near-truth starts: of the 526 runs
    this rule skips, none would have ended lower by more than 0.1 in chi2)."""
    free = model.layout.free
    G = x.shape[0]
    vals = {n: np.asarray(x[:, i], float) for i, n in enumerate(free)}
    kinds = {}
    for c, spec in model.components:
        for _, a, ph, _ in fourier_modes(spec):
            if f"{c}.{a}" in vals or f"{c}.{ph}" in vals:
                return np.zeros(G, bool)
        radii = {f"{c}.{r}" for r in ellipse_radii(spec)} | {
            f"{c}.{p}" for p in spec.param_names
            if model.param(f"{c}.{p}").unit in _RADIUS_UNITS and p not in ("x0", "y0")}
        for p in spec.param_names:
            n = f"{c}.{p}"
            kinds[n] = "radius" if n in radii else p if p in ("n", "q") else None
        q = vals.get(f"{c}.q")
        if q is not None:
            flip = q > 1
            vals[f"{c}.q"] = np.where(flip, 1 / q, q)
            for r in ellipse_radii(spec):
                if f"{c}.{r}" in vals:
                    vals[f"{c}.{r}"] = np.where(flip, vals[f"{c}.{r}"] * q, vals[f"{c}.{r}"])
    ok = np.ones(G, bool)
    for n in free:
        kind = kinds.get(n)
        f = np.asarray(fitted[n], float)
        if kind in ("radius", "n"):
            with np.errstate(divide="ignore", invalid="ignore"):
                ok &= np.abs(np.log(vals[n] / f)) < math.log(BASIN_FACTOR)
        elif kind == "q":
            ok &= np.abs(vals[n] - f) < BASIN_DQ
    return ok


PHASE_AMPLITUDE = 0.1   # Fourier amplitude of the screen's phase candidates
N_PHASES = 4            # phases tried per mode, spread over its period


def _phase_candidates(model: Model, auto: np.ndarray) -> list:
    """For each free Fourier mode m = 1, 2 (lopsidedness, ovality; GALFIT's F1, F2) with a free
    phase: the automatic start with that mode's amplitude at :data:`PHASE_AMPLITUDE` and its
    phase at each of :data:`N_PHASES` angles over its period (the automatic start has every
    amplitude at 0, where the phase has no gradient)."""
    free = model.layout.free
    out = []
    for c, spec in model.components:
        for m, a, ph, period in fourier_modes(spec):
            a, ph = f"{c}.{a}", f"{c}.{ph}"
            if m > 2 or a not in free or ph not in free:
                continue
            for k in range(N_PHASES):
                cand = auto.copy()
                cand[:, free.index(a)] = PHASE_AMPLITUDE
                cand[:, free.index(ph)] = k * period / N_PHASES
                out.append(cand)
    return out


def _amplitude_layout(problem: Problem):
    """Components whose flux is a free ``mag``: (component index, free index of its mag)."""
    out = []
    free = problem.layout.free
    for k, (c, spec) in enumerate(problem.model.components):
        name = f"{c}.mag"
        if spec.kind in ("surface", "point") and name in free:
            out.append((k, free.index(name)))
    return tuple(out)


def _screen_one(problem: Problem, x, galaxy: GalaxyData, psf_fft):
    """Statistic of one candidate (free vector ``x``, physical) at its best amplitudes;
    returns (statistic, candidate with the magnitudes of those amplitudes)."""
    layout = _amplitude_layout(problem)
    amp_comps = {k for k, _ in layout}

    def render(comps):
        return problem.render(x, galaxy, psf_fft, model=Model(tuple(problem.model.components[k] for k in comps)))

    rest = [k for k in range(len(problem.model.components)) if k not in amp_comps]
    base = render(rest) if rest else jnp.zeros(problem.shape, galaxy.data.dtype)
    if not layout:
        best = base
        x_new = x
    else:
        T = jnp.stack([render([k]) for k, _ in layout])               # (K, H, W)
        # weighted by 1/sigma before the products, not by 1/sigma^2 after them: images in
        # physical flux units (1e-29 with sigma 1e-31) neither underflow nor overflow in float32
        w = jnp.where(galaxy.mask, 1.0 / galaxy.sigma, 0.0)
        Tw = T * w
        A = jnp.einsum("khw,lhw->kl", Tw, Tw)
        b = jnp.einsum("khw,hw->k", Tw, (galaxy.data - base) * w)
        K = A.shape[0]
        dg = jnp.sqrt(jnp.abs(jnp.diagonal(A))) + jnp.finfo(A.dtype).tiny
        a = jnp.linalg.solve(A / dg[:, None] / dg[None, :] + 1e-10 * jnp.eye(K, dtype=A.dtype), b / dg) / dg
        a = jnp.clip(jnp.where(jnp.isfinite(a), a, 1.0), 1e-3, 1e3)   # keep fluxes positive
        best = base + jnp.einsum("k,khw->hw", a, T)
        x_new = x
        for j, (_, i) in enumerate(layout):
            lo, hi = problem.layout.bounds[i]
            x_new = x_new.at[i].set(jnp.clip(x[i] - 2.5 * jnp.log10(a[j]), lo + 1e-6, hi - 1e-6))
    value = galaxy.statistic(problem.stat, best)
    return jnp.where(jnp.isfinite(value), value, jnp.inf), x_new


@functools.partial(jax.jit, static_argnames=("problem", "psf_batched"))
def _screen(problem, cands, galaxies, psf, psf_batched):
    psf_fft = None if psf is None else stamp_psf_transform(psf, problem.shape, problem.oversample)
    over_g = jax.vmap(functools.partial(_screen_one, problem), in_axes=(0, 0, 0 if psf_batched else None))
    # candidates one after another (lax.map), galaxies vectorised: the memory of one batched
    # render, whatever the number of candidates
    value, adj = jax.lax.map(lambda c: over_g(c, galaxies, psf_fft), jnp.swapaxes(cands, 0, 1))
    return jnp.swapaxes(value, 0, 1), jnp.swapaxes(adj, 0, 1)


def screen_problem(problem: Problem) -> Problem:
    """The fit problem with a coarser pixel integration for ranking candidates (no sub-pixel
    PSF window, no Gauss-Legendre ring, fewer quadrature nodes): far cheaper renders; the grid
    points differ by far more in chi2 than this approximation changes it, and LM then refines
    with the full one.  (The ring, 31 x 31 pixels at 3 x 3 nodes, held over half of a coarse
    render's evaluations on a 32 x 32 stamp; without it a one-band fit with the defaults takes
    1.17 s instead of 1.55 s for 64 such galaxies.)"""
    s = problem.sampling
    coarse = dataclasses.replace(s, psf_window=0, ring_window=0, n_theta=min(s.n_theta, 16), n_r=min(s.n_r, 8),
                                 n_mid=min(s.n_mid, 4), mid_window=min(s.mid_window, 9))
    return dataclasses.replace(problem, sampling=coarse)


def _screen_in(problem: Problem, cands, galaxies: GalaxyData, psf, psf_batched: bool, x64: bool):
    """:func:`_screen` of NumPy inputs computed in float64 (``x64``) or float32; NumPy results."""
    dtype = np.float64 if x64 else np.float32

    def put(a):
        a = np.asarray(a)
        # device_put, not jnp.asarray: the latter compiles a small copy program per new shape
        return jax.device_put(a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a)

    with jax.enable_x64(x64):
        value, adj = _screen(screen_problem(problem), put(cands), jax.tree.map(put, galaxies),
                             None if psf is None else put(psf), psf_batched)
        return np.asarray(value), np.asarray(adj)


def screen_all(problem: Problem, cands, galaxies: GalaxyData, psf, psf_batched: bool):
    """The screened statistic ``(G, C)`` of every candidate ``cands`` (G, C, P; physical) and
    the candidates with their magnitudes at their best amplitudes ``(G, C, P)``.

    The screen computes in float32 whatever the fit's precision: it ranks candidates whose
    statistics differ by far more than float32's rounding (about 1e-7 of the statistic), at
    half the cost of float64 on a CPU (48 galaxies of 128 x 128 with a 41 x 41 PSF: 1.1-1.2 s
    -> 0.5-0.7 s, a fit with the defaults ~12 % faster).  The candidates come back in the
    caller's precision, only their magnitudes re-solved (to float32's ~1e-6 mag).  A galaxy
    none of whose candidates gives a finite float32 statistic (values beyond float32's range)
    is screened again in the caller's precision."""
    cands = np.asarray(cands)
    x64 = cands.dtype == np.float64
    value, adj = (a.astype(cands.dtype) for a in _screen_in(problem, cands, galaxies, psf, psf_batched, x64=False))
    redo = np.flatnonzero(~np.isfinite(value).any(axis=1)) if x64 else np.zeros(0, int)
    if redo.size:
        sub = jax.tree.map(lambda a: np.asarray(a)[redo], galaxies)
        value[redo], adj[redo] = _screen_in(problem, cands[redo], sub,
                                            None if psf is None else (np.asarray(psf)[redo] if psf_batched else psf),
                                            psf_batched, x64=True)
    # the screen changes only the magnitudes: every other value is the caller's, unrounded
    mags = np.array([n.endswith(".mag") for n in problem.layout.free], bool)
    return value, np.where(mags, adj, cands)


def screen_starts(problem: Problem, cands, S: int, galaxies: GalaxyData, psf, psf_batched: bool):
    """The ``S`` best distinct candidates per galaxy ``(G, S, P)`` (physical, magnitudes at
    their best amplitudes) and the screened statistic of each ``(G, C)``
    (:func:`screen_all`)."""
    value, adj = screen_all(problem, cands, galaxies, psf, psf_batched)
    order = np.argsort(value, axis=1, kind="stable")
    G, C, P = adj.shape
    picked = np.empty((G, S, P), adj.dtype)
    for g in range(G):
        chosen = []
        for c in order[g]:   # distinct starts: skip a candidate equal to one already chosen
            if any(np.allclose(adj[g, c], adj[g, k], rtol=1e-6, atol=1e-9) for k in chosen):
                continue
            chosen.append(c)
            if len(chosen) == S:
                break
        while len(chosen) < S:
            chosen.append(order[g][len(chosen) % C])
        picked[g] = adj[g, chosen]
    return picked, value
