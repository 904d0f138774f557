"""GALFIT's departures from a perfect ellipse, for any elliptical profile: azimuthal Fourier
modes of the radial coordinate and the coordinate rotation that makes spiral arms, with the
inclination of the spiral's disk to the line of sight (Peng et al. 2010, AJ 139, 2097, secs.
3.1 and 3.3; GALFIT's feedme lines ``F1``-``F10`` and ``R0``-``R4``, ``R9``, ``R10``).

A shaped profile is named ``"<profile>[<modes>]"``, e.g. ``"sersic[f1,f3]"`` (lopsided and
three-fold isophotes) or ``"sersic[f1,f3,rot]"`` (a two-armed spiral from one Sérsic, as
SpArcFiRe's GALFIT fits build them).  :func:`shaped_profile` builds its
:class:`~galmoss_jax.profiles.ProfileSpec` from the base profile's: the same parameters, then

* ``f{m}`` (dimensionless amplitude a_m, fitted in (-0.95, 0.95)) and ``f{m}_pa`` (phase
  phi_m in degrees, periodic with 360/m) for each Fourier mode m = 1...10;
* for ``rot``: ``rot_r_in`` and ``rot_r_out`` (pixels; GALFIT's R1 "bar radius" and R2, the
  radius where the hyperbolic tangent reaches 96 %), ``rot_theta`` (degrees, R3: the rotation
  out to ``rot_r_out``), ``rot_alpha`` (R4, the asymptotic power law; 0 = pure hyperbolic
  tangent), ``incl`` (degrees, R9, inclination of the spiral's disk to the line of sight) and
  ``sky_pa`` (degrees, R10).  ``incl`` and ``sky_pa`` are held fixed at 0 unless freed: at
  ``incl = 0`` the sky angle only adds to ``pa``.

Each departure is a change of the coordinates at which the base profile is evaluated, written
once for one galaxy (so every elliptical profile takes it, vmapped and differentiable):

1. Rotation (``rot``).  The offsets ``d`` from the centre are stretched by ``1/cos(incl)``
   along the direction of position angle ``sky_pa`` (the disk seen face-on), ``r_f = |d_f|``,
   and the isophote's position angle becomes ``pa + sky_pa + theta(r_f)`` with GALFIT's

       theta(r) = theta_out * (tanh(B (r/r_out - 1) + 2) + 1) / 2 * ((r/r_out + 1) / 2)^alpha,
       B = (2 - atanh(A)) r_out / (r_out - r_in),   A = 2 CDEF / (|theta_out| + CDEF) - 1.00001,

   ``CDEF = 0.23`` (theta in radians).  ``theta(r_out)`` is 98 % of ``theta_out`` (alpha = 0).
2. Fourier modes.  In the frame of the (rotated) ellipse, with ``x'`` along the major axis
   and ``y'`` along the minor axis as :func:`galmoss_jax.geometry.rotate` gives them, the
   radius becomes ``r = r_0 (1 + sum_m a_m cos(m (theta + phi_m)))`` with ``theta = pi -
   atan2(y'/q, x')``: the azimuth in the circularised ellipse, measured as GALFIT measures it.

The light is renormalised so that the component's total flux is the unperturbed profile's
(a Sérsic's ``mag`` stays its total magnitude, as in GALFIT): the Fourier modes change the area
inside an isophote by ``A = <1/((h g)^2)> / <1/h^2>`` over the azimuth (``g`` the Fourier
factor, ``h`` the boxiness factor of ``c0``), the rotation keeps areas, and the face-on disk
seen at ``incl`` covers ``cos(incl)`` of its area, so the brightness is divided by
``A cos(incl)``.

Reporting (DESIGN.md A): a fit at ``q > 1`` is reported at ``1/q`` and ``pa + 90``, which
turns the azimuth of the circularised ellipse by 90 degrees, so every Fourier phase is reported
``- 90``; ``pa`` (and ``sky_pa``) wrapped by 180 degrees turn the odd modes' phases by 180
degrees; a negative amplitude is reported positive with the phase turned by ``180/m`` (the
same mode).  The reported values describe the same image; a phase held fixed is reported in
that frame too.

These conventions were pinned on GALFIT's own renderings: its model images of SDSS spirals fitted
by SpArcFiRe with these modes (inclinations 0 to 72 degrees) are reproduced to 1e-3 to 5e-3 of
the peak (five of them in ``tests/test_shape_modes.py``).  GALFIT's bending modes (``B1``...),
truncations (``To``, ``Ti``, ``T0``...) and logarithmic spiral (``R0) log``) are not built:
reading a feedme that uses them is refused.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re

import jax.numpy as jnp

from .._errors import ProfileError
from ..geometry import rotate
from ._spec import Param, ProfileSpec

CDEF = 0.23                 # GALFIT's minimum rotation scale (radians) in the tanh's shape
MAX_MODE = 10               # Fourier modes m = 1 ... 10, as GALFIT's F1-F10
_AZIMUTH_NODES = 512        # azimuths of the area normalisation (periodic: the rule converges fast)
_MIN_FACTOR = 0.05          # floor of the Fourier factor 1 + sum a_m cos(...): the radius stays positive

ROTATION_PARAMS = (
    Param("rot_r_in", 0.0, -500.0, 500.0, unit="pixel",
          doc="inner radius of the rotation (GALFIT R1, 'bar radius'), along the face-on disk"),
    Param("rot_r_out", 10.0, 0.1, 1000.0, unit="pixel",
          doc="radius where the tanh rotation reaches 96 % of its asymptote (GALFIT R2)"),
    Param("rot_theta", 0.0, -3600.0, 3600.0, unit="deg",
          doc="cumulative rotation out to rot_r_out (GALFIT R3), counter-clockwise > 0"),
    Param("rot_alpha", 0.0, -10.0, 10.0, unit="",
          doc="asymptotic power law of the rotation beyond rot_r_out (GALFIT R4; 0 = tanh only)"),
    Param("incl", 0.0, -89.0, 89.0, unit="deg",
          doc="inclination of the spiral's disk to the line of sight (GALFIT R9; 0 = face-on)", fixed=True),
    Param("sky_pa", 0.0, unit="deg", doc="position angle of the disk's inclination axis on the sky (GALFIT R10)",
          fixed=True, periodic=180.0),
)
_ROTATION_NAMES = tuple(p.name for p in ROTATION_PARAMS)


def fourier_params(m: int) -> tuple[Param, Param]:
    """The amplitude ``f{m}`` and phase ``f{m}_pa`` of Fourier mode ``m``."""
    return (Param(f"f{m}", 0.0, -0.95, 0.95, unit="", doc=f"amplitude of azimuthal Fourier mode {m} (GALFIT F{m})"),
            Param(f"f{m}_pa", 0.0, unit="deg", doc=f"phase of Fourier mode {m}, degrees (GALFIT F{m} phase angle)",
                  periodic=360.0 / m))


@dataclasses.dataclass(frozen=True)
class Shape:
    """Which departures a shaped profile has: Fourier modes ``fourier`` (sorted m) and the
    coordinate rotation ``rotation``."""

    fourier: tuple[int, ...] = ()
    rotation: bool = False

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(f"f{m}" for m in self.fourier) + (("rot",) if self.rotation else ())

    @classmethod
    def parse(cls, text: str, base: str) -> "Shape":
        modes, rot = set(), False
        for tok in (t.strip().lower() for t in text.split(",")):
            mm = re.fullmatch(r"f(\d+)", tok)
            if mm and 1 <= int(mm.group(1)) <= MAX_MODE:
                if int(mm.group(1)) in modes:
                    raise ProfileError(f"profile {base}[{text}]: Fourier mode {tok} is given twice")
                modes.add(int(mm.group(1)))
            elif tok == "rot":
                rot = True
            else:
                hint = (" (GALFIT's bending modes are not available)" if re.fullmatch(r"b\d+", tok) else
                        " (GALFIT's truncations are not available)" if tok.startswith("t") else "")
                raise ProfileError(f"profile {base}[{text}]: unknown shape mode {tok!r}{hint}; the modes are "
                                   f"f1 ... f{MAX_MODE} (azimuthal Fourier modes) and rot (spiral rotation)")
        if not modes and not rot:
            raise ProfileError(f"profile {base}[{text}]: no shape mode given")
        return cls(tuple(sorted(modes)), rot)


def is_elliptical(spec: ProfileSpec) -> bool:
    """Whether ``spec`` is a centred profile of the generalised ellipse radius (it has q, pa, c0)."""
    return spec.kind == "surface" and {"x0", "y0", "q", "pa", "c0"} <= set(spec.param_names)


def rotation_angle(r, r_in, r_out, theta_out, alpha):
    """GALFIT's coordinate rotation (degrees) at face-on radius ``r`` (pixels); see the module
    docstring.  ``theta_out`` in degrees."""
    th = jnp.deg2rad(theta_out)
    a = 2.0 * CDEF / (jnp.abs(th) + CDEF) - 1.00001
    b = (2.0 - jnp.arctanh(a)) * r_out / (r_out - r_in)
    tanh_part = 0.5 * (jnp.tanh(b * (r / r_out - 1.0) + 2.0) + 1.0)
    return theta_out * tanh_part * (0.5 * (r / r_out + 1.0)) ** alpha


def _turn(dx, dy, angle):
    """Offsets whose position angles are those of ``(dx, dy)`` minus ``angle`` (degrees): a
    profile of position angle ``pa`` evaluated at them is the profile of ``pa + angle``."""
    t = jnp.deg2rad(angle)
    c, s = jnp.cos(t), jnp.sin(t)
    return dx * c + dy * s, -dx * s + dy * c


def _safe_hypot(x, y):
    zero = (x == 0) & (y == 0)
    r = jnp.sqrt(jnp.where(zero, 1.0, x * x + y * y))
    return jnp.where(zero, 0.0, r)


def _safe_atan2(y, x):
    zero = (x == 0) & (y == 0)
    return jnp.where(zero, 0.0, jnp.arctan2(jnp.where(zero, 1.0, y), jnp.where(zero, 1.0, x)))


def _fourier_factor(theta, p, modes):
    g = 1.0
    for m in modes:
        g = g + p[f"f{m}"] * jnp.cos(m * (theta + jnp.deg2rad(p[f"f{m}_pa"])))
    return jnp.maximum(g, _MIN_FACTOR)


def fourier_area(p, modes):
    """``A``: the area inside an isophote with the Fourier modes over that without (see the
    module docstring), by the trapezoidal rule over the azimuth (periodic, so it converges
    geometrically for smooth factors)."""
    c0 = p.get("c0", 0.0)
    # nodes between the axes, so |cos|^p and |sin|^p are never evaluated at 0 (their c0-derivative)
    t = (jnp.arange(_AZIMUTH_NODES, dtype=jnp.result_type(float)) + 0.5) * (2.0 * math.pi / _AZIMUTH_NODES)
    pw = c0 + 2.0
    h2 = (jnp.abs(jnp.cos(t)) ** pw + jnp.abs(jnp.sin(t)) ** pw) ** (2.0 / pw)
    g = _fourier_factor(math.pi - t, p, modes)
    return jnp.mean(1.0 / (h2 * g ** 2)) / jnp.mean(1.0 / h2)


def shape_coordinates(p, dx, dy, shape: Shape):
    """The offsets at which the base profile is evaluated, and the factor on its brightness
    (1 / (A cos incl)), for one galaxy's parameters ``p`` (see the module docstring)."""
    scale = 1.0
    if shape.rotation:
        t = jnp.deg2rad(p["sky_pa"])
        ex, ey = -jnp.sin(t), jnp.cos(t)          # unit vector of position angle sky_pa
        sec = 1.0 / jnp.cos(jnp.deg2rad(p["incl"]))
        along = (dx * ex + dy * ey) * (sec - 1.0)
        dx, dy = dx + along * ex, dy + along * ey
        r_f = _safe_hypot(dx, dy)
        ang = p["sky_pa"] + rotation_angle(r_f, p["rot_r_in"], p["rot_r_out"], p["rot_theta"], p["rot_alpha"])
        dx, dy = _turn(dx, dy, ang)
        scale = sec
    if shape.fourier:
        xm, ym = rotate(dx, dy, p["pa"])
        theta = math.pi - _safe_atan2(ym / p["q"], xm)
        g = _fourier_factor(theta, p, shape.fourier)
        dx, dy = dx * g, dy * g
        scale = scale / fourier_area(p, shape.fourier)
    return dx, dy, scale


