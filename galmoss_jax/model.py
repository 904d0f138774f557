"""Models: named components, fixed / tied / bounded parameters, and rendering.

A :class:`Model` is a static, hashable description (it can be a ``jax.jit`` static argument).
Parameters travel as a flat mapping ``{"bulge.r_e": value, ...}`` whose values are scalars for
one galaxy or arrays with a leading galaxy axis ``G`` for a batch.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Mapping, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from ._errors import ParameterError, ProfileError, PSFError, ShapeError
from .profiles import get_profile
from ._layout import ParamLayout
from .profiles._shape import fourier_modes
from .profiles._spec import ProfileSpec
from .psf import as_psf, check_oversample, psf_padding, stamp_psf_transform
from .sampling import integrate_pixels, pixel_nodes

_HIGHEST = jax.lax.Precision.HIGHEST   # full float32 products on GPUs (no TF32) where they matter

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Settings of the pixel integration (see :func:`galmoss_jax.sampling.integrate_pixels`).

    The defaults integrate Sérsic profiles with 0.3 <= n <= 8 and r_e >= 0.5 px to better than
    1e-3 of each pixel holding >= 1e-3 of the peak: every pixel by the sixth-order corrected
    midpoint rule (``n_base=0``, one profile evaluation per pixel), the ``ring_window``-pixel
    square around the centre by ``n_ring^2`` Gauss-Legendre points, the ``mid_window`` square
    by ``n_mid^2`` points and the ``window`` square by the polar corner rule.  ``n_base=3,
    ring_window=0`` is the previous rule (3x3 Gauss-Legendre points in every pixel), about
    three times slower for the same accuracy.

    ``psf_window`` x ``psf_window`` pixels around each component's centre enter the PSF
    convolution resolved into ``psf_subsample^2`` sub-pixels (see :func:`_render_one`), so that
    compact, cuspy galaxies are convolved exactly with the band-limited PSF instead of as
    pixel-integrated samples (GALFIT's and Imfit's approximation, which is off by up to a few
    per cent of the peak for n >~ 2, r_e ~ 1 px).  ``psf_window=0`` reproduces that convention.
    The sub-pixel grid is integrated with the same rules, its central ``fine_mid_window``
    sub-pixels by ``n_mid^2`` points (no ring: the profile is smooth on the sub-pixel scale
    away from the centre) and its corner rule with ``fine_n_theta x fine_n_r`` nodes (on that
    grid a profile is ``psf_subsample`` times wider in grid units, so fewer nodes reach the
    same accuracy); the image grid's central pixels, where the window has taken the light,
    then need no corner rule.
    """

    n_base: int = 0
    ring_window: int = 31
    n_ring: int = 3
    mid_window: int = 15
    n_mid: int = 8
    window: int = 3
    n_theta: int = 48
    n_r: int = 24
    psf_window: int = 7
    psf_subsample: int = 9
    fine_mid_window: int = 9
    fine_n_theta: int = 24
    fine_n_r: int = 12

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            # node counts and the sub-sampling factor are >= 1; windows may be 0 (off), as n_base
            # (the corrected midpoint rule)
            least = 0 if f.name.endswith("window") or f.name == "n_base" else 1
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
                raise ParameterError(f"Sampling.{f.name} must be an integer >= {least}, got {v!r}")
            object.__setattr__(self, f.name, int(v))

    @classmethod
    def from_text(cls, text: str) -> "Sampling":
        """The defaults with ``"name=value,name=value"`` changed (the CLI's ``--sampling``),
        e.g. ``"psf_window=0"`` (GALFIT's and Imfit's convolution of pixel-integrated samples)."""
        names = [f.name for f in dataclasses.fields(cls)]
        kw = {}
        for item in (t.strip() for t in text.split(",")):
            if not item:
                continue
            k, sep, v = (t.strip() for t in item.partition("="))
            if not sep or k not in names:
                raise ParameterError(f"--sampling: expected NAME=INTEGER with NAME one of {', '.join(names)}; "
                                     f"got {item!r}")
            try:
                kw[k] = int(v)
            except ValueError:
                raise ParameterError(f"--sampling: {k} must be an integer, got {v!r}") from None
        return cls(**kw)

    def quadrature(self, *, psf_window_on: bool = False, fine: bool = False) -> dict:
        """Keyword arguments of :func:`galmoss_jax.sampling.integrate_pixels`: for the image
        grid (``fine=False``; ``psf_window_on`` when a sub-pixel PSF window takes the centre)
        or for the sub-pixel grid of that window (``fine=True``)."""
        d = dataclasses.asdict(self)
        for k in ("psf_window", "psf_subsample", "fine_mid_window", "fine_n_theta", "fine_n_r"):
            d.pop(k)
        if fine:
            d.update(ring_window=0, mid_window=self.fine_mid_window, n_theta=self.fine_n_theta, n_r=self.fine_n_r)
        elif psf_window_on:
            d.update(window=0)
        return d


