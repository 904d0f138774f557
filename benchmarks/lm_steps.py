"""Levenberg-Marquardt trial steps and outcomes on two problem sets (the damping rule and the
box on the unconstrained parameters, ``galmoss_jax/solvers/lm.py``).

* the 200 simulated galaxies of ``tests/test_init_multistart.py`` (32 x 32, Gaussian PSF, S/N
  20-500, r_e 0.7-8 px, n 0.5-6): from one poor start for all with ``starts=1``, from their
  automatic values (the defaults), and from the poor start with the defaults: total trial
  steps, the most for one galaxy, fits more than 3 above the chi2 of the true parameters,
  status counts, the summed chi2;
* the 26-parameter spiral-arm model of ``notebooks/spiral.ipynb`` (73 x 73, SDSS r, from
  GALFIT's solution, ``max_iter=300``): trial steps, status, chi2, seconds (after compiling).

Float64.  Steps and outcomes do not depend on the machine; seconds do.

    python benchmarks/lm_steps.py
"""
from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))


def main():
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from astropy.io import fits

    import galmoss_jax as gj
    from galmoss_jax.galfit import feedme_from_imgblock, feedme_model
    import _sims as S

    sm = S.starts_sample()
    G = len(sm["snr"])
    truth = np.asarray(gj.render("sersic", S.truth_params(sm["truth"]), (S.NY, S.NX), psf=S.psf_image(),
                                 zeropoint=S.ZP, sampling=S.SAMPLING))
    chi2_truth = (((sm["data"] - truth) / sm["sigma"]) ** 2).sum(axis=(1, 2))
    print(f"{G} galaxies of tests/test_init_multistart.py")
    for label, init, starts in (("poor start, starts=1", S.poor_start(G), 1), ("automatic values (defaults)", None, "auto"),
                                ("poor start, defaults", S.poor_start(G), "auto")):
        t = time.perf_counter()
        r = gj.fit("sersic", sm["data"], sigma=sm["sigma"], psf=S.psf_image(), zeropoint=S.ZP, sampling=S.SAMPLING,
                   init=init, starts=starts)
        dt = time.perf_counter() - t
        status = {gj.Status(s).name: int(c) for s, c in enumerate(np.bincount(r.status)) if c}
        print(f"  {label:28s} steps {int(r.n_iter.sum()):5d} (most {int(r.n_iter.max()):3d}), "
              f"> truth + 3: {int(((r.chi2 - chi2_truth) > 3).sum()):2d}, status {status}, "
              f"sum chi2 {r.chi2.sum():.3f}  ({dt:.1f} s with compiling)")

    spirals = os.path.join(ROOT, "tests", "data", "galfit_spirals")
    with fits.open(os.path.join(spirals, "sdss_1237667735565238388_data.fits.gz")) as h:
        data = h[0].data.astype(float)
        mask = h["BADPIX"].data == 0
        sigma = np.sqrt(np.clip(data - h[0].header["SOFTBIAS"], 0, None) / 4.7 + 1.3)
    feedme = feedme_from_imgblock(os.path.join(spirals, "sdss_1237667735565238388.fits.gz"))
    gm, gi = feedme_model(feedme)
    values = {k: float(v) for k, v in gm.complete(gi).items()}
    fixed = dict(gm.fixed)
    fixed.update({"sersic2.n": 0.2, "sersic3.rot_r_in": 0.0})
    model = gj.Model(gm.components, fixed=fixed, free=["sersic3.incl", "sersic3.sky_pa"])
    start = {k: values[k] for k in model.free_names}
    for rep in range(2):
        t = time.perf_counter()
        r = gj.fit(model, data, sigma=sigma, mask=mask, zeropoint=feedme.zeropoint, init=start, starts=1,
                   max_iter=300)
        dt = time.perf_counter() - t
    print(f"spiral model ({len(model.free_names)} free): steps {int(r.n_iter[0])}, status "
          f"{gj.Status(int(r.status[0])).name}, chi2 {float(r.chi2[0]):.3f}, {dt:.2f} s")


if __name__ == "__main__":
    main()
