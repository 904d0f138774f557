"""GALFIT's shape modes in feedme files, restart files and image blocks.

A component with ``F1)``-``F10)`` (azimuthal Fourier modes) and ``R0) power`` with ``R1)``-``R4)``,
``R9)``, ``R10)`` (the spiral coordinate rotation) is read as the shaped profile
``"sersic[f1,f3,rot]"`` (galmoss_jax.profiles._shape), its values in GALFIT's units (pixels,
degrees) and its fit toggles kept (R9/R10 free only with toggle 1: ``incl`` and ``sky_pa`` are
fixed by default); restart files write the lines back; the image-block header has GALFIT's keys
(``3_ROTF``, ``3_RIN``, ..., ``3_F1PA``), checked against an image block written by GALFIT itself
(tests/data/galfit_spirals).  Bending modes, truncations, the logarithmic spiral and shape modes
on components that are not elliptical are refused, naming the line.
"""
import os

import numpy as np
import pytest
from astropy.io import fits

import galmoss_jax as gj
from galmoss_jax.galfit import (HEADER_KEYS, SHAPE_HEADER_KEYS, feedme_model, feedme_with_values, fit_feedme,
                                format_feedme, galfit_header, read_constraints, read_feedme)

SPIRAL = os.path.join(os.path.dirname(__file__), "data", "galfit_spirals", "sdss_1237667735565238388.fits.gz")

HEAD = """A) img.fits
B) out.fits
C) none
D) none
G) {g}
H) 2 33 3 34
J) 25.0
P) {p}
"""
PLAIN = """# Component number: 1
 0) sersic
 1) 17.0  18.0 1 1
 3) 18.0 1
 4) 3.0 1
 5) 2.0 1
 9) 0.8 1
10) 20 1
R0) none               # no rotation
 Z) {z}
"""
SHAPED = """# Component number: 2
 0) sersic                 #  Component type
 1) 17.5  18.5 1 1         #  Position x, y
 3) 17.00       1          #  Integrated magnitude
 4) 6.00        1          #  R_e (effective radius)   [pix]
 5) 1.0         1          #  Sersic index n (de Vaucouleurs n=4)
 9) 0.5         1          #  Axis ratio (b/a)
10) 10.0        1          #  Position angle (PA) [deg: Up=0, Left=90]
R0) powerlaw           # PA rotation function (power, log, none)
R1) 3.        1       # bar radius  [pixels]
R2) 10.       1       # 96% asymptotic radius (i.e. at 96% of tanh rotation)
R3) 275.      0       # cumul. coord. rotation out to asymp. radius [degrees]
R4) 0.5       1       # asymptotic spiral arm powerlaw
R9) 30.0      1       # inclination to L.o.S. (controls projected axis ratio)
R10) 90.      0       # sky position angle
F3) 0.05  30   1  0       # Fourier mode 3
F1) 0.20  90   1  1       # Fourier mode 1 (lopsidedness)
 Z) 0                      #  Skip this model in output image?  (yes=1, no=0)
"""
FEED = HEAD + PLAIN + SHAPED


