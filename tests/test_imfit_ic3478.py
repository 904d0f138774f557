"""IC 3478 (SDSS r): reproduce Imfit's published Sérsic fits (mask; mask + PSF).

Reference: perwin/imfit docs/imfit_tutorial.md, values in galmoss_jax/data/ic3478/reference_fits.json.
Imfit coordinates are 1-based (x0 = X0 - 1), ell = 1 - q, PA in the same convention as ours.
"""
import json
import os

import pytest
from astropy.io import fits

import galmoss_jax as gj
from galmoss_jax import fit

HERE = os.path.join(os.path.dirname(gj.__file__), "data", "ic3478")
GAIN, RN, SKY = 4.725, 4.3, 130.14


def _ref(fid):
    fits_ = json.load(open(os.path.join(HERE, "reference_fits.json")))["fits"]
    return next(f for f in fits_ if f["id"] == fid)


def _load():
    data = fits.getdata(os.path.join(HERE, "ic3478rss_256.fits")).astype(float)
    bad = fits.getdata(os.path.join(HERE, "ic3478rss_256_mask.fits"))
    psf = fits.getdata(os.path.join(HERE, "psf_moffat_51.fits")).astype(float)
    return data, bad == 0, psf


# Imfit's starting values (config_sersic_ic3478_256.dat), converted: X0, Y0 129 -> 128 0-based
INIT = {"x0": 128.0, "y0": 128.0, "pa": 18.0, "q": 0.8, "n": 1.5, "r_e": 25.0, "mag": 10.0}


@pytest.fixture(scope="module")
def fits_ic3478():
    data, mask, psf = _load()
    out = {}
    with pytest.warns(UserWarning, match="normalised"):
        out["psf"] = fit("sersic", data, mask=mask, psf=psf, gain=GAIN, read_noise=RN, sky=SKY,
                         zeropoint=20.0, init=INIT)
    out["nopsf"] = fit("sersic", data, mask=mask, gain=GAIN, read_noise=RN, sky=SKY, zeropoint=20.0, init=INIT)
    return out


@pytest.mark.parametrize("key,fid", [("nopsf", "ic3478_256_sersic_masked"), ("psf", "ic3478_256_sersic_masked_psf")])
def test_reproduces_imfit(fits_ic3478, key, fid):
    ref = _ref(fid)
    r = fits_ic3478[key]
    t = r.to_table()[0]
    s = ref["params"]["Sersic"]
    print(f"\n{fid}: chi2_nu {t['chi2_nu']:.6f} (Imfit {ref['reduced_chi2']}), n {t['sersic_n']:.5f} ({s['n'][0]}), "
          f"r_e {t['sersic_r_e']:.4f} ({s['r_e'][0]}), x0+1 {t['sersic_x0'] + 1:.4f} ({ref['params']['X0'][0]}), "
          f"y0+1 {t['sersic_y0'] + 1:.4f} ({ref['params']['Y0'][0]}), pa {t['sersic_pa']:.4f} ({s['PA'][0]}), "
          f"q {t['sersic_q']:.5f} ({1 - s['ell'][0]:.5f}), n_iter {t['n_iter']}")
    assert t["status"] == 0
    assert abs(t["chi2_nu"] / ref["reduced_chi2"] - 1) < 1e-3
    assert abs(t["sersic_n"] / s["n"][0] - 1) < 0.01
    assert abs(t["sersic_r_e"] / s["r_e"][0] - 1) < 0.01
    assert abs(t["sersic_x0"] + 1 - ref["params"]["X0"][0]) < 0.02
    assert abs(t["sersic_y0"] + 1 - ref["params"]["Y0"][0]) < 0.02
    assert abs(t["sersic_pa"] - s["PA"][0]) < 0.2
    assert abs(t["sersic_q"] - (1 - s["ell"][0])) < 0.002
    # errors within 20% of Imfit's
    for col, (ref_val, ref_err) in [("sersic_n", s["n"]), ("sersic_r_e", s["r_e"]), ("sersic_pa", s["PA"]),
                                    ("sersic_q", s["ell"]), ("sersic_x0", ref["params"]["X0"]),
                                    ("sersic_y0", ref["params"]["Y0"])]:
        ratio = t[col + "_err"] / ref_err
        print(f"  {col}_err {t[col + '_err']:.5g} / Imfit {ref_err:.5g} = {ratio:.3f}")
        assert 0.8 < ratio < 1.2, col
