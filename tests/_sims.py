"""GalSim simulations shared by the initial-value, calibration, bootstrap and posterior tests.

Conventions GalSim <-> galmoss_jax are those checked in ``test_fit_recovery.py``: centre
``offset = (x0 - (nx - 1) / 2, y0 - (ny - 1) / 2)``; ``galsim.Sersic(n, half_light_radius=
r_e sqrt(q)).shear(q=q, beta=pa + 90 deg)``; ``F = 10 ** (-0.4 (mag - zp))``.

Every fit in these tests uses ONE stamp shape, PSF shape, sampling and batch size ``BATCH``,
so that the jit-compiled fit core is compiled once per test session and reused.
"""
from __future__ import annotations

import math

import galsim
import numpy as np

import galmoss_jax as gj

NX = NY = 32
ZP = 25.0
PSF_N = 11
BATCH = 100
# cheaper pixel integration than the default (~2x faster fits): against GalSim, at the true
# parameters, sum(((model - GalSim) / sigma)^2) at S/N 500 is 0.2 (median) and <= 3.1 (n = 3.7,
# r_e = 1.2 px, the worst of 60) on these stamps.  The sub-pixel window's corner rule takes
# 12 x 6 nodes instead of the default 24 x 12: the same figures to 1e-3 (it is not what limits
# them), and a Jacobian 25 % cheaper (3.3 -> 2.5 ms)
SAMPLING = gj.Sampling(n_theta=16, n_r=8, mid_window=9, n_mid=4, psf_window=7, psf_subsample=5, fine_n_theta=12,
                       fine_n_r=6)
PARAMS = ("x0", "y0", "mag", "r_e", "n", "q", "pa")

GSP = galsim.GSParams()
# a Gaussian PSF (FWHM 2.35 px) is band-limited, so its 11x11 image sampled at pixel centres
# represents it exactly (a truncated Moffat's sharp edge would alias)
PSF = galsim.Gaussian(sigma=1.0, gsparams=GSP)


def psf_image():
    img = PSF.drawImage(nx=PSF_N, ny=PSF_N, scale=1.0, method="no_pixel").array.astype(np.float64)
    return img / img.sum()


def draw(n, r_e, q, pa, mag, x0, y0):
    """GalSim image (pixel-integrated, PSF-convolved) of one Sérsic galaxy, 0-based centre."""
    gal = galsim.Sersic(n, half_light_radius=r_e * math.sqrt(q), flux=10.0 ** (-0.4 * (mag - ZP)),
                        gsparams=GSP).shear(galsim.Shear(q=q, beta=(pa + 90.0) * galsim.degrees))
    off = galsim.PositionD(x0 - (NX - 1) / 2.0, y0 - (NY - 1) / 2.0)
    return galsim.Convolve([gal, PSF], gsparams=GSP).drawImage(
        nx=NX, ny=NY, scale=1.0, method="auto", offset=off).array.astype(np.float64)


# small stamps without a PSF (fit-option tests and the bootstrap coverage test: one compiled
# fit core, SMALL x SMALL, no PSF, SAMPLING): GalSim's exact pixel integral (real space), which
# the model reproduces to sum(((model - GalSim) / sigma)^2) < 1e-4 at S/N 100 for n 0.8-4
SMALL = 16
GS_REAL = galsim.GSParams(realspace_relerr=1e-6, realspace_abserr=1e-9)


def draw_small(n, r_e, q, pa, mag, x0, y0, size=SMALL):
    """GalSim image (pixel-integrated, no PSF) of one Sérsic galaxy on a ``size`` x ``size`` stamp."""
    gal = galsim.Sersic(n, half_light_radius=r_e * math.sqrt(q), flux=10.0 ** (-0.4 * (mag - ZP)),
                        gsparams=GS_REAL).shear(galsim.Shear(q=q, beta=(pa + 90.0) * galsim.degrees))
    off = galsim.PositionD(x0 - (size - 1) / 2.0, y0 - (size - 1) / 2.0)
    return gal.drawImage(nx=size, ny=size, scale=1.0, method="real_space", offset=off,
                         dtype=np.float64).array


def draw_batch(truth):
    G = len(truth["n"])
    return np.stack([draw(*(float(truth[k][g]) for k in ("n", "r_e", "q", "pa", "mag", "x0", "y0")))
                     for g in range(G)])


def random_truth(rng, G):
    """Sérsic galaxies spanning the ranges of the tests: n 0.5-6, r_e 1-8 px (log-uniform),
    q 0.25-1, any pa, centre within 1 px of the stamp centre, S/N 20-500 (log-uniform)."""
    c = (NX - 1) / 2.0
    truth = dict(x0=c + rng.uniform(-1, 1, G), y0=c + rng.uniform(-1, 1, G),
                 mag=rng.uniform(15.0, 17.0, G), r_e=np.exp(rng.uniform(math.log(1.0), math.log(8.0), G)),
                 n=np.exp(rng.uniform(math.log(0.5), math.log(6.0), G)), q=rng.uniform(0.25, 1.0, G),
                 pa=rng.uniform(-90.0, 90.0, G))
    snr = np.exp(rng.uniform(math.log(20.0), math.log(500.0), G))
    return truth, snr


