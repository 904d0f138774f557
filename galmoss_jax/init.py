"""Automatic initial values from the image itself (used wherever the caller gives none).

For ONE galaxy (host side, NumPy):

* **sky**: sigma-clipped median of the two outermost rows and columns of the stamp
  (Astropy ``sigma_clipped_stats``);
* **centre**: flux-weighted centroid, iterated in a shrinking aperture around the bright part;
* **q, pa**: second moments of the sky-subtracted light inside ~2.5 half-light radii, minus
  the PSF's own second moments in the same aperture when a PSF is given (each eigenvalue
  floored at a tenth of the PSF's: a barely resolved source starts round);
* **mag, r_e**: curve of growth in elliptical apertures (semi-major axis radius, the moments'
  q and pa) out to three times the radius where the source fades into the noise (or the
  stamp edge): the half-light radius r50 and r90, with the PSF's r50 / r90 removed in
  quadrature, and the total flux corrected for the light of the fitted Sérsic that falls
  outside the largest aperture;
* **n**: the concentration r90 / r50 inverted through the analytic Sérsic curve of growth,
  ``L(<r) / L = P(2n, b_n (r / r_e)^(1/n))`` (``P`` the regularised lower incomplete gamma
  function), tabulated once for 0.2 <= n <= 10 (:func:`sersic_concentration`);
* **other bands of a multiband fit** (:func:`forced_moments`): each band's sky from its own
  edges and its flux in the deepest band's aperture, corrected with the deepest band's
  Sérsic curve of growth (forced photometry); centre, shape, sizes and n are the deepest
  band's;
* **bulge + disk** (two or more light components): the bulge fraction B/T from the
  concentration, interpolated between a pure exponential (r90/r50 = 2.32) and a pure
  de Vaucouleurs (5.55); the bulge compact (r_e = 0.4 r50, rounder), the disk scale length
  from r90 (r90 = 3.89 r_s for an exponential disk).

:func:`neighbour_mask` (optional, needs ``sep``, SExtractor's algorithms as a library) detects
and deblends the sources of a stamp and masks every one except the target.
"""
from __future__ import annotations

import concurrent.futures
import functools
import math

import numpy as np

from ._engine import cpu_cores
from ._errors import GalmossError
from .model import Model

# radius parameters of non-Sérsic profiles, in units of the half-light radius r50
_SIZE_FACTORS = {"r_e": 1.0, "r_s": 1.0 / 1.678, "fwhm": 1.3, "r_out": 2.0, "r_c": 0.5, "r_t": 4.0,
                 "h1": 1.0 / 1.678, "h2": 0.5 / 1.678, "r_b": 0.5, "h_s": 0.2}
_C_EXP, _C_DEV = 2.3176, 5.5495    # r90/r50 of an exponential disk (n = 1) and a de Vaucouleurs (n = 4)
_R90_EXP = 3.8890                    # r90 / r_s of an exponential disk (2.3176 x 1.678)


# ------------------------------------------------------------------------- Sérsic curve of growth
# The tables below are host-side NumPy work done once per process: SciPy's incomplete gamma
# function and its inverse, not JAX's (an eager JAX call compiles a program per shape, ~1 s
# of a fresh process's first fit, which every command-line run would pay).
def _gammainc(a, x):
    from scipy.special import gammainc
    return gammainc(np.asarray(a, float), np.asarray(x, float))


@functools.lru_cache(maxsize=1)
def _sersic_cog_table():
    """Table of n, b_n and r90/r50 of the analytic Sérsic curve of growth (computed once):
    P(2n, b_n) = 1/2 and P(2n, b_n (r90/r_e)^(1/n)) = 0.9, with P the regularised lower
    incomplete gamma function."""
    from scipy.special import gammaincinv

    n = np.exp(np.linspace(math.log(0.2), math.log(10.0), 200))
    b = gammaincinv(2 * n, 0.5)
    return n, b, (gammaincinv(2 * n, 0.9) / b) ** n


