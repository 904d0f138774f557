"""Components that are not centred galaxy profiles: sky levels and point sources."""
from __future__ import annotations

import jax.numpy as jnp

from ..geometry import flux_from_mag
from ._spec import MAG, Param, ProfileSpec, centre_params, register_profile


def sky_brightness(p, dx, dy, zeropoint):
    """Flat sky: a constant ``sky`` (image units per pixel), not convolved with the PSF."""
    return jnp.broadcast_to(p["sky"], jnp.broadcast_shapes(jnp.shape(dx), jnp.shape(dy)))


SKY = register_profile(ProfileSpec(
    name="sky",
    params=(Param("sky", 0.0, unit="image units / pixel", doc="sky level"),),
    brightness=sky_brightness,
    kind="sky",
    doc=sky_brightness.__doc__,
))


def sky_plane_brightness(p, dx, dy, zeropoint):
    """Tilted sky plane: ``sky + dsky_dx * dx + dsky_dy * dy`` (image units per pixel).

    ``dx, dy`` are measured from the stamp centre ``((W - 1) / 2, (H - 1) / 2)``, so ``sky`` is
    the level at the centre of the fitting region (GALFIT's convention).  Not convolved.
    """
    return p["sky"] + p["dsky_dx"] * dx + p["dsky_dy"] * dy


SKY_PLANE = register_profile(ProfileSpec(
    name="sky_plane",
    params=(
        Param("sky", 0.0, unit="image units / pixel", doc="sky level at the stamp centre"),
        Param("dsky_dx", 0.0, unit="image units / pixel^2", doc="sky gradient along x"),
        Param("dsky_dy", 0.0, unit="image units / pixel^2", doc="sky gradient along y"),
    ),
    brightness=sky_plane_brightness,
    kind="sky",
    doc=sky_plane_brightness.__doc__,
))


def _point_brightness(p, dx, dy, zeropoint):  # pragma: no cover - rendered through the PSF
    raise NotImplementedError("a point source is rendered as the PSF itself")


POINT = register_profile(ProfileSpec(
    name="point",
    params=centre_params() + (MAG,),
    brightness=_point_brightness,
    total_flux=lambda p, zeropoint: flux_from_mag(p["mag"], zeropoint),
    kind="point",
    doc="Point source (GALFIT ``psf``): the PSF image centred at (x0, y0), scaled to total "
        "flux 10^(-0.4 (mag - zp)); the sub-pixel shift is a Fourier phase shift.  Needs a PSF.",
))
