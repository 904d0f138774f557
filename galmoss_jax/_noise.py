"""The noise model and the pixel masks: one owner for sigma from the gain, for bad-pixel
mask conversions and for the rule that decides which pixels a fit uses (DESIGN.md A, "Noise
and masks").

Units: data, sigma and sky in image units (e.g. ADU), ``gain`` in electrons per image unit,
``read_noise`` in electrons.  Masks are boolean with **True = pixel used**; GALFIT/Imfit-style
bad-pixel masks (non-zero = bad) and segmentation maps are converted at I/O by
:func:`mask_from_bad_pixels`.

Every function takes NumPy or JAX arrays and answers in the same kind (NumPy in, NumPy out), so
the host layer keeps NumPy while the engine traces the same code.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["sigma_from_data", "mask_from_bad_pixels", "usable_pixels"]


def _xp(*arrays):
    """jax.numpy if any argument is a JAX array (or tracer), else NumPy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def sigma_from_data(data, gain, read_noise=0.0, sky=0.0):
    """The GALFIT/Imfit sigma map from the data: sqrt((data + sky) / gain + read_noise^2 / gain^2)
    (image units); negative variances are clipped to 0 (those pixels are then not used).

    ``gain`` (e-/image unit), ``read_noise`` (e-) and ``sky`` (image units, the level already
    subtracted) are scalars or broadcast against ``data`` (e.g. ``(G, 1, 1)`` for a batch).
    GALFIT's NCOMBINE and EXPTIME enter as ``gain * ncombine * exptime`` and
    ``read_noise * sqrt(ncombine)``.
    """
    xp = _xp(data, gain, read_noise, sky)
    var = (data + sky) / gain + (read_noise / gain) ** 2
    with np.errstate(invalid="ignore"):
        return xp.sqrt(xp.maximum(var, 0.0))


def mask_from_bad_pixels(values, keep_labels=(0,)):
    """A GALFIT/Imfit bad-pixel mask (non-zero = bad) or a segmentation map as a boolean mask,
    True = pixel used.  ``keep_labels``: values that mark usable pixels (0 = sky; add the
    target's label for a segmentation map)."""
    xp = _xp(values)
    return xp.isin(values, xp.asarray(keep_labels, dtype=values.dtype if hasattr(values, "dtype") else float))


def usable_pixels(data, sigma, mask, *, uses_sigma: bool = True):
    """The pixels a fit uses, and the data and sigma made safe elsewhere.

    A pixel is used when ``mask`` is True, the data are finite and (when the statistic uses
    sigma, ``uses_sigma``) sigma is finite and positive.  Returns ``(data, sigma, mask,
    bad_data, bad_sigma)``: data set to 0 and sigma to 1 on every pixel that is not used (so
    that nothing non-finite enters a sum or a gradient), the mask of used pixels, and the
    masks of pixels dropped for non-finite data and for bad sigma (for the caller's warnings).
    """
    xp = _xp(data, sigma, mask)
    finite = xp.isfinite(data)
    bad_data = ~finite & mask
    good_sigma = xp.isfinite(sigma) & (sigma > 0)
    bad_sigma = (mask & finite & ~good_sigma) if uses_sigma else xp.zeros_like(mask)
    used = mask & ~bad_data & ~bad_sigma
    data = xp.where(finite, data, 0.0)
    sigma = xp.where(good_sigma, sigma, 1.0)
    return data, sigma, used, bad_data, bad_sigma
