"""Imfit (pyimfit) on the simulated galaxies of ``tests/test_init_multistart.py``, from starts
near the truth: the reference that galmoss_jax's fits from automatic or poor starts must match.

Run with an environment that has pyimfit (it is not a galmoss_jax dependency), e.g.::

    PYTHONPATH=$PWD /work/venv-peers/bin/python benchmarks/starts_vs_imfit.py [--write]

The 200 galaxies are exactly the test's (``tests/_sims.py``: same GalSim images, noise and
seed).  Imfit 1.x through pyimfit 1.1 fits a Sersic (``PA, ell = 1 - q, n, I_e, r_e``; 1-based
centre) convolved with the same 11x11 PSF image, with its default pixel sub-sampling, the
same sigma maps and its LM solver, from the truth perturbed by up to 0.5 px, 10 % in r_e
and n, 5 % in q, 5 deg and 0.1 mag.  The total magnitude is ``zp - 2.5 log10 F`` with
``F = 2 pi q r_e^2 I_e n e^b Gamma(2n) / b^(2n)``.  ``--write`` stores the medians by S/N bin
in ``tests/data/imfit_starts.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
from scipy.special import gamma, gammaincinv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import _sims as S   # noqa: E402
import pyimfit      # noqa: E402


def sersic_flux(I_e, r_e, n, q):
    b = gammaincinv(2 * n, 0.5)
    return 2 * math.pi * q * r_e ** 2 * I_e * n * math.exp(b) * gamma(2 * n) / b ** (2 * n)


def imfit_fits(sm, psf, nx, seed=7):
    """Imfit (LM) from starts near the truth for every galaxy of the sample ``sm``."""
    t, G = sm["truth"], len(sm["snr"])
    rng = np.random.default_rng(seed)
    fit = {k: np.zeros(G) for k in ("x0", "y0", "mag", "r_e", "n", "q", "pa")}
    conv = np.zeros(G, bool)
    for g in range(G):
        n0 = min(t["n"][g] * (1 + rng.uniform(-0.1, 0.1)), 9.9)
        re0 = t["r_e"][g] * (1 + rng.uniform(-0.1, 0.1))
        q0 = min(t["q"][g] * (1 + rng.uniform(-0.05, 0.05)), 0.99)
        f0 = 10 ** (-0.4 * (t["mag"][g] + 0.1 - S.ZP))
        b0 = gammaincinv(2 * n0, 0.5)
        ie0 = f0 / (2 * math.pi * q0 * re0 ** 2 * n0 * math.exp(b0) * gamma(2 * n0) / b0 ** (2 * n0))
        md = pyimfit.SimpleModelDescription()
        md.x0.setValue(t["x0"][g] + 1 + rng.uniform(-0.5, 0.5), [0, nx + 1])
        md.y0.setValue(t["y0"][g] + 1 + rng.uniform(-0.5, 0.5), [0, nx + 1])
        ser = pyimfit.make_imfit_function("Sersic")
        ser.PA.setValue(t["pa"][g] + rng.uniform(-5, 5), [-360, 360])
        ser.ell.setValue(1 - q0, [0.0, 0.95])
        ser.n.setValue(n0, [0.2, 10.0])
        ser.I_e.setValue(ie0, [ie0 * 1e-3, ie0 * 1e3])
        ser.r_e.setValue(re0, [0.1, 200.0])
        md.addFunction(ser)
        im = pyimfit.Imfit(md, psf=psf, quiet=True)
        im.fit(sm["data"][g], error=sm["sigma"][g], solver="LM")
        p = im.getRawParameters()   # X0, Y0, PA, ell, n, I_e, r_e
        conv[g] = im.fitConverged
        q = 1 - p[3]
        fit["x0"][g], fit["y0"][g] = p[0] - 1, p[1] - 1
        fit["pa"][g], fit["q"][g], fit["n"][g], fit["r_e"][g] = p[2], q, p[4], p[6]
        fit["mag"][g] = S.ZP - 2.5 * math.log10(sersic_flux(p[5], p[6], p[4], q))
    return fit, conv


def medians(sm, fit):
    t = sm["truth"]
    dre = np.abs(fit["r_e"] / t["r_e"] - 1)
    dn = np.abs(fit["n"] / t["n"] - 1)
    dmag = np.abs(fit["mag"] - t["mag"])
    out = {}
    print("median |dr_e|/r_e, |dn|/n, |dmag| by S/N bin")
    for lo, hi in S.SNR_BINS:
        sel = (sm["snr"] >= lo) & (sm["snr"] < hi)
        out[f"{lo}-{hi}"] = [float(np.median(dre[sel])), float(np.median(dn[sel])), float(np.median(dmag[sel]))]
        print(f"  S/N {lo:3d}-{hi:3d} ({sel.sum():3d}): {out[f'{lo}-{hi}'][0]:.4f} {out[f'{lo}-{hi}'][1]:.4f} "
              f"{out[f'{lo}-{hi}'][2]:.4f}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--range", action="store_true",
                    help="the galaxies of tests/_sims.range_sample() (r_e 0.3-10 PSF FWHMs, two Moffat PSFs) "
                         "instead of starts_sample(); --write stores tests/data/imfit_starts_range.json")
    args = ap.parse_args()
    t0 = time.time()
    if args.range:
        sets = [(f"fwhm {f}", S.range_sample(f)) for f in S.RANGE_FWHM]
        sets = [(name, sm, sm["psf"], S.RANGE_NX) for name, sm in sets]
    else:
        sm = S.starts_sample()
        sets = [("", sm, S.psf_image(), S.NX)]
    print(f"simulated in {time.time() - t0:.1f} s; pyimfit {pyimfit.__version__}")
    result = {}
    for name, sm, psf, nx in sets:
        t0 = time.time()
        fit, conv = imfit_fits(sm, psf, nx)
        G = len(sm["snr"])
        dt = time.time() - t0
        print(f"Imfit {name}: {G} fits in {dt:.1f} s ({G / dt:.1f} galaxies/s); converged {conv.sum()}/{G}")
        result[name] = dict(median_by_snr=medians(sm, fit), converged=int(conv.sum()), n_galaxies=G)
    if args.write:
        if args.range:
            path = os.path.join(ROOT, "tests", "data", "imfit_starts_range.json")
            doc = {"source": "benchmarks/starts_vs_imfit.py --range, pyimfit " + pyimfit.__version__
                   + ", starts near the truth, the galaxies of tests/_sims.range_sample(fwhm)",
                   "columns": ["median |dr_e|/r_e", "median |dn|/n", "median |dmag|"], "by_psf": result}
        else:
            path = os.path.join(ROOT, "tests", "data", "imfit_starts.json")
            doc = {"source": "benchmarks/starts_vs_imfit.py, pyimfit " + pyimfit.__version__
                   + ", starts near the truth, the galaxies of tests/_sims.starts_sample()",
                   "columns": ["median |dr_e|/r_e", "median |dn|/n", "median |dmag|"], **result[""]}
        with open(path, "w") as fh:
            json.dump(doc, fh, indent=1)
        print("wrote", path)


if __name__ == "__main__":
    main()
