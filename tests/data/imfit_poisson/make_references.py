"""Writes references.json and imfit_model_2gauss_initial.fits beside this file with pyimfit.

Not run by the tests (CI has no pyimfit): it records how the Imfit numbers that the Imfit and
pyimfit test suites do not hold were made.  Run with pyimfit 1.1 from PyPI (the release of
perwin/pyimfit @ 9172837336539ca284191666ef9cbdbbb399fe45, which bundles the Imfit library):

    python -m venv /tmp/pyimfit_env && /tmp/pyimfit_env/bin/pip install pyimfit==1.1 astropy
    /tmp/pyimfit_env/bin/python tests/data/imfit_poisson/make_references.py

It also recomputes the numbers that the Imfit and pyimfit test suites do hold (printed at the
end), which it reproduces exactly: the same library gives the new ones.
"""
import json
import os

import numpy as np
import pyimfit
from astropy.io import fits

HERE = os.path.dirname(os.path.abspath(__file__))
IC = os.path.join(HERE, "..", "..", "..", "galmoss_jax", "data", "ic3478")
IC_CONFIG = os.path.join(HERE, "config_sersic_ic3478_256.dat")   # read by the tests as well


def _fit(f, solver):
    r = f.doFit(solver=solver)
    return {"converged": bool(r.fitConverged), "n_iter": int(r.nIter), "fitstat": float(r.fitStat),
            "reduced": float(r.fitStatReduced), "AIC": float(r.aic), "BIC": float(r.bic),
            "params": [float(v) for v in r.params],
            "errors": None if r.paramErrs is None else [float(v) for v in r.paramErrs]}


def ic3478():
    img = fits.getdata(os.path.join(IC, "ic3478rss_256.fits")).astype(float)
    mask = fits.getdata(os.path.join(IC, "ic3478rss_256_mask.fits")).astype(float)
    psf = fits.getdata(os.path.join(IC, "psf_moffat_51.fits")).astype(float)
    desc = pyimfit.ModelDescription.load(IC_CONFIG)
    load = dict(mask=mask, gain=4.725, read_noise=4.3, original_sky=130.14)
    stats = {"poisson-mlr": dict(use_poisson_mlr=True), "cash": dict(use_cash_statistics=True)}
    out = {"settings": "ic3478rss_256.fits, mask ic3478rss_256_mask.fits, PSF psf_moffat_51.fits (normalised by "
                       "Imfit), GAIN 4.725, READNOISE 4.3 (not used by these statistics), ORIGINAL_SKY 130.14, "
                       "config_sersic_ic3478_256.dat; parameter order X0 Y0 PA ell n I_e r_e (Imfit, 1-based)",
           "fits": {}, "values": {}}
    for stat, kw in stats.items():
        for solver in ("LM", "NM"):
            f = pyimfit.Imfit(desc, psf=psf)
            f.loadData(img, **load, **kw)
            out["fits"][f"{stat} {solver}"] = _fit(f, solver)
    out["fits"]["cash LM"]["note"] = ("Imfit's L-M minimises the square roots of the Cash terms, which are not "
                                      "all >= 0: not a Cash minimum (Imfit's docs); recorded only")
    vectors = {"initial": [129.0, 129.0, 18.0, 0.2, 1.5, 15.0, 25.0],
               "pmlr_lm": out["fits"]["poisson-mlr LM"]["params"]}
    out["vectors"] = vectors
    for psf_name, p in (("psf", psf), ("nopsf", None)):
        for stat, kw in stats.items():
            f = pyimfit.Imfit(desc, psf=p)
            f.loadData(img, **load, **kw)
            for vname, v in vectors.items():
                out["values"][f"{stat} {psf_name} {vname}"] = float(f.computeFitStatistic(np.array(v)))
    return out


def two_gaussians():
    """pyimfit's test: PMLR of its 2-Gaussian model at initial_params2, with the PSF; the model image."""
    img = fits.getdata(os.path.join(HERE, "twogaussian_psf+2osamp_noisy.fits")).astype(float)
    psf = fits.getdata(os.path.join(HERE, "psf_moffat_35.fits")).astype(float)
    desc = pyimfit.ModelDescription.load(os.path.join(HERE, "config_imfit_2gauss_small.dat"))
    f = pyimfit.Imfit(desc, psf=psf)
    f.loadData(img, use_poisson_mlr=True, gain=1000)
    vec = np.array([40.0, 40.0, 0, 0, 105, 1.5, 15, 10, 0, 0, 95, 1.5, 100])
    value = float(f.computeFitStatistic(vec))
    model = f.getModelImage(newParameters=vec)
    fits.PrimaryHDU(model.astype(np.float64)).writeto(os.path.join(HERE, "imfit_model_2gauss_initial.fits"),
                                                      overwrite=True)
    return value


def low_sn():
    """Imfit's test suite: the Poisson fits of testimage_poisson_lowsn20.fits (do_imfit_tests)."""
    img = fits.getdata(os.path.join(HERE, "testimage_poisson_lowsn20.fits.gz")).astype(float)
    desc = pyimfit.ModelDescription.load(os.path.join(HERE, "config_imfit_poisson.dat"))
    out = {}
    for name, kw, solver in (("poisson-mlr LM", dict(use_poisson_mlr=True), "LM"),
                             ("cash NM", dict(use_cash_statistics=True), "NM")):
        f = pyimfit.Imfit(desc)
        f.loadData(img, **kw)
        out[name] = _fit(f, solver)
    return out


if __name__ == "__main__":
    refs = {"made_with": f"pyimfit {pyimfit.__version__} (PyPI), tests/data/imfit_poisson/make_references.py",
            "ic3478": ic3478()}
    with open(os.path.join(HERE, "references.json"), "w") as fh:
        json.dump(refs, fh, indent=1)
        fh.write("\n")
    # the numbers the test suites hold, recomputed with the same library
    print("2 Gaussians PMLR at initial_params2:", repr(two_gaussians()), "(pyimfit test: 155995.348653)")
    low = low_sn()
    print("low-S/N PMLR L-M:", low["poisson-mlr LM"]["AIC"], "(imfit_textout5c_tail AIC 22790.496751)")
    print("low-S/N Cash N-M:", low["cash NM"]["AIC"], "(imfit_textout5a_tail AIC -2611589.269141)")
