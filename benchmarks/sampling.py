"""Accuracy and cost of pixel-integration settings (``gj.Sampling``) against a far finer rule.

Problem: ``--galaxies`` random Sérsic galaxies (n 0.3-8 and r_e 0.5-12 px log-uniform, q 0.2-1,
random pa, sub-pixel centres) on 41 x 41 stamps, float64, convolved with Moffat PSFs (beta 3) of
FWHM 1.5 and 3 px (21 x 21) and without PSF.  Reference: the defaults with every quadrature
made far finer (ring 41 px at 6 x 6 points, mid window 21 px at 16 x 16, corner rules 96 x 48
on the image grid and 64 x 32 on the PSF window's sub-pixel grid, its mid window 15).  For the
defaults and each setting given, it prints the largest, 99th-percentile and median difference
from the reference (in units of each galaxy's peak), the largest relative difference on pixels
above 1e-3 of the peak, and the time of a Jacobian of the render (7 parameters) on 48 x 48 and
128 x 128 stamps with a 41 x 41 PSF, float32.

    python benchmarks/sampling.py mid_window=9,fine_n_theta=16,fine_n_r=8 [--galaxies 200] [--seed 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("settings", nargs="*", help="NAME=VALUE,... changes to the defaults (one setting each)")
    ap.add_argument("--galaxies", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import galmoss_jax as gj

    D = gj.Sampling()
    variants = {"defaults": D}
    for text in args.settings:
        variants[text] = gj.Sampling.from_text(text)
    ref_rule = dataclasses.replace(D, ring_window=41, n_ring=6, mid_window=21, n_mid=16, n_theta=96, n_r=48,
                                   fine_mid_window=15, fine_n_theta=64, fine_n_r=32)
    rng = np.random.default_rng(args.seed)
    G, S = args.galaxies, 41
    p = dict(x0=20 + rng.uniform(-0.5, 0.5, G), y0=20 + rng.uniform(-0.5, 0.5, G), mag=np.full(G, 16.0),
             r_e=np.exp(rng.uniform(np.log(0.5), np.log(12), G)), n=np.exp(rng.uniform(np.log(0.3), np.log(8), G)),
             q=rng.uniform(0.2, 1.0, G), pa=rng.uniform(-90, 90, G))
    yy, xx = np.mgrid[-10:11, -10:11]

    def moffat(fwhm):
        a = fwhm / (2 * np.sqrt(2 ** (1 / 3) - 1))
        k = (1 + (xx ** 2 + yy ** 2) / a ** 2) ** -3.0
        return k / k.sum()

    print(f"{G} galaxies, seed {args.seed}, backend {jax.default_backend()}")
    for label, psf in (("PSF FWHM 1.5", moffat(1.5)), ("PSF FWHM 3", moffat(3.0)), ("no PSF", None)):
        ref = np.asarray(gj.render("sersic", p, (S, S), psf=psf, zeropoint=25.0, sampling=ref_rule))
        peak = ref.max(axis=(1, 2))
        bright = ref >= 1e-3 * peak[:, None, None]
        for name, smp in variants.items():
            m = np.asarray(gj.render("sersic", p, (S, S), psf=psf, zeropoint=25.0, sampling=smp))
            d = np.abs(m - ref).max(axis=(1, 2)) / peak
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(bright, np.abs(m - ref) / np.abs(ref), 0).max()
            print(f"{label:13s} {name:45s} |diff|/peak max {d.max():.1e}, 99 % {np.percentile(d, 99):.1e}, "
                  f"median {np.median(d):.1e}; relative (pixels > 1e-3 peak) max {rel:.1e}", flush=True)

    jax.config.update("jax_enable_x64", False)
    k = np.exp(-0.5 * (np.mgrid[-20:21, -20:21] ** 2).sum(axis=0) / 2.0 ** 2).astype(np.float32)
    k /= k.sum()
    for S in (48, 128):
        x = jnp.array([S / 2 - 0.3, S / 2 + 0.2, 18.0, 4.0, 2.5, 0.6, 30.0], jnp.float32)
        for name, smp in variants.items():
            R = gj.Renderer("sersic", (S, S), psf_shape=k.shape, sampling=smp)
            jac = jax.jit(jax.jacfwd(lambda v: R(v, psf=k, zeropoint=25.0).ravel()))
            jac(x).block_until_ready()
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(10):
                    jac(x).block_until_ready()
                best = min(best, (time.perf_counter() - t0) / 10)
            print(f"{S} x {S}: {name:45s} Jacobian {best * 1e3:6.2f} ms", flush=True)


if __name__ == "__main__":
    main()