@functools.lru_cache(maxsize=None)
def shaped_profile(base: ProfileSpec, shape: Shape) -> ProfileSpec:
    """The :class:`ProfileSpec` of ``base`` with the departures ``shape`` (one object per pair,
    so models naming it compare equal and compile once)."""
    if not is_elliptical(base):
        raise ProfileError(f"profile {base.name!r} is not elliptical (it needs x0, y0, q, pa and c0), so it takes no "
                           f"shape modes [{','.join(shape.tokens)}]")
    if base.shape is not None:
        raise ProfileError(f"profile {base.name!r} already has shape modes")
    extra = tuple(q for m in shape.fourier for q in fourier_params(m)) + (ROTATION_PARAMS if shape.rotation else ())
    clash = set(base.param_names) & {q.name for q in extra}
    if clash:
        raise ProfileError(f"profile {base.name!r} has parameters {sorted(clash)} that the shape modes also use")

    def brightness(p, dx, dy, zeropoint):
        sx, sy, scale = shape_coordinates(p, dx, dy, shape)
        return scale * base.brightness(p, sx, sy, zeropoint)

    desc = ", ".join(([f"Fourier modes m = {', '.join(map(str, shape.fourier))}"] if shape.fourier else [])
                     + (["spiral coordinate rotation"] if shape.rotation else []))
    return ProfileSpec(
        name=f"{base.name}[{','.join(shape.tokens)}]",
        params=base.params + extra,
        brightness=brightness,
        total_flux=base.total_flux,
        kind=base.kind,
        grading=base.grading,
        doc=f"{base.name} with {desc} (galmoss_jax.profiles._shape; the total flux is the unperturbed "
            f"profile's).\n\n{base.doc}",
        base=base,
        shape=shape,
        magnitude=base.magnitude,   # the modes only move and scale the coordinates
    )