@dataclasses.dataclass(frozen=True)
class Model:
    """A sum of named components with fixed, tied and bounded parameters.

    Args:
        components: a profile name (``"sersic"``, component named after it), a mapping
            ``{"bulge": "sersic", "disk": "exponential"}``, a sequence of ``(name, profile)``
            pairs, or a spec string ``"bulge:sersic+disk:exponential"``.  Profiles may be
            names or :class:`ProfileSpec` objects.
        fixed: parameters held fixed: a mapping ``name -> value`` (``None`` = fixed at the
            initial value) or an iterable of names.  A value must be finite and inside the
            parameter's bounds.
        free: parameters fixed by default (``c0``, sky gradients in some models) to free.
        tied: ``{"disk.x0": "bulge.x0"}``: the first parameter equals the second (chains are
            followed; cycles, and a parameter both tied and fixed, are refused).
        bounds: ``{"bulge.n": (0.5, 6)}``: fitting bounds overriding the profile defaults,
            lower < upper; not for angles (``pa``), which are fitted without bounds.
        bands: how parameters change between the bands of a multiband fit (data given as a
            mapping ``{band: image}``, :mod:`galmoss_jax._bands`): ``{"sersic.mag": "free",
            "sersic.r_e": 1}``.  A parameter not named is shared by every band; ``"free"``
            gives it one independent value per band; an integer k makes it a polynomial of
            degree k in wavelength (GalfitM's Chebyshev polynomials span the same functions;
            0 = shared).  Bounds apply to the value in each band.  A parameter fixed at its
            initial value may be ``"free"``: each band is held at its own initial value (a sky
            level measured in each band).  Tied parameters cannot have a band mode (a tied one
            follows its source in each band).

    Parameter names are ``"component.param"``; a one-component model also accepts bare
    names (``"r_e"``).
    """

    components: tuple
    fixed: tuple = ()
    tied: tuple = ()
    bounds: tuple = ()
    band_modes: tuple = ()

    def __init__(self, components, *, fixed=None, free=None, tied=None, bounds=None, bands=None):
        comps = _parse_components(components)
        object.__setattr__(self, "components", comps)
        names = [f"{c}.{p}" for c, s in comps for p in s.param_names]
        object.__setattr__(self, "_all", tuple(names))
        # fixed: profile defaults (e.g. c0), then user choices
        fixed_map: dict[str, float | None] = {}
        for c, s in comps:
            for p in s.params:
                if p.fixed:  # fixed at its initial value (the default unless one is given)
                    fixed_map[f"{c}.{p.name}"] = None
        for n in (free or ()):
            fixed_map.pop(self.resolve(n, "free"), None)
        user_fixed = {}
        if fixed is not None:
            items = fixed.items() if isinstance(fixed, Mapping) else ((n, None) for n in fixed)
            for n, v in items:
                full = self.resolve(n, "fixed")
                user_fixed[full] = None if v is None else _number(v, f"fixed[{n!r}]")
                fixed_map[full] = user_fixed[full]
        tied_map: dict[str, str] = {}
        for a, b in (tied or {}).items():
            a, b = self.resolve(a, "tied"), self.resolve(b, "tied")
            if a == b:
                raise ParameterError(f"tied: {a!r} cannot be tied to itself")
            if a in user_fixed:
                raise ParameterError(f"tied: {a!r} is also fixed; a parameter is either fixed or tied")
            tied_map[a] = b
            fixed_map.pop(a, None)
        for a in tied_map:  # follow chains; refuse cycles
            seen, b = {a}, tied_map[a]
            while b in tied_map:
                if b in seen:
                    raise ParameterError(f"tied: the ties {sorted(seen)} form a cycle")
                seen.add(b)
                b = tied_map[b]
            tied_map[a] = b
        bounds_map: dict[str, tuple[float, float]] = {}
        for n, lh in (bounds or {}).items():
            full = self.resolve(n, "bounds")
            try:
                lo, hi = (float(v) for v in lh)
            except (TypeError, ValueError):
                raise ParameterError(f"bounds[{n!r}] must be a (lower, upper) pair, got {lh!r}") from None
            if not lo < hi:
                raise ParameterError(f"bounds[{n!r}]: lower bound {lo} must be below upper bound {hi}")
            if self.param(full).periodic is not None:
                raise ParameterError(f"bounds[{n!r}]: {full!r} is an angle (period {self.param(full).periodic:g}) "
                                     "and is fitted without bounds")
            bounds_map[full] = (lo, hi)
        for n, v in user_fixed.items():  # a value fixed outside the bounds is a typo or a wrong unit
            lo, hi = bounds_map.get(n) or (self.param(n).lower, self.param(n).upper)
            if v is not None and not lo <= v <= hi:
                raise ParameterError(f"fixed[{n!r}] = {v:g} lies outside its bounds [{lo:g}, {hi:g}]")
        object.__setattr__(self, "fixed", tuple(sorted(fixed_map.items())))
        object.__setattr__(self, "tied", tuple(sorted(tied_map.items())))
        object.__setattr__(self, "bounds", tuple(sorted(bounds_map.items())))
        modes = {}
        if bands is not None and not isinstance(bands, Mapping):
            raise ParameterError("bands must be a mapping {parameter: 'shared' | 'free' | polynomial degree}")
        for n, mode in (bands or {}).items():
            full = self.resolve(n, "bands")
            if isinstance(mode, str) and mode in ("shared", "free"):
                pass
            elif isinstance(mode, (int, np.integer)) and not isinstance(mode, bool) and mode >= 0:
                mode = int(mode)
            else:
                raise ParameterError(f"bands[{n!r}] must be 'shared', 'free' or a polynomial degree >= 0, "
                                     f"got {mode!r}")
            if full in user_fixed and user_fixed[full] is not None:
                raise ParameterError(f"bands[{n!r}]: {full!r} is fixed at {user_fixed[full]:g}, so it is the same "
                                     "in every band (fix it at its initial value, fixed=[...], to give each band "
                                     "its own fixed value)")
            if full in fixed_map and mode not in ("shared", "free", 0):
                raise ParameterError(f"bands[{n!r}]: {full!r} is fixed; a fixed parameter is 'shared' or 'free' "
                                     "(each band fixed at its own initial value), not a polynomial")
            if full in tied_map:
                raise ParameterError(f"bands[{n!r}]: {full!r} is tied to {tied_map[full]!r} and follows it "
                                     "in each band; give the band mode to the source")
            comp, pname = full.split(".", 1)
            modes_of = fourier_modes(self.spec(comp))
            if mode not in ("shared", 0) and modes_of and (
                    pname in ("pa", "sky_pa") or any(pname in (a, ph) for _, a, ph, _ in modes_of)):
                raise ParameterError(f"bands[{n!r}]: {comp!r} has Fourier modes, whose amplitudes and phases are "
                                     "measured from its pa: its pa, sky_pa and modes are shared by every band")
            if mode not in ("shared", 0):
                modes[full] = mode
        object.__setattr__(self, "band_modes", tuple(sorted(modes.items())))
        free = tuple(n for n in names if n not in fixed_map and n not in tied_map)
        fixed_names = tuple(n for n in names if n in fixed_map)
        object.__setattr__(self, "layout", ParamLayout(
            names=tuple(names), free=free,
            bounds=tuple(self.bounds_of(n) if self.param(n).periodic is None else (-math.inf, math.inf)
                         for n in free),
            fixed=fixed_names, fixed_values=tuple(fixed_map[n] for n in fixed_names),
            defaults=tuple(self.param(n).default for n in names), tied=self.tied))

    # -- names ---------------------------------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter, ``"component.param"``, in component then profile order."""
        return self._all

    @property
    def free_names(self) -> tuple[str, ...]:
        """Parameters that are fitted (neither fixed nor tied), in the layout's order."""
        return self.layout.free

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.components)

    def spec(self, component: str) -> ProfileSpec:
        for c, s in self.components:
            if c == component:
                return s
        raise ParameterError(f"no component {component!r}; components are {self.component_names}")

    def param(self, name: str):
        """The :class:`Param` of a full parameter name."""
        c, p = self.resolve(name, "name").split(".", 1)
        return self.spec(c).param(p)

    def resolve(self, name: str, argument: str = "params") -> str:
        """Full ``component.param`` name of ``name`` (a bare name is allowed for one component).

        Also accepts the table-column form ``component_param``.
        """
        if not isinstance(name, str):
            raise ParameterError(f"{argument}: parameter names must be strings, got {name!r}")
        if name in self._all:
            return name
        if "." not in name and len(self.components) == 1:
            full = f"{self.components[0][0]}.{name}"
            if full in self._all:
                return full
        for full in self._all:  # column form
            if full.replace(".", "_", 1) == name:
                return full
        raise ParameterError(f"{argument}: unknown parameter {name!r}; this model has {', '.join(self._all)}")

    def bounds_of(self, name: str) -> tuple[float, float]:
        """Fitting bounds of a full parameter name (user override or profile default)."""
        b = dict(self.bounds)
        if name in b:
            return b[name]
        p = self.param(name)
        return p.lower, p.upper

    def defaults(self) -> dict[str, float]:
        """Default value of every parameter (fixed values where given)."""
        lay = self.layout
        return {n: lay.fixed_value(n) if n in lay.fixed else d for n, d in zip(lay.names, lay.defaults)}

    @property
    def has_psf_components(self) -> bool:
        return any(s.kind == "point" for _, s in self.components)

    @property
    def has_magnitudes(self) -> bool:
        """True if a parameter is a magnitude (``mag``, ``mu_*``), which needs a zero point."""
        return any(p.name == "mag" or p.name.startswith("mu_") for _, s in self.components for p in s.params)

    def require_zeropoint(self):
        """Raise the error for a missing zero point if the model has magnitudes."""
        if self.has_magnitudes:
            raise ParameterError("zeropoint is required: the model has magnitude parameters "
                                 "(mag = zp - 2.5 log10 F); CLI: --zeropoint, or a MAGZPT/ZP header key")

    @property
    def spec_string(self) -> str:
        return "+".join(f"{c}:{s.name}" for c, s in self.components)

    # -- parameters ----------------------------------------------------------------------------
    def complete(self, params: Mapping, *, argument: str = "params") -> dict:
        """Full parameter dict: names resolved, fixed values applied, ties followed, defaults of
        parameters fixed by default filled in (:meth:`ParamLayout.fill`).  Raises on unknown or
        missing parameters."""
        if not isinstance(params, Mapping):
            raise ParameterError(f"{argument} must be a mapping of parameter names to values")
        given = {self.resolve(k, argument): v for k, v in params.items()}
        for a, b in self.tied:
            if b not in given and b in self.layout.free:
                raise ParameterError(f"{argument}: {b!r} (which {a!r} is tied to) has no value")
        missing = [n for n in self.layout.free if n not in given]
        if missing:
            raise ParameterError(f"{argument}: missing values for {', '.join(missing)}")
        return self.layout.fill(given)

    def without_bands(self) -> "Model":
        """This model with no band modes (what one band of a multiband fit renders)."""
        if not self.band_modes:
            return self
        out = object.__new__(Model)
        out.__dict__.update(self.__dict__)
        object.__setattr__(out, "band_modes", ())
        return out

    def refuse_band_modes(self, argument: str = "data"):
        """Raise when a model with band modes meets one band's data (the modes would do nothing)."""
        if self.band_modes:
            raise ParameterError(f"{argument}: the model says how parameters change between bands (bands=...), "
                                 "so the data must be a mapping {band: image}; for one band use a Model "
                                 "without bands (model.without_bands())")

    def render(self, params, shape, **kwargs):
        """Render this model; see :func:`render`."""
        return render(self, params, shape, **kwargs)