def sersic_concentration(n):
    """Concentration r90 / r50 of a Sérsic profile of index ``n`` (analytic curve of growth)."""
    nn, _, c = _sersic_cog_table()
    return np.interp(np.log(n), np.log(nn), c)


def sersic_n_from_concentration(c):
    """Sérsic index whose analytic r90 / r50 equals ``c`` (clipped to 0.2 <= n <= 10)."""
    nn, _, cc = _sersic_cog_table()
    return float(np.exp(np.interp(c, cc, np.log(nn))))


# log(r / r_e) grid of the tabulated curves of growth: r_e e^-10 to 200 r_e
_LOG_X = np.linspace(-10.0, math.log(200.0), 1201)


@functools.lru_cache(maxsize=1)
def _sersic_cog_grid():
    """P(2n, b_n x^(1/n)) on the n table x the ``_LOG_X`` grid, in one vectorised call.

    The guesses of every galaxy interpolate in it: the scalar bisections they replace made
    ~80 eager incomplete-gamma calls per galaxy (~20 ms each galaxy)."""
    nn, bb, _ = _sersic_cog_table()
    x = bb[:, None] * np.exp(_LOG_X[None, :] / nn[:, None])
    g = _gammainc(np.broadcast_to(2 * nn[:, None], x.shape), x)
    return np.maximum.accumulate(g, axis=1)   # monotone in x (rounding aside), for inversion


def _cog_curve(n):
    """Light fraction inside x r_e, on ``_LOG_X``, for Sérsic index ``n`` (linear in log n)."""
    nn, _, _ = _sersic_cog_table()
    grid = _sersic_cog_grid()
    ln, lnn = math.log(min(max(float(n), nn[0]), nn[-1])), np.log(nn)
    k = int(np.clip(np.searchsorted(lnn, ln) - 1, 0, len(nn) - 2))
    w = (ln - lnn[k]) / (lnn[k + 1] - lnn[k])
    return (1.0 - w) * grid[k] + w * grid[k + 1]


def sersic_light_fraction(n, x):
    """Fraction of a Sérsic profile's light inside ``x`` effective radii (same ellipse)."""
    if x <= 0:
        return 0.0
    return float(np.interp(math.log(x), _LOG_X, _cog_curve(n)))


