"""Automatic initial values from image moments (used wherever the caller gives none).

For every component: the centre from the flux-weighted centroid near the brightest region,
axis ratio and position angle from second moments, size from the half-light radius of the
curve of growth, magnitude from the total flux shared between components, and the sky from
the stamp edges.
"""
from __future__ import annotations

import math

import numpy as np

from .model import Model

_SIZE_FACTORS = {"r_e": 1.0, "r_s": 1.0 / 1.678, "fwhm": 1.0, "r_out": 2.0, "r_c": 0.5, "r_t": 4.0,
                 "h1": 1.0 / 1.678, "h2": 0.5 / 1.678, "r_b": 0.5, "h_s": 0.2}


def image_moments(data, mask):
    """Centroid (x, y), axis ratio q, pa (deg, CCW from +y), total flux, half-light radius, sky.

    ``data`` (H, W) finite; ``mask`` True where used.  Robust to a sky offset: the edge median
    is subtracted first.
    """
    H, W = data.shape
    edge = np.concatenate([data[0][mask[0]], data[-1][mask[-1]], data[:, 0][mask[:, 0]], data[:, -1][mask[:, -1]]])
    sky = float(np.median(edge)) if edge.size else 0.0
    img = np.where(mask, data - sky, 0.0)
    y, x = np.mgrid[0:H, 0:W].astype(float)
    # centroid of the bright part, iterated in a shrinking aperture around the peak region
    w = np.clip(img, 0, None)
    if w.sum() <= 0:
        return dict(x=(W - 1) / 2, y=(H - 1) / 2, q=1.0, pa=0.0, flux=1.0, r50=max(1.0, min(H, W) / 8), sky=sky)
    xc, yc = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    rad = min(H, W) / 2
    for _ in range(5):
        rr = np.hypot(x - xc, y - yc)
        ww = w * (rr < rad)
        if ww.sum() <= 0:
            break
        xc, yc = (ww * x).sum() / ww.sum(), (ww * y).sum() / ww.sum()
        rad = max(3.0, rad * 0.7)
    rr = np.hypot(x - xc, y - yc)
    order = np.argsort(rr.ravel())
    cum = np.cumsum(w.ravel()[order])
    total = float(cum[-1])
    r50 = float(rr.ravel()[order][np.searchsorted(cum, 0.5 * total)])
    sel = w * (rr < max(3.0, 2.5 * r50))
    s = sel.sum()
    mxx = (sel * (x - xc) ** 2).sum() / s
    myy = (sel * (y - yc) ** 2).sum() / s
    mxy = (sel * (x - xc) * (y - yc)).sum() / s
    tr, det = mxx + myy, mxx * myy - mxy ** 2
    disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-12)
    q = float(np.clip(math.sqrt(l2 / l1), 0.05, 1.0))
    # major-axis direction angle from +x, then convert to pa (CCW from +y)
    theta = 0.5 * math.degrees(math.atan2(2 * mxy, mxx - myy))
    pa = ((theta - 90.0) + 90.0) % 180.0 - 90.0
    return dict(x=float(xc), y=float(yc), q=q, pa=float(pa), flux=max(total, 1e-30), r50=max(r50, 0.5), sky=sky)


def guess_initial(model: Model, data, mask, zeropoint) -> dict[str, float]:
    """Initial value of every parameter of ``model`` for one galaxy (a dict of floats)."""
    m = image_moments(np.asarray(data, float), np.asarray(mask, bool))
    out = model.defaults()
    n_lum = sum(1 for _, s in model.components if s.kind in ("surface", "point")) or 1
    zp = 0.0 if zeropoint is None else float(zeropoint)
    for i, (c, spec) in enumerate(model.components):
        names = spec.param_names
        for pname in names:
            full = f"{c}.{pname}"
            if pname == "x0":
                v = m["x"]
            elif pname == "y0":
                v = m["y"]
            elif pname == "q":
                v = m["q"]
            elif pname == "pa":
                v = m["pa"]
            elif pname == "mag":
                v = zp - 2.5 * math.log10(m["flux"] / n_lum)
            elif pname in ("mu_0", "mu_b"):
                v = zp - 2.5 * math.log10(max(m["flux"] / n_lum / (2 * math.pi * m["r50"] ** 2), 1e-30))
            elif pname == "sky":
                v = m["sky"]
            elif pname in _SIZE_FACTORS:
                # bulges smaller than disks in multi-component models
                scale = 0.5 if (n_lum > 1 and spec.name in ("sersic", "devaucouleurs") and i == 0) else 1.0
                v = m["r50"] * _SIZE_FACTORS[pname] * scale
            else:
                continue
            lo, hi = model.bounds_of(full)
            if math.isfinite(lo) and math.isfinite(hi):
                v = min(max(v, lo + 1e-3 * (hi - lo)), hi - 1e-3 * (hi - lo))
            out[full] = float(v)
    return out