def _number(value, name: str) -> float:
    """``value`` as a finite float, or a ParameterError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ParameterError(f"{name} must be finite, got {v}")
    return v


def _parse_components(components) -> tuple:
    if isinstance(components, Model):
        return components.components
    if isinstance(components, ProfileSpec):
        items = [(components.root.name, components)]
    elif isinstance(components, str):
        items = []
        for part in components.split("+"):
            part = part.strip()
            if not part:
                raise ProfileError(f"model spec {components!r} has an empty component")
            if ":" in part:
                cname, prof = (s.strip() for s in part.split(":", 1))
            else:   # named after its profile; "sersic[f1,rot]" (shape modes) -> "sersic"
                cname, prof = part.split("[", 1)[0].strip(), part
            items.append((cname, prof))
    elif isinstance(components, Mapping):
        items = list(components.items())
    else:
        try:
            items = [tuple(x) for x in components]
        except TypeError:
            raise ProfileError(f"components must be a profile name, a mapping or (name, profile) pairs, got {components!r}") from None
    if not items:
        raise ProfileError("a model needs at least one component")
    out, seen = [], set()
    for cname, prof in items:
        if not isinstance(cname, str) or not _NAME_RE.match(cname.replace("_", "a")):
            raise ProfileError(f"component name {cname!r} must start with a letter and hold letters, digits or '_'")
        if cname in seen:
            raise ProfileError(f"component name {cname!r} is used twice")
        seen.add(cname)
        out.append((cname, get_profile(prof)))
    return tuple(out)


def as_model(model) -> Model:
    """A :class:`Model` from a Model, a spec string, a profile name or a mapping."""
    return model if isinstance(model, Model) else Model(model)


# ---------------------------------------------------------------------------------------------
# rendering of ONE galaxy (pure), then vmapped
# ---------------------------------------------------------------------------------------------
def _component_params(p: Mapping, comp: str) -> dict:
    pre = comp + "."
    return {k[len(pre):]: v for k, v in p.items() if k.startswith(pre)}


class _Grid(NamedTuple):
    """The padded (and, with ``oversample``, finer) grid a profile is integrated on (static)."""

    Hf: int          # rows of the padded grid
    Wf: int          # columns
    d: float         # its pixel side, in image pixels (1 / oversample)
    x_start: float   # centre of its pixel [0, 0], in image pixel coordinates
    y_start: float
    Kw: int          # side of the sub-pixel PSF window, grid pixels (0: none)


def _surface_light(spec: ProfileSpec, grid: _Grid, sampling: Sampling, dtype, cp: Mapping, zeropoint):
    """One surface component's light: ``(surface, window)``, the pixel integrals on the grid
    (the part convolved by FFT) and, with a sub-pixel PSF window, the window's transform at
    the grid's frequencies as a real (2, Hf, Wf // 2 + 1) array (real and imaginary parts;
    None without a window).  Both are linear in what :func:`_render_one` does with them, so
    the components' parts add before the convolution."""
    Hf, Wf, d, x_start, y_start, Kw = grid
    fn = functools.partial(_bound_brightness, spec.brightness, cp, zeropoint)
    k = 1.0 if spec.grading is None else spec.grading(cp)
    if Kw == 0:
        quad = sampling.quadrature(psf_window_on=False)
        return integrate_pixels(fn, cp["x0"], cp["y0"], (Hf, Wf), x_start=x_start, y_start=y_start, pixel=d,
                                grading=k, **quad), None
    # split the profile smoothly: taper * profile near the centre (sub-pixel resolved),
    # (1 - taper) * profile elsewhere (pixel samples); both parts are smooth where they meet,
    # so neither adds spurious high frequencies.
    s = sampling.psf_subsample
    jc = jnp.round((cp["x0"] - x_start) / d).astype(jnp.int32)
    ic = jnp.round((cp["y0"] - y_start) / d).astype(jnp.int32)
    j0 = jnp.clip(jc - Kw // 2, 0, Wf - Kw)
    i0 = jnp.clip(ic - Kw // 2, 0, Hf - Kw)
    inside = (j0 == jc - Kw // 2) & (i0 == ic - Kw // 2)   # taper support in the grid
    b = (Kw / 2.0 - 0.5) * d
    dx_in, dy_in, fine_pixels = pixel_nodes(
        cp["x0"], cp["y0"], (s * Kw, s * Kw), x_start=x_start + d * (j0.astype(dtype) - 0.5 + 0.5 / s),
        y_start=y_start + d * (i0.astype(dtype) - 0.5 + 0.5 / s), pixel=d / s, grading=k,
        **sampling.quadrature(fine=True))
    dx_out, dy_out, pixels = pixel_nodes(cp["x0"], cp["y0"], (Hf, Wf), x_start=x_start, y_start=y_start, pixel=d,
                                         grading=k, **sampling.quadrature(psf_window_on=True))
    # one evaluation of the profile on both grids' nodes (one copy of its arithmetic in the
    # compiled program: a Jacobian of a Sérsic render compiles ~14 % faster)
    n_in = dx_in.shape[0]
    dx_all = jnp.concatenate([dx_in, dx_out])
    dy_all = jnp.concatenate([dy_in, dy_out])
    w = _taper(dx_all, dy_all, a=b / 3.0, b=b, on=inside)
    inner = jnp.arange(dx_all.shape[0]) < n_in
    vals = jnp.where(inner, w, 1.0 - w) * fn(dx_all, dy_all)   # taper in, 1 - taper out
    fine = fine_pixels(vals[:n_in])
    # Fourier transform of the window's sub-pixel integrals at the grid's frequencies (a
    # separable non-uniform DFT): ey @ fine @ ex.T with ey = exp(-2 pi i v y), ex = exp(-2 pi i
    # u x), in real arithmetic: two real products, [cos; sin](y) @ (fine @ [cos, sin](x)), whose
    # four blocks give the real and imaginary parts.  The window is real, so this does half the
    # multiplications of the complex product; under a Jacobian the tangents are stacked into
    # one matrix product each (8 tangents: 3.8 -> 1.8 ms for 168 x 85 frequencies and a 63 x 63
    # window, float64, one core).
    v = jnp.fft.fftfreq(Hf).astype(dtype)[:, None]
    u = jnp.fft.rfftfreq(Wf).astype(dtype)[None, :]
    nu = u.shape[1]
    sub = (jnp.arange(s * Kw, dtype=dtype) + 0.5) / s - 0.5     # sub-pixel centres, grid units
    ay = (-2 * jnp.pi) * v * (i0.astype(dtype) + sub)[None, :]             # (Hf, sK)
    ax = (-2 * jnp.pi) * u.T * (j0.astype(dtype) + sub)[None, :]           # (nu, sK)
    rows = jnp.concatenate([jnp.cos(ay), jnp.sin(ay)])                       # (2 Hf, sK)
    cols = jnp.concatenate([jnp.cos(ax), jnp.sin(ax)]).T                     # (sK, 2 nu)
    blocks = jnp.matmul(rows, jnp.matmul(fine.astype(dtype), cols, precision=_HIGHEST),
                        precision=_HIGHEST)                                  # (2 Hf, 2 nu)
    cc, cs = blocks[:Hf, :nu], blocks[:Hf, nu:]
    sc, ss = blocks[Hf:, :nu], blocks[Hf:, nu:]
    return pixels(vals[n_in:]), jnp.stack([cc - ss, cs + sc])


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _surface_light_split(spec, grid, sampling, dtype, cp, zeropoint):
    """:func:`_surface_light`, whose derivative is taken in the component's own parameters
    (forward-mode Jacobians: Levenberg-Marquardt's problem, :meth:`Problem.split_jacobian`).

    Differentiated directly, a forward-mode Jacobian of a model of several components pushes
    every free parameter's tangent through every component's integration (P tangents per
    component, most of them zero: the disc's light does not depend on the bulge's n).  This
    rule integrates each component once per parameter of its own that carries a tangent and
    maps the result linearly (``jax.vmap`` of the rule over the P tangents computes that
    Jacobian once); the derivatives in a declared magnitude (``ProfileSpec.magnitude``) and in
    the zero point are the light times -/+ 0.4 ln(10) (a Sérsic's Jacobian at 128 x 128 in
    float64: ~9 % less).  Only worth it for forward mode (Levenberg-Marquardt's Jacobian, the
    errors): a reverse-mode gradient would pay a Jacobian where it now pays ~3 renders, so
    :func:`_render_one` uses it only when asked."""
    return _surface_light(spec, grid, sampling, dtype, cp, zeropoint)


def _carries_tangent(t) -> bool:
    return not isinstance(t, SymbolicZero) and jnp.result_type(t) != jax.dtypes.float0


def jvp_by_jacobian(f, vec, dvec):
    """``f(vec)`` and its derivative along ``dvec``, as ``f``'s Jacobian in ``vec`` contracted
    with ``dvec`` (``f``'s output a pytree of arrays).  For custom JVP rules: under ``jax.vmap``
    over a batch of tangents (a forward-mode Jacobian) the Jacobian does not depend on the
    tangents and is computed once, in one forward pass.  It is taken as a vmap of ``jax.jvp``
    over the identity, the parameter axis first (``jax.jacfwd`` puts it last), so that the
    contraction is one matrix product without transposes (~10 % of a one-component rule)."""
    out, jac = jax.vmap(lambda t: jax.jvp(f, (vec,), (t,)), out_axes=(None, 0))(
        jnp.eye(vec.shape[0], dtype=vec.dtype))
    return out, jax.tree.map(lambda j: jnp.tensordot(dvec, j, axes=1, precision=_HIGHEST), jac)


def _surface_light_split_jvp(spec, grid, sampling, dtype, primals, tangents):
    cp, zp = primals
    dcp, dzp = tangents
    # the light is 10^(-0.4 (m - zp)) times the rest for a profile that declares its magnitude
    # m: the derivatives in m and in the zero point are -/+ 0.4 ln(10) times the light, so
    # only the other parameters' tangents go through the pixel integration (a Sérsic: 6 of 7)
    mag = spec.magnitude if spec.magnitude in cp else None
    live = [n for n in cp if n != mag and _carries_tangent(dcp[n])]
    through = mag is None and _carries_tangent(dzp)      # the zero point by the integration
    ln10 = 0.4 * math.log(10.0)
    analytic = []   # tangents of the light's logarithm
    if mag is not None and _carries_tangent(dcp[mag]):
        analytic.append(-ln10 * jnp.asarray(dcp[mag], dtype))
    if mag is not None and _carries_tangent(dzp):
        analytic.append(ln10 * jnp.asarray(dzp, dtype))

    def light(vec):
        q = {**cp, **{n: vec[i] for i, n in enumerate(live)}}
        return _surface_light(spec, grid, sampling, dtype, q, vec[-1] if through else zp)

    if not live and not through:   # only the magnitude and the zero point carry tangents
        out = _surface_light(spec, grid, sampling, dtype, cp, zp)
        tan = jax.tree.map(jnp.zeros_like, out)
    else:
        vec = jnp.stack([jnp.asarray(cp[n], dtype) for n in live] + ([jnp.asarray(zp, dtype)] if through else []))
        dvec = jnp.stack([jnp.asarray(dcp[n], dtype) for n in live] + ([jnp.asarray(dzp, dtype)] if through else []))
        out, tan = jvp_by_jacobian(light, vec, dvec)
    if analytic:
        factor = sum(analytic)
        tan = jax.tree.map(lambda t, o: t + factor * o, tan, out)
    return out, tan


_surface_light_split.defjvp(_surface_light_split_jvp, symbolic_zeros=True)


def split_pays(model: Model) -> bool:
    """Whether a forward-mode Jacobian of ``model``'s render is cheaper split by component
    (:func:`_surface_light_split`): the model has more than one surface component, or one
    whose magnitude's derivative is written analytically (``ProfileSpec.magnitude``)."""
    surface = [spec for _, spec in model.components if spec.kind == "surface"]
    return len(surface) > 1 or any(spec.magnitude is not None for spec in surface)


def _render_one(model: Model, p: Mapping, shape, psf_fft, psf_shape, oversample: int,
                zeropoint, sampling: Sampling, split_jacobian: bool = False):
    """Model image (H, W) of one galaxy.  ``psf_fft`` is None for no PSF.  ``split_jacobian``:
    differentiate each surface component in its own parameters, a declared magnitude's
    derivative written from the light (:func:`_surface_light_split`; for forward-mode
    Jacobians, where :func:`split_pays`)."""
    H, W = shape
    dtype = jnp.result_type(*[jnp.asarray(v) for v in p.values()], float)
    if psf_fft is None:
        py = px = 0
        f = 1
    else:
        py, px = psf_padding(psf_shape, oversample)
        f = oversample
    Hf, Wf = f * (H + 2 * py), f * (W + 2 * px)
    d = 1.0 / f
    Kw = min(sampling.psf_window, Hf, Wf) if psf_fft is not None and sampling.psf_subsample > 1 else 0
    # centre of fine pixel [0, 0], in image pixel coordinates
    grid = _Grid(Hf, Wf, d, -px - 0.5 + 0.5 * d, -py - 0.5 + 0.5 * d, Kw)
    light = _surface_light_split if split_jacobian else _surface_light
    surface = jnp.zeros((Hf, Wf), dtype)
    window = None   # the sub-pixel-resolved central windows' transform, added in Fourier space
    points = []
    sky = jnp.zeros((H, W), dtype)
    for cname, spec in model.components:
        cp = _component_params(p, cname)
        if spec.kind == "surface":
            part, win = light(spec, grid, sampling, np.dtype(dtype), cp, zeropoint)
            surface = surface + part
            if win is not None:
                window = win if window is None else window + win
        elif spec.kind == "point":
            points.append((cp["x0"], cp["y0"], spec.total_flux(cp, zeropoint)))
        else:
            xs = jnp.arange(W, dtype=dtype) - (W - 1) / 2.0
            ys = jnp.arange(H, dtype=dtype) - (H - 1) / 2.0
            sky = sky + spec.brightness(cp, xs[None, :], ys[:, None], zeropoint)
    if psf_fft is None:
        return _nan_outside_domain(model, p, surface + sky)
    ft = jnp.fft.rfft2(surface)
    v = jnp.fft.fftfreq(Hf).astype(dtype)[:, None]
    u = jnp.fft.rfftfreq(Wf).astype(dtype)[None, :]
    if window is not None:
        # the windows' sub-pixel integrals are samples of (profile (x) sub-pixel box): divide
        # its transform sinc(nu / s) out (exact for profiles smooth on the sub-pixel scale),
        # then apply the pixel's transform sinc(nu)
        s = sampling.psf_subsample
        pix = (jnp.sinc(v) * jnp.sinc(u)) / (jnp.sinc(v / s) * jnp.sinc(u / s))
        ft = ft + pix * jax.lax.complex(window[0], window[1])
    x_start, y_start = grid.x_start, grid.y_start
    for x0, y0, flux in points:
        ix = (x0 - x_start) / d
        iy = (y0 - y_start) / d
        ft = ft + flux * jnp.exp(-2j * jnp.pi * (u * ix + v * iy))
    conv = jnp.fft.irfft2(ft * psf_fft, s=(Hf, Wf))
    conv = conv[f * py: f * (py + H), f * px: f * (px + W)]
    if f > 1:
        conv = conv.reshape(H, f, W, f).sum(axis=(1, 3))
    return _nan_outside_domain(model, p, conv.astype(dtype) + sky)


def _nan_outside_domain(model: Model, p: Mapping, image):
    """``image``, or NaN everywhere when a parameter lies outside its domain (a radius, q, n
    ... not positive where its lower bound is positive, negative where it is 0): the check that
    :func:`render` makes on concrete values, as a value that traced code (jit, grad, a sampler)
    can see.  A parameter inside its fitting bounds always passes."""
    ok = jnp.asarray(True)
    for name, v in p.items():
        lo = model.bounds_of(name)[0]
        if lo > 0:
            ok = ok & jnp.all(v > 0)
        elif lo == 0:
            ok = ok & jnp.all(v >= 0)
    return jnp.where(ok, image, jnp.nan)


def _bound_brightness(brightness, cp, zeropoint, dx, dy):
    return brightness(cp, dx, dy, zeropoint)


def _smoothstep(t):
    t = jnp.clip(t, 0.0, 1.0)
    return t * t * t * (10.0 - 15.0 * t + 6.0 * t * t)   # C2: 0 -> 1 on [0, 1]


def _taper(dx, dy, *, a, b, on):
    """1 within |dx|, |dy| <= a of the centre, 0 beyond b, C2-smooth between; 0 if not ``on``."""
    w = (1.0 - _smoothstep((jnp.abs(dx) - a) / (b - a))) * (1.0 - _smoothstep((jnp.abs(dy) - a) / (b - a)))
    return jnp.where(on, w, 0.0)


@functools.partial(jax.jit, static_argnames=("model", "shape", "psf_shape", "oversample", "sampling", "batched", "psf_batched"))
def _render_jit(model, params, shape, psf, psf_shape, oversample, zeropoint, sampling, batched, psf_batched):
    if psf is not None:
        psf_fft = stamp_psf_transform(psf, shape, oversample)
    else:
        psf_fft = None

    def one(p, k, zp):
        return _render_one(model, p, shape, k, psf_shape, oversample, zp, sampling)

    if not batched:
        return one(params, psf_fft, zeropoint)
    in_k = 0 if psf_batched else None
    in_zp = 0 if jnp.ndim(zeropoint) == 1 else None
    return jax.vmap(one, in_axes=(0, in_k, in_zp))(params, psf_fft, zeropoint)


def render(model, params, shape, *, psf=None, zeropoint=None, oversample: int = 1,
           sampling: Sampling | None = None):
    """Model image(s), pixel-integrated and PSF-convolved.

    Args:
        model: a :class:`Model`, a profile name or a spec string (``"bulge:sersic+disk:exponential"``).
        params: mapping of parameter names to values: scalars for one galaxy, or arrays with a
            leading galaxy axis ``G`` (scalars are broadcast) for a batch.
        shape: ``(H, W)`` of the stamp, pixels.
        psf: PSF image sampled at pixel centres (odd sides, centred on its middle pixel), or a
            ``(G, h, w)`` cube with one PSF per galaxy; normalised with a warning if its sum is
            not 1.  None: no convolution.
        zeropoint: magnitude zero point(s), ``mag = zp - 2.5 log10(F)``; a scalar or one per
            galaxy.  Required when the model has magnitude parameters.
        oversample: integer factor by which ``psf`` is sampled finer than the image (GALFIT's
            fine sampling); the model is then rendered on the fine grid and binned.
        sampling: pixel-integration settings (:class:`Sampling`).

    Returns:
        ``(H, W)`` for one galaxy (all parameters scalar), else ``(G, H, W)``; image units per
        pixel.

    Raises :class:`ParameterError` for a parameter that is not a finite number, not positive
    where its bounds are (radii, ``q``, ``n``, ...), or that gives a non-finite image.

    Traced use (inside ``jax.jit``, ``jax.grad``, ``jax.vmap`` or a sampler): ``render`` is
    differentiable in the parameters, in a traced ``psf`` (normalised to sum 1 in the trace)
    and in a traced ``zeropoint``.  Values cannot be checked there, so a parameter outside its
    domain gives an image of NaN (a sampler rejects such a point) instead of the error.  For
    repeated calls with a fixed model, shape and PSF shape, :class:`Renderer` takes a vector
    of parameters.
    """
    model = as_model(model)
    model.refuse_band_modes("render")
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"shape must be (H, W), got {shape!r}") from None
    check_oversample(oversample)
    if len(shape) != 2 or min(shape) < 1:
        raise ShapeError(f"shape must be (H, W) with positive sides, got {shape!r}")
    sampling = Sampling() if sampling is None else sampling
    full = model.complete(params)
    # one dtype for every parameter (ints and float32 would otherwise compile again)
    arrays = {}
    for k, v in full.items():
        try:
            arrays[k] = jnp.asarray(v, dtype=jnp.result_type(float))
        except (TypeError, ValueError):
            raise ParameterError(f"params[{k!r}] must be a number or an array of numbers, got {v!r}") from None
        if arrays[k].ndim > 1:
            raise ShapeError(f"params[{k!r}] must be a scalar or a 1-D array over galaxies, got shape {arrays[k].shape}")
        _check_domain(model, k, arrays[k])
    sizes = {v.shape[0] for v in arrays.values() if v.ndim == 1}
    if len(sizes) > 1:
        raise ShapeError(f"params: parameter arrays have different lengths {sorted(sizes)}")
    batched = bool(sizes)
    if zeropoint is None:
        model.require_zeropoint()
        zeropoint = 0.0
    try:
        zp = jnp.asarray(zeropoint, dtype=jnp.result_type(float))
    except (TypeError, ValueError):
        raise ParameterError(f"zeropoint must be a number, got {zeropoint!r}") from None
    if not isinstance(zp, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(zp))):
        raise ParameterError(f"zeropoint must be finite, got {zeropoint!r}")
    if zp.ndim > 1 or (zp.ndim == 1 and not batched):
        raise ShapeError(f"zeropoint must be a scalar or one value per galaxy, got shape {zp.shape}")
    psf_arr, psf_shape, psf_batched = None, None, False
    if psf is not None:
        psf_arr = as_psf(psf, oversample=oversample)
        psf_shape = tuple(psf_arr.shape[-2:])
        psf_batched = psf_arr.ndim == 3
        if psf_batched and not batched:
            raise ShapeError("psf: a (G, h, w) PSF cube needs batched parameters")
    elif model.has_psf_components:
        raise PSFError("psf: the model has a point-source component, which needs a PSF")
    if batched:
        G = sizes.pop()
        arrays = {k: jnp.broadcast_to(v, (G,)) for k, v in arrays.items()}
        if psf_batched and psf_arr.shape[0] != G:
            raise ShapeError(f"psf: cube has {psf_arr.shape[0]} PSFs for {G} galaxies")
        if zp.ndim == 1 and zp.shape[0] != G:
            raise ShapeError(f"zeropoint: {zp.shape[0]} values for {G} galaxies")
    img = _render_jit(model, arrays, shape, psf_arr, psf_shape, int(oversample), zp, sampling,
                      batched, psf_batched)
    if not isinstance(img, jax.core.Tracer):
        # NumPy on the host image: op-by-op JAX would compile three small programs for every
        # new image shape (on a GPU this copies the image to the host, as the caller's use does)
        bad = ~np.isfinite(np.asarray(img)).reshape(-1, shape[0] * shape[1]).all(axis=1)
        if bad.any():
            which = f" (galaxies {np.flatnonzero(bad)[:5].tolist()})" if batched else ""
            raise ParameterError(f"params give a non-finite image{which}: a value outside the profile's "
                                 "domain, or a flux that overflows")
    return img


def _check_domain(model: Model, name: str, value):
    """Refuse a concrete parameter value that is not finite, or not positive where the
    parameter's bounds are (radii, axis ratio, Sérsic index, ...)."""
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value)
    if not np.all(np.isfinite(v)):
        raise ParameterError(f"params[{name!r}] must be finite, got {v}")
    lo = model.bounds_of(name)[0]
    if lo > 0 and np.any(v <= 0):
        raise ParameterError(f"params[{name!r}] must be positive, got {v}")
    if lo == 0 and np.any(v < 0):
        raise ParameterError(f"params[{name!r}] must be >= 0, got {v}")


