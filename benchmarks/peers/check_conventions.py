"""Verify the convention conversions of ``conventions.py`` by rendering the same galaxies with
every installed peer and with ``galmoss_jax.render``.

For each tool and galaxy it prints max |tool - galmoss_jax| / peak and the flux ratio for the
adopted conversion, and the same for the nearest wrong conventions (pa mirrored, pa + 90,
centre shifted by half or one pixel, y flipped) so one sees that the check can tell them
apart: the adopted conversion must be the one with the smallest difference, by a wide margin.
Differences that remain come from each tool's pixel integration (GALMOSS samples pixel centres
only; Imfit and AstroPhot subsample the centre) and PSF edge handling.

    PYTHONPATH=$PWD /work/venv-peers/bin/python benchmarks/peers/check_conventions.py
"""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import tools  # noqa: E402

ZP = 25.0
SHAPE = (64, 64)


def moffat_psf(n=21, fwhm=3.5, beta=3.5):
    import galsim

    img = galsim.Moffat(beta=beta, fwhm=fwhm).drawImage(nx=n, ny=n, scale=1.0, method="no_pixel").array
    return np.asarray(img / img.sum(), float)


GALAXIES = {
    "sersic n=2.5 r_e=8 q=0.55 pa=30": ("sersic", dict(x0=30.3, y0=34.7, mag=17.0, r_e=8.0, n=2.5, q=0.55, pa=30.0)),
    "sersic n=1 r_e=5 q=0.4 pa=-65": ("sersic", dict(x0=33.6, y0=29.2, mag=18.0, r_e=5.0, n=1.0, q=0.4, pa=-65.0)),
    "bulge+disk": ("bd", dict(x0=31.4, y0=32.8, b_mag=18.5, b_r_e=4.0, b_n=2.0, b_q=0.8, b_pa=10.0,
                              d_mag=17.5, d_r_s=6.0, d_q=0.45, d_pa=50.0)),
}


def variants(kind, p):
    """The adopted parameters and the nearest wrong conventions."""
    def mod(f):
        q = dict(p)
        f(q)
        return q
    pas = ["pa"] if kind == "sersic" else ["b_pa", "d_pa"]
    out = {"adopted": dict(p)}
    out["pa -> -pa"] = mod(lambda q: [q.__setitem__(k, -q[k]) for k in pas])
    out["pa -> pa+90"] = mod(lambda q: [q.__setitem__(k, q[k] + 90) for k in pas])
    out["x0,y0 + 0.5 px"] = mod(lambda q: (q.__setitem__("x0", q["x0"] + 0.5), q.__setitem__("y0", q["y0"] + 0.5)))
    out["x0,y0 - 0.5 px"] = mod(lambda q: (q.__setitem__("x0", q["x0"] - 0.5), q.__setitem__("y0", q["y0"] - 0.5)))
    out["x0,y0 + 1 px"] = mod(lambda q: (q.__setitem__("x0", q["x0"] + 1.0), q.__setitem__("y0", q["y0"] + 1.0)))
    out["y flipped"] = mod(lambda q: q.__setitem__("y0", SHAPE[0] - 1 - q["y0"]))
    return out


def compare(ref, img):
    return float(np.max(np.abs(img - ref)) / np.max(ref)), float(img.sum() / ref.sum())


def main():
    psf = moffat_psf()
    peers = [t for t in ("imfit", "astrophot", "galmoss") if importlib.util.find_spec(tools.MODULES[t])]
    print(f"peers found: {peers}; stamp {SHAPE}, Moffat PSF FWHM 3.5 px beta 3.5 (21x21), zp {ZP}")
    worst = {}
    ok = True
    for gname, (kind, p) in GALAXIES.items():
        ref = tools.render_galmoss_jax(kind, p, SHAPE, psf, ZP)
        for t in peers:
            rows = []
            for vname, q in variants(kind, p).items():
                img = tools.RENDERERS[t](kind, q, SHAPE, psf, ZP)
                rows.append((vname, *compare(ref, img)))
            best = min(rows, key=lambda r: r[1])
            adopted = rows[0]
            runner_up = min(r[1] for r in rows[1:])
            good = best[0] == "adopted" and runner_up > 3 * adopted[1]
            ok &= good
            worst[t] = max(worst.get(t, 0.0), adopted[1])
            print(f"\n{gname} -- {t}: {'OK' if good else 'CONVENTION MISMATCH'}")
            for vname, d, fr in rows:
                print(f"    {vname:16s} max|diff|/peak {d:9.2e}   flux ratio {fr:.5f}")
    print("\nworst adopted-convention difference (max |diff| / peak):",
          ", ".join(f"{t} {v:.1e}" for t, v in worst.items()))
    print("all conventions verified" if ok else "SOME CONVENTIONS DO NOT MATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
