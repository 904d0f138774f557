"""Seeded SDSS-like simulated galaxies drawn by GalSim, and the two start sets.

Stamps 128x128 px; Moffat PSF FWHM 3.5 px, beta 3.5, given to the fitters as a 41x41 image
sampled at pixel centres (normalised); GalSim draws galaxy (x) PSF (x) pixel exactly
(``drawImage(method='auto')``).  Image units: ADU with zero point 26.0 (mag = 26 - 2.5 log10
ADU), SDSS r-like noise: a sky of 130 ADU/pixel (already subtracted, as in SDSS frames),
gain 4.7 e-/ADU, read noise 5 e-.  Noise: Poisson in electrons on (galaxy + sky), the sky
subtracted afterwards; the sigma map is built from the noisy data as GALFIT/Imfit do,
sigma^2 = max(data + sky, sky)/gain + (rn/gain)^2.  Each galaxy's total flux is set so that its
matched-filter S/N, sqrt(sum(model^2 / sigma_model^2)), equals a value drawn log-uniformly
in 20-500.

Single Sérsic: r_e 1-20 px (log-uniform), n 0.5-6 (log-uniform), q 0.25-1, pa uniform in
(-90, 90], centre within 2 px of the stamp centre.  Bulge + disk: bulge n 2-5, r_e 1-5 px,
q 0.6-1; exponential disk r_s 3-12 px, q 0.25-1; B/T 0.15-0.6; a shared centre.
"""
from __future__ import annotations

import numpy as np

ZP = 26.0
SKY = 130.0
GAIN = 4.7
RN = 5.0
STAMP = 128
PSF_FWHM, PSF_BETA, PSF_N = 3.5, 3.5, 41


def psf_image():
    import galsim

    img = galsim.Moffat(beta=PSF_BETA, fwhm=PSF_FWHM).drawImage(nx=PSF_N, ny=PSF_N, scale=1.0, method="no_pixel").array
    return np.asarray(img / img.sum(), float)


def _draw(profiles, x0, y0):
    """Unit-total-flux image of sum(profiles) (x) PSF (x) pixel centred at 0-based (x0, y0)."""
    import galsim

    gsp = galsim.GSParams(maximum_fft_size=16384, folding_threshold=2e-3)
    psf = galsim.Moffat(beta=PSF_BETA, fwhm=PSF_FWHM, gsparams=gsp)
    gal = galsim.Convolve([galsim.Add(profiles) if len(profiles) > 1 else profiles[0], psf], gsparams=gsp)
    c = (STAMP - 1) / 2.0      # GalSim's true centre of an even stamp, 0-based
    return gal.drawImage(nx=STAMP, ny=STAMP, scale=1.0, method="auto", offset=(x0 - c, y0 - c)).array.astype(float)


def _sersic(n, r_e, q, pa, flux):
    import galsim

    # GalSim: half_light_radius is circularised (sqrt(q) * semi-major); beta from +x, so pa + 90
    g = galsim.Sersic(n, half_light_radius=r_e * np.sqrt(q), flux=flux,
                      gsparams=galsim.GSParams(maximum_fft_size=16384, folding_threshold=2e-3))
    return g.shear(q=q, beta=(pa + 90.0) * galsim.degrees)


def _exponential(r_s, q, pa, flux):
    import galsim

    g = galsim.Exponential(scale_radius=r_s * np.sqrt(q), flux=flux)
    return g.shear(q=q, beta=(pa + 90.0) * galsim.degrees)


def _flux_for_snr(shape, snr):
    """Total flux (ADU) giving the matched-filter S/N for a unit-flux image ``shape``."""
    def s2n(F):
        m = F * shape
        var = (m + SKY) / GAIN + (RN / GAIN) ** 2
        return np.sqrt(np.sum(m ** 2 / var))
    lo, hi = 1.0, 1e9
    for _ in range(80):  # bisection in log F (S/N grows monotonically with F)
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if s2n(mid) < snr else (lo, mid)
    return np.sqrt(lo * hi)


