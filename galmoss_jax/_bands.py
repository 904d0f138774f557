"""Multiband fits: one galaxy fitted jointly in several bands (GalfitM's idea), batched.

A :class:`galmoss_jax.Model` built with ``bands={...}`` says how each parameter changes from
band to band: shared (the default: one centre, one shape), ``"free"`` (one value per band, as
magnitudes and sky levels usually are) or a polynomial of degree k in wavelength.  For given
bands and wavelengths, :func:`band_model` turns it into a :class:`BandModel`, whose parameter
layout (:class:`galmoss_jax.ParamLayout`) is the ONE map between the fitted vector and every
band's parameters, named ``"sersic.mag_g"`` (column ``sersic_mag_g``) for band ``g``.

**Polynomials in wavelength.**  A parameter of degree k is fitted through its values in k + 1
*anchor* bands (the bluest, the reddest and bands spread between them by wavelength); its value
in any other band is the degree-k polynomial through the anchors (Lagrange interpolation in
wavelength, a fixed linear combination: ``ParamLayout.derived``).  Polynomials of degree k are
the functions GalfitM fits as Chebyshev series of degree k, so the fits are the same; this
parametrisation keeps each fitted value a physical value in a real band, so its bounds are the
parameter's bounds (exact for every band with k = 1, where the other bands lie between the
two anchors; with k >= 2 and more than k + 1 bands a band between anchors can stray past a
bound, and a radius that goes negative there makes the model NaN, which the solver rejects).
k + 1 = the number of bands is the same as ``"free"``.

**One galaxy, many bands, as one problem.**  :class:`BandProblem` answers what the engine
(:mod:`galmoss_jax._engine`) asks of a problem: its residual vector concatenates the bands'
residuals, each band rendered on its own stamp, with its own PSF and zero point, so the
Levenberg-Marquardt solver, the refilled lanes, the covariance, the implicit derivative and
``jax.vmap`` over galaxies all work unchanged.

**Pixel grids.**  Every band is given on its own stamp (sizes may differ).  Positions and radii
are in the pixels of the reference band (the first one); a band on another grid is described
by ``grid={band: (scale, dx, dy)}``: its pixel coordinates are ``scale * (x, y) + (dx, dy)``
of the reference band's (``scale`` = reference pixel size / band pixel size; the grids must
share their orientation).  Radii are multiplied by ``scale`` and surface brightnesses (mag per
pixel^2) change by ``5 log10(scale)`` in that band; total magnitudes do not change.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from ._conventions import fold_ellipse, wrap_angle
from .profiles._shape import ellipse_radii, fold_phases, other_angles
from ._engine import Errors, GalaxyData
from ._errors import ParameterError, ShapeError
from ._layout import ParamLayout
from .likelihood import Statistic
from .model import Model, Sampling, _render_one, jvp_by_jacobian, split_pays
from .psf import stamp_psf_transform
from .solvers import LevenbergMarquardt, OptaxSolver

__all__ = ["BandModel", "BandProblem", "BandData", "band_model"]

_BAND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


@dataclasses.dataclass(frozen=True)
class BandModel:
    """A :class:`Model` with ``bands`` made concrete for given bands (hashable: a static value).

    Attributes:
        base: the one-band model (components, fixed, tied, bounds, band modes).
        bands: band names, in the order given.
        wavelengths: one per band (any unit, e.g. Angstrom), or None when no parameter is a
            polynomial in wavelength.
        grids: ``(scale, dx, dy)`` of each band's pixel grid relative to the reference band's.
        layout: the parameter layout of the joint fit: shared parameters keep their names,
            band-dependent ones are ``"comp.param_band"``.
        per_band: for each band, ``(one-band name, joint name)`` of every parameter.
    """

    base: Model
    bands: tuple
    wavelengths: tuple | None
    grids: tuple
    layout: ParamLayout
    per_band: tuple

    # -- the interface of a Model that results and tables use -------------------------------------
    @property
    def param_names(self) -> tuple:
        return self.layout.names

    @property
    def free_names(self) -> tuple:
        return self.layout.free

    @property
    def tied(self) -> tuple:
        return self.layout.tied

    @property
    def components(self) -> tuple:
        return self.base.components

    @property
    def component_names(self) -> tuple:
        return self.base.component_names

    @property
    def spec_string(self) -> str:
        return f"{self.base.spec_string} [bands {','.join(self.bands)}]"

    @property
    def banded(self) -> frozenset:
        """One-band names of the parameters that differ between bands."""
        return frozenset(b for b, j in self.per_band[0] if j != b)

    def base_name(self, name: str) -> str:
        """The one-band parameter of a joint name (``"sersic.mag_g"`` -> ``"sersic.mag"``)."""
        for table in self.per_band:
            for b, j in table:
                if j == name:
                    return b
        raise ParameterError(f"unknown parameter {name!r}; this fit has {', '.join(self.layout.names)}")

    def param(self, name: str):
        return self.base.param(self.base_name(self.resolve(name)))

    def resolve(self, name: str, argument: str = "params") -> str:
        """Joint name of ``name``: a joint name, its column form, or a bare name of a
        one-component model (``"mag_g"``)."""
        if not isinstance(name, str):
            raise ParameterError(f"{argument}: parameter names must be strings, got {name!r}")
        names = self.layout.names
        if name in names:
            return name
        if "." not in name and len(self.base.components) == 1:
            full = f"{self.base.components[0][0]}.{name}"
            if full in names:
                return full
        for full in names:
            if full.replace(".", "_", 1) == name:
                return full
        raise ParameterError(f"{argument}: unknown parameter {name!r}; this fit has {', '.join(names)}")

    def band_params(self, p: Mapping, k: int) -> dict:
        """The one-band parameters of band ``k`` from the joint ones, in that band's pixels."""
        return self.to_band_grid({b: p[j] for b, j in self.per_band[k]}, k)

    def to_band_grid(self, p: Mapping, k: int, *, inverse: bool = False) -> dict:
        """One-band parameters (any subset) in the reference band's pixels, in band ``k``'s;
        with ``inverse``, from band ``k``'s pixels to the reference band's."""
        out = dict(p)
        scale, dx, dy = self.grids[k]
        if (scale, dx, dy) == (1.0, 0.0, 0.0):
            return out
        for c, spec in self.base.components:
            for par in spec.params:
                n = f"{c}.{par.name}"
                if spec.kind == "sky" or n not in out:
                    continue
                if par.name in ("x0", "y0"):
                    d = dx if par.name == "x0" else dy
                    out[n] = (out[n] - d) / scale if inverse else scale * out[n] + d
                elif par.unit == "pixel":
                    out[n] = out[n] / scale if inverse else scale * out[n]
                elif par.name.startswith("mu_"):
                    out[n] = out[n] + (-5.0 if inverse else 5.0) * math.log10(scale)
        return out


