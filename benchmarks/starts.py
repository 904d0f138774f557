"""Cost of the starting strategies of ``fit``: ``starts=1``, ``"auto"`` (screen + one LM) and
``starts=3`` (screen + three LM runs, batch tiled G x 3), from the automatic values and from a
poor start (n = 1, r_e = 5 px, q = 1, pa = 0, centred).

Galaxies: G drawn as in ``tests/_sims.starts_sample()`` (GalSim Sérsics on 32x32 stamps,
n 0.5-6, r_e 1-8 px, S/N 20-500, Gaussian PSF), the tests' sampling settings, float64.
Each configuration is called twice; *steady* is the second call (compiled).  *failures* are
fits whose chi2 exceeds the chi2 of the true parameters by more than 3.

    python benchmarks/starts.py [--G 32]
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
sys.path.insert(0, os.path.join(ROOT, "tests"))
import _sims as S  # noqa: E402
import galmoss_jax as gj  # noqa: E402
from galmoss_jax import fit  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--G", type=int, default=32)
    a = ap.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    sm = S.starts_sample(G=max(a.G, 1))
    G = a.G
    psf = S.psf_image()
    mt = np.asarray(gj.render("sersic", S.truth_params(sm["truth"]), (S.NY, S.NX), psf=psf, zeropoint=S.ZP,
                              sampling=S.SAMPLING))
    chi2_t = (((sm["data"] - mt) / sm["sigma"]) ** 2).sum(axis=(1, 2))
    rows = []
    for label, init in (("automatic", None), ("poor", S.poor_start(G))):
        base = None
        for starts in (1, "auto", 3):
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                r = fit("sersic", sm["data"], sigma=sm["sigma"], psf=psf, zeropoint=S.ZP, sampling=S.SAMPLING,
                        init=init, starts=starts)
                times.append(time.perf_counter() - t0)
            if base is None:
                base = times[1]
            fail = int(((r.chi2 - chi2_t) > 3).sum())
            rows.append((label, str(starts), times[0], times[1], times[1] / base, fail, int(np.max(r.n_iter))))
            print(f"{label:9s} starts={str(starts):4s} first {times[0]:7.1f} s  steady {times[1]:7.1f} s  "
                  f"x{times[1] / base:4.2f} of starts=1  failures {fail}/{G}  max LM iterations {rows[-1][-1]}",
                  flush=True)


if __name__ == "__main__":
    main()
