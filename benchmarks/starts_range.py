"""Optimiser failures across the range of sizes users meet: from barely resolved galaxies to
large ones, for two PSF widths, from the automatic initial values and from one poor start.

GalSim single-Sérsic galaxies (galaxy (x) PSF (x) pixel, ``method='auto'``) with a Moffat PSF
(beta 2.5) sampled at pixel centres, given to galmoss_jax as an image; r_e from ``--re-min`` to
``--re-max`` PSF FWHMs (log-uniform), n 0.5-8, q 0.25-1, any pa, centre within 1 px of the
stamp centre, S/N 25-400; Gaussian noise with a constant sigma.  A fit *fails* when its chi2
ends more than 3 above the chi2 of the true parameters (rendered by galmoss_jax).  Reports the
failure fraction, the failures' truth and fit, and the medians |dr_e|/r_e by S/N.

    PYTHONPATH=$PWD python benchmarks/starts_range.py --n 256 --stamp 64 --fwhm 2.8,1.6
"""
from __future__ import annotations

import argparse
import math
import time
import warnings

import galsim
import numpy as np

import galmoss_jax as gj

ZP = 25.0
PARAMS = ("x0", "y0", "mag", "r_e", "n", "q", "pa")


def psf_image(fwhm, size):
    psf = galsim.Moffat(beta=2.5, fwhm=fwhm)
    a = psf.drawImage(nx=size, ny=size, scale=1.0, method="no_pixel").array.astype(float)
    return psf, a / a.sum()


def simulate(G, stamp, fwhm, seed, re_min, re_max):
    rng = np.random.default_rng(seed)
    c = (stamp - 1) / 2.0
    t = dict(x0=c + rng.uniform(-1, 1, G), y0=c + rng.uniform(-1, 1, G), mag=rng.uniform(15.0, 18.0, G),
             r_e=fwhm * np.exp(rng.uniform(math.log(re_min), math.log(re_max), G)),
             n=np.exp(rng.uniform(math.log(0.5), math.log(8.0), G)), q=rng.uniform(0.25, 1.0, G),
             pa=rng.uniform(-90.0, 90.0, G))
    snr = np.exp(rng.uniform(math.log(25.0), math.log(400.0), G))
    psf, psf_img = psf_image(fwhm, 2 * int(4 * fwhm) + 1)
    gsp = galsim.GSParams(maximum_fft_size=32768)
    clean = []
    for g in range(G):
        q = t["q"][g]
        if t["n"][g] > 6.2:   # beyond GalSim's Sérsic: galmoss_jax renders it (same conventions)
            one = {f"sersic.{k}": t[k][g] for k in PARAMS}
            clean.append(np.asarray(gj.render("sersic", one, (stamp, stamp), psf=psf_img, zeropoint=ZP)))
            continue
        gal = galsim.Sersic(t["n"][g], half_light_radius=t["r_e"][g] * math.sqrt(q), flux=10 ** (-0.4 * (t["mag"][g] - ZP)),
                            gsparams=gsp).shear(q=q, beta=(t["pa"][g] + 90.0) * galsim.degrees)
        off = (t["x0"][g] - c, t["y0"][g] - c)
        clean.append(galsim.Convolve([gal, psf], gsparams=gsp).drawImage(nx=stamp, ny=stamp, scale=1.0, offset=off,
                                                                          method="auto").array.astype(float))
    clean = np.stack(clean)
    sig = np.sqrt((clean ** 2).sum(axis=(1, 2))) / snr
    sigma = np.broadcast_to(sig[:, None, None], clean.shape).copy()
    data = clean + rng.normal(size=clean.shape) * sigma
    return t, snr, data, sigma, psf_img


def poor_start(G, stamp):
    c = (stamp - 1) / 2.0
    return {"x0": np.full(G, c), "y0": np.full(G, c), "r_e": np.full(G, 5.0), "n": np.full(G, 1.0),
            "q": np.full(G, 1.0), "pa": np.zeros(G)}


def run(G, stamp, fwhm, seed, re_min, re_max, chunk):
    t0 = time.time()
    t, snr, data, sigma, psf = simulate(G, stamp, fwhm, seed, re_min, re_max)
    truth = {f"sersic.{k}": t[k] for k in PARAMS}
    model_t = np.asarray(gj.render("sersic", truth, (stamp, stamp), psf=psf, zeropoint=ZP))
    chi2_t = (((data - model_t) / sigma) ** 2).sum(axis=(1, 2))
    print(f"\nPSF FWHM {fwhm} px, {G} galaxies, {stamp}x{stamp}: simulated in {time.time() - t0:.0f} s")
    for label, init in (("automatic", None), ("poor", poor_start(G, stamp))):
        t1 = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = gj.fit("sersic", data, sigma=sigma, psf=psf, zeropoint=ZP, init=init, chunk_size=chunk)
        excess = res.chi2 - chi2_t
        bad = np.flatnonzero(excess > 3)
        dre = np.abs(res["r_e"] / t["r_e"] - 1)
        print(f"  {label}: {len(bad)} of {G} ({100 * len(bad) / G:.1f} %) above chi2(truth) + 3; "
              f"{G / (time.time() - t1):.1f} gal/s; median |dr_e|/r_e {np.median(dre):.4f}; "
              f"status {np.bincount(res.status)}")
        for g in bad:
            print(f"    #{g}: truth r_e {t['r_e'][g]:.2f} ({t['r_e'][g] / fwhm:.2f} FWHM) n {t['n'][g]:.2f} "
                  f"q {t['q'][g]:.2f} S/N {snr[g]:.0f} | fit r_e {res['r_e'][g]:.2f} n {res['n'][g]:.2f} "
                  f"q {res['q'][g]:.2f} | excess {excess[g]:.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--stamp", type=int, default=64)
    ap.add_argument("--fwhm", default="2.8,1.6", help="PSF FWHMs, px, comma-separated")
    ap.add_argument("--re-min", type=float, default=0.3, help="smallest r_e, PSF FWHMs")
    ap.add_argument("--re-max", type=float, default=10.0, help="largest r_e, PSF FWHMs")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--chunk", type=int, default=None)
    a = ap.parse_args()
    for fwhm in (float(f) for f in a.fwhm.split(",")):
        run(a.n, a.stamp, fwhm, a.seed, a.re_min, a.re_max, a.chunk)


if __name__ == "__main__":
    main()