# ------------------------------------------------------------------------------------- moments
def _edge_sky(data, mask, with_noise: bool = False):
    """Sigma-clipped median of the two outermost rows and columns (0 if none are used); with
    ``with_noise`` also their sigma-clipped standard deviation (the noise per pixel, 0 if
    unknown)."""
    from astropy.stats import sigma_clipped_stats

    border = np.zeros(data.shape, bool)
    k = max(1, min(2, min(data.shape) // 8))
    border[:k], border[-k:], border[:, :k], border[:, -k:] = True, True, True, True
    vals = data[border & mask]
    if vals.size < 3:
        return (0.0, 0.0) if with_noise else 0.0
    _, med, std = sigma_clipped_stats(vals, sigma=3.0, maxiters=5)
    return (float(med), float(std)) if with_noise else float(med)


def _signal_radius(r, img, mask, noise, r_max):
    """Semi-major radius out to which the source is detected: the first of two consecutive
    1-px elliptical annuli whose mean is below twice its noise (``noise`` per pixel), or
    ``r_max``.  A faint compact source's curve of growth is measured inside a few times this
    radius, not out to the stamp edge, where the noise of thousands of pixels (and the error of
    the sky level times their number) would swamp its light."""
    if noise <= 0:
        return r_max
    below = 0
    for a in np.arange(1.0, r_max, 1.0):
        ring = mask & (r >= a) & (r < a + 1.0)
        k = int(ring.sum())
        if k == 0:
            continue
        below = below + 1 if img[ring].mean() < 2.0 * noise / math.sqrt(k) else 0
        if below == 2:
            return float(a - 1.0)
    return r_max


def _second_moments(w, x, y, xc, yc):
    s = w.sum()
    return ((w * (x - xc) ** 2).sum() / s, (w * (y - yc) ** 2).sum() / s, (w * (x - xc) * (y - yc)).sum() / s)


def _psf_stats(psf):
    """r50 and r90 (px) of a PSF image, and a function giving its second moments inside a
    circle of a given radius (px, PSF pixels) about its centroid."""
    p = np.clip(np.asarray(psf, float), 0, None)
    p = p / p.sum()
    h, w = p.shape
    y, x = np.mgrid[0:h, 0:w].astype(float)
    xc, yc = (p * x).sum(), (p * y).sum()
    rr = np.hypot(x - xc, y - yc)
    o = np.argsort(rr.ravel())
    cum = np.cumsum(p.ravel()[o])
    r50 = float(np.interp(0.5, cum, rr.ravel()[o]))
    r90 = float(np.interp(0.9, cum, rr.ravel()[o]))

    def moments(radius):
        sel = p * (rr < radius)
        return _second_moments(sel if sel.sum() > 0 else p, x, y, xc, yc)

    return moments, r50, r90


def image_moments(data, mask, psf=None, oversample: int = 1):
    """Photometry of the main source of one stamp, for initial values.

    Args:
        data: (H, W) image, finite on used pixels, image units.
        mask: (H, W) bool, True where used.
        psf: optional PSF image; its second moments and radii are removed from the galaxy's.
        oversample: factor by which ``psf`` is finer than the image pixels.

    Returns:
        dict with ``x, y`` (centroid, px, 0-based), ``q``, ``pa`` (deg CCW from +y), ``flux``
        (total, image units, sky removed), ``r50``, ``r90`` (semi-major half- and 90 %-light
        radii, px, PSF removed), ``c`` (r90/r50), ``n`` (Sérsic index of that concentration),
        ``sky`` (image units per pixel), ``r_max`` (largest aperture, px).
    """
    data = np.asarray(data, float)
    mask = np.asarray(mask, bool)
    H, W = data.shape
    sky, noise = _edge_sky(data, mask, with_noise=True)
    img = np.where(mask, data - sky, 0.0)
    y, x = np.mgrid[0:H, 0:W].astype(float)
    w = np.clip(img, 0, None)
    if w.sum() <= 0:
        r = max(1.0, min(H, W) / 8)
        return dict(x=(W - 1) / 2, y=(H - 1) / 2, q=1.0, pa=0.0, flux=1.0, r50=r, r90=2.3 * r, c=2.3,
                    n=1.0, sky=sky, r_max=min(H, W) / 2)
    # centroid of the bright part, iterated in a shrinking aperture
    xc, yc = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    rad = min(H, W) / 2
    for _ in range(6):
        ww = w * (np.hypot(x - xc, y - yc) < rad)
        if ww.sum() <= 0:
            break
        xc, yc = (ww * x).sum() / ww.sum(), (ww * y).sum() / ww.sum()
        rad = max(3.0, rad * 0.7)
    psf_mom, psf_r50, psf_r90 = (None, 0.0, 0.0) if psf is None else _psf_stats(psf)
    if psf is not None:
        f = float(oversample)
        moments_fine = psf_mom
        psf_mom = lambda radius: tuple(m / f ** 2 for m in moments_fine(radius * f))   # noqa: E731
        psf_r50, psf_r90 = psf_r50 / f, psf_r90 / f
    # circular curve of growth for a first half-light radius
    rr = np.hypot(x - xc, y - yc)
    r50c = _cog_radius(rr, img, mask, 0.5)
    q, pa = 1.0, 0.0
    for _ in range(2):  # moments inside an ellipse of ~2.5 r50, then the curve of growth in it
        radius = max(3.0, 2.5 * r50c)
        if q == 1.0 and pa == 0.0:
            inside = rr < radius
        else:
            inside = _ell_radius(x - xc, y - yc, q, pa) < radius
        sel = w * inside
        if sel.sum() <= 0:
            break
        mxx, myy, mxy = _second_moments(sel, x, y, xc, yc)
        floor = 1e-12
        if psf_mom is not None:
            # deconvolve the second moments (exact for Gaussians), the PSF's measured in the same
            # aperture: a PSF's moments are dominated by its wings (a Moffat's diverge), which a
            # small galaxy aperture leaves out.  What the galaxy adds to the PSF below a tenth of
            # the PSF's size is not measurable: the eigenvalues are floored there, so that a
            # barely resolved source starts round, not at q -> 0 from noise or residual wings.
            pm = psf_mom(max(radius * math.sqrt(q), 1.0))
            mxx, myy, mxy = mxx - pm[0], myy - pm[1], mxy - pm[2]
            floor = max(0.1 * 0.5 * (pm[0] + pm[1]), floor)
        tr, det = mxx + myy, mxx * myy - mxy ** 2
        disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
        l1, l2 = max(tr / 2 + disc, floor), max(tr / 2 - disc, floor)
        q = float(np.clip(math.sqrt(l2 / l1), 0.1, 1.0))
        theta = 0.5 * math.degrees(math.atan2(2 * mxy, mxx - myy))   # major axis from +x
        pa = float((theta - 90.0 + 90.0) % 180.0 - 90.0)                # CCW from +y
        r50c = _cog_radius(_ell_radius(x - xc, y - yc, q, pa), img, mask, 0.5)
    re_ell = _ell_radius(x - xc, y - yc, q, pa)
    r_max = max(2.0, _inscribed_radius(xc, yc, q, H, W))
    r_max = min(r_max, max(4.0, 3.0 * _signal_radius(re_ell, img, mask, noise, r_max)))
    inside = re_ell <= r_max
    f_ap = float(img[inside].sum())
    if f_ap <= 0:
        f_ap = float(w.sum())
    r50 = _cog_radius(re_ell, img, mask & inside, 0.5, total=f_ap)
    r90 = _cog_radius(re_ell, img, mask & inside, 0.9, total=f_ap)
    # PSF removed in quadrature (exact for Gaussians; a good start otherwise)
    r50i = math.sqrt(max(r50 ** 2 - psf_r50 ** 2, (0.35 * r50) ** 2, 0.25))
    r90i = math.sqrt(max(r90 ** 2 - psf_r90 ** 2, (0.35 * r90) ** 2, 0.25))
    c = r90i / r50i
    n = sersic_n_from_concentration(c)
    # the aperture misses the light of an extended profile beyond r_max: correct the flux and
    # the radii with the analytic curve of growth of the Sérsic of this concentration
    flux, re = f_ap, r50i
    for _ in range(3):
        frac = max(sersic_light_fraction(n, r_max / max(re, 1e-3)), 0.3)
        flux = f_ap / frac
        re = r50i * _halflight_correction(n, frac)
    return dict(x=float(xc), y=float(yc), q=q, pa=pa, flux=max(flux, 1e-30), r50=max(re, 0.5),
                r90=max(r90i, 0.6), c=float(c), n=n, sky=sky, r_max=float(r_max))


def forced_moments(data, mask, ref: dict) -> dict:
    """Photometry of one stamp in the aperture of another image of the same source (forced
    photometry, as SExtractor's dual-image mode does): the sky from this stamp's edges (as
    :func:`image_moments`), the flux of the sky-subtracted light inside the reference's
    ellipse (``ref``: :func:`image_moments` of the other image, its positions and radii
    already in this stamp's pixels; the ellipse cut at this stamp's edges), divided by the
    fraction of a Sérsic of the reference's index and half-light radius inside it.  Every
    other value is the reference's.

    A multiband fit measures the centre, shape and sizes in the deepest band and each other
    band's brightness so: 0.4 ms a 32 x 32 stamp against 1.2 ms for :func:`image_moments`.
    """
    data = np.asarray(data, float)
    mask = np.asarray(mask, bool)
    H, W = data.shape
    sky = _edge_sky(data, mask)
    img = np.where(mask, data - sky, 0.0)
    y, x = np.mgrid[0:H, 0:W].astype(float)
    xc, yc, q = ref["x"], ref["y"], ref["q"]
    r_max = float(max(2.0, min(ref["r_max"], _inscribed_radius(xc, yc, q, H, W))))
    inside = mask & (_ell_radius(x - xc, y - yc, q, ref["pa"]) <= r_max)
    f_ap = float(img[inside].sum())
    if f_ap <= 0:
        f_ap = float(np.clip(img[inside], 0, None).sum())
    frac = max(sersic_light_fraction(ref["n"], r_max / max(ref["r50"], 1e-3)), 0.3)
    return {**ref, "flux": max(f_ap / frac, 1e-30), "sky": sky, "r_max": r_max}


def _inscribed_radius(xc, yc, q, H, W) -> float:
    """Semi-major radius (px) of the largest ellipse of axis ratio ``q`` about ``(xc, yc)``
    inside an (H, W) stamp: its semi-minor axis reaches the nearest edge."""
    return min(xc + 0.5, W - 0.5 - xc, yc + 0.5, H - 0.5 - yc) / max(q, 1e-3) ** 0.5


def _halflight_correction(n, frac):
    """Ratio true r_e / aperture half-light radius when the aperture holds ``frac`` of the light."""
    if frac >= 0.999:
        return 1.0
    # radius holding frac/2 of the total light, in units of r_e: P(2n, b x^(1/n)) = frac / 2
    t = float(np.interp(0.5 * frac, _cog_curve(n), _LOG_X))
    return 1.0 / math.exp(min(max(t, -8.0), 0.0))


def _ell_radius(dx, dy, q, pa):
    """Semi-major-axis elliptical radius for axis ratio q, pa (deg CCW from +y)."""
    t = math.radians(pa)
    xm = -dx * math.sin(t) + dy * math.cos(t)    # along the major axis
    ym = dx * math.cos(t) + dy * math.sin(t)     # along the minor axis
    return np.sqrt(xm ** 2 + (ym / max(q, 1e-3)) ** 2)


def _cog_radius(r, img, mask, frac, total=None):
    """Radius enclosing ``frac`` of the light (curve of growth, interpolated; monotone)."""
    rv, iv = r[mask].ravel(), img[mask].ravel()
    o = np.argsort(rv)
    cum = np.maximum.accumulate(np.cumsum(iv[o]))
    tot = float(cum[-1]) if total is None else float(total)
    if tot <= 0:
        return 1.0
    k = np.searchsorted(cum, frac * tot)
    if k <= 0:
        return float(max(rv[o][0], 0.5))
    if k >= cum.size:
        return float(rv[o][-1])
    c0, c1, r0, r1 = cum[k - 1], cum[k], rv[o][k - 1], rv[o][k]
    return float(r0 + (r1 - r0) * (frac * tot - c0) / max(c1 - c0, 1e-300))


# ---------------------------------------------------------------------------------- guesses
def guess_batch(model: Model, data, mask, zeropoint, psf=None, psf_batched: bool = False,
                oversample: int = 1) -> list[dict[str, float]]:
    """:func:`guess_initial` of every galaxy of a batch (``data``, ``mask`` (G, H, W),
    ``zeropoint`` (G,), ``psf`` one (h, w) image or (G, h, w) with ``psf_batched``), the
    galaxies spread over the CPU cores in threads (NumPy releases the GIL in its array loops:
    48 galaxies of 128 x 128 take ~0.6 of the time of one after another on 2 cores).  The
    result of each galaxy is that of :func:`guess_initial` alone."""
    def one(g):
        return guess_initial(model, data[g], mask[g], zeropoint[g],
                             psf=None if psf is None else (psf[g] if psf_batched else psf), oversample=oversample)

    return over_galaxies(one, len(data))


def over_galaxies(one, G: int) -> list:
    """``[one(g) for g in range(G)]``, the galaxies spread over the CPU cores in threads (for
    host-side NumPy work, which releases the GIL in its array loops)."""
    workers = min(cpu_cores(), G)
    if workers <= 1:
        return [one(g) for g in range(G)]
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="galmoss-guess") as ex:
        return list(ex.map(one, range(G)))


_BULGE_PROFILES = ("sersic", "devaucouleurs", "core_sersic", "nuker", "king", "point", "gaussian", "moffat")


def _clip_to_bounds(model, full, v):
    lo, hi = model.bounds_of(full)
    if math.isfinite(lo) and math.isfinite(hi):
        return min(max(v, lo + 1e-3 * (hi - lo)), hi - 1e-3 * (hi - lo))
    if math.isfinite(lo):
        return max(v, lo + max(1e-3 * abs(lo), 1e-3))
    if math.isfinite(hi):
        return min(v, hi - max(1e-3 * abs(hi), 1e-3))
    return v


def measured_from_image(model: Model, name: str) -> bool:
    """Whether :func:`guess_initial` measures parameter ``name`` on the image (False: its
    value is the model's default, as for a Sérsic's ``c0``)."""
    c, pname = name.split(".", 1)
    spec = dict(model.components)[c]
    return (pname in ("x0", "y0", "q", "pa", "mag", "mu_0", "mu_b", "sky", "rot_r_out") or pname in _SIZE_FACTORS
            or (pname == "n" and spec.root.name == "sersic"))


def guess_initial(model: Model, data, mask, zeropoint, psf=None, oversample: int = 1) -> dict[str, float]:
    """Initial value of every parameter of ``model`` for one galaxy (a dict of floats).

    ``data`` (H, W) in image units, ``mask`` True = used, ``psf`` optional (its size is removed
    from the galaxy's).  One light component gets the whole flux, r50 and the concentration's
    Sérsic index; with two or more, the first compact-type component (Sérsic, de Vaucouleurs,
    ...) is the bulge with the fraction B/T of the light suggested by the concentration, and the
    others share the rest as disks sized from r90.  See the module docstring.
    """
    return guess_from_moments(model, image_moments(data, mask, psf, oversample), zeropoint)


def guess_from_moments(model: Model, m: dict, zeropoint) -> dict[str, float]:
    """:func:`guess_initial`'s values from the photometry ``m`` of :func:`image_moments` (or
    :func:`forced_moments`) and the ``zeropoint``."""
    out = model.defaults()
    zp = 0.0 if zeropoint is None else float(zeropoint)
    lum = [i for i, (_, s) in enumerate(model.components) if s.kind in ("surface", "point")]
    n_lum = len(lum) or 1
    bulge = None
    if n_lum > 1:
        cands = [i for i in lum if model.components[i][1].root.name in _BULGE_PROFILES]
        bulge = cands[0] if cands else lum[0]
    bt = float(np.clip((m["c"] - _C_EXP) / (_C_DEV - _C_EXP), 0.15, 0.85))
    for i, (c, spec) in enumerate(model.components):
        is_bulge = i == bulge
        is_disk = n_lum > 1 and not is_bulge and i in lum
        frac = 1.0 if n_lum == 1 else (bt if is_bulge else (1.0 - bt) / (n_lum - 1))
        for pname in spec.param_names:
            full = f"{c}.{pname}"
            if pname == "x0":
                v = m["x"]
            elif pname == "y0":
                v = m["y"]
            elif pname == "q":
                v = math.sqrt(m["q"]) if is_bulge else m["q"]
            elif pname == "pa":
                v = m["pa"]
            elif pname == "mag":
                v = zp - 2.5 * math.log10(m["flux"] * frac)
            elif pname in ("mu_0", "mu_b"):
                v = zp - 2.5 * math.log10(max(m["flux"] * frac / (2 * math.pi * m["r50"] ** 2 * m["q"]), 1e-30))
            elif pname == "sky":
                v = m["sky"]
            elif pname == "n" and spec.root.name == "sersic":
                v = 4.0 if is_bulge else (1.0 if is_disk else m["n"])
            elif pname == "rot_r_out":   # the spiral's rotation reaches 96 % at about the half-light radius
                v = m["r50"]
            elif pname in _SIZE_FACTORS:
                if is_bulge:
                    v = 0.4 * m["r50"] * _SIZE_FACTORS[pname]
                elif is_disk:
                    v = m["r90"] / _R90_EXP * (1.678 if pname == "r_e" else 1.678 * _SIZE_FACTORS[pname])
                else:
                    v = m["r50"] * _SIZE_FACTORS[pname]
            else:
                continue
            out[full] = float(_clip_to_bounds(model, full, v))
    return out


# ------------------------------------------------------------------------ neighbour masks (sep)
def neighbour_mask(data, mask=None, sigma=None, *, thresh: float = 1.5, minarea: int = 5,
                   deblend_cont: float = 0.005, grow: int = 1):
    """Mask of the pixels belonging to sources other than the target (centre of the stamp).

    Detects and deblends sources with ``sep`` (SExtractor's algorithms as a library): the sky
    from the stamp edges is subtracted, sources are pixels ``thresh`` sigma above it (``sigma``
    the 1-sigma map, else sep's global background rms) with at least ``minarea`` pixels, split
    by multi-threshold deblending (``deblend_cont``).  The target is the segment containing the
    stamp centre (else the one nearest to it); every other segment, grown by ``grow`` pixels,
    is masked.

    Args:
        data: (H, W) image, image units.
        mask: (H, W) bool, True = used (pixels already masked stay masked); None = all used.
        sigma: (H, W) 1-sigma map, image units, or None.

    Returns:
        (H, W) bool mask, True = pixel used (the input mask with the neighbours removed).
    """
    try:
        import sep
    except ImportError:
        raise GalmossError("mask_neighbours needs the optional package 'sep' "
                           "(pip install 'galmoss_jax[detect]')") from None
    d = np.ascontiguousarray(np.asarray(data, np.float64))
    H, W = d.shape
    used = np.ones((H, W), bool) if mask is None else np.asarray(mask, bool)
    bad = ~used | ~np.isfinite(d)
    d = np.where(bad, 0.0, d)
    sky = _edge_sky(d, ~bad)
    sub = np.ascontiguousarray(d - sky)
    if sigma is None:
        err = float(sep.Background(np.ascontiguousarray(d), mask=bad, bw=max(8, min(H, W) // 4),
                                   bh=max(8, min(H, W) // 4)).globalrms)
    else:
        err = np.ascontiguousarray(np.where(bad, np.inf, np.asarray(sigma, np.float64)))
    try:
        _, seg = sep.extract(sub, thresh, err=err, mask=bad, minarea=minarea,
                             deblend_cont=deblend_cont, segmentation_map=True)
    except Exception as e:  # sep raises plain Exceptions (e.g. pixel buffer full)
        raise GalmossError(f"mask_neighbours: source extraction failed ({e})") from None
    if seg.max() == 0:
        return used.copy()
    cy, cx = (H - 1) // 2, (W - 1) // 2
    target = int(seg[cy, cx])
    if target == 0:
        yy, xx = np.nonzero(seg)
        k = np.argmin((yy - cy) ** 2 + (xx - cx) ** 2)
        target = int(seg[yy[k], xx[k]])
    other = (seg > 0) & (seg != target)
    if grow > 0 and other.any():
        other = _dilate(other, grow) & (seg != target)
    return used & ~other


def _dilate(a, k):
    """Binary dilation by ``k`` pixels with a 3x3 cross (NumPy shifts; no SciPy dependency)."""
    a = a.copy()
    for _ in range(k):
        b = a.copy()
        b[1:] |= a[:-1]
        b[:-1] |= a[1:]
        b[:, 1:] |= a[:, :-1]
        b[:, :-1] |= a[:, 1:]
        a = b
    return a