@functools.partial(jax.jit, static_argnames=("model", "shape", "psf_shape", "oversample", "sampling", "constants"))
def _render_vector(model, shape, psf_shape, oversample, sampling, x, fixed, psf, zeropoint, constants=()):
    psf_fft = None if psf is None else stamp_psf_transform(psf, shape, oversample)
    return _render_one(model, model.layout.expand(x, fixed, dict(constants)), shape, psf_fft, psf_shape, oversample,
                       zeropoint, sampling)


class Renderer(eqx.Module):
    """A renderer of ONE galaxy's free-parameter vector, compiled once for a fixed model, stamp
    shape and PSF shape: the forward model for samplers, custom likelihoods and pipelines.

    ``Renderer(model, shape, psf_shape=(h, w))(x, psf=psf, zeropoint=zp)`` returns the (H, W)
    image of ``x`` (P,) (physical units, order :attr:`names` = ``model.free_names``) or of a
    mapping of the free parameters.  Fixed parameters take the model's values, or ``fixed``
    (for parameters fixed at their initial value), or their defaults; ties are followed.  It is
    pure JAX: ``jax.jit``, ``jax.vmap`` (over ``x``, and over ``psf`` or ``zeropoint`` too) and
    ``jax.grad`` (in ``x``, the PSF and the zero point) all work, and every call with the same
    shapes runs the same compiled program.  A parameter outside its domain gives an image of
    NaN (:func:`render` explains).

    Args:
        model: a :class:`Model`, profile name or spec string.
        shape: ``(H, W)`` of the stamp, pixels.
        psf_shape: ``(h, w)`` of the PSF the calls will pass (odd sides; fine pixels when
            ``oversample > 1``), or None for no PSF.
        oversample: integer factor by which the PSF is finer than the image pixels.
        sampling: pixel-integration settings.
        fixed: ``{name: value}`` for parameters fixed at their initial value.
    """

    model: Model = eqx.field(static=True)
    shape: tuple = eqx.field(static=True)
    psf_shape: tuple | None = eqx.field(static=True)
    oversample: int = eqx.field(static=True)
    sampling: Sampling = eqx.field(static=True)
    fixed: jax.Array
    #: ``((name, value), ...)``: the fixed parameters whose value is the model's own (its fixed
    #: values, or the defaults of those not given in ``fixed``), rendered as constants of the
    #: compiled program (as ``fit`` does: XLA then simplifies what they make trivial, c0 = 0);
    #: values given in ``fixed`` stay inputs, so renderers that differ only in them share one
    #: program.  A call given its own ``fixed`` vector uses that vector for every fixed parameter.
    constants: tuple = eqx.field(static=True)

    def __init__(self, model, shape, *, psf_shape=None, oversample: int = 1, sampling: Sampling | None = None,
                 fixed: Mapping | None = None):
        self.model = as_model(model)
        self.model.refuse_band_modes("Renderer")
        try:
            self.shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ShapeError(f"shape must be (H, W), got {shape!r}") from None
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ShapeError(f"shape must be (H, W) with positive sides, got {shape!r}")
        self.psf_shape = None if psf_shape is None else tuple(int(s) for s in psf_shape)
        if self.psf_shape is not None and (len(self.psf_shape) != 2 or min(self.psf_shape) < 1
                                           or self.psf_shape[0] % 2 == 0 or self.psf_shape[1] % 2 == 0):
            raise PSFError(f"psf_shape must be (h, w) with odd sides, got {psf_shape!r}")
        if self.psf_shape is None and self.model.has_psf_components:
            raise PSFError("psf_shape: the model has a point-source component, which needs a PSF")
        self.oversample = check_oversample(oversample)
        self.sampling = Sampling() if sampling is None else sampling
        given = {self.model.resolve(k, "fixed"): v for k, v in (fixed or {}).items()}
        self.fixed = self.model.layout.fixed_vector(given)
        self.constants = self.model.layout.own_constants(given)

    @property
    def names(self) -> tuple:
        """The order of the parameter vector: the model's free parameters."""
        return self.model.layout.free

    def __call__(self, params, *, psf=None, zeropoint=None, fixed=None):
        """Image (H, W) of ``params``: a vector (P,) in :attr:`names` order, or a mapping of
        the free parameters (full or bare names).  ``fixed``: values of the fixed parameters
        for this call (a (F,) vector in ``model.layout.fixed`` order), else the renderer's."""
        lay = self.model.layout
        if isinstance(params, Mapping):
            given = {self.model.resolve(k, "params"): v for k, v in params.items()}
            missing = [n for n in lay.free if n not in given]
            if missing:
                raise ParameterError(f"params: missing values for {', '.join(missing)}")
            params = lay.free_vector(given)
        x = jnp.asarray(params, dtype=jnp.result_type(float))
        if x.shape != (lay.n_free,):
            raise ShapeError(f"params: a vector of the {lay.n_free} free parameters {lay.free} is expected, "
                             f"got shape {x.shape} (jax.vmap the renderer for a batch)")
        if (psf is None) != (self.psf_shape is None):
            raise PSFError("psf: this renderer was built " + ("without a PSF" if self.psf_shape is None else
                                                             f"for a {self.psf_shape} PSF; pass psf="))
        if psf is not None:
            psf = as_psf(psf, oversample=self.oversample)
            if tuple(psf.shape) != self.psf_shape:
                raise PSFError(f"psf: shape {tuple(psf.shape)} differs from the renderer's psf_shape {self.psf_shape}")
        if zeropoint is None:
            self.model.require_zeropoint()
            zeropoint = 0.0
        zp = jnp.asarray(zeropoint, dtype=x.dtype)
        constants = self.constants if fixed is None else ()
        fixed = self.fixed if fixed is None else jnp.asarray(fixed)
        if fixed.shape != self.fixed.shape:
            raise ShapeError(f"fixed: a vector of the {len(lay.fixed)} fixed parameters {lay.fixed} is expected, "
                             f"got shape {fixed.shape}")
        return _render_vector(self.model, self.shape, self.psf_shape, self.oversample, self.sampling, x,
                              fixed.astype(x.dtype), psf, zp, constants=constants)
