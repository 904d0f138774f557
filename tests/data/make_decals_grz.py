"""Build tests/data/decals_grz/decals_grz.npz from the pysersic multiband example.

Run from the repository root:

    python tests/data/make_decals_grz.py

Reads ../shared/data/pysersic_examples/decals_{cutout,psf}_59.1067_-30.4848.fits
(DECaLS DR9-south brick 0591m305, shipped with pysersic's
examples/multiband-example.ipynb) and reproduces that notebook's data set:

* central 120x120 crop, numpy [68:188, 68:188] (mid=128, dx=60);
* sigma = 1/sqrt(invvar) (inf where invvar <= 0; none in this crop);
* mask from a sep 3-sigma segmentation of the r band, exactly as in the
  notebook: ``sep.extract(r_image, thresh=3., err=r_sigma,
  segmentation_map=True)`` on the *non*-background-subtracted image with sep's
  default parameters; every segment except the one at sub-image pixel
  [60, 60] is masked.  Stored here with the opposite sign: True = pixel USED.
* PSFs cropped about their centre pixel (31, 31) to the smallest odd size
  that loses < 1e-3 of the light in every band, then renormalised to sum 1.

Requires numpy, astropy and sep (``pip install sep``).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import sep
from astropy.io import fits

SRC = os.path.join("..", "shared", "data", "pysersic_examples")
CUTOUT = os.path.join(SRC, "decals_cutout_59.1067_-30.4848.fits")
PSF = os.path.join(SRC, "decals_psf_59.1067_-30.4848.fits")
OUT_DIR = os.path.join("tests", "data", "decals_grz")
OUT = os.path.join(OUT_DIR, "decals_grz.npz")

BANDS = ("g", "r", "z")
MID, DX = 128, 60  # notebook: mid = int(256/2); dx = 60
SL = (slice(MID - DX, MID + DX), slice(MID - DX, MID + DX))  # [68:188, 68:188]
SEP_THRESH = 3.0
PSF_MAX_LOSS = 1e-3
ZP = 22.5  # AB zero point of nanomaggies


def native_f32(a):
    """float32 in native byte order (sep refuses big-endian FITS arrays)."""
    return np.ascontiguousarray(a, dtype=np.float32)


def main():
    out = {}
    with fits.open(CUTOUT) as img_fits, fits.open(PSF) as psf_fits:
        for j, band in enumerate(BANDS):
            hdr = img_fits[1 + 2 * j].header
            assert hdr["BAND"].strip() == band, hdr["BAND"]
            assert psf_fits[j].header["BAND"].strip() == band
            img = native_f32(img_fits[1 + 2 * j].data[SL])
            ivar = native_f32(img_fits[2 + 2 * j].data[SL])
            sig = np.full_like(ivar, np.inf)
            good = ivar > 0
            sig[good] = 1.0 / np.sqrt(ivar[good])
            out[f"{band}_image"] = img
            out[f"{band}_sigma"] = native_f32(sig)
            out[f"{band}_psf_full"] = native_f32(psf_fits[j].data)

    # --- mask: the notebook's recipe (no background subtraction) ----------
    r_img, r_sig = out["r_image"], out["r_sigma"]
    _, seg = sep.extract(r_img, thresh=SEP_THRESH, err=r_sig,
                         segmentation_map=True)
    obj_id = seg[60, 60]
    assert obj_id > 0, "no segment at sub-image pixel [60, 60]"
    mask = (seg == 0) | (seg == obj_id)  # True = used
    out["mask"] = mask

    # Diagnostic only: the same with sep.Background subtracted first.
    bkg = sep.Background(r_img)
    _, seg_b = sep.extract(r_img - bkg.back(), thresh=SEP_THRESH, err=r_sig,
                           segmentation_map=True)
    mask_b = (seg_b == 0) | (seg_b == seg_b[60, 60])
    print(f"sep {sep.__version__}: {seg.max()} segments, target id {obj_id}, "
          f"target segment {int((seg == obj_id).sum())} px; "
          f"used fraction {mask.mean():.4f} ({int(mask.sum())}/{mask.size})")
    print(f"  (diagnostic) with sep.Background subtracted (globalback="
          f"{bkg.globalback:.3g}, globalrms={bkg.globalrms:.3g}): used fraction "
          f"{mask_b.mean():.4f}, {int((mask_b != mask).sum())} px differ")

    # --- PSFs: smallest odd crop losing < PSF_MAX_LOSS in every band -------
    full = {b: out.pop(f"{b}_psf_full").astype(np.float64) for b in BANDS}
    n = 63
    for b in BANDS:
        assert np.unravel_index(full[b].argmax(), full[b].shape) == (31, 31)

    def loss(b, s):
        c = (n - s) // 2
        return 1.0 - full[b][c:c + s, c:c + s].sum() / full[b].sum()

    size = next(s for s in range(1, n + 1, 2)
                if all(loss(b, s) < PSF_MAX_LOSS for b in BANDS))
    c = (n - size) // 2
    for b in BANDS:
        p = full[b][c:c + size, c:c + size]
        out[f"{b}_psf"] = native_f32(p / p.sum())
        print(f"PSF {b}: 63x63 -> {size}x{size}, light lost {loss(b, size):.2e}")

    os.makedirs(OUT_DIR, exist_ok=True)
    order = [f"{b}_{k}" for b in BANDS for k in ("image", "sigma")]
    order += ["mask"] + [f"{b}_psf" for b in BANDS]
    np.savez_compressed(OUT, **{k: out[k] for k in order})
    kb = os.path.getsize(OUT) / 1024
    print(f"wrote {OUT}: {kb:.1f} kB")
    assert kb < 500

    for b in BANDS:
        tot = float((out[f"{b}_image"] * mask).sum(dtype=np.float64))
        mag = ZP - 2.5 * np.log10(tot) if tot > 0 else float("nan")
        print(f"{b}: sum(image*mask) = {tot:.4f} nmgy -> {mag:.3f} AB mag")
    return 0


if __name__ == "__main__":
    sys.exit(main())
