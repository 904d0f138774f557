"""The peer-benchmark convention conversions (benchmarks/peers/conventions.py).

References: GalSim's surface brightness (``xValue``) for the amplitudes that Imfit and
AstroPhot fit instead of a magnitude, and exact round trips for the geometric conversions.
The renders against the peers themselves are in benchmarks/peers/check_conventions.py (they
need the peers installed).
"""
import importlib.util
import os

import galsim
import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "peers", "conventions.py")
_spec = importlib.util.spec_from_file_location("peer_conventions", _PATH)
cv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cv)

ZP = 25.0
RNG = np.random.default_rng(7)
CASES = [dict(x0=RNG.uniform(0, 60), y0=RNG.uniform(0, 60), mag=RNG.uniform(15, 20), r_e=RNG.uniform(1, 20),
              n=RNG.uniform(0.5, 6), q=RNG.uniform(0.25, 1.0), pa=RNG.uniform(-89, 89)) for _ in range(6)]


def _major_axis_point(r, pa):
    """(x, y) at distance r along the major axis, pa counter-clockwise from +y."""
    t = np.deg2rad(pa)
    return -r * np.sin(t), r * np.cos(t)


@pytest.mark.parametrize("p", CASES)
def test_sersic_amplitude_matches_galsim(p):
    F = cv.flux_of_mag(p["mag"], ZP)
    ie = cv.sersic_ie(F, p["r_e"], p["n"], p["q"])
    gal = galsim.Sersic(p["n"], half_light_radius=p["r_e"] * np.sqrt(p["q"]), flux=F)
    gal = gal.shear(q=p["q"], beta=(p["pa"] + 90.0) * galsim.degrees)
    x, y = _major_axis_point(p["r_e"], p["pa"])
    assert ie == pytest.approx(gal.xValue(galsim.PositionD(x, y)), rel=1e-4)
    # and the inverse gives the flux back
    assert cv.sersic_flux(ie, p["r_e"], p["n"], p["q"]) == pytest.approx(F, rel=1e-12)


@pytest.mark.parametrize("p", CASES[:3])
def test_exponential_amplitudes_match_galsim(p):
    r_s, F = p["r_e"] / 2, cv.flux_of_mag(p["mag"], ZP)
    gal = galsim.Exponential(scale_radius=r_s * np.sqrt(p["q"]), flux=F).shear(q=p["q"], beta=(p["pa"] + 90) * galsim.degrees)
    d = dict(p, r_s=r_s)
    i0 = cv.to_imfit_exponential(d, ZP)["I_0"]
    assert i0 == pytest.approx(gal.xValue(galsim.PositionD(0, 0)), rel=1e-6)
    a = cv.to_astrophot_exponential(d, ZP)           # half-light radius and I(Re)
    x, y = _major_axis_point(a["Re"], p["pa"])
    assert a["Ie"] == pytest.approx(gal.xValue(galsim.PositionD(x, y)), rel=1e-4)


@pytest.mark.parametrize("p", CASES)
def test_round_trips(p):
    for to, back in ((lambda q: cv.to_imfit_sersic(q, ZP), lambda v: cv.from_imfit_sersic(v, ZP)),
                     (lambda q: cv.to_astrophot_sersic(q, ZP), lambda v: cv.from_astrophot_sersic(v, ZP)),
                     (cv.to_galmoss_sersic, cv.from_galmoss_sersic)):
        got = back(to(p))
        for k in ("x0", "y0", "mag", "r_e", "n", "q"):
            assert got[k] == pytest.approx(p[k], rel=1e-10, abs=1e-10), k
        assert cv.pa_distance(got["pa"], p["pa"]) < 1e-9
    # Imfit's 1-based centres, AstroPhot's radians, GALMOSS's half-pixel offset
    assert cv.to_imfit_sersic(p, ZP)["x0"] == pytest.approx(p["x0"] + 1)
    assert cv.to_astrophot_sersic(p, ZP)["PA"] == pytest.approx(np.deg2rad(np.mod(p["pa"], 180)))
    assert cv.to_galmoss_sersic(p)["cen_y"] == pytest.approx(p["y0"] + 0.5)