def _lagrange_weights(t_anchor, t):
    """Weights w_j with p(t) = sum_j w_j p(t_j) for every polynomial p of degree len(t_anchor)-1."""
    w = []
    for j, tj in enumerate(t_anchor):
        v = 1.0
        for m, tm in enumerate(t_anchor):
            if m != j:
                v *= (t - tm) / (tj - tm)
        w.append(v)
    return w


def band_model(model: Model, bands, wavelengths=None, grids=None) -> BandModel:
    """The :class:`BandModel` of ``model`` for ``bands`` (names), ``wavelengths`` (a mapping
    or a sequence in band order; needed when a parameter is a polynomial in wavelength) and
    ``grids`` (``{band: (scale, dx, dy)}``; default: every band on the reference grid)."""
    bands = tuple(bands)
    if not bands:
        raise ParameterError("bands: a multiband fit needs at least one band")
    for b in bands:
        if not isinstance(b, str) or not _BAND_RE.match(b):
            raise ParameterError(f"band names must be strings of letters, digits, '_' or '-', got {b!r}")
    if len({b.lower() for b in bands}) != len(bands):   # image-block extensions are upper case (DATA_G)
        raise ParameterError(f"bands: a band is named twice in {bands} (names differ in more than case)")
    modes = dict(model.band_modes)
    degrees = [m for m in modes.values() if m != "free"]
    lam = None
    if wavelengths is not None:
        if isinstance(wavelengths, Mapping):
            missing = [b for b in bands if b not in wavelengths]
            extra = [b for b in wavelengths if b not in bands]
            if missing or extra:
                raise ParameterError(f"wavelength: give one value for each band {bands}"
                                     + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
            wavelengths = [wavelengths[b] for b in bands]
        try:
            lam = tuple(float(v) for v in wavelengths)
        except (TypeError, ValueError):
            raise ParameterError(f"wavelength must be numbers, one per band, got {wavelengths!r}") from None
        if len(lam) != len(bands) or not all(math.isfinite(v) and v > 0 for v in lam):
            raise ParameterError(f"wavelength: one positive number per band {bands}, got {wavelengths!r}")
        if len(set(lam)) != len(lam):
            raise ParameterError(f"wavelength: two bands share a wavelength ({lam})")
    if degrees and lam is None:
        raise ParameterError("wavelength is required: parameters " + ", ".join(n for n, m in modes.items() if m != "free")
                             + " are polynomials in wavelength; give wavelength={band: value}")
    N = len(bands)
    for n, m in modes.items():
        if m != "free" and m + 1 > N:
            raise ParameterError(f"bands[{n!r}]: a polynomial of degree {m} needs at least {m + 1} bands, "
                                 f"this fit has {N}")
    grid = []
    for b in bands:
        g = (grids or {}).get(b, (1.0, 0.0, 0.0))
        try:
            s, dx, dy = (float(v) for v in g)
        except (TypeError, ValueError):
            raise ParameterError(f"grid[{b!r}] must be (scale, dx, dy), got {g!r}") from None
        if not (s > 0 and math.isfinite(s) and math.isfinite(dx) and math.isfinite(dy)):
            raise ParameterError(f"grid[{b!r}]: scale must be positive and offsets finite, got {g!r}")
        grid.append((s, dx, dy))
    if grids:
        unknown = [b for b in grids if b not in bands]
        if unknown:
            raise ParameterError(f"grid: unknown bands {unknown}; bands are {bands}")
    base = model.layout
    banded = set(modes) | {a for a, b in base.tied if b in modes}

    def joint(n, k):
        return f"{n}_{bands[k]}" if n in banded else n

    names = [joint(n, k) for n in base.names for k in (range(N) if n in banded else [0])]
    if len(set(names)) != len(names):
        raise ParameterError(f"bands: a band's parameter name collides with another parameter ({bands})")
    free, bounds, derived = [], [], []
    order = sorted(range(N), key=lambda k: lam[k]) if lam is not None else list(range(N))
    for n, bd in zip(base.free, base.bounds):
        m = modes.get(n)
        if m is None:
            free.append(n)
            bounds.append(bd)
        elif m == "free" or m + 1 >= N:
            free += [joint(n, k) for k in range(N)]
            bounds += [bd] * N
        else:
            anchors = [order[int(round(i * (N - 1) / m))] for i in range(m + 1)]
            lo, hi = min(lam), max(lam)
            t = [2.0 * (v - lo) / (hi - lo) - 1.0 for v in lam]
            free += [joint(n, k) for k in anchors]
            bounds += [bd] * len(anchors)
            for k in range(N):
                if k not in anchors:
                    w = _lagrange_weights([t[a] for a in anchors], t[k])
                    derived.append((joint(n, k), tuple((joint(n, a), float(wi)) for a, wi in zip(anchors, w))))
    tied = []
    for a, b in base.tied:
        for k in (range(N) if b in banded else [0]):
            tied.append((joint(a, k), joint(b, k)))
    fixed = [(joint(n, k), v) for n, v in zip(base.fixed, base.fixed_values)
             for k in (range(N) if n in banded else [0])]   # a banded fixed one: each band its own
    layout = ParamLayout(names=tuple(names), free=tuple(free), bounds=tuple(bounds),
                         fixed=tuple(n for n, _ in fixed), fixed_values=tuple(v for _, v in fixed),
                         defaults=tuple(d for n, d in zip(base.names, base.defaults)
                                        for _ in (range(N) if n in banded else [0])),
                         tied=tuple(tied), derived=tuple(derived))
    per_band = tuple(tuple((n, joint(n, k)) for n in base.names) for k in range(N))
    return BandModel(base=model, bands=bands, wavelengths=lam, grids=tuple(grid), layout=layout, per_band=per_band)


class BandData(eqx.Module):
    """One galaxy's inputs in every band (a pytree; a batch has a leading galaxy axis).

    Attributes:
        bands: a :class:`GalaxyData` per band (their ``fixed`` unused).
        fixed: values of the fixed parameters (F,), the layout's order.
    """

    bands: tuple
    fixed: jax.Array


@dataclasses.dataclass(frozen=True)
class BandProblem:
    """Everything static about a multiband fit (hashable): the engine's problem for a
    :class:`BandModel`.  ``shapes`` and ``psf_shapes`` hold one entry per band."""

    model: BandModel
    shapes: tuple
    psf_shapes: tuple
    oversample: int = 1
    sampling: Sampling = Sampling()
    stat: Statistic = Statistic.CHI2
    solver: LevenbergMarquardt | OptaxSolver = LevenbergMarquardt()
    errors: Errors = Errors.GN
    #: fixed joint parameters every galaxy shares, rendered as constants (``Problem.constants``)
    constants: tuple = ()

    @property
    def layout(self) -> ParamLayout:
        return self.model.layout

    def psf_transform(self, psf):
        """The PSF transforms, one entry per group of bands rendered together (:attr:`_groups`):
        a band's transform, or for a group of several bands theirs stacked (computed once per
        fit, not in every evaluation of the loop over them); None where the bands have no PSF."""
        if psf is None:
            return tuple(None for _ in self._groups)
        out = []
        for group in self._groups:
            k0 = group[0]
            if psf[k0] is None:   # (a group's bands all have a PSF or none: psf_shapes groups them)
                out.append(None)
                continue
            kernel = psf[k0] if len(group) == 1 else jnp.stack([psf[k] for k in group])
            out.append(stamp_psf_transform(kernel, self.shapes[k0], self.oversample))
        return tuple(out)

    def render_bands(self, x, galaxy: BandData, psf_fft):
        """The model image of every band (a tuple) of the joint free vector ``x`` (physical).

        Bands of equal stamp and PSF shapes are rendered by one loop over them
        (``jax.lax.scan``): XLA compiles one band's render, not one per band, and holds one
        band's intermediates at a time.  Measured on a three-band fit of one galaxy (32 x 32,
        ``tests/test_bands.py``): 3.2-3.8 s to compile instead of 5.2 s (2.1 s instead of 4.8
        with the test suite's XLA flags), 5.6 MB of temporaries instead of 13.8 MB, and 64
        galaxies' LM in 1.69-1.73 s against 1.62-1.85 s, the same minima."""
        p = self.layout.expand(x, galaxy.fixed, dict(self.constants))
        vecs, consts = [], []
        for k in range(len(self.shapes)):
            pk = self.model.band_params(p, k)
            vecs.append(jnp.stack([jnp.asarray(pk[n], x.dtype) for n in self._varying]))
            consts.append(jnp.stack([jnp.asarray(pk[n], x.dtype) for n in self._fixed]) if self._fixed else
                          jnp.zeros((0,), x.dtype))
        zps = [g.zeropoint for g in galaxy.bands]
        out = [None] * len(self.shapes)
        for group, fft in zip(self._groups, psf_fft):   # psf_fft: one entry per group
            k0 = group[0]
            if len(group) == 1:
                out[k0] = _band_image(self, k0, vecs[k0], consts[k0], fft, zps[k0])
                continue
            has_psf = fft is not None

            def band(_, xs, k0=k0, has_psf=has_psf):
                v, c, f, z = xs
                return None, _band_image(self, k0, v, c, f if has_psf else None, z)

            def stack(xs, group=group):
                return jnp.stack([xs[k] for k in group])

            _, imgs = jax.lax.scan(band, None, (stack(vecs), stack(consts),
                                                fft if has_psf else jnp.zeros(len(group)), stack(zps)))
            for i, k in enumerate(group):
                out[k] = imgs[i]
        return tuple(out)

    @property
    def _groups(self) -> tuple:
        """The bands rendered by one loop (those of equal stamp and PSF shapes; see
        :meth:`render_bands`), in band order."""
        groups = {}
        for k, key in enumerate(zip(self.shapes, self.psf_shapes)):
            groups.setdefault(key, []).append(k)
        return tuple(tuple(g) for g in groups.values())

    @property
    def _fixed(self) -> tuple:
        return self.model.base.layout.fixed

    @property
    def _varying(self) -> tuple:
        return tuple(n for n in self.model.base.layout.names if n not in self._fixed)

    def render_band(self, k: int, vec, const, psf_fft, zeropoint):
        """Band ``k``'s model image of its one-band parameters (that band's pixels): ``vec``
        those that the fit varies, ``const`` the fixed ones (``model.base.layout`` order)."""
        p = dict(zip(self._varying, vec))
        p.update(zip(self._fixed, const))
        # split by component: the band's derivative is always a forward-mode Jacobian
        # (:func:`_band_image`), whatever the solver
        return _render_one(self.model.base, p, self.shapes[k], psf_fft, self.psf_shapes[k], self.oversample,
                           zeropoint, self.sampling, split_jacobian=split_pays(self.model.base))

    def residuals_physical(self, x, galaxy: BandData, psf_fft):
        imgs = self.render_bands(x, galaxy, psf_fft)
        return jnp.concatenate([g.residuals(self.stat, im).ravel() for g, im in zip(galaxy.bands, imgs)])

    def residuals(self, u, galaxy: BandData, psf_fft):
        return self.residuals_physical(self.layout.to_physical(u), galaxy, psf_fft)

    def band_statistics(self, x, galaxy: BandData, psf_fft):
        """The statistic of each band, (N,)."""
        imgs = self.render_bands(x, galaxy, psf_fft)
        return jnp.stack([g.statistic(self.stat, im) for g, im in zip(galaxy.bands, imgs)])

    def statistic_physical(self, x, galaxy: BandData, psf_fft):
        return jnp.sum(self.band_statistics(x, galaxy, psf_fft))

    def n_pixels(self, galaxy: BandData):
        return sum(jnp.sum(g.mask, dtype=jnp.int32) for g in galaxy.bands)

    def report(self, x, galaxy: BandData, cov):
        """Every joint parameter and the covariance, folded to ``q <= 1`` per ellipse where the
        fold is one map of the fitted values (see :func:`_fold_bands`)."""
        return _fold_bands(self.model, self.layout.expand(x, galaxy.fixed), cov)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _band_image(problem: BandProblem, k: int, vec, const, psf_fft, zeropoint):
    """:meth:`BandProblem.render_band`, whose derivative in the parameters is taken in the
    band's own parameters.

    A band's image depends on the joint free vector only through its one-band parameters (a
    linear map: shared values, its own values, interpolation weights).  Differentiated
    directly, the Jacobian of the joint residuals would push every joint parameter's tangent
    through every band's rendering (P renders per band); this rule renders each band once per
    one-band parameter and maps the result linearly (``jax.vmap`` of the rule over the P
    tangents computes that Jacobian once).  Measured (benchmarks/bands.py, three bands, 13
    joint parameters): the joint fit costs 3.1 times a one-band fit instead of 4.0.  Fixed
    parameters (``const``) and the PSF and zero point are differentiated only where they carry
    a tangent (the implicit derivative of a fit in them)."""
    return problem.render_band(k, vec, const, psf_fft, zeropoint)


def _materialise(t, like):
    return jnp.zeros_like(like) if isinstance(t, SymbolicZero) else t


def _band_image_jvp(problem, k, primals, tangents):
    vec, const, psf_fft, zp = primals
    d_vec, d_const, d_psf, d_zp = tangents

    def render(v):
        return problem.render_band(k, v, const, psf_fft, zp)

    if isinstance(d_vec, SymbolicZero):
        img = problem.render_band(k, vec, const, psf_fft, zp)
        out = jnp.zeros_like(img)
    else:   # the image and its Jacobian in one forward pass, computed once under the vmap
        img, out = jvp_by_jacobian(render, vec, d_vec)
    zero = lambda t: isinstance(t, SymbolicZero)   # noqa: E731
    if not all(zero(t) for t in jax.tree.leaves((d_const, d_psf, d_zp), is_leaf=zero)):
        d_rest = jax.tree.map(_materialise, (d_const, d_psf, d_zp), (const, psf_fft, zp), is_leaf=zero)
        out = out + jax.jvp(lambda c, f, z: problem.render_band(k, vec, c, f, z), (const, psf_fft, zp), d_rest)[1]
    return img, out


_band_image.defjvp(_band_image_jvp, symbolic_zeros=True)


def _fold_bands(bm: BandModel, values: dict, cov):
    """DESIGN.md A's reporting (``q <= 1``, ``pa`` wrapped) for a joint fit.

    Per component: where ``q`` is shared, a fit at ``q > 1`` is reported as ``1/q`` with
    ``pa + 90`` and every band's radii times ``q`` (linear in the radii, so interpolated
    bands stay consistent).  Where ``q`` differs between bands, each band is folded alone when
    its ``q`` is fitted (not interpolated) and its ``pa`` and radii are its own; otherwise that
    component's ``q`` is reported as fitted (it may exceed 1) with ``pa`` wrapped.
    """
    lay = bm.layout
    idx = {n: i for i, n in enumerate(lay.free)}
    values = dict(values)
    derived = dict(lay.derived)
    J = jnp.eye(len(lay.free), dtype=jnp.asarray(cov).dtype)
    N = len(bm.bands)
    tables = [dict(t) for t in bm.per_band]

    def jn(n, k):
        return tables[k][n]

    for c, spec in bm.base.components:
        names = spec.param_names
        pa_all = sorted({jn(f"{c}.pa", k) for k in range(N)}) if "pa" in names else []
        if "q" not in names or "pa" not in names:
            for n in pa_all:
                values[n] = wrap_angle(values[n])
            continue
        radii = [f"{c}.{r}" for r in ellipse_radii(spec)]
        angles = [(f"{c}.{n}", t) for n, t in other_angles(spec)]
        # a component with Fourier modes has its pa, sky_pa and modes shared by the bands (Model
        # refuses band modes on them), so band 0's names are every band's
        phases = [(jn(f"{c}.{a}", 0), jn(f"{c}.{n}", 0), t, tuple(jn(f"{c}.{r}", 0) for r in refs))
                  for a, n, t, refs in fold_phases(spec)]

        def every_band(pairs):
            return sorted({(jn(n, k), t) for n, t in pairs for k in range(N)})

        if f"{c}.q" not in bm.banded:
            groups = [(jn(f"{c}.q", 0), sorted({jn(f"{c}.pa", k) for k in range(N)}),
                       sorted({jn(r, k) for r in radii for k in range(N)}), phases, every_band(angles))]
        elif all(jn(f"{c}.q", k) not in derived for k in range(N)) and f"{c}.pa" in bm.banded \
                and all(r in bm.banded for r in radii):   # (pa banded: no Fourier modes)
            groups = [(jn(f"{c}.q", k), [jn(f"{c}.pa", k)], [jn(r, k) for r in radii],
                       (), [(jn(n, k), t) for n, t in angles]) for k in range(N)]
        else:
            for n in pa_all:
                values[n] = wrap_angle(values[n])
            for n, t in every_band(angles):
                values[n] = wrap_angle(values[n], t)
            continue
        for qn, pas, rads, phs, angs in groups:
            J = fold_ellipse(values, J, idx, qn, pas, rads, phs, angs)
    # tied parameters follow their (folded) sources
    for a, b in lay.tied:
        values[a] = values[b]
    cov = jnp.asarray(cov)
    if lay.free:
        hi = jax.lax.Precision.HIGHEST
        cov = jnp.matmul(jnp.matmul(J, cov, precision=hi), J.T, precision=hi)
    return values, cov



def per_band(value, bands, name: str) -> dict:
    """``{band: value}`` from a mapping by band (every band, no other) or one value for all."""
    if isinstance(value, Mapping):
        missing = [b for b in bands if b not in value]
        extra = [b for b in value if b not in bands]
        if missing or extra:
            raise ParameterError(f"{name}: give one entry for each band {list(bands)} or one value for all"
                                 + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
        return {b: value[b] for b in bands}
    return {b: value for b in bands}


def joint_values(bm: BandModel, values: Mapping | None, argument: str = "init") -> dict:
    """Joint names of ``values``: a joint name (``"sersic.mag_g"``, column form, bare) is
    itself; a one-band name of a parameter that differs between bands gives every band's."""
    out = {}
    for k, v in (values or {}).items():
        try:
            out[bm.resolve(k, argument)] = v
            continue
        except ParameterError:
            pass
        n = bm.base.resolve(k, argument)
        for table in bm.per_band:
            out[dict(table)[n]] = v
    return out


def solve_bands(model: Model, data: Mapping, *, init, sigma=None, mask=None, psf=None, zeropoint=None, stat="chi2",
                solver="lm", max_iter=None, gain=None, read_noise=0.0, sky=0.0, oversample: int = 1,
                sampling: Sampling | None = None, errors="gn", wavelength=None, grid=None):
    """:func:`galmoss_jax.solve` of ONE galaxy in several bands (``data`` = ``{band: (H, W)}``)."""
    from ._engine import _constants_not_in, _image, _solve_jit, _start
    from ._noise import sigma_from_data, usable_pixels
    from .psf import as_psf
    from .solvers import as_solver

    stat = Statistic.of(stat)
    solver = as_solver(solver, max_iter=max_iter)
    dtype = jnp.result_type(float)
    bands = tuple(data)
    bm = band_model(model, bands, wavelength, grid)
    args = {n: per_band(v, bands, n) for n, v in (("sigma", sigma), ("mask", mask), ("psf", psf),
                                                    ("zeropoint", zeropoint), ("gain", gain),
                                                    ("read_noise", read_noise), ("sky", sky))}
    gals, psfs, shapes, psf_shapes = [], [], [], []
    for b in bands:
        d = _image(data[b], f"data[{b!r}]", dtype)
        if d.ndim != 2:
            raise ShapeError(f"data[{b!r}]: solve fits one galaxy (H, W) per band, got shape {d.shape}; "
                             "jax.vmap solve over a batch, or use fit")
        g = args["gain"][b]
        noise = [jnp.asarray(1.0 if g is None else g, dtype), jnp.asarray(args["read_noise"][b], dtype),
                 jnp.asarray(args["sky"][b], dtype)]
        s = args["sigma"][b]
        if s is None:
            if stat.uses_sigma and g is None:
                raise ParameterError(f"sigma[{b!r}] is required for stat='chi2' unless gain is given")
            s = sigma_from_data(d, *noise)
        s = _image(s, f"sigma[{b!r}]", dtype, d.shape)
        m = args["mask"][b]
        m = jnp.ones(d.shape, bool) if m is None else _image(m, f"mask[{b!r}]", bool, d.shape)
        d, s, m, _, _ = usable_pixels(d, s, m, uses_sigma=stat.uses_sigma)
        zp = args["zeropoint"][b]
        if zp is None:
            model.require_zeropoint()
            zp = 0.0
        k = args["psf"][b]
        if k is not None:
            k = as_psf(k, oversample=oversample).astype(dtype)
            if k.ndim != 2:
                raise ShapeError(f"psf[{b!r}]: solve takes one PSF image (h, w) per band, got shape {k.shape}")
        elif model.has_psf_components:
            raise ParameterError(f"psf[{b!r}]: the model has a point-source component, which needs a PSF")
        gals.append(GalaxyData(data=d, sigma=s, mask=m, zeropoint=jnp.asarray(zp, dtype), gain=noise[0],
                               read_noise=noise[1], sky=noise[2], fixed=jnp.zeros((0,), dtype)))
        psfs.append(k)
        shapes.append(tuple(d.shape))
        psf_shapes.append(None if k is None else tuple(k.shape))
    init = joint_values(bm, init)
    x0, fixed = _start(bm, init, dtype)
    problem = BandProblem(model=bm, shapes=tuple(shapes), psf_shapes=tuple(psf_shapes), oversample=int(oversample),
                          sampling=sampling or Sampling(), stat=stat, solver=solver, errors=Errors.of(errors),
                          constants=_constants_not_in(bm, init))
    galaxy = BandData(bands=tuple(gals), fixed=fixed)
    return _solve_jit(problem, bm.layout.to_unconstrained(x0).astype(dtype), galaxy,
                      None if all(k is None for k in psfs) else tuple(psfs))