def ellipse_radii(spec: ProfileSpec) -> tuple[str, ...]:
    """Names of ``spec``'s radii along the ellipse's major axis (pixels): those that a fold of a
    ``q > 1`` fit multiplies by ``q`` (DESIGN.md A).  The rotation's radii are measured on the
    face-on disk, not along the ellipse, and are not among them."""
    return tuple(p.name for p in spec.params
                 if p.unit == "pixel" and p.name not in ("x0", "y0") and p.name not in _ROTATION_NAMES)


def fourier_modes(spec: ProfileSpec) -> tuple[tuple[int, str, str, float], ...]:
    """``(m, amplitude, phase, period of the phase)`` of each Fourier mode of ``spec`` (parameter
    names within the component)."""
    if spec.shape is None:
        return ()
    return tuple((m, f"f{m}", f"f{m}_pa", 360.0 / m) for m in spec.shape.fourier)


def fold_phases(spec: ProfileSpec) -> tuple[tuple[str, str, float, tuple[str, ...]], ...]:
    """``(amplitude, phase, period, angles that turn it)`` of each Fourier mode of ``spec``, as
    :func:`galmoss_jax._conventions.fold_ellipse` takes them.  Reporting (DESIGN.md A): a fold
    of a ``q > 1`` fit (``pa + 90``, ``q -> 1/q``) turns the azimuth of the circularised ellipse
    by 90 degrees, so each phase becomes ``phase - 90``; ``pa`` and ``sky_pa`` wrapped by 180
    degrees turn the azimuth by 180 degrees, which the phase follows; a negative amplitude is
    reported as ``-a`` at ``phase + 180/m`` (the same mode); phases are wrapped to their period."""
    refs = ("pa",) + tuple(n for n, _ in other_angles(spec))
    return tuple((a, ph, period, refs) for _, a, ph, period in fourier_modes(spec))


def other_angles(spec: ProfileSpec) -> tuple[tuple[str, float], ...]:
    """``(name, period)`` of periodic parameters a fold leaves alone but reports wrapped
    (``sky_pa``)."""
    if spec.shape is None or not spec.shape.rotation:
        return ()
    return (("sky_pa", 180.0),)
