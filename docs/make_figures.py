"""Make the README figures: bulge + disk decomposition of the bundled SDSS galaxy
J100247.00+042559.8, fitted as ``galmoss-jax example`` does (a single Sérsic first, then a
Sérsic bulge + exponential disk with a common centre, started from it), on the full 128 x 128
stamp with its 41 x 41 PSF.

Run from the repository root:  python docs/make_figures.py
Writes docs/bulge_disk_panels.png and docs/bulge_disk_profile.png (palette PNGs, < 150 kB).
"""
import io
import os

import numpy as np
from PIL import Image

import galmoss_jax as gj
from galmoss_jax import fit
from galmoss_jax.io import read_image, read_mask

HERE = os.path.dirname(os.path.abspath(__file__))
SDSS = os.path.join(os.path.dirname(gj.__file__), "data", "sdss")
NAME = "J100247.00+042559.8"
ZP, PIXSCALE = 22.5, 0.396  # nanomaggies; arcsec per pixel


def save_small(fig, path, dpi):
    """Save a figure as a 256-colour PNG (the figures have few colours; keeps them small)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(256).save(path, optimize=True)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} kB)")


def main():
    image = read_image(os.path.join(SDSS, f"{NAME}_image.fits"))
    sigma = read_image(os.path.join(SDSS, f"{NAME}_sigma.fits"))
    mask = read_mask(os.path.join(SDSS, f"{NAME}_mask.fits"), keep_labels=(0, 1))
    psf = read_image(os.path.join(SDSS, f"{NAME}_psf.fits"))
    single = fit("sersic", image, sigma=sigma, mask=mask, psf=psf, zeropoint=ZP)
    s = {k: float(v[0]) for k, v in single.values.items()}
    bd = gj.Model("bulge:sersic+disk:exponential", tied={"disk.x0": "bulge.x0", "disk.y0": "bulge.y0"})
    init = {"bulge.x0": s["sersic.x0"], "bulge.y0": s["sersic.y0"],
            "bulge.mag": s["sersic.mag"] + 0.75, "bulge.r_e": 0.1 * s["sersic.r_e"], "bulge.n": 4.0,
            "bulge.q": 0.9, "bulge.pa": s["sersic.pa"],
            "disk.mag": s["sersic.mag"] + 0.75, "disk.r_s": 0.4 * s["sersic.r_e"],
            "disk.q": min(s["sersic.q"], 0.8), "disk.pa": s["sersic.pa"]}
    res = fit(bd, image, sigma=sigma, mask=mask, psf=psf, zeropoint=ZP, init=init)
    t = res.to_table()
    t["chi2_nu_single"] = single.chi2_nu
    t.pprint(max_width=250)
    block = gj.ImgBlock.from_result(res, image, sigma, mask, psf=psf, zeropoint=ZP, name=NAME)
    save_small(gj.plot_panels(block, panel_size=2.3), os.path.join(HERE, "bulge_disk_panels.png"), dpi=90)
    save_small(gj.plot_profile(block, zeropoint=ZP, pixscale=PIXSCALE, figsize=(6.0, 5.0)),
               os.path.join(HERE, "bulge_disk_profile.png"), dpi=90)


if __name__ == "__main__":
    main()