def _write(tmp_path, text, name="f"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_shape_lines_build_the_shaped_model(tmp_path):
    """F and R lines -> the profile 'sersic[f1,f3,rot]' (modes sorted, 'powerlaw' = 'power',
    'R0) none' no rotation), values in GALFIT's units (only x, y shift by the region), toggle 0
    fixes a shape parameter, toggle 1 on R9 frees incl, toggle 0 on R10 keeps sky_pa fixed at
    its value; without R9/R10 incl and sky_pa are fixed at 0."""
    fm = read_feedme(_write(tmp_path, FEED.format(g="none", p=0, z=0)))
    c = fm.components[1]
    assert c.get("F1").values == (0.2, 90.0) and c.get("F1").free == (True, True)
    assert c.get("F3").free == (True, False) and c.get("R10").values == (90.0,)
    model, init = feedme_model(fm)
    assert model.spec_string == "sersic1:sersic+sersic2:sersic[f1,f3,rot]"
    spec = dict(model.components)["sersic2"]
    assert spec.root.name == "sersic" and spec.shape.fourier == (1, 3) and spec.shape.rotation
    fixed = dict(model.fixed)
    assert init["sersic2.x0"] == 17.5 - 2 and init["sersic2.y0"] == 18.5 - 3
    assert (init["sersic2.rot_r_in"], init["sersic2.rot_r_out"], init["sersic2.rot_alpha"]) == (3.0, 10.0, 0.5)
    assert (init["sersic2.f1"], init["sersic2.f1_pa"], init["sersic2.f3"]) == (0.2, 90.0, 0.05)
    assert init["sersic2.incl"] == 30.0 and "sersic2.incl" in model.free_names            # R9 toggle 1
    assert fixed["sersic2.sky_pa"] == 90.0 and "sersic2.sky_pa" not in model.free_names   # R10 toggle 0
    assert fixed["sersic2.rot_theta"] == 275.0 and fixed["sersic2.f3_pa"] == 30.0
    assert {"sersic2.f1", "sersic2.f1_pa", "sersic2.f3", "sersic2.rot_r_in", "sersic2.rot_r_out",
            "sersic2.rot_alpha"} <= set(model.free_names)
    assert not any(n.startswith("sersic1.") and n.split(".")[1] not in ("x0", "y0", "mag", "r_e", "n", "q", "pa", "c0")
                   for n in model.param_names)
    # R9 / R10 absent: face-on, fixed (the profile's defaults); toggles 0 / 1 swapped
    text = FEED.format(g="none", p=0, z=0).replace("R9) 30.0      1", "R9) 30.0      0")
    model2, init2 = feedme_model(read_feedme(_write(tmp_path, text.replace("R10) 90.      0", "R10) 90.      1"))))
    assert dict(model2.fixed)["sersic2.incl"] == 30.0 and init2["sersic2.sky_pa"] == 90.0
    assert "sersic2.sky_pa" in model2.free_names
    lines = [ln for ln in FEED.format(g="none", p=0, z=0).splitlines() if not ln.startswith(("R9)", "R10)"))]
    fm3 = read_feedme(_write(tmp_path, "\n".join(lines) + "\n"))
    model3, init3 = feedme_model(fm3)
    assert fm3.components[1].get("R9").values == (0.0,) and fm3.components[1].get("R9").free == (False,)
    assert dict(model3.fixed)["sersic2.incl"] == 0.0 and dict(model3.fixed)["sersic2.sky_pa"] == 0.0
    assert "sersic2.incl" not in init3


def test_restart_file_round_trip(tmp_path):
    """The restart file (``feedme_with_values`` + ``format_feedme``, what a fit writes to
    galfit.NN) writes 'R0) power', R1-R4, R9, R10 and the F lines with new values and the same
    toggles; reading it gives the same model and those values (6 decimals)."""
    fm = read_feedme(_write(tmp_path, FEED.format(g="none", p=0, z=0)))
    model, init = feedme_model(fm)
    new = {**init, "sersic2.f1": -0.1234567, "sersic2.f1_pa": 123.456789, "sersic2.f3": 0.0765432,
           "sersic2.rot_r_in": -1.25, "sersic2.rot_r_out": 12.5, "sersic2.rot_alpha": 1.75, "sersic2.incl": -32.5961,
           "sersic2.x0": 16.25, "sersic2.r_e": 7.5, "sersic2.rot_theta": 275.0, "sersic2.sky_pa": 90.0,
           "sersic2.f3_pa": 30.0}
    text = format_feedme(feedme_with_values(fm, new))
    shape_keys = ("R0)", "R1)", "R2)", "R3)", "R4)", "R9)", "R10", "F1)", "F3)")
    lines = [ln.split("#")[0].split() for ln in text.splitlines() if ln.strip()[:3] in shape_keys]
    assert [ln[0] for ln in lines] == ["R0)", "R1)", "R2)", "R3)", "R4)", "R9)", "R10)", "F1)", "F3)"]
    assert lines[0][1] == "power" and lines[3][2] == "0" and lines[5][2] == "1" and lines[6][2] == "0"
    assert lines[7][3:] == ["1", "1"] and lines[8][3:] == ["1", "0"]
    back = read_feedme(_write(tmp_path, text, "galfit.01"))
    model_b, init_b = feedme_model(back)
    assert model_b.spec_string == model.spec_string and model_b.free_names == model.free_names
    assert dict(model_b.fixed) == dict(model.fixed) and dict(model_b.bounds) == dict(model.bounds)
    assert init_b.keys() == init.keys()
    for k in init:
        assert init_b[k] == pytest.approx(new[k], abs=1e-6), k
    for a, b in zip(fm.components, back.components):
        assert {p.key: p.free for p in a.params} == {p.key: p.free for p in b.params}
    # and again: the text is a fixed point
    assert format_feedme(back) == text


def test_imgblock_of_a_shaped_component(tmp_path):
    """P) 2: the model extension is the shaped profile rendered at the initial values (the
    plain Sérsic has Z) 1), its header has GALFIT's keys in GALFIT's order, values fixed
    (in brackets) as in every P) 2 block."""
    fits.PrimaryHDU(np.random.default_rng(3).uniform(5, 50, (40, 40))).writeto(tmp_path / "img.fits")
    fm = read_feedme(_write(tmp_path, FEED.format(g="none", p=2, z=1)))
    fit_feedme(fm, output_dir=str(tmp_path))
    p = {"x0": 15.5, "y0": 15.5, "mag": 17.0, "r_e": 6.0, "n": 1.0, "q": 0.5, "pa": 10.0, "rot_r_in": 3.0,
         "rot_r_out": 10.0, "rot_theta": 275.0, "rot_alpha": 0.5, "incl": 30.0, "sky_pa": 90.0, "f1": 0.2,
         "f1_pa": 90.0, "f3": 0.05, "f3_pa": 30.0}
    ref = np.asarray(gj.render("sersic[f1,f3,rot]", p, (32, 32), zeropoint=25.0))
    with fits.open(tmp_path / "out.fits") as hd:
        np.testing.assert_allclose(hd[2].data, ref, rtol=1e-6, atol=1e-9 * ref.max())
        h = hd[2].header
    keys = [k for k in h if k.startswith("2_")]
    assert keys == ["2_XC", "2_YC", "2_MAG", "2_RE", "2_N", "2_AR", "2_PA", "2_ROTF", "2_RIN", "2_ROUT", "2_RANG",
                    "2_ALPHA", "2_INCL", "2_SPA", "2_F1", "2_F1PA", "2_F3", "2_F3PA"]
    assert h["2_ROTF"] == "power" and h["2_RANG"] == "[275.0000]" and h["2_F1PA"] == "[90.0000]"
    assert h["2_INCL"] == "[30.0000]" and h["2_XC"] == "[17.5000]"
    assert not [k for k in h if k == "1_ROTF" or k.startswith("1_") and k[2:] in SHAPE_HEADER_KEYS.values()]


def _galfit_value(s):
    """(value, error or None, fixed) of a GALFIT header value '1.0 +/- 0.1' or '[1.0]'."""
    if s.startswith("["):
        return float(s.strip("[]")), None, True
    v, e = s.split("+/-")
    return float(v.strip("* ")), float(e), False


def test_header_keys_as_galfit_writes_them(tmp_path):
    """An image block written by GALFIT (SpArcFiRe's fit of an SDSS spiral: component 3 a
    Sérsic with the power-law rotation, inclination and Fourier modes 1 and 3): a feedme with
    its values, through galfit_header, gives component 3's keys in GALFIT's order with GALFIT's
    'value +/- error' strings and comments; the fixed ones (x, y) in brackets."""
    g = fits.getheader(SPIRAL)
    names = {v: k for k, v in HEADER_KEYS.items()}
    shape_names = {v: k for k, v in SHAPE_HEADER_KEYS.items()}
    text, values, errors, fixed = HEAD.format(g="none", p=0), {}, {}, set()
    lines = {"x0": "1", "mag": "3", "r_e": "4", "n": "5", "q": "9", "pa": "10", "rot_r_in": "R1",
             "rot_r_out": "R2", "rot_theta": "R3", "rot_alpha": "R4", "incl": "R9", "sky_pa": "R10"}
    for i in (1, 2, 3):
        ks = [k for k in g if k.startswith(f"{i}_")]
        rot = f"{i}_ROTF" in g       # ROUT, ALPHA: the rotation's in a rotated Sérsic
        parsed = {(shape_names.get(k[2:]) if rot else None) or names.get(k[2:]) or shape_names[k[2:]]:
                  _galfit_value(g[k]) for k in ks if k != f"{i}_ROTF"}
        text += " 0) sersic\n"
        for pname, (v, e, fix) in parsed.items():
            full = f"sersic{i}.{pname}"
            values[full] = v
            if fix:
                fixed.add(full)
            else:
                errors[full] = e
            if pname in lines:
                y = parsed["y0"] if pname == "x0" else None
                text += (f"{lines[pname]}) {v} {y[0]} {int(not fix)} {int(not y[2])}\n" if y else
                         f"{lines[pname]}) {v} {int(not fix)}\n")
                if pname == "pa" and f"{i}_ROTF" in g:
                    text += f"R0) {g[f'{i}_ROTF']}\n"
            elif pname.startswith("f") and not pname.endswith("_pa"):
                ph = parsed[f"{pname}_pa"]
                text += f"F{pname[1:]}) {v} {ph[0]} {int(not fix)} {int(not ph[2])}\n"
    fm = read_feedme(_write(tmp_path, text))
    assert feedme_model(fm)[0].spec_string == "sersic1:sersic+sersic2:sersic+sersic3:sersic[f1,f3,rot]"
    h = galfit_header(fm, values, errors, {"region": (2, 33, 3, 34), "exptime": 1.0, "fixed": fixed})
    ours = [k for k in h if k.startswith("3_")]
    assert ours == [k for k in g if k.startswith("3_")]
    for k in ours:
        assert h[k] == g[k], k
    for k in ("3_ROTF", "3_RIN", "3_ROUT", "3_RANG", "3_ALPHA", "3_INCL", "3_SPA", "3_F1", "3_F1PA", "3_F3", "3_F3PA"):
        assert h.comments[k] == g.comments[k], k


def test_shape_keys_that_a_profile_already_uses(tmp_path):
    """A Ferrer's own ROUT and ALPHA keep their keys; its rotation's are RROUT and RALPHA."""
    text = (HEAD.format(g="none", p=0) + " 0) ferrer\n 1) 10 10 1 1\n 3) 20 1\n 4) 8 1\n 5) 2 1\n 6) 1 1\n"
            " 9) 0.7 1\n10) 0 1\nR0) power\nR1) 1 1\nR2) 5 1\nR3) 90 1\nR4) 0 0\n")
    fm = read_feedme(_write(tmp_path, text))
    model, init = feedme_model(fm)
    assert model.spec_string == "ferrer:ferrer[rot]"
    vals = {n: float(init.get(n, dict(model.fixed).get(n) or 0.0)) for n in model.param_names}
    h = galfit_header(fm, vals, None, {"region": (2, 33, 3, 34), "exptime": 1.0})
    assert h["1_ROUT"] == "[8.0000]" and h["1_RROUT"] == "[5.0000]"
    assert h["1_ALPHA"] == "[2.0000]" and h["1_RALPHA"] == "[0.0000]"


def test_constraints_on_shape_parameters(tmp_path):
    """Constraint files name shape parameters by name, header key or line (f1, rin, r2); a
    range on a phase (periodic) is refused, naming the line."""
    _write(tmp_path, "2 f1 -0.5 to 0.5\n2 rin 0 to 5\n2 r2 -2 3\n", "cons")
    model, _ = feedme_model(read_feedme(_write(tmp_path, FEED.format(g="cons", p=0, z=0))),
                            read_constraints(tmp_path / "cons"))
    b = dict(model.bounds)
    assert b["sersic2.f1"] == (-0.5, 0.5) and b["sersic2.rot_r_in"] == (0.0, 5.0) and b["sersic2.rot_r_out"] == (8, 13)
    _write(tmp_path, "# phases\n2 f1_pa 0 to 10\n", "bad")
    with pytest.raises(gj.InputFileError, match="line 2 .*f1_pa.*periodic"):
        feedme_model(read_feedme(_write(tmp_path, FEED.format(g="bad", p=0, z=0))), read_constraints(tmp_path / "bad"))


_SERSIC = " 0) sersic\n 1) 1 1 1 1\n 3) 20 1\n 4) 3 1\n 5) 2 1\n 9) 0.5 1\n10) 0 1\n"
_ROT = "R0) power\nR1) 1 1\nR2) 5 1\nR3) 90 1\nR4) 0 1\n"


@pytest.mark.parametrize("before,bad,after,msg", [
    (_SERSIC, "R0) log", "", "logarithmic spiral rotation is not supported"),
    (_SERSIC, "B1) 0.1 1", "", "bending modes are not available"),
    (_SERSIC, "B2) 0.1 10 1 1", "", "bending modes are not available"),
    (_SERSIC, "To) 2", "", "truncations are not available"),
    (_SERSIC, "Ti) 2", "", "truncations are not available"),
    (_SERSIC, "T1) 10 1", "", "truncations are not available"),
    (" 0) psf\n 1) 1 1 1 1\n 3) 20 1\n", "F1) 0.1 20 1 1", "", "not to a psf"),
    (" 0) sky\n 1) 1 1\n 2) 0 0\n 3) 0 0\n", "F1) 0.1 20 1 1", "", "not to a sky"),
    (" 0) edgedisk\n 1) 1 1 1 1\n 3) 20 1\n 4) 2 1\n 5) 5 1\n10) 0 1\n", "R0) power", "", "not to a edgedisk"),
    (_SERSIC + _ROT, "R5) 0 0", "", "not used by the power-law rotation"),
    (_SERSIC + _ROT, "R9) 95 1", "", "incl = 95 lies outside its bounds"),
    (_SERSIC, "F1) 1.2 20 1 1", "", "f1 = 1.2 lies outside its bounds"),
    (_SERSIC, "F1) 0.1 20 1", "", "expected 2 value(s) and 2 fit toggle(s)"),
    (_SERSIC, "F1) 0.1 20 1 2", "", "fit toggles must be 0 or 1"),
    (_SERSIC, "F11) 0.1 20 1 1", "", "F1 to F10"),
    (_SERSIC + "F1) 0.1 0 1 1\n", "F1) 0.2 0 1 1", "", "given twice"),
    (_SERSIC, "R1) 1 1", "R2) 5 1\n", "needs 'R0) power'"),
    (_SERSIC, "R0) power", "R1) 1 1\n 0) psf\n 1) 1 1 1 1\n 3) 20 1\n", "needs R2), R3), R4)"),
    ("A1) g,r\n 0) psf\n 1) 1 1 1 1\n 3) 20,20 1 band\n", "F1) 0.1 20 1 1", "", "GalfitM"),
])
def test_refused_lines_name_the_line(tmp_path, before, bad, after, msg):
    head = "A) img.fits\nJ) 20\nP) 1\n"
    text = head + before + bad + "  # the line\n" + after
    line = (head + before).count("\n") + 1
    with pytest.raises(gj.InputFileError, match=f"line {line} ") as e:
        read_feedme(_write(tmp_path, text))
    assert msg in str(e.value) and repr(bad + "  # the line") in str(e.value)


def test_no_rotation_lines_without_r0_power(tmp_path):
    """'R0) none' with no R lines, or no R lines at all: no rotation; a component of GALFIT's
    elliptical types other than sersic takes the modes too."""
    text = (HEAD.format(g="none", p=0) + " 0) expdisk\n 1) 10 10 1 1\n 3) 20 1\n 4) 3 1\n 9) 0.6 1\n10) 5 1\n"
            "R0) none\nF2) 0.1 45 1 1\n")
    model, init = feedme_model(read_feedme(_write(tmp_path, text)))
    assert model.spec_string == "exponential:exponential[f2]" and init["exponential.f2_pa"] == 45.0
    fm = read_feedme(_write(tmp_path, FEED.format(g="none", p=0, z=0)))   # its first: R0) none
    assert feedme_model(fm)[0].components[0][1].name == "sersic"


def test_feedme_from_a_galfit_image_block():
    """GALFIT's own image block of an SDSS spiral (tests/data/galfit_spirals): components, the
    fitted region, fixed (bracketed) and free values, the shape modes."""
    from galmoss_jax.galfit import feedme_from_imgblock

    fm = feedme_from_imgblock(SPIRAL)
    assert fm.region == (12, 84, 11, 83) and fm.zeropoint == 24.8
    model, init = feedme_model(fm)
    assert [s.name for _, s in model.components] == ["sersic", "sersic", "sersic[f1,f3,rot]", "sky_plane"]
    fixed = dict(model.fixed)
    assert fixed["sersic1.x0"] == pytest.approx(47.51 - 12) and fixed["sersic1.y0"] == pytest.approx(47.16 - 11)
    assert init["sersic3.rot_theta"] == pytest.approx(23.7981) and init["sersic3.f1_pa"] == pytest.approx(107.7609)
    assert init["sersic3.incl"] == pytest.approx(-32.5961) and "sersic3.incl" in model.free_names
    assert init["sky.sky"] == pytest.approx(1115.4061)


def test_feedme_from_a_file_without_galfit_header(tmp_path):
    from galmoss_jax.galfit import feedme_from_imgblock

    p = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(p)
    with pytest.raises(gj.InputFileError, match="no GALFIT model header"):
        feedme_from_imgblock(p)


def test_feedme_fit_round_trip(tmp_path):
    """Read, fit, restart file, read again, on a simulated spiral (one Sérsic with mode 1 and a
    rotation of 200 degrees whose angle is fitted, a sigma image): the fit recovers the mode and
    the rotation within 4 sigma of the truth, and the restart file GALFIT-style (galfit.01)
    reads back as the same model holding the fitted values."""
    truth = {"x0": 15.3, "y0": 16.1, "mag": 16.0, "r_e": 5.0, "n": 1.0, "q": 0.45, "pa": 20.0, "f1": 0.15,
             "f1_pa": 60.0, "rot_r_in": 1.0, "rot_r_out": 6.0, "rot_theta": 200.0, "rot_alpha": 0.3}
    clean = np.asarray(gj.render("sersic[f1,rot]", truth, (32, 32), zeropoint=25.0))
    sigma = np.full_like(clean, 0.01 * clean.max())
    fits.PrimaryHDU(clean + np.random.default_rng(5).normal(0, 1, clean.shape) * sigma).writeto(tmp_path / "img.fits")
    fits.PrimaryHDU(sigma).writeto(tmp_path / "sig.fits")
    text = """A) img.fits
B) out.fits
C) sig.fits
D) none
H) 1 32 1 32
J) 25.0
P) 0
 0) sersic
 1) 16.5 17.0 1 1
 3) 16.3 1
 4) 4.5 1
 5) 1.2 1
 9) 0.5 1
10) 25 1
R0) power
R1) 1.0 0
R2) 6.0 0
R3) 150 1
R4) 0.3 0
F1) 0.05 40 1 1
 Z) 0
"""
    fm = read_feedme(_write(tmp_path, text, "spiral.feedme"))
    fit_feedme(fm, output_dir=str(tmp_path))
    with fits.open(tmp_path / "out.fits") as hd:
        h = hd[2].header
    got = {k: _galfit_value(h[f"1_{key}"]) for k, key in (("f1", "F1"), ("f1_pa", "F1PA"), ("rot_theta", "RANG"))}
    for k, (v, e, fixed) in got.items():
        assert not fixed and abs(v - truth[k]) < 4 * e, (k, v, e)
    back = read_feedme(tmp_path / "galfit.01")
    model_a, _ = feedme_model(fm)
    model_b, init_b = feedme_model(back)
    assert model_b.spec_string == model_a.spec_string and model_b.free_names == model_a.free_names
    assert dict(model_b.fixed) == dict(model_a.fixed)
    for k, (v, _, _) in got.items():
        assert init_b[f"sersic.{k}"] == pytest.approx(v, abs=1e-4), k
