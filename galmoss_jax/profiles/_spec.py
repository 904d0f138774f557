"""Declarative profile specifications and the profile registry."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable

from .._errors import ProfileError


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a profile.

    Attributes:
        name: short name (``x0``, ``mag``, ``r_e``, ...).
        default: a sensible starting value, in ``unit``.
        lower, upper: default bounds used when fitting (``-inf``/``inf`` for none).
        unit: physical unit, e.g. ``"pixel"``, ``"mag"``, ``"deg"``.
        doc: one-line description.
        fixed: True if the parameter is held fixed unless the user frees it (e.g. ``c0``).
        periodic: period of an angle (180 for ``pa``), or None.  Periodic parameters are
            fitted without bounds and reported wrapped to (-period/2, period/2].
    """

    name: str
    default: float
    lower: float = -math.inf
    upper: float = math.inf
    unit: str = ""
    doc: str = ""
    fixed: bool = False
    periodic: float | None = None


@dataclasses.dataclass(frozen=True)
class ProfileSpec:
    """A profile: parameter list, pure single-galaxy brightness function and metadata.

    Attributes:
        name: registry name (``"sersic"``).
        params: the parameters, in order.
        brightness: ``brightness(p, dx, dy, zeropoint) -> surface brightness`` in image
            units per pixel^2, for ONE galaxy.  ``p`` maps parameter names to scalars; ``dx, dy``
            are offsets in pixels from the profile centre ``(x0, y0)`` (absolute pixel
            coordinates for profiles with ``kind="sky"``).
        total_flux: ``total_flux(p, zeropoint) -> F``, the flux integrated to infinity (image
            units), used by tests and by magnitude reporting; None where it is infinite.
        kind: ``"surface"`` (a centred profile integrated over pixels and PSF-convolved),
            ``"point"`` (the PSF itself at ``(x0, y0)`` with a magnitude) or ``"sky"`` (added
            after convolution, evaluated at pixel centres; it must be at most linear in x, y).
        grading: ``grading(p) -> k >= 1``: radial grading exponent for the sub-pixel quadrature
            near the centre (``n`` for a Sérsic; 1 for smooth cores).
        doc: formula and references.
        magnitude: the parameter ``m`` (a magnitude or a surface brightness in mag / pixel^2)
            such that the brightness is ``10**(-0.4 * (m - zeropoint))`` times a function of the
            other parameters, or None.  Renders then write the derivative in ``m`` and in the
            zero point as that factor times the light (``galmoss_jax.model._surface_light_split``)
            instead of carrying their tangents through the pixel integration.
        base, shape: for a profile with GALFIT's shape modes (``"sersic[f1,f3,rot]"``,
            :mod:`galmoss_jax.profiles._shape`), the profile it modifies and its
            :class:`~galmoss_jax.profiles._shape.Shape`; None otherwise.
    """

    name: str
    params: tuple[Param, ...]
    brightness: Callable
    total_flux: Callable | None = None
    kind: str = "surface"
    grading: Callable | None = None
    doc: str = ""
    base: "ProfileSpec | None" = None
    shape: object = None
    magnitude: str | None = None

    def __post_init__(self):
        if self.kind not in ("surface", "point", "sky"):
            raise ProfileError(f"ProfileSpec {self.name!r}: kind must be 'surface', 'point' or 'sky', got {self.kind!r}")
        names = [p.name for p in self.params]
        if self.magnitude is not None and self.magnitude not in names:
            raise ProfileError(f"ProfileSpec {self.name!r}: magnitude {self.magnitude!r} is not one of its parameters")
        if len(set(names)) != len(names):
            raise ProfileError(f"ProfileSpec {self.name!r}: duplicate parameter names {names}")
        if self.kind in ("surface", "point") and not {"x0", "y0"} <= set(names):
            raise ProfileError(f"ProfileSpec {self.name!r}: a {self.kind} profile needs parameters 'x0' and 'y0'")
        for p in self.params:
            if not p.lower < p.upper:
                raise ProfileError(f"ProfileSpec {self.name!r}: parameter {p.name!r} has lower >= upper")
            if not p.lower <= p.default <= p.upper:
                raise ProfileError(f"ProfileSpec {self.name!r}: default of {p.name!r} lies outside its bounds")

    @property
    def root(self) -> "ProfileSpec":
        """The profile without shape modes (``sersic`` for ``sersic[f1,rot]``)."""
        return self if self.base is None else self.base

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ProfileError(f"profile {self.name!r} has no parameter {name!r}; it has {self.param_names}")

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}


PROFILES: dict[str, ProfileSpec] = {}


def register_profile(spec: ProfileSpec, *, overwrite: bool = False) -> ProfileSpec:
    """Add a profile to the registry so models can name it.  Returns ``spec``.

    Users can register their own profiles without touching the library::

        register_profile(ProfileSpec("ring", params=(...), brightness=my_fn, total_flux=...))
    """
    if not isinstance(spec, ProfileSpec):
        raise ProfileError(f"register_profile: expected a ProfileSpec, got {type(spec).__name__}")
    if spec.name in PROFILES and not overwrite:
        raise ProfileError(f"register_profile: a profile named {spec.name!r} exists; pass overwrite=True to replace it")
    PROFILES[spec.name] = spec
    return spec


def get_profile(name_or_spec) -> ProfileSpec:
    """Look a profile up by name (or pass a ProfileSpec through).  ``"name[modes]"`` is the
    profile with GALFIT's shape modes (:mod:`galmoss_jax.profiles._shape`), e.g.
    ``"sersic[f1,f3,rot]"``."""
    if isinstance(name_or_spec, ProfileSpec):
        return name_or_spec
    if isinstance(name_or_spec, str) and "[" in name_or_spec:
        m = re.fullmatch(r"\s*([^\[\]\s]+)\s*\[([^\[\]]*)\]\s*", name_or_spec)
        if m is None:
            raise ProfileError(f"profile {name_or_spec!r}: expected 'name[mode,mode,...]', e.g. 'sersic[f1,f3,rot]'")
        from ._shape import Shape, shaped_profile
        base = get_profile(m.group(1))
        return shaped_profile(base, Shape.parse(m.group(2), base.name))
    try:
        return PROFILES[name_or_spec]
    except (KeyError, TypeError):
        raise ProfileError(f"unknown profile {name_or_spec!r}; known profiles: {', '.join(sorted(PROFILES))}") from None


# Parameters shared by many profiles ---------------------------------------------------------
def centre_params() -> tuple[Param, ...]:
    return (
        Param("x0", 0.0, unit="pixel", doc="centre x (column), 0-based"),
        Param("y0", 0.0, unit="pixel", doc="centre y (row), 0-based"),
    )


def shape_params(with_c0: bool = True) -> tuple[Param, ...]:
    ps = (
        Param("q", 0.8, 0.02, 50.0, unit="", doc="axis ratio b/a (fitted in (0.02, 50); results report q <= 1 with pa + 90 and radii times q)"),
        Param("pa", 0.0, unit="deg", doc="position angle of the major axis, CCW from +y", periodic=180.0),
    )
    if with_c0:
        ps += (Param("c0", 0.0, -1.9, 2.0, unit="", doc="GALFIT boxiness (0 ellipse, <0 disky, >0 boxy)", fixed=True),)
    return ps


MAG = Param("mag", 18.0, -10.0, 40.0, unit="mag", doc="total magnitude, zp - 2.5 log10(F)")
