"""PSF checks and FFT convolution on the padded stamp (DESIGN.md A, "PSF").

The model is rendered on the stamp grown by the PSF half-width on every side, convolved by
FFT, then cropped: light from just outside the stamp is scattered in, and because the crop
drops every pixel within a half-width of the padded edge, the circular FFT convolution has no
wrap-around in what is kept (a true linear convolution).
"""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import PSFError


def check_oversample(oversample) -> int:
    """The PSF fine-sampling factor, which must be a positive integer."""
    if isinstance(oversample, bool) or not isinstance(oversample, (int, np.integer)) or oversample < 1:
        raise PSFError(f"oversample must be a positive integer, got {oversample!r}")
    return int(oversample)


def check_psf(psf, *, name: str = "psf", oversample: int = 1) -> np.ndarray:
    """Validate a PSF image (2-D, or a (G, h, w) cube) and return it normalised to sum 1.

    The PSF must have odd sides (its centre is the middle pixel), finite values and a positive
    sum.  A PSF whose sum differs from 1 is normalised with a warning.  ``oversample`` is the
    integer factor by which the PSF is finer than the image pixels (GALFIT's fine sampling).
    """
    check_oversample(oversample)
    try:
        a = np.asarray(psf, dtype=float)
    except (TypeError, ValueError):
        raise PSFError(f"{name} must be a numeric array") from None
    if a.ndim not in (2, 3):
        raise PSFError(f"{name} must be a 2-D image or a (G, h, w) cube, got shape {a.shape}")
    h, w = a.shape[-2:]
    if h % 2 == 0 or w % 2 == 0:
        raise PSFError(f"{name} must have odd sides so that its centre is a pixel, got {h}x{w}")
    if not np.all(np.isfinite(a)):
        raise PSFError(f"{name} contains NaN or infinite values")
    s = a.sum(axis=(-2, -1), keepdims=True)
    if np.any(s <= 0):
        raise PSFError(f"{name} must have a positive sum (it is all zero or negative-summed)")
    if np.any(np.abs(s - 1.0) > 1e-6):
        warnings.warn(f"{name} does not sum to 1 (sum {float(np.ravel(s)[0]):.6g}); it has been normalised",
                      stacklevel=3)
        a = a / s
    return a


def as_psf(psf, *, name: str = "psf", oversample: int = 1):
    """A PSF ready for the renderer, concrete or traced.

    A concrete PSF (NumPy, or a JAX array outside a trace) is checked by :func:`check_psf`
    (odd sides, finite, positive sum; normalised with a warning).  A traced PSF (a PSF that is
    itself computed in a jitted or differentiated function, e.g. a Moffat of a free width) can
    only have its *shape* checked; it is normalised to sum 1 in the trace (differentiably), and
    a non-finite or non-positive PSF gives a non-finite model (a NONFINITE status in a fit), not
    an error.
    """
    if not isinstance(psf, jax.core.Tracer):
        return jnp.asarray(check_psf(psf, name=name, oversample=oversample), dtype=jnp.result_type(float))
    check_oversample(oversample)
    if psf.ndim not in (2, 3):
        raise PSFError(f"{name} must be a 2-D image or a (G, h, w) cube, got shape {psf.shape}")
    h, w = psf.shape[-2:]
    if h % 2 == 0 or w % 2 == 0:
        raise PSFError(f"{name} must have odd sides so that its centre is a pixel, got {h}x{w}")
    psf = psf.astype(jnp.result_type(psf.dtype, float))
    return psf / jnp.sum(psf, axis=(-2, -1), keepdims=True)


def psf_padding(psf_shape, oversample: int = 1) -> tuple[int, int]:
    """Padding (image pixels, per side, y then x) needed for a PSF of ``psf_shape`` (fine pixels)."""
    h, w = psf_shape[-2:]
    return math.ceil((h // 2) / oversample), math.ceil((w // 2) / oversample)


def psf_transform(psf, fft_shape):
    """rfft2 of the PSF placed with its centre pixel at index (0, 0) of an ``fft_shape`` grid."""
    psf = jnp.asarray(psf)
    h, w = psf.shape[-2:]
    ny, nx = fft_shape
    k = jnp.zeros(psf.shape[:-2] + (ny, nx), psf.dtype)
    k = k.at[..., :h, :w].set(psf)
    k = jnp.roll(k, (-(h // 2), -(w // 2)), axis=(-2, -1))
    return jnp.fft.rfft2(k)


def padded_shape(shape, psf_shape, oversample: int = 1) -> tuple[int, int]:
    """Shape of the render grid: the stamp grown by the PSF half-width, times ``oversample``."""
    py, px = psf_padding(psf_shape, oversample)
    return oversample * (shape[0] + 2 * py), oversample * (shape[1] + 2 * px)


def stamp_psf_transform(psf, shape, oversample: int = 1):
    """rfft2 of ``psf`` ((h, w) or (G, h, w)) on the padded render grid of a ``shape`` stamp."""
    return psf_transform(psf, padded_shape(shape, jnp.shape(psf), oversample))
