"""Bootstrap versus Gauss-Newton errors on the bundled SDSS galaxies (single Sérsic).

    python benchmarks/bootstrap_sdss.py [--n 32] [--method pixels|residuals|both]

Each galaxy is fitted (default sampling, its PSF, mask and sigma map; ``starts="auto"``) with
``errors="bootstrap"``; the script prints, per parameter, the Gauss-Newton error, the
bootstrap error and their ratio, and chi2_nu.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from galmoss_jax import fit  # noqa: E402
from galmoss_jax.io import read_image, read_mask  # noqa: E402

NAMES = ["J092800.99+014011.9", "J100247.00+042559.8", "J162123.19+322056.4"]
LABELS = {"J162123.19+322056.4": 2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--method", default="both", choices=["pixels", "residuals", "both"])
    a = ap.parse_args()
    here = os.path.join(ROOT, "galmoss_jax", "data", "sdss")
    methods = ["pixels", "residuals"] if a.method == "both" else [a.method]
    for name in NAMES:
        data = read_image(os.path.join(here, f"{name}_image.fits"))
        sigma = read_image(os.path.join(here, f"{name}_sigma.fits"))
        psf = read_image(os.path.join(here, f"{name}_psf.fits"))
        mask = read_mask(os.path.join(here, f"{name}_mask.fits"), keep_labels=(0, LABELS.get(name, 1)))
        for method in methods:
            t0 = time.perf_counter()
            r = fit("sersic", data, sigma=sigma, mask=mask, psf=psf, zeropoint=22.5, errors="bootstrap",
                    bootstrap=a.n, bootstrap_method=method, seed=1)
            dt = time.perf_counter() - t0
            gn = np.sqrt(np.diagonal(r.hessian_covariance[0]))
            bs = np.sqrt(np.diagonal(r.covariance[0]))
            print(f"{name} {method}: chi2_nu {float(r.chi2_nu[0]):.3f}, {a.n} refits, {dt:.0f} s", flush=True)
            for i, p in enumerate(r.free_names):
                print(f"   {p:12s} value {float(r.values[p][0]):10.4f}  GN {gn[i]:.5f}  bootstrap {bs[i]:.5f}"
                      f"  ratio {bs[i] / gn[i]:.2f}", flush=True)


if __name__ == "__main__":
    main()