def noise_sigma(clean, snr):
    """Constant sigma per galaxy giving matched-filter S/N ``snr``: sqrt(sum(image^2)) / sigma."""
    sig = np.sqrt((clean ** 2).sum(axis=(-2, -1))) / snr
    return np.broadcast_to(np.asarray(sig)[..., None, None], clean.shape).copy()


def wrap_pa(d):
    w = np.mod(d + 90.0, 180.0) - 90.0
    return np.where(w == -90.0, 90.0, w)


def truth_params(truth):
    return {f"sersic.{k}": np.asarray(truth[k], float) for k in PARAMS}


SEED_STARTS = 20261201
N_STARTS_TEST = 200


def starts_sample(seed=SEED_STARTS, G=N_STARTS_TEST):
    """The simulated galaxies of ``test_init_multistart.py`` (and ``benchmarks/starts_vs_imfit.py``):
    truth, S/N, noiseless GalSim images, noisy data and sigma maps."""
    rng = np.random.default_rng(seed)
    truth, snr = random_truth(rng, G)
    clean = draw_batch(truth)
    sigma = noise_sigma(clean, snr)
    data = clean + rng.normal(size=clean.shape) * sigma
    return dict(truth=truth, snr=snr, clean=clean, data=data, sigma=sigma)


def poor_start(G):
    """The deliberately poor start of the tests: n = 1, r_e = 5 px, q = 1, pa = 0, centre at
    the stamp centre (mag left to the automatic value)."""
    c = (NX - 1) / 2.0
    return {"x0": np.full(G, c), "y0": np.full(G, c), "r_e": np.full(G, 5.0), "n": np.full(G, 1.0),
            "q": np.full(G, 1.0), "pa": np.zeros(G)}


SNR_BINS = ((20, 50), (50, 150), (150, 500))


# ------------------------------------------------------------------ sizes users meet, two PSFs
RANGE_NX = 48
RANGE_PSF_N = 15
RANGE_FWHM = (1.6, 2.8)          # Moffat (beta 2.5) PSF FWHMs, px: one sharp, one broad
RANGE_G = 100                    # galaxies per PSF
SEED_RANGE = 20261202


def range_psf(fwhm):
    """The Moffat (beta 2.5) PSF of FWHM ``fwhm`` px as GalSim draws it, and its 15x15 image
    sampled at pixel centres (what the fits are given: its wings beyond 7 px are cut off, as
    a PSF image's are)."""
    psf = galsim.Moffat(beta=2.5, fwhm=fwhm, gsparams=GSP)
    img = psf.drawImage(nx=RANGE_PSF_N, ny=RANGE_PSF_N, scale=1.0, method="no_pixel").array.astype(np.float64)
    return psf, img / img.sum()


def range_sample(fwhm, seed=SEED_RANGE, G=RANGE_G):
    """Sérsic galaxies from barely resolved to large, seen through the PSF of FWHM ``fwhm``:
    r_e 0.3-10 PSF FWHMs (log-uniform), n 0.5-8 (log-uniform), q 0.25-1, any pa, centre within
    1 px of the stamp centre, S/N 25-400, 48x48 stamps.  GalSim draws galaxy (x) PSF (x) pixel;
    beyond its Sérsic limit n = 6.2 galmoss_jax renders the galaxy (with the PSF image).
    Returns truth, S/N, noiseless images, data, sigma and the PSF image."""
    rng = np.random.default_rng(seed + int(round(100 * fwhm)))
    c = (RANGE_NX - 1) / 2.0
    truth = dict(x0=c + rng.uniform(-1, 1, G), y0=c + rng.uniform(-1, 1, G), mag=rng.uniform(15.0, 18.0, G),
                 r_e=fwhm * np.exp(rng.uniform(math.log(0.3), math.log(10.0), G)),
                 n=np.exp(rng.uniform(math.log(0.5), math.log(8.0), G)), q=rng.uniform(0.25, 1.0, G),
                 pa=rng.uniform(-90.0, 90.0, G))
    snr = np.exp(rng.uniform(math.log(25.0), math.log(400.0), G))
    psf, psf_img = range_psf(fwhm)
    big = galsim.GSParams(maximum_fft_size=32768)
    clean = []
    for g in range(G):
        p = {k: float(truth[k][g]) for k in PARAMS}
        if p["n"] > 6.2:
            clean.append(np.asarray(gj.render("sersic", p, (RANGE_NX, RANGE_NX), psf=psf_img, zeropoint=ZP)))
            continue
        gal = galsim.Sersic(p["n"], half_light_radius=p["r_e"] * math.sqrt(p["q"]), flux=10.0 ** (-0.4 * (p["mag"] - ZP)),
                            gsparams=big).shear(galsim.Shear(q=p["q"], beta=(p["pa"] + 90.0) * galsim.degrees))
        off = galsim.PositionD(p["x0"] - c, p["y0"] - c)
        clean.append(galsim.Convolve([gal, psf], gsparams=big).drawImage(
            nx=RANGE_NX, ny=RANGE_NX, scale=1.0, method="auto", offset=off).array.astype(np.float64))
    clean = np.stack(clean)
    sigma = noise_sigma(clean, snr)
    data = clean + rng.normal(size=clean.shape) * sigma
    return dict(truth=truth, snr=snr, clean=clean, data=data, sigma=sigma, psf=psf_img, fwhm=fwhm)