def make_set(kind, G, seed):
    """Truth parameters (galmoss_jax conventions), data, sigma, mask, PSF cube, zero point."""
    rng = np.random.default_rng(seed)
    c = (STAMP - 1) / 2.0
    x0, y0 = c + rng.uniform(-2, 2, G), c + rng.uniform(-2, 2, G)
    snr = np.exp(rng.uniform(np.log(20), np.log(500), G))
    if kind == "sersic":
        t = dict(x0=x0, y0=y0, r_e=np.exp(rng.uniform(np.log(1), np.log(20), G)),
                 n=np.exp(rng.uniform(np.log(0.5), np.log(6), G)), q=rng.uniform(0.25, 1.0, G),
                 pa=rng.uniform(-90, 90, G))
    else:
        t = dict(x0=x0, y0=y0, b_r_e=rng.uniform(1, 5, G), b_n=rng.uniform(2, 5, G), b_q=rng.uniform(0.6, 1.0, G),
                 b_pa=rng.uniform(-90, 90, G), d_r_s=rng.uniform(3, 12, G), d_q=rng.uniform(0.25, 1.0, G),
                 d_pa=rng.uniform(-90, 90, G))
        bt = rng.uniform(0.15, 0.6, G)
    clean = np.empty((G, STAMP, STAMP))
    for g in range(G):
        if kind == "sersic":
            unit = _draw([_sersic(t["n"][g], t["r_e"][g], t["q"][g], t["pa"][g], 1.0)], x0[g], y0[g])
        else:
            unit = _draw([_sersic(t["b_n"][g], t["b_r_e"][g], t["b_q"][g], t["b_pa"][g], bt[g]),
                          _exponential(t["d_r_s"][g], t["d_q"][g], t["d_pa"][g], 1.0 - bt[g])], x0[g], y0[g])
        F = _flux_for_snr(unit, snr[g])
        clean[g] = F * unit
        if kind == "sersic":
            t.setdefault("mag", np.empty(G))[g] = ZP - 2.5 * np.log10(F)
        else:
            t.setdefault("b_mag", np.empty(G))[g] = ZP - 2.5 * np.log10(F * bt[g])
            t.setdefault("d_mag", np.empty(G))[g] = ZP - 2.5 * np.log10(F * (1 - bt[g]))
    electrons = rng.poisson(np.clip((clean + SKY) * GAIN, 0, None)) + rng.normal(0, RN, clean.shape)
    data = electrons / GAIN - SKY
    sigma = np.sqrt(np.maximum(data + SKY, SKY) / GAIN + (RN / GAIN) ** 2)
    psf = np.broadcast_to(psf_image(), (G, PSF_N, PSF_N)).copy()
    return dict(truth=t, snr=snr, data=data, sigma=sigma, mask=np.ones(data.shape, bool), psf=psf, zp=ZP, kind=kind)


def perturbed_start(truth, kind, seed):
    """Truth perturbed as a catalogue would give it: sizes x(1 +- 10-20 %), n x(1 +- 10-20 %),
    mag +- 0.3, centre <= 1 px, q x(1 +- 5-15 %), pa +- 10 deg."""
    rng = np.random.default_rng(seed)
    G = len(truth["x0"])
    sgn = lambda: rng.choice([-1.0, 1.0], G)  # noqa: E731
    out = dict(x0=truth["x0"] + rng.uniform(-1, 1, G), y0=truth["y0"] + rng.uniform(-1, 1, G))
    pre = [""] if kind == "sersic" else ["b_", "d_"]
    for p in pre:
        out[p + "mag"] = truth[p + "mag"] + 0.3 * sgn()
        r = "r_s" if p == "d_" else "r_e"
        out[p + r] = truth[p + r] * (1 + sgn() * rng.uniform(0.1, 0.2, G))
        if p != "d_":
            out[p + "n"] = truth[p + "n"] * (1 + sgn() * rng.uniform(0.1, 0.2, G))
        out[p + "q"] = np.clip(truth[p + "q"] * (1 + sgn() * rng.uniform(0.05, 0.15, G)), 0.1, 0.95)
        out[p + "pa"] = truth[p + "pa"] + 10.0 * sgn()
    return out


def poor_start(data, kind, zp):
    """The same uninformed start for every galaxy: n = 1, r_e = 5 px, q = 1 (0.95 where a
    fitter needs q < 1 strictly: Imfit's ell = 0 is a degenerate pa), pa = 0, centre at the
    stamp centre, mag from the total flux of the stamp.  Bulge + disk: half the flux in each,
    bulge n = 1 (r_e = 2.5 px), disk r_s = 5 px."""
    G, H, W = data.shape
    c = np.full(G, (H - 1) / 2.0)
    F = np.clip(data.reshape(G, -1).sum(axis=1), 1.0, None)
    mag = zp - 2.5 * np.log10(F)
    if kind == "sersic":
        return dict(x0=c.copy(), y0=c.copy(), mag=mag, r_e=np.full(G, 5.0), n=np.full(G, 1.0), q=np.full(G, 0.95),
                    pa=np.zeros(G))
    half = mag + 2.5 * np.log10(2.0)
    return dict(x0=c.copy(), y0=c.copy(), b_mag=half, b_r_e=np.full(G, 2.5), b_n=np.full(G, 1.0), b_q=np.full(G, 0.95),
                b_pa=np.zeros(G), d_mag=half.copy(), d_r_s=np.full(G, 5.0), d_q=np.full(G, 0.95), d_pa=np.zeros(G))
