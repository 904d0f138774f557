"""Why pysersic's DECaLS r_eff differs from galmoss_jax's: its renderer, measured against GalSim.

pysersic's multiband example (the DECaLS g, r, z galaxy of ``tests/test_bands.py``) quotes r_eff
6.889 / 6.666 / 6.501 px in g / r / z; galmoss_jax's χ² fit gives ~7.30 / 6.87 / 6.56.  This
script fits each band alone (Sérsic + flat sky, the example's crop, mask and σ = 1/sqrt(invvar))
by plain χ² three ways, all from galmoss_jax's values:

* galmoss_jax (``fit("sersic+sky", ...)``, the defaults);
* pysersic's ``PixelRenderer`` (the profile sampled at pixel centres, Gauss–Legendre
  oversampling of the central pixels) as the model, SciPy ``least_squares`` with JAX's Jacobian;
* pysersic's default ``HybridRenderer`` (the Sérsic profile as a mixture of Gaussians,
  Shajib 2019, with amplitudes interpolated over 0.65 <= n <= 8), the renderer of the example,
  the same way.

Each fit is then rendered exactly by GalSim (a Sérsic through a pixel, convolved with the pixel
PSF) and its χ² over the same pixels printed: which parameters describe the image best when the
profile is rendered exactly.  Printed too: each renderer's largest difference from GalSim
(fraction of the peak) and its total flux / GalSim's at galmoss_jax's parameters.

pysersic's ``theta`` is measured from +y (north) counter-clockwise, as galmoss_jax's ``pa``
(in radians): checked here by the PixelRenderer's agreement with GalSim (~5e-4 of the peak).

    pip install pysersic galsim          # besides galmoss_jax
    python benchmarks/peers/pysersic_decals.py
"""
from __future__ import annotations

import importlib.metadata
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "tests", "data", "decals_grz", "decals_grz.npz")
ZP = 22.5
PUBLISHED = {"g": (6.889, 0.051, 0.707), "r": (6.666, 0.034, 0.796), "z": (6.501, 0.084, 0.896)}
NAMES = ("xc", "yc", "flux", "r_eff", "n", "ellip", "theta", "sky")


def to_pysersic(v):
    """galmoss_jax values -> pysersic's (xc, yc, flux, r_eff, n, ellip, theta, sky)."""
    return np.array([v["sersic.x0"], v["sersic.y0"], 10 ** (-0.4 * (v["sersic.mag"] - ZP)), v["sersic.r_e"],
                     v["sersic.n"], 1 - v["sersic.q"], np.radians(v["sersic.pa"]), v["sky.sky"]])


def galsim_image(p, psf, shape):
    """Exact render: GalSim Sérsic through a 1-px pixel at pixel centres, then the pixel PSF."""
    import galsim
    from scipy.signal import fftconvolve
    xc, yc, flux, re, n, e, theta, sky = p
    q = 1 - e
    prof = galsim.Sersic(n, half_light_radius=re * np.sqrt(q), flux=flux).shear(
        q=q, beta=(theta + np.pi / 2) * galsim.radians)
    ny, nx = shape
    im = prof.drawImage(nx=nx, ny=ny, scale=1.0, offset=(xc - (nx - 1) / 2, yc - (ny - 1) / 2)).array
    return fftconvolve(im, psf, mode="same") + sky


def main():
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import pysersic
    from pysersic.rendering import HybridRenderer, PixelRenderer
    from scipy.optimize import least_squares

    import galmoss_jax as gj

    print("versions:", {m: importlib.metadata.version(m) for m in ("galmoss_jax", "pysersic", "galsim", "jax")},
          "pysersic from", os.path.dirname(pysersic.__file__))
    d = np.load(DATA)
    used = d["mask"]                  # True = pixel used
    lo = [-np.inf] * 4 + [0.3, 0.0, -np.inf, -np.inf]
    hi = [np.inf] * 4 + [8.0, 0.95, np.inf, np.inf]
    print(f"{'band':4} {'fit':28} {'r_eff':>7} {'n':>6} {'ellip':>6} {'flux':>7} {'χ² own':>9} {'χ² GalSim':>10}")
    for b in "grz":
        img, sig, psf = (d[f"{b}_{k}"].astype(float) for k in ("image", "sigma", "psf"))
        chi2_galsim = lambda p: float((((img - galsim_image(p, psf, img.shape)) / sig)[used] ** 2).sum())
        res = gj.fit(gj.Model("sersic+sky"), img, sigma=sig, mask=used, psf=psf, zeropoint=ZP)
        ours = to_pysersic({k: float(np.asarray(v)[0]) for k, v in res.values.items()})
        rows = [("galmoss_jax", ours, float(res.chi2[0]))]
        exact = galsim_image(ours, psf, img.shape)
        for renderer in (PixelRenderer, HybridRenderer):
            rend = renderer(img.shape, jnp.asarray(psf))

            def model(p, rend=rend):
                return rend.combine_scene(*rend.render_sersic(dict(zip(NAMES[:7], p[:7])))) + p[7]

            m = np.asarray(model(ours))
            print(f"{b:4} {renderer.__name__} at galmoss_jax's values: max |Δ| {np.abs(m - exact).max() / exact.max():.1e} "
                  f"of the peak, flux {(m - ours[7]).sum() / (exact - ours[7]).sum():.4f} × GalSim's")
            resid = jax.jit(lambda p, model=model: ((img - model(p)) / sig)[used])
            jac = jax.jit(jax.jacfwd(resid))
            fit = least_squares(lambda p: np.asarray(resid(p)), ours, jac=lambda p: np.asarray(jac(p)),
                                method="trf", bounds=(lo, hi), xtol=1e-12, ftol=1e-12)
            rows.append((f"pysersic {renderer.__name__}, χ²", fit.x, 2 * fit.cost))
        for name, p, own in rows:
            print(f"{b:4} {name:28} {p[3]:7.3f} {p[4]:6.3f} {p[5]:6.3f} {p[2]:7.3f} {own:9.1f} {chi2_galsim(p):10.1f}")
        re, s_re, n = PUBLISHED[b]
        print(f"{b:4} {'pysersic example (published)':28} {re:7.3f} {n:6.3f}   (r_eff ± {s_re})")


if __name__ == "__main__":
    main()
