"""GALFIT feedme files: read, fit, and write GALFIT's outputs (image block, restart file, fit.log).

``galmoss-jax galfit FEEDME`` runs a GALFIT input file with :func:`galmoss_jax.fit`; a GalfitM
file (several bands: ``A1)`` band labels) runs as a joint fit of its bands
(:mod:`galmoss_jax._galfitm`).

Conventions (GALFIT's, converted at this boundary only, DESIGN.md A):

* Positions in a feedme are 1-based pixel coordinates of the *whole* input image; the fit runs
  on the fit region H) (xmin xmax ymin ymax, 1-based inclusive), so ``x0 = x_fits - xmin`` and
  ``y0 = y_fits - ymin`` (0-based in the cropped stamp).
* Magnitudes: ``mag = J - 2.5 log10(F / EXPTIME)`` with ``EXPTIME`` from the image header
  (GALFIT's default 1), i.e. the zero point used for the fit is ``J + 2.5 log10(EXPTIME)``.
* Surface brightnesses (ferrer, king, nuker, edgedisk ``mu``) are mag/arcsec^2 in GALFIT with
  the plate scale K) (dx dy arcsec/pixel); galmoss_jax's ``mu_*`` are mag/pixel^2 with the same
  zero point, so ``mu_pixel = mu_arcsec - 2.5 log10(dx dy)`` (a pixel holds dx*dy arcsec^2).
* Without a sigma image (C) none), sigma is built from the data as GALFIT does, from the header
  keywords GAIN (or ATODGAIN; default 7), NCOMBINE (default 1) and RDNOISE (default 0):
  ``sigma^2 = (data + sky) / (GAIN NCOMBINE) + RDNOISE^2 / (NCOMBINE GAIN^2)`` in ADU^2, where
  ``sky`` is a level already subtracted from the image (0 unless given: GALFIT expects the sky
  to be in the image and fitted).  GALFIT 3 estimates the read noise from the sky instead of
  RDNOISE; here RDNOISE is used.
* The convolution box I) is recorded but does not limit the convolution: the whole fit region
  (plus the PSF half-width) is convolved exactly (DESIGN.md A, PSF).
* GALFIT's shape modes on an elliptical component (sersic, devauc, expdisk, gaussian, moffat,
  ferrer, king, nuker) are read, written to restart files and to image-block headers
  (``N_ROTF``, ``N_RIN``, ..., ``N_F1PA``): ``F{m}) amplitude phase`` (m = 1...10) is ``f{m}``,
  ``f{m}_pa`` (degrees); ``R0) power`` (or ``powerlaw``) with ``R1)``-``R4)``, ``R9)``, ``R10)``
  is the rotation ``rot_r_in``, ``rot_r_out`` (pixels), ``rot_theta`` (degrees), ``rot_alpha``,
  ``incl``, ``sky_pa`` (degrees), the same units and conventions as GALFIT's
  (:mod:`galmoss_jax.profiles._shape`).  Bending modes (``B1)`` ...), truncations (``To)``,
  ``Ti)``, ``T0)`` ...) and the logarithmic spiral (``R0) log``) are refused.

Relative paths in a feedme are taken relative to the feedme's directory (as GALFIT sees them
when run from there); outputs go to ``output_dir``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re

import numpy as np

from ._errors import DataError, InputFileError, ParameterError
from ._noise import mask_from_bad_pixels, sigma_from_data
from .profiles._shape import MAX_MODE, ROTATION_PARAMS, fourier_params

# GALFIT component -> galmoss_jax profile and the feedme lines it uses:
# line -> galmoss_jax parameter(s) (line 1 of a centred profile holds x and y).
COMPONENTS = {
    "sersic": ("sersic", {"1": ("x0", "y0"), "3": ("mag",), "4": ("r_e",), "5": ("n",), "9": ("q",),
                          "10": ("pa",), "C0": ("c0",)}),
    "devauc": ("devaucouleurs", {"1": ("x0", "y0"), "3": ("mag",), "4": ("r_e",), "9": ("q",), "10": ("pa",),
                                 "C0": ("c0",)}),
    "expdisk": ("exponential", {"1": ("x0", "y0"), "3": ("mag",), "4": ("r_s",), "9": ("q",), "10": ("pa",),
                                "C0": ("c0",)}),
    "gaussian": ("gaussian", {"1": ("x0", "y0"), "3": ("mag",), "4": ("fwhm",), "9": ("q",), "10": ("pa",),
                              "C0": ("c0",)}),
    "moffat": ("moffat", {"1": ("x0", "y0"), "3": ("mag",), "4": ("fwhm",), "5": ("beta",), "9": ("q",),
                          "10": ("pa",), "C0": ("c0",)}),
    # GALFIT's mu(0) [mag/arcsec^2] -> mu_0 [mag/pixel^2]; Rout -> r_out; alpha, beta as GALFIT
    "ferrer": ("ferrer", {"1": ("x0", "y0"), "3": ("mu_0",), "4": ("r_out",), "5": ("alpha",), "6": ("beta",),
                          "9": ("q",), "10": ("pa",), "C0": ("c0",)}),
    # mu(0) -> mu_0; Rc -> r_c; Rt -> r_t; alpha
    "king": ("king", {"1": ("x0", "y0"), "3": ("mu_0",), "4": ("r_c",), "5": ("r_t",), "6": ("alpha",),
                      "9": ("q",), "10": ("pa",), "C0": ("c0",)}),
    # mu(Rb) -> mu_b; Rb -> r_b; alpha, beta, gamma
    "nuker": ("nuker", {"1": ("x0", "y0"), "3": ("mu_b",), "4": ("r_b",), "5": ("alpha",), "6": ("beta",),
                        "7": ("gamma",), "9": ("q",), "10": ("pa",), "C0": ("c0",)}),
    # mu(0) -> mu_0; h_s disk scale height; R_s disk scale length; no axis ratio
    "edgedisk": ("edge_on_disk", {"1": ("x0", "y0"), "3": ("mu_0",), "4": ("h_s",), "5": ("r_s",), "10": ("pa",)}),
    "psf": ("point", {"1": ("x0", "y0"), "3": ("mag",)}),
    # background at the centre of the fit region, dsky/dx, dsky/dy (ADU, ADU/pixel)
    "sky": ("sky_plane", {"1": ("sky",), "2": ("dsky_dx",), "3": ("dsky_dy",)}),
}

# image-block header keys (GALFIT style: 1_XC, 1_MAG, 1_RE, 1_AR, ...)
HEADER_KEYS = {"x0": "XC", "y0": "YC", "mag": "MAG", "r_e": "RE", "r_s": "RS", "n": "N", "q": "AR", "pa": "PA",
               "c0": "C0", "fwhm": "FWHM", "beta": "BETA", "mu_0": "MU_0", "mu_b": "MU_B", "r_out": "ROUT",
               "r_c": "RC", "r_t": "RT", "r_b": "RB", "h_s": "HS", "alpha": "ALPHA", "gamma": "GAMMA",
               "sky": "SKY", "dsky_dx": "DSDX", "dsky_dy": "DSDY"}
# GALFIT's shape modes (galmoss_jax.profiles._shape) on any elliptical component: the
# coordinate rotation R0) power with R1-R4, R9, R10 (R9/R10 optional: 0 and fixed) and the
# azimuthal Fourier modes F1-F10 (amplitude and phase on one line).  Values are in GALFIT's units
# (pixels, degrees), which are galmoss_jax's.
ROTATION_LINES = {"R1": ("rot_r_in",), "R2": ("rot_r_out",), "R3": ("rot_theta",), "R4": ("rot_alpha",),
                  "R9": ("incl",), "R10": ("sky_pa",)}
_ROTATION_NEEDED = ("R1", "R2", "R3", "R4")
_ROTATION_FUNCTIONS = {"power": "power", "powerlaw": "power"}
MAX_FOURIER = MAX_MODE
# image-block header keys of the shape parameters (GALFIT's: 3_RIN, 3_F1PA, ...); ROTF = 'power'
SHAPE_HEADER_KEYS = {"rot_r_in": "RIN", "rot_r_out": "ROUT", "rot_theta": "RANG", "rot_alpha": "ALPHA",
                     "incl": "INCL", "sky_pa": "SPA",
                     **{f"f{m}": f"F{m}" for m in range(1, MAX_FOURIER + 1)},
                     **{f"f{m}_pa": f"F{m}PA" for m in range(1, MAX_FOURIER + 1)}}
_SHAPE_HEADER_COMMENTS = {"rot_r_in": "Inner (const. PA) radius [pixels]",
                          "rot_r_out": "Outer (const. PA) radius [pixels]",
                          "rot_theta": "Total rotation angle out to Rout [deg]",
                          "rot_alpha": "Asymptotic spiral powerlaw",
                          "incl": "Inclination angle to line of sight [deg]",
                          "sky_pa": "Projected disk position angle [deg]",
                          **{f"f{m}": f"Azimuthal Fourier mode {m} amplitude" for m in range(1, MAX_FOURIER + 1)},
                          **{f"f{m}_pa": f"Azimuthal Fourier mode {m} phase angle" for m in range(1, MAX_FOURIER + 1)}}
# extra names accepted in constraint files, besides the header keys and the line numbers
_CONSTRAINT_ALIASES = {"x": "x0", "y": "y0", "re": "r_e", "q": "q", "mu": None, "c": "c0", "pow": "beta"}

# the image-block extensions GALFIT writes, in order (GalfitM's W) chooses among them)
BLOCK_OUTPUTS = ("blank", "input", "model", "residual")

_CONTROL = "ABCDEFGHIJKOPUVW"   # U, V, W: GalfitM's non-parametric, MultiNest and output options
_LINE_RE = re.compile(r"^\s*([A-Za-z0-9]+)\)\s*(.*)$")


def _fail(path, lineno, text, msg):
    raise InputFileError(f"{path}: line {lineno} ({text.strip()!r}): {msg}")


# ---------------------------------------------------------------------------------------------
# feedme data model
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FeedmeParam:
    """One parameter line of a component: ``key`` ("1", "3", "C0", ...), its value(s) in GALFIT
    units and the fit toggles (True = free)."""

    key: str
    values: tuple
    free: tuple
    line: int = 0
    dof: int | None = None   # GalfitM: free Chebyshev coefficients in wavelength (values: one per band)


@dataclasses.dataclass(frozen=True)
class FeedmeComponent:
    """A GALFIT component: ``kind`` ("sersic", ...), its parameter lines, ``skip`` (Z) 1: fitted
    but left out of the model image and not subtracted), and the line of its ``0)``."""

    kind: str
    params: tuple
    skip: bool = False
    line: int = 0

    def get(self, key: str):
        return next((p for p in self.params if p.key == key), None)


@dataclasses.dataclass(frozen=True)
class Feedme:
    """A GALFIT input file (items A-P and the components), values as written (GALFIT units)."""

    image: str
    output: str = "imgblock.fits"
    sigma: str | None = None
    psf: str | None = None
    psf_fine: int = 1
    mask: str | None = None
    constraints: str | None = None
    region: tuple | None = None          # (xmin, xmax, ymin, ymax), 1-based inclusive
    convbox: tuple | None = None         # (nx, ny) pixels
    zeropoint: float = 0.0
    platescale: tuple = (1.0, 1.0)       # (dx, dy) arcsec / pixel
    display: str = "regular"
    mode: int = 0                        # 0 fit, 1 model only, 2 image block only
    components: tuple = ()
    path: str | None = None              # the file read (relative paths are relative to its directory)
    # GalfitM (several bands): A1) band labels, A2) wavelengths, J) one zero point per band,
    # W) the image extensions written; A, C, D, F hold comma-separated lists (one name per band
    # or one for all)
    bands: tuple = ()
    wavelengths: tuple = ()
    zeropoints: tuple = ()
    outputs: tuple = BLOCK_OUTPUTS


@dataclasses.dataclass(frozen=True)
class Constraint:
    """One line of a GALFIT constraint file.

    ``kind``: ``"range"`` (``1 n 0.5 to 8``: lo <= value <= hi), ``"relative"`` (``1 x -1 2``:
    within [initial + lo, initial + hi]), ``"offset"`` / ``"ratio"`` (``1_2 x offset``: the
    parameter moves together in the listed components).  ``components`` are 1-based.
    """

    components: tuple
    param: str
    kind: str
    lo: float = math.nan
    hi: float = math.nan
    line: int = 0
    text: str = ""


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _none(v: str):
    v = v.strip()
    return None if v == "" or v.lower() == "none" else v


def _floats(path, lineno, text, tokens, n, what):
    if len(tokens) < n:
        _fail(path, lineno, text, f"{what}: expected {n} number(s), got {len(tokens)}")
    try:
        return tuple(float(t) for t in tokens[:n])
    except ValueError:
        _fail(path, lineno, text, f"{what}: not a number in {' '.join(tokens[:n])!r}")


def _n_values(kind: str, key: str) -> int:
    return 2 if key == "1" and kind != "sky" else 1


def _fourier_modes(comp) -> tuple:
    """The Fourier modes m (sorted) of a component's ``F{m})`` lines."""
    return tuple(sorted(int(fp.key[1:]) for fp in comp.params if fp.key.startswith("F")))


def _has_rotation(comp) -> bool:
    return any(fp.key in ROTATION_LINES for fp in comp.params)


def _shaped_lines(kind: str, fourier, rotation: bool) -> dict:
    """Feedme line -> galmoss_jax parameter(s) of a one-band component of GALFIT type ``kind``
    with Fourier modes ``fourier`` and the rotation if ``rotation``: the profile's lines, then
    ``R1``-``R4``, ``R9``, ``R10`` and ``F{m}``."""
    lines = dict(COMPONENTS[kind][1])
    if rotation:
        lines.update(ROTATION_LINES)
    lines.update({f"F{m}": (f"f{m}", f"f{m}_pa") for m in fourier})
    return lines


def _comp_lines(comp) -> dict:
    """:func:`_shaped_lines` of a component read from a feedme."""
    return _shaped_lines(comp.kind, _fourier_modes(comp), _has_rotation(comp))


def _shape_param(name: str):
    """The :class:`~galmoss_jax.profiles.Param` (bounds, unit) of a shape-mode parameter."""
    if name.startswith("f"):
        return fourier_params(int(name[1:].split("_")[0]))[name.endswith("_pa")]
    return next(p for p in ROTATION_PARAMS if p.name == name)


def _elliptical_kinds() -> tuple:
    return tuple(k for k, (_, lines) in COMPONENTS.items() if "C0" in lines)


def _shape_line(path, lineno, raw, key, tokens, cur, banded):
    """Read a shape-mode line of the component ``cur`` ([kind, params, skip, line, R0]): ``R0)``
    (the rotation function) goes to ``cur[4]``, ``R1)``-``R4)``, ``R9)``, ``R10)`` and
    ``F1)``-``F10)`` to its parameters, values checked against the parameters' bounds (GALFIT's
    units: pixels, degrees).  Bending modes (``B1)`` ...), truncations (``To)``, ``Ti)``,
    ``T0)`` ...), the logarithmic spiral (``R0) log``), ``R5)``-``R8)``, modes on a component
    that is not elliptical and any other unknown line are refused, naming the line."""
    k, kind = key.upper(), cur[0]
    if re.fullmatch(r"B\d+", k):
        _fail(path, lineno, raw, f"bending mode {key!r}: GALFIT's bending modes are not available in galmoss_jax")
    if k in ("TO", "TI") or re.fullmatch(r"T\d+", k):
        _fail(path, lineno, raw, f"truncation {key!r}: GALFIT's truncations are not available in galmoss_jax")
    fm, rm = re.fullmatch(r"F(\d+)", k), re.fullmatch(r"R(\d+)", k)
    if not (fm or rm):
        _fail(path, lineno, raw, f"parameter {key!r} is not supported")
    what = "Fourier mode" if fm else "coordinate rotation"
    if banded:
        _fail(path, lineno, raw, f"{what} {key!r}: shape modes are not supported in GalfitM (multi-band) files")
    if "C0" not in COMPONENTS[kind][1]:
        _fail(path, lineno, raw, f"{what} {key!r}: shape modes apply to elliptical components "
                                 f"({', '.join(_elliptical_kinds())}), not to a {kind}")
    if fm:
        m = int(fm.group(1))
        if not 1 <= m <= MAX_FOURIER:
            _fail(path, lineno, raw, f"Fourier mode {key!r}: the modes are F1 to F{MAX_FOURIER}")
        k = f"F{m}"
    else:
        k = f"R{int(rm.group(1))}"
        if k == "R0":
            if len(tokens) != 1:
                _fail(path, lineno, raw, "R0): expected one word, the rotation function (power or none)")
            func = tokens[0].lower()
            if func == "log":
                _fail(path, lineno, raw, "R0) log: the logarithmic spiral rotation is not supported; "
                                         "R0) power (the power-law rotation) is")
            if func not in (*_ROTATION_FUNCTIONS, "none"):
                _fail(path, lineno, raw, f"R0): unknown rotation function {tokens[0]!r} (GALFIT's are power, log "
                                         "and none; log is not supported)")
            if cur[4] is not None:
                _fail(path, lineno, raw, "R0) is given twice in this component")
            cur[4] = (_ROTATION_FUNCTIONS.get(func, "none"), lineno, raw)
            return
        if k in ("R5", "R6", "R7", "R8"):
            _fail(path, lineno, raw, f"{k}) is not used by the power-law rotation (R0) power: R1-R4, R9, R10) "
                                     "and is not supported")
        if k not in ROTATION_LINES:
            _fail(path, lineno, raw, f"coordinate rotation {key!r}: the rotation lines are R0-R4, R9 and R10")
    if any(fp.key == k for fp in cur[1]):
        _fail(path, lineno, raw, f"{k}) is given twice in this component")
    names = (f"f{m}", f"f{m}_pa") if fm else ROTATION_LINES[k]
    nv = len(names)
    if len(tokens) != 2 * nv:
        _fail(path, lineno, raw, f"{k}): expected {nv} value(s) and {nv} fit toggle(s) (1 = fit, 0 = fixed), "
                                 f"got {len(tokens)} item(s)")
    vals = _floats(path, lineno, raw, tokens, nv, f"{k})")
    flags = tokens[nv:]
    if any(f not in ("0", "1") for f in flags):
        _fail(path, lineno, raw, f"{k}): fit toggles must be 0 or 1, got {' '.join(flags)!r}")
    for name, v in zip(names, vals):
        par = _shape_param(name)
        if not (math.isfinite(v) and par.lower <= v <= par.upper):
            _fail(path, lineno, raw, f"{k}): {name} = {v:g} lies outside its bounds [{par.lower:g}, {par.upper:g}]"
                                     + (f" ({par.unit})" if par.unit else ""))
    cur[1].append(FeedmeParam(k, vals, tuple(f == "1" for f in flags), lineno))


def _rotation_checked(path, cur, text_of) -> tuple:
    """The parameters of a component read (``cur``) with its rotation checked: R1-R4, R9, R10
    need ``R0) power``, which needs R1-R4; an absent R9 or R10 is 0 and fixed (face-on)."""
    params, r0 = list(cur[1]), cur[4]
    rot = [fp for fp in params if fp.key in ROTATION_LINES]
    if r0 is None or r0[0] == "none":
        if rot:
            _fail(path, rot[0].line, text_of(rot[0].line), f"{rot[0].key}) needs 'R0) power' (the rotation "
                                                           "function) in the same component")
        return tuple(params)
    missing = [k for k in _ROTATION_NEEDED if not any(fp.key == k for fp in rot)]
    if missing:
        _fail(path, r0[1], r0[2], f"the power-law rotation needs {', '.join(k + ')' for k in missing)} "
                                  "in the same component")
    for k in ("R9", "R10"):
        if not any(fp.key == k for fp in rot):
            params.append(FeedmeParam(k, (0.0,), (False,), 0))
    return tuple(params)


def _lines(kind: str, banded: bool = False) -> dict:
    """Feedme line -> galmoss_jax parameter(s) of a component; in a GalfitM file (``banded``)
    a centred profile's x is on line 1 and y on line 2, as GalfitM writes them."""
    lines = COMPONENTS[kind][1]
    if banded and kind != "sky":
        lines = {"1": ("x0",), "2": ("y0",), **{k: v for k, v in lines.items() if k != "1"}}
    return lines


def read_feedme(path) -> Feedme:
    """Parse a GALFIT (or GalfitM: :mod:`galmoss_jax._galfitm`) feedme file into a :class:`Feedme`.

    GALFIT's shape modes on an elliptical component (``F1)``-``F10)`` Fourier modes, ``R0)
    power`` with ``R1)``-``R4)``, ``R9)``, ``R10)``: the coordinate rotation) become its
    ``F{m}`` / ``R{k}`` parameter lines (an absent ``R9)`` or ``R10)`` is 0 and fixed); the
    component's profile is then ``"<profile>[f1,...,rot]"`` (:mod:`galmoss_jax.profiles._shape`).

    Raises :class:`InputFileError` naming the line (number and text) for an unknown option
    letter, an unknown component, an unsupported feature (bending modes, truncations, the
    logarithmic spiral ``R0) log``, ``R5)``-``R8)``, shape modes on a psf, sky or edgedisk or in
    a GalfitM file), a shape-mode value outside its parameter's bounds or a malformed number.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"feedme: file {path!r} does not exist")
    with open(path) as fh:
        lines = fh.read().splitlines()
    control: dict = {}
    comps: list = []
    cur = None          # [kind, params, skip, line, R0 (function, line, text) or None]

    def close():
        if cur is not None:
            params = _rotation_checked(path, cur, lambda ln: lines[ln - 1])
            comps.append(FeedmeComponent(cur[0], params, cur[2], cur[3]))

    for lineno, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0]
        if not text.strip() or text.strip().startswith("="):
            continue
        m = _LINE_RE.match(text)
        if m is None:
            _fail(path, lineno, raw, "expected 'KEY) value ...'")
        key, rest = m.group(1), m.group(2).strip()
        tokens = rest.split()
        if key.upper() in ("A1", "A2"):         # GalfitM: band labels, wavelengths
            control[key.upper()] = (rest, lineno, raw)
            continue
        if len(key) == 1 and key.isalpha() and key.upper() != "Z":
            if key not in _CONTROL + "S":       # S: GALFIT 2's interactive toggle, ignored like O
                _fail(path, lineno, raw, f"unknown option letter {key!r} (GALFIT control items are A-K, O, P)")
            control[key] = (rest, lineno, raw)
            continue
        if key == "0":
            close()
            kind = tokens[0].lower() if tokens else ""
            if kind not in COMPONENTS:
                _fail(path, lineno, raw, f"unknown or unsupported component {kind!r}; supported: {', '.join(COMPONENTS)}")
            cur = [kind, [], False, lineno, None]
            continue
        if cur is None:
            _fail(path, lineno, raw, f"parameter line {key!r} before any component ('0) sersic' ...)")
        kind = cur[0]
        if key.upper() == "Z":
            try:
                cur[2] = int(float(tokens[0])) == 1
            except (ValueError, IndexError):
                _fail(path, lineno, raw, "Z): expected 0 or 1")
            continue
        banded = "A1" in control
        if key.upper() == "C0":
            key = "C0"
        elif not key.isdigit():
            _shape_line(path, lineno, raw, key, tokens, cur, banded)
            continue
        lines_of = _lines(kind, banded)
        if key not in lines_of:
            # GALFIT lists unused lines (e.g. 6-8 of a sersic); they must not ask to be fitted
            _floats(path, lineno, raw, tokens, 1, f"parameter {key})")
            if len(tokens) > 1 and tokens[1] not in ("0",):
                _fail(path, lineno, raw, f"parameter {key}) is not used by a {kind} component and cannot be fitted")
            continue
        if banded:
            from ._galfitm import band_param_lines
            cur[1].extend(band_param_lines(path, lineno, raw, kind, key, tokens, control))
            continue
        nv = _n_values(kind, key)
        vals = _floats(path, lineno, raw, tokens, nv, f"parameter {key})")
        flags = tokens[nv:2 * nv]
        if len(flags) < nv:
            _fail(path, lineno, raw, f"parameter {key}): expected {nv} fit toggle(s) (1 = fit, 0 = fixed)")
        if any(f not in ("0", "1") for f in flags):
            _fail(path, lineno, raw, f"parameter {key}): fit toggles must be 0 or 1, got {' '.join(flags)!r}")
        cur[1].append(FeedmeParam(key, vals, tuple(f == "1" for f in flags), lineno))
    close()

    def ctl(letter, default=None):
        return control.get(letter, (default, 0, ""))

    if "A" not in control:
        raise InputFileError(f"{path}: no input image (item A)")
    kw = {"image": control["A"][0].split()[0] if control["A"][0] else "", "path": path}
    if not kw["image"]:
        _fail(path, control["A"][1], control["A"][2], "A): no image name")
    if "B" in control:
        kw["output"] = control["B"][0].split()[0]
    if "D" in control and len(control["D"][0].split()) > 1:
        rest, ln, raw = control["D"]
        _fail(path, ln, raw, "D): a diffusion kernel after the PSF is not supported")
    if "C" in control and len(control["C"][0].split()) > 1:   # GalfitM: sigma image(s), minimum sigma factor
        rest, ln, raw = control["C"]
        if not _isnum(rest.split()[1]) or float(rest.split()[1]) != 0:
            _fail(path, ln, raw, "C): a minimum sigma factor other than 0 is not supported")
    for letter, field in (("C", "sigma"), ("D", "psf"), ("F", "mask"), ("G", "constraints")):
        if letter in control:
            v = _none(control[letter][0].split()[0] if control[letter][0].split() else "")
            kw[field] = v
    if "E" in control:
        rest, ln, raw = control["E"]
        (e,) = _floats(path, ln, raw, rest.split(), 1, "E) PSF fine sampling")
        if e < 1 or e != int(e):
            _fail(path, ln, raw, "E) PSF fine sampling factor must be a positive integer")
        kw["psf_fine"] = int(e)
    if "H" in control:
        rest, ln, raw = control["H"]
        reg = _floats(path, ln, raw, rest.split(), 4, "H) fit region (xmin xmax ymin ymax)")
        if any(v != int(v) for v in reg) or reg[0] > reg[1] or reg[2] > reg[3] or min(reg) < 1:
            _fail(path, ln, raw, "H) fit region must be integers xmin <= xmax, ymin <= ymax, >= 1")
        kw["region"] = tuple(int(v) for v in reg)
    if "I" in control:
        rest, ln, raw = control["I"]
        cb = _floats(path, ln, raw, rest.split(), 2, "I) convolution box (x y)")
        kw["convbox"] = tuple(int(v) for v in cb)
    if "J" in control and "A1" not in control:   # GalfitM's per-band list: band_control
        rest, ln, raw = control["J"]
        (kw["zeropoint"],) = _floats(path, ln, raw, rest.split(), 1, "J) magnitude zero point")
    if "K" in control:
        rest, ln, raw = control["K"]
        toks = rest.split()
        ps = _floats(path, ln, raw, toks, 2 if len(toks) > 1 and _isnum(toks[1]) else 1, "K) plate scale")
        kw["platescale"] = (ps[0], ps[-1])
        if min(kw["platescale"]) <= 0:
            _fail(path, ln, raw, "K) plate scale must be positive")
    if "O" in control:
        kw["display"] = control["O"][0].split()[0] if control["O"][0] else "regular"   # ignored
    if "P" in control:
        rest, ln, raw = control["P"]
        (p,) = _floats(path, ln, raw, rest.split(), 1, "P) mode")
        if p not in (0, 1, 2):
            _fail(path, ln, raw, "P) mode must be 0 (fit), 1 (model only) or 2 (image block only); "
                                 "3 (subcomponents) is not supported")
        kw["mode"] = int(p)
    if not comps:
        raise InputFileError(f"{path}: no components ('0) sersic' ...)")
    from ._galfitm import band_control, output_options
    kw.update(output_options(path, control))
    if "A1" in control:
        kw.update(band_control(path, control))
    for c in comps:
        need = [k for k in _lines(c.kind, "A1" in control) if k != "C0" and c.get(k) is None]
        if need:
            raise InputFileError(f"{path}: line {c.line} ({c.kind!r}): missing parameter line(s) {', '.join(k + ')' for k in need)}")
    return Feedme(components=tuple(comps), **kw)


def _header_value(text: str):
    """``(value, free)`` of a GALFIT image-block value: ``'12.34 +/- 0.05'`` (free),
    ``'[12.34]'`` (held fixed), ``'*12.34* +/- 0.05'`` (free, flagged by GALFIT as a problem)."""
    t = str(text).split("+/-")[0].strip()
    free = not t.startswith("[")
    return float(t.strip("[]*")), free


def feedme_from_imgblock(path, *, platescale=None) -> Feedme:
    """The :class:`Feedme` of the final parameters in a GALFIT image block (the model
    extension's ``COMP_1 = 'sersic'``, ``1_XC = '[55.91]'``, ``1_MAG = '14.02 +/- 0.08'``, ...,
    shape modes ``1_ROTF``, ``1_RIN``, ..., ``1_F1PA`` included): fixed values (in brackets)
    fixed, the others free; the region from ``FITSECT``, the zero point from ``MAGZPT``.  With
    :func:`feedme_model` it gives the model and values to render or to start a fit from GALFIT's
    solution.  ``path``: the image block (its ``MODEL`` extension, else the first HDU with
    ``COMP_1``) or a model file.  ``platescale`` (arcsec/pixel, ``(dx, dy)``): needed only for
    surface-brightness parameters (``mu_0``; GALFIT's are per arcsec^2), which the header does
    not say.  Image and PSF names are kept as GALFIT wrote them (often truncated)."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdr = next((h.header for h in hdul if "COMP_1" in h.header), None)
    if hdr is None:
        raise InputFileError(f"{path}: no GALFIT model header (COMP_1 = ...) in any extension")

    def bad(msg):
        raise InputFileError(f"{path}: {msg}")

    m = re.fullmatch(r"\[(\d+):(\d+),(\d+):(\d+)\]", str(hdr.get("FITSECT", "")).strip())
    if m is None:
        bad(f"FITSECT = {hdr.get('FITSECT')!r}: expected the fitted section '[xmin:xmax,ymin:ymax]'")
    region = tuple(int(v) for v in m.groups())
    comps, i = [], 1
    while f"COMP_{i}" in hdr:
        kind = str(hdr[f"COMP_{i}"]).strip()
        if kind not in COMPONENTS:
            bad(f"COMP_{i} = {kind!r}: unknown GALFIT component (known: {', '.join(COMPONENTS)})")
        rotation = f"{i}_ROTF" in hdr
        if rotation and _ROTATION_FUNCTIONS.get(str(hdr[f"{i}_ROTF"]).strip().lower()) != "power":
            bad(f"{i}_ROTF = {hdr[f'{i}_ROTF']!r}: only the power-law rotation is supported")
        lines = _shaped_lines(kind, [k for k in range(1, MAX_FOURIER + 1) if f"{i}_F{k}" in hdr], rotation)
        keys = _header_keys([n for names in lines.values() for n in names])
        params = []
        for key, names in lines.items():
            cards = [f"{i}_{keys[n]}" for n in names if n in keys]
            if len(cards) != len(names) or not all(c in hdr for c in cards):
                if key == "C0" or (kind == "sky" and key != "1"):
                    continue
                bad(f"component {i} ({kind}): no {' / '.join(cards) or key} in the header")
            vf = [_header_value(hdr[c]) for c in cards]
            params.append(FeedmeParam(key, tuple(v for v, _ in vf), tuple(f for _, f in vf)))
        comps.append(FeedmeComponent(kind, tuple(params)))
        i += 1
    if any(n.startswith("mu_") for c in comps for n, *_ in _comp_params(c)) and platescale is None:
        bad("the model has surface brightnesses (mag/arcsec^2): give platescale=(dx, dy) arcsec/pixel")
    psf = str(hdr.get("PSF", "none")).strip()
    return Feedme(image=str(hdr.get("DATAIN", "")).split("[")[0].strip(), psf=None if psf == "none" else psf,
                  region=(region[0], region[1], region[2], region[3]), zeropoint=float(hdr.get("MAGZPT", 0.0)),
                  platescale=tuple(platescale) if platescale is not None else (1.0, 1.0), components=tuple(comps),
                  path=str(path))


def _isnum(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_constraints(path) -> tuple:
    """Parse a GALFIT constraint file: hard ties (``1_2 x offset``, ``1_2 re ratio``), ranges
    (``1 n 0.5 to 8``) and ranges relative to the initial value (``1 x -1 2``).  Sums and
    differences of components (``1-2``, ``1/2``) are not supported (clear error)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"constraints (G): file {path!r} does not exist")
    out = []
    with open(path) as fh:
        for lineno, raw in enumerate(fh.read().splitlines(), 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            tok = text.split()
            if len(tok) < 3:
                _fail(path, lineno, raw, "expected 'components parameter constraint'")
            comp_s, param = tok[0], tok[1].lower()
            if not re.fullmatch(r"\d+(_\d+)*", comp_s):
                _fail(path, lineno, raw, f"components {comp_s!r}: only '1' or '1_2_3' are supported "
                                         "(differences '1-2' and ratios '1/2' of components are not)")
            comps = tuple(int(c) for c in comp_s.split("_"))
            rest = [t.lower() for t in tok[2:]]
            if rest[0] in ("offset", "ratio"):
                if len(comps) < 2:
                    _fail(path, lineno, raw, f"{rest[0]} needs two or more components, e.g. 1_2")
                out.append(Constraint(comps, param, rest[0], line=lineno, text=raw))
                continue
            if len(comps) != 1:
                _fail(path, lineno, raw, "a range applies to one component")
            if len(rest) == 3 and rest[1] == "to":
                lo, hi = _floats(path, lineno, raw, [rest[0], rest[2]], 2, "range")
                kind = "range"
            elif len(rest) == 2:
                lo, hi = _floats(path, lineno, raw, rest, 2, "relative range")
                kind = "relative"
            else:
                _fail(path, lineno, raw, "expected 'lo to hi', 'dlo dhi', 'offset' or 'ratio'")
            if not lo < hi:
                _fail(path, lineno, raw, f"range: {lo} must be below {hi}")
            out.append(Constraint(comps, param, kind, lo, hi, lineno, raw))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# conversion to a galmoss_jax Model
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Frame:
    """GALFIT <-> galmoss_jax units: region offsets, zero point, plate scale."""

    xmin: int
    ymin: int
    platescale: tuple

    def to_internal(self, param, v):
        if param == "x0":
            return v - self.xmin
        if param == "y0":
            return v - self.ymin
        if param.startswith("mu_"):   # mag/arcsec^2 -> mag/pixel^2 (a pixel is dx*dy arcsec^2)
            return v - 2.5 * math.log10(self.platescale[0] * self.platescale[1])
        return v

    def to_galfit(self, param, v):
        if param == "x0":
            return v + self.xmin
        if param == "y0":
            return v + self.ymin
        if param.startswith("mu_"):
            return v + 2.5 * math.log10(self.platescale[0] * self.platescale[1])
        return v


def component_names(feedme: Feedme) -> tuple:
    """galmoss_jax component names: the profile name where it occurs once (a lone Sérsic is
    ``sersic``, as in ``galmoss-jax fit``; a GALFIT sky is ``sky``), else the profile name and
    the GALFIT component number."""
    profs = ["sky" if c.kind == "sky" else COMPONENTS[c.kind][0] for c in feedme.components]
    return tuple(p if profs.count(p) == 1 else f"{p}{i}" for i, p in enumerate(profs, 1))


def _profile_of(comp: FeedmeComponent) -> str:
    """The galmoss_jax profile of a component: ``"sersic"``, or ``"sersic[f1,f3,rot]"`` with its
    shape modes (Fourier modes sorted, then the rotation)."""
    prof = COMPONENTS[comp.kind][0]
    modes = [f"f{m}" for m in _fourier_modes(comp)] + (["rot"] if _has_rotation(comp) else [])
    if modes:
        return f"{prof}[{','.join(modes)}]"
    if comp.kind == "sky":
        g = [comp.get("2"), comp.get("3")]
        if all(p.values[0] == 0 and not p.free[0] for p in g):
            return "sky"
    return prof


def _frame(feedme: Feedme) -> _Frame:
    xmin, ymin = (feedme.region[0], feedme.region[2]) if feedme.region else (1, 1)
    return _Frame(xmin, ymin, feedme.platescale)


def _comp_params(comp: FeedmeComponent):
    """(galmoss parameter, GALFIT value, free, FeedmeParam) for each value of a component."""
    prof = _profile_of(comp)
    out = []
    for key, names in _comp_lines(comp).items():
        fp = comp.get(key)
        if fp is None:
            continue
        for j, name in enumerate(names):
            if prof == "sky" and name != "sky":
                continue
            out.append((name, fp.values[j], fp.free[j], fp))
    return out


def _header_keys(pnames) -> dict:
    """Image-block header key (without the ``N_``) of each parameter of one component:
    :data:`HEADER_KEYS`, and :data:`SHAPE_HEADER_KEYS` for the shape modes; where a shape key is
    also one of the profile's own (a ferrer's ``ROUT``, a king's ``ALPHA``) the shape mode's
    takes an ``R`` in front (``RROUT``, ``RALPHA``)."""
    keys = {p: HEADER_KEYS[p] for p in pnames if p in HEADER_KEYS}
    taken = set(keys.values())
    for p in pnames:
        if p in SHAPE_HEADER_KEYS:
            k = SHAPE_HEADER_KEYS[p]
            keys[p] = "R" + k if k in taken else k
    return keys


def _constraint_param(comp: FeedmeComponent, name: str, c: Constraint, path):
    lines = _comp_lines(comp)
    params = [p for names in lines.values() for p in names]
    for key in (name, name.upper()):     # a line: "4", "c0", "r1"
        if key in lines and len(lines[key]) == 1:
            return lines[key][0]
    alias = {k.lower(): p for p, k in _header_keys(params).items()}
    alias.update({k: v for k, v in _CONSTRAINT_ALIASES.items() if v in params})
    alias.update({p: p for p in params})
    if "4" in lines and name in ("re", "rs", "fwhm"):   # the size on line 4, whatever the profile calls it
        return lines["4"][0]
    if name == "mu":
        mus = [p for p in params if p.startswith("mu_")]
        if mus:
            return mus[0]
    if name in alias:
        return alias[name]
    _fail(path, c.line, c.text, f"parameter {name!r} is not one of a {comp.kind}'s ({', '.join(sorted(alias))})")


def feedme_model(feedme: Feedme, constraints=()):
    """The :class:`~galmoss_jax.model.Model` and initial values ``{name: value}`` (galmoss_jax
    units: 0-based in the fit region, mag/pixel^2) of a feedme and its constraints."""
    from .model import Model
    from .profiles import get_profile

    fr = _frame(feedme)
    names = component_names(feedme)
    comps, fixed, free, init, bounds, tied = [], {}, [], {}, {}, {}
    for cname, comp in zip(names, feedme.components):
        prof = _profile_of(comp)
        comps.append((cname, prof))
        spec = get_profile(prof)
        for pname, val, is_free, fp in _comp_params(comp):
            full = f"{cname}.{pname}"
            v = fr.to_internal(pname, val)
            if is_free and spec.param(pname).fixed:    # fixed by default (c0, incl, sky_pa): toggle 1 frees it
                free.append(full)
            if is_free:
                init[full] = v
            else:
                fixed[full] = v
    cpath = _resolve(feedme, feedme.constraints) if feedme.constraints else None
    for c in constraints:
        for i in c.components:
            if not 1 <= i <= len(feedme.components):
                _fail(cpath, c.line, c.text, f"component {i} does not exist (the feedme has {len(feedme.components)})")
        pn = [_constraint_param(feedme.components[i - 1], c.param, c, cpath) for i in c.components]
        full = [f"{names[i - 1]}.{p}" for i, p in zip(c.components, pn)]
        if c.kind in ("offset", "ratio"):
            start = [init.get(f, fixed.get(f)) for f in full]
            if any(s != start[0] for s in start[1:]):
                _fail(cpath, c.line, c.text, f"{c.kind} ties between different initial values are not supported; "
                                             "give the tied components the same initial value")
            for f in full[1:]:
                tied[f] = full[0]
                init.pop(f, None)
                fixed.pop(f, None)
            continue
        (f,), (p,) = full, pn
        if p == "pa":
            _fail(cpath, c.line, c.text, "ranges on the position angle are not supported (pa is periodic)")
        if p.endswith("_pa"):
            _fail(cpath, c.line, c.text, f"ranges on the angle {p} are not supported (it is periodic)")
        if c.kind == "range":
            lo, hi = fr.to_internal(p, c.lo), fr.to_internal(p, c.hi)
        else:
            v0 = init.get(f, fixed.get(f))
            lo, hi = v0 + c.lo, v0 + c.hi   # offsets: the same in both unit systems
        bounds[f] = (lo, hi)
    model = Model(comps, fixed=fixed, free=free, tied=tied, bounds=bounds)
    return model, init


def _resolve(feedme: Feedme, name):
    if name is None or os.path.isabs(name) or feedme.path is None:
        return name
    return os.path.join(os.path.dirname(os.path.abspath(feedme.path)), name)


# ---------------------------------------------------------------------------------------------
# image, sigma, mask
# ---------------------------------------------------------------------------------------------
def _header_float(header, keys, default, path):
    for k in keys:
        if k in header:
            try:
                return float(header[k])
            except (TypeError, ValueError):
                raise DataError(f"{path}: header keyword {k} = {header[k]!r} is not a number") from None
    return default


def noise_keywords(header, path="image") -> dict:
    """GALFIT's header keywords with its defaults: ``gain`` (GAIN or ATODGAIN, 7), ``rdnoise``
    (RDNOISE, 0), ``ncombine`` (NCOMBINE, 1), ``exptime`` (EXPTIME, 1)."""
    return {"gain": _header_float(header, ("GAIN", "ATODGAIN"), 7.0, path),
            "rdnoise": _header_float(header, ("RDNOISE",), 0.0, path),
            "ncombine": _header_float(header, ("NCOMBINE",), 1.0, path),
            "exptime": _header_float(header, ("EXPTIME",), 1.0, path)}


def galfit_sigma(data, gain, rdnoise=0.0, ncombine=1.0, sky=0.0):
    """GALFIT's sigma image from the data (ADU): ``N_e = (data + sky) GAIN NCOMBINE`` electrons,
    ``sigma_e^2 = N_e + NCOMBINE RDNOISE^2``, ``sigma = sigma_e / (GAIN NCOMBINE)``."""
    return sigma_from_data(np.asarray(data, float), gain * ncombine, rdnoise * math.sqrt(ncombine), sky)


def _read_mask(path, shape):
    """Bad-pixel mask: a FITS image (non-zero = bad) or an ASCII list of 1-based ``x y``
    coordinates of bad pixels.  Returns True = pixel used."""
    from .io import read_image

    if not os.path.exists(path):
        raise InputFileError(f"mask (F): file {path!r} does not exist")
    with open(path, "rb") as fh:
        is_fits = fh.read(6) == b"SIMPLE"
    if is_fits:
        m = read_image(path, name="mask (F)", allow_cube=False)
        if m.shape != shape:
            raise DataError(f"mask (F): {path!r} has shape {m.shape}, the image {shape}")
        return mask_from_bad_pixels(m)
    good = np.ones(shape, bool)
    with open(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            t = raw.split("#", 1)[0].split()
            if not t:
                continue
            x, y = _floats(path, lineno, raw, t, 2, "mask coordinates (x y)")
            ix, iy = int(x) - 1, int(y) - 1
            if 0 <= iy < shape[0] and 0 <= ix < shape[1]:
                good[iy, ix] = False
    return good


@dataclasses.dataclass(frozen=True)
class FeedmeData:
    """The arrays of a feedme, cut to its fit region: data, sigma (None: built in the fit),
    mask (True = used), psf, header values and what the fit needs to build sigma."""

    data: np.ndarray
    sigma: np.ndarray | None
    mask: np.ndarray
    psf: np.ndarray | None
    header: object
    zeropoint: float
    gain: float
    read_noise: float
    sky: float
    region: tuple
    exptime: float = 1.0


def load_feedme_data(feedme: Feedme, *, gain=None, rdnoise=None, ncombine=None, exptime=None, sky=0.0) -> FeedmeData:
    """Read image, sigma, mask and PSF and cut them to the fit region.  ``gain``, ``rdnoise``,
    ``ncombine``, ``exptime`` override the header keywords; ``sky`` is a level already
    subtracted from the image (ADU; enters sigma only)."""
    from astropy.io import fits

    from .io import read_image

    ipath = _resolve(feedme, feedme.image)
    full = read_image(ipath, name="image (A)", allow_cube=False)
    with fits.open(ipath, memmap=False) as hd:
        header = next(h.header for h in hd if getattr(h, "data", None) is not None and h.is_image).copy()
    kw = noise_keywords(header, ipath)
    for k, v in (("gain", gain), ("rdnoise", rdnoise), ("ncombine", ncombine), ("exptime", exptime)):
        if v is not None:
            kw[k] = float(v)
    if kw["gain"] <= 0 or kw["ncombine"] <= 0 or kw["exptime"] <= 0:
        raise DataError(f"GAIN, NCOMBINE and EXPTIME must be positive, got {kw}")
    H, W = full.shape
    xmin, xmax, ymin, ymax = feedme.region or (1, W, 1, H)
    if xmax > W or ymax > H:
        raise DataError(f"fit region (H) [{xmin}:{xmax},{ymin}:{ymax}] lies outside the image ({W} x {H})")
    cut = (slice(ymin - 1, ymax), slice(xmin - 1, xmax))
    sigma = None
    if feedme.sigma:
        s = read_image(_resolve(feedme, feedme.sigma), name="sigma (C)", allow_cube=False)
        if s.shape != full.shape:
            raise DataError(f"sigma (C) has shape {s.shape}, the image {full.shape}")
        sigma = s[cut]
    mask = _read_mask(_resolve(feedme, feedme.mask), full.shape)[cut] if feedme.mask else np.ones((ymax - ymin + 1, xmax - xmin + 1), bool)
    psf = read_image(_resolve(feedme, feedme.psf), name="psf (D)", allow_cube=False) if feedme.psf else None
    zp = feedme.zeropoint + 2.5 * math.log10(kw["exptime"])
    # GALFIT's sigma as fit()'s (data + sky)/g + rn^2/g^2 with g = GAIN NCOMBINE, rn = RDNOISE sqrt(NCOMBINE)
    return FeedmeData(full[cut], sigma, mask, psf, header, zp, kw["gain"] * kw["ncombine"],
                      kw["rdnoise"] * math.sqrt(kw["ncombine"]), float(sky), (xmin, xmax, ymin, ymax),
                      kw["exptime"])


# ---------------------------------------------------------------------------------------------
# writing (pure formatters, then the files)
# ---------------------------------------------------------------------------------------------
def _fmt(v):
    return f"{v:.6f}" if abs(v) < 1e5 else f"{v:.6e}"


def feedme_with_values(feedme: Feedme, values: dict) -> Feedme:
    """A copy of ``feedme`` whose component values are ``values`` (``{"comp.param": value}``,
    galmoss_jax units), converted back to GALFIT's (1-based full-image positions,
    mag/arcsec^2)."""
    fr = _frame(feedme)
    names = component_names(feedme)
    comps = []
    for cname, comp in zip(names, feedme.components):
        lines = _comp_lines(comp)
        new = []
        for fp in comp.params:
            vals = list(fp.values)
            for j, pname in enumerate(lines[fp.key]):
                full = f"{cname}.{pname}"
                if full in values:
                    vals[j] = float(fr.to_galfit(pname, float(np.asarray(values[full]).reshape(-1)[0])))
            new.append(dataclasses.replace(fp, values=tuple(vals)))
        comps.append(dataclasses.replace(comp, params=tuple(new)))
    return dataclasses.replace(feedme, components=tuple(comps))


_DESCR = {"x0": "position x, y", "mag": "integrated magnitude", "r_e": "R_e (effective radius)   [pix]",
          "n": "Sersic index n", "q": "axis ratio (b/a)", "pa": "position angle (PA) [deg: Up=0, Left=90]",
          "c0": "diskiness (< 0) or boxiness (> 0)", "r_s": "R_s (disk scale length) [pix]",
          "fwhm": "FWHM [pix]", "beta": "powerlaw / beta", "mu_0": "central surface brightness [mag/arcsec^2]",
          "mu_b": "surface brightness at R_b [mag/arcsec^2]", "r_out": "R_out (outer truncation radius) [pix]",
          "r_c": "R_c (core radius) [pix]", "r_t": "R_t (truncation radius) [pix]", "r_b": "R_b (break radius) [pix]",
          "h_s": "h_s (disk scale height) [pix]", "alpha": "alpha", "gamma": "gamma",
          "sky": "sky background at center of fitting region [ADUs]", "dsky_dx": "dsky/dx (sky gradient in x)",
          "dsky_dy": "dsky/dy (sky gradient in y)",
          "rot_r_in": "bar radius (rotation inner radius) [pix]",
          "rot_r_out": "96% asymptotic radius of the rotation [pix]",
          "rot_theta": "cumul. coord. rotation out to R2 [deg]", "rot_alpha": "asymptotic spiral arm powerlaw",
          "incl": "inclination to L.o.S. [deg]", "sky_pa": "sky position angle [deg]",
          **{f"f{m}": f"Fourier mode {m}: amplitude, phase angle [deg]" for m in range(1, MAX_FOURIER + 1)}}


def _ordered_lines(comp) -> list:
    """A component's parameter lines as GALFIT writes them: the profile's (as read), then
    ``R0) power`` (as None) and R1-R4, R9, R10, then the Fourier modes F1-F10."""
    base = [fp for fp in comp.params if fp.key not in ROTATION_LINES and not fp.key.startswith("F")]
    rot = [comp.get(k) for k in ROTATION_LINES if comp.get(k) is not None]
    four = [comp.get(f"F{m}") for m in _fourier_modes(comp)]
    return base + ([None] if rot else []) + rot + four


def format_feedme(feedme: Feedme, *, header_lines=()) -> str:
    """The text of a GALFIT feedme (``galfit.01`` style); ``header_lines`` go first as
    ``#`` comments."""
    def none(v):
        return "none" if v is None else v

    out = [f"#  {h}" for h in header_lines]
    if header_lines:
        out.append("")
    out += ["===============================================================================",
            "# IMAGE and GALFIT CONTROL PARAMETERS",
            f"A) {feedme.image:<20s} # Input data image (FITS file)",
            f"B) {feedme.output:<20s} # Output data image block",
            f"C) {none(feedme.sigma):<20s} # Sigma image name (made from data if blank or \"none\")",
            f"D) {none(feedme.psf):<20s} # Input PSF image and (optional) diffusion kernel",
            f"E) {feedme.psf_fine:<20d} # PSF fine sampling factor relative to data",
            f"F) {none(feedme.mask):<20s} # Bad pixel mask (FITS image or ASCII coord list)",
            f"G) {none(feedme.constraints):<20s} # File with parameter constraints (ASCII file)"]
    if feedme.region:
        out.append("H) {:<4d} {:<4d} {:<4d} {:<4d}      # Image region to fit (xmin xmax ymin ymax)".format(*feedme.region))
    if feedme.convbox:
        out.append("I) {:<4d} {:<4d}                # Size of the convolution box (x y)".format(*feedme.convbox))
    out += [f"J) {feedme.zeropoint:<20.4f} # Magnitude photometric zeropoint",
            f"K) {feedme.platescale[0]:<9.4f} {feedme.platescale[1]:<10.4f} # Plate scale (dx dy)   [arcsec per pixel]",
            f"O) {feedme.display:<20s} # Display type (regular, curses, both)",
            *([f"W) {','.join(feedme.outputs):<20s} # Output image extensions"]
              if feedme.outputs != BLOCK_OUTPUTS else []),
            f"P) {feedme.mode:<20d} # Choose: 0=optimize, 1=model, 2=imgblock, 3=subcomps", "",
            "# INITIAL FITTING PARAMETERS", "#   par)    par value(s)    fit toggle(s)    # parameter description", ""]
    for i, comp in enumerate(feedme.components, 1):
        lines = _comp_lines(comp)
        out += [f"# Component number: {i}", f" 0) {comp.kind:<24s} #  Component type"]
        for fp in _ordered_lines(comp):
            if fp is None:
                out.append(f"{'R0)':>4s} {'power':<32s} #  PA rotation function (power, log, none)")
                continue
            vals = "  ".join(_fmt(v) for v in fp.values)
            flags = " ".join("1" if f else "0" for f in fp.free)
            key = f"{fp.key})"
            out.append(f"{key:>4s} {vals + '  ' + flags:<32s} #  {_DESCR.get(lines[fp.key][0], '')}")
        out += [f" Z) {1 if comp.skip else 0:<24d} #  Skip this model in output image?  (yes=1, no=0)", ""]
    out.append("================================================================================")
    return "\n".join(out) + "\n"


def write_feedme(feedme: Feedme, path, *, header_lines=()) -> str:
    """Write ``feedme`` to ``path`` (refuses to replace an existing file).  Returns the path."""
    path = os.fspath(path)
    if os.path.exists(path):
        raise InputFileError(f"output {path!r} exists")
    with open(path, "x") as fh:
        fh.write(format_feedme(feedme, header_lines=header_lines))
    return path


def rebase_paths(feedme: Feedme, new_path) -> Feedme:
    """``feedme`` moved to ``new_path``: its relative input paths (A, C, D, F, G) rewritten
    relative to the new file's directory, so that they still name the same files."""
    directory = os.path.dirname(os.path.abspath(new_path))

    def rel1(name):
        if name is None or os.path.isabs(name) or name.lower() == "none":
            return name
        return os.path.relpath(_resolve(feedme, name), os.path.abspath(directory))

    def rel(name):   # a GalfitM list: each band's name
        return name if name is None else ",".join(rel1(n) for n in name.split(","))

    return dataclasses.replace(feedme, image=rel(feedme.image), sigma=rel(feedme.sigma), psf=rel(feedme.psf),
                               mask=rel(feedme.mask), constraints=rel(feedme.constraints),
                               path=os.fspath(new_path))


def next_restart_name(directory) -> str:
    """``galfit.NN`` with NN one above the highest present in ``directory`` (01 if none)."""
    nums = [int(m.group(1)) for f in os.listdir(directory) if (m := re.fullmatch(r"galfit\.(\d+)", f))]
    return os.path.join(directory, f"galfit.{max(nums, default=0) + 1:02d}")


def _value_str(v, err, fixed):
    if fixed:
        return f"[{v:.4f}]"
    if not np.isfinite(err):
        return f"*{v:.4f}* +/- nan"
    return f"{v:.4f} +/- {err:.4f}"


def galfit_header(feedme: Feedme, values: dict, errors: dict | None, stats: dict):
    """The image-block model header in GALFIT's keyword style (``COMP_1 = 'sersic'``,
    ``1_XC = '128.43 +/- 0.01'``, fixed values in brackets, ``CHISQ``, ``NDOF``, ``NFREE``,
    ``CHI2NU``, ...).  ``values``/``errors`` in GALFIT units, keyed ``"comp.param"``.

    A component with shape modes also has GALFIT's ``N_ROTF = 'power'``, ``N_RIN``, ``N_ROUT``
    (pixels), ``N_RANG`` (degrees), ``N_ALPHA``, ``N_INCL``, ``N_SPA`` (degrees) for the rotation
    and ``N_F{m}``, ``N_F{m}PA`` (degrees) for each Fourier mode (see :func:`_header_keys` for
    the profiles whose own keys these would repeat)."""
    from astropy.io import fits

    h = _Header(fits.Header())
    xmin, xmax, ymin, ymax = stats["region"]
    sect = f"[{xmin}:{xmax},{ymin}:{ymax}]"
    h["OBJECT"] = "model"
    h["INITFILE"] = (os.path.basename(feedme.path) if feedme.path else "none", "GALFIT input file")
    h["DATAIN"] = (f"{feedme.image}{sect}", "Input data image")
    h["SIGMA"] = (feedme.sigma or "none", "Input sigma image")
    h["PSF"] = (feedme.psf or "none", "Convolution PSF")
    h["CONSTRNT"] = (feedme.constraints or "none", "Parameter constraint file")
    h["MASK"] = (feedme.mask or "none", "Input mask image")
    h["FITSECT"] = (sect, "Image section fitted")
    cb = feedme.convbox or (xmax - xmin + 1, ymax - ymin + 1)
    h["CONVBOX"] = (f"{cb[0]}, {cb[1]}", "Convolution box size (whole region convolved)")
    h["MAGZPT"] = (feedme.zeropoint, "Magnitude zeropoint")
    h["EXPTIME"] = (stats["exptime"], "Exposure time in the magnitudes [s]")
    fixed = stats.get("fixed", set())
    for i, (cname, comp) in enumerate(zip(component_names(feedme), feedme.components), 1):
        h[f"COMP_{i}"] = (comp.kind, "Component type")
        params = _comp_params(comp)
        keys = _header_keys([p for p, _, _, _ in params])
        for pname, _, _, _ in params:
            full = f"{cname}.{pname}"
            if pname == "rot_r_in":
                h[f"{i}_ROTF"] = ("power", "Axial rotation function")
            e = math.nan if errors is None else float(errors.get(full, math.nan))
            h[f"{i}_{keys[pname]}"] = (_value_str(float(values[full]), e, errors is None or full in fixed),
                                       _SHAPE_HEADER_COMMENTS.get(pname) or _DESCR.get(pname, "")[:40])
    for k, c in (("CHISQ", "Chi^2 of fit"), ("NDOF", "Degrees of freedom"), ("NFREE", "Number of free parameters"),
                 ("NFIX", "Number of fixed parameters"), ("CHI2NU", "Reduced Chi^2")):
        if k in stats:
            h[k] = (stats[k], c)
    if "STATUS" in stats:
        h["STATUS"] = (stats["STATUS"], "galmoss_jax fit status (0 = success)")
    h["LOGFILE"] = ("fit.log", "Output log file")
    return h.header


class _Header:
    """Sets cards, dropping the comment where value and comment do not fit one card."""

    def __init__(self, header):
        self.header = header

    def __setitem__(self, key, vc):
        value, comment = vc if isinstance(vc, tuple) else (vc, "")
        if len(str(value)) + len(comment) > 60:
            comment = ""
        self.header[key] = (value, comment) if comment else value


def format_fit_log(feedme: Feedme, values: dict, errors: dict, stats: dict, *, restart: str, output: str) -> str:
    """A GALFIT-like ``fit.log`` entry (values and errors in GALFIT units)."""
    xmin, xmax, ymin, ymax = stats["region"]
    out = ["-" * 77, "", "", f"Input image     : {feedme.image}[{xmin}:{xmax},{ymin}:{ymax}]",
           f"Init. par. file : {os.path.basename(feedme.path) if feedme.path else 'none'}",
           f"Restart file    : {os.path.basename(restart)}", f"Output image    : {os.path.basename(output)}", ""]
    for cname, comp in zip(component_names(feedme), feedme.components):
        ps = _comp_params(comp)
        vals = [f"{float(values[f'{cname}.{p}']):10.4f}" for p, _, _, _ in ps]
        errs = [f"{float(errors.get(f'{cname}.{p}', math.nan)):10.4f}" for p, _, _, _ in ps]
        out.append(f" {comp.kind:<10s}: " + " ".join(vals))
        out.append(f" {'':<10s}  " + " ".join(errs))
    out += [f" Chi^2 = {stats['CHISQ']:.5f},  ndof = {stats['NDOF']}", f" Chi^2/nu = {stats['CHI2NU']:.4f}", "",
            "-" * 77, ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# running a feedme
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FeedmeFit:
    """What :func:`fit_feedme` did: the fit result (None for P) 1 / 2), the model, the feedme
    with the best-fit values, and the files written."""

    result: object
    model: object
    feedme: Feedme
    files: dict


def _galfit_units(feedme, model, values, errors):
    fr = _frame(feedme)
    v = {n: fr.to_galfit(n.split(".", 1)[1], float(np.asarray(values[n]).reshape(-1)[0])) for n in model.param_names}
    e = {n: float(np.asarray(errors[n]).reshape(-1)[0]) for n in model.param_names} if errors is not None else None
    return v, e


def _render_output(model, feedme, values, shape, data: FeedmeData):
    """Model image of the components not marked Z) 1."""
    from .model import Model, render

    keep = [(c, s) for (c, s), comp in zip(model.components, feedme.components) if not comp.skip]
    if not keep:
        return np.zeros(shape)
    sub = Model(dict(keep))
    pv = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in values.items() if k.split(".", 1)[0] in dict(keep)}
    psf = None if data.psf is None else data.psf / data.psf.sum()
    return np.asarray(render(sub, pv, shape, psf=psf, zeropoint=data.zeropoint, oversample=feedme.psf_fine))


def fit_feedme(feedme, *, output_dir=".", gain=None, rdnoise=None, ncombine=None, exptime=None, sky=0.0,
               max_iter=None, write=True) -> FeedmeFit:
    """Run a GALFIT feedme (a path or a :class:`Feedme`).

    Mode P) 0 fits with :func:`galmoss_jax.fit` and writes, into ``output_dir``, the image
    block B) (blank primary, data, model, residual; best-fit values and errors in the model
    header), a restart feedme ``galfit.NN`` and a ``fit.log`` entry.  P) 1 writes the model
    image of the initial values to B); P) 2 the image block of the initial values.

    ``gain``, ``rdnoise``, ``ncombine``, ``exptime`` override the image-header keywords;
    ``sky`` (ADU) is a sky level already subtracted from the image (for the sigma only).
    """
    from astropy.io import fits

    from ._fit import fit
    from .io import write_fits_atomic

    if not isinstance(feedme, Feedme):
        feedme = read_feedme(feedme)
    if feedme.bands:   # a GalfitM file
        from ._galfitm import fit_band_feedme
        return fit_band_feedme(feedme, output_dir=output_dir, gain=gain, rdnoise=rdnoise, ncombine=ncombine,
                               exptime=exptime, sky=sky, max_iter=max_iter, write=write)
    cons = read_constraints(_resolve(feedme, feedme.constraints)) if feedme.constraints else ()
    model, init = feedme_model(feedme, cons)
    d = load_feedme_data(feedme, gain=gain, rdnoise=rdnoise, ncombine=ncombine, exptime=exptime, sky=sky)
    if any(s.kind == "point" for _, s in model.components) and d.psf is None:
        raise ParameterError("a psf component needs a PSF image (D)")
    if not os.path.isdir(output_dir):
        raise InputFileError(f"output directory {output_dir!r} does not exist")
    out_path = os.path.join(output_dir, feedme.output)
    shape = d.data.shape
    files = {}
    if feedme.mode in (1, 2):
        values = model.complete(init)
        img = _render_output(model, feedme, values, shape, d)
        if feedme.mode == 1:
            if write:
                write_fits_atomic(fits.HDUList([fits.PrimaryHDU(img)]), out_path, overwrite=True)
                files["model"] = out_path
            return FeedmeFit(None, model, feedme, files)
        gv, _ = _galfit_units(feedme, model, values, None)
        stats = {"region": d.region, "exptime": d.exptime}
        hdr = galfit_header(feedme, gv, None, stats)
        if write:
            _write_block(d, img, hdr, out_path, feedme.outputs)
            files["imgblock"] = out_path
        return FeedmeFit(None, model, feedme, files)

    res = fit(model, d.data, sigma=d.sigma, mask=d.mask, psf=d.psf, init=init, zeropoint=d.zeropoint,
              gain=d.gain if d.sigma is None else None, read_noise=d.read_noise, sky=d.sky,
              max_iter=max_iter, oversample=feedme.psf_fine)
    values = {k: v[0] for k, v in res.values.items()}
    gv, ge = _galfit_units(feedme, model, res.values, res.errors)
    best = feedme_with_values(feedme, values)
    fixed = {n for n in model.param_names if n in dict(model.fixed)}
    n_fix = sum(not free for comp in feedme.components for _, _, free, _ in _comp_params(comp))  # toggles 0
    stats = {"region": d.region, "exptime": d.exptime,
             "CHISQ": float(res.chi2[0]), "NDOF": int(res.dof[0]), "NFREE": len(model.free_names),
             "NFIX": n_fix, "CHI2NU": float(res.chi2_nu[0]), "STATUS": int(res.status[0]), "fixed": fixed}
    if write:
        img = _render_output(model, feedme, values, shape, d)
        _write_block(d, img, galfit_header(feedme, gv, ge, stats), out_path, feedme.outputs)
        restart = next_restart_name(output_dir)
        write_feedme(rebase_paths(best, restart), restart, header_lines=(
            f"Input menu file: {os.path.basename(feedme.path) if feedme.path else 'none'}", "",
            f"Chi^2/nu = {stats['CHI2NU']:.3f},  Chi^2 = {stats['CHISQ']:.3f},  Ndof = {stats['NDOF']}"))
        with open(os.path.join(output_dir, "fit.log"), "a") as fh:
            fh.write(format_fit_log(feedme, gv, ge, stats, restart=restart, output=out_path))
        files.update(imgblock=out_path, restart=restart, log=os.path.join(output_dir, "fit.log"))
    return FeedmeFit(res, model, best, files)


def _input_header(header):
    """The input image's header cards for the block's input extension, less the structural
    ones (SIMPLE, BITPIX, NAXIS...) and comments."""
    from astropy.io import fits

    skip = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "", "COMMENT", "HISTORY")
    return fits.Header([c for c in (header.cards if header is not None else []) if c.keyword not in skip])


def _with_primary(hdus, outputs, *, keep_name=False):
    """``hdus`` (image extensions) with a primary HDU in front: a blank one if ``outputs``
    (GalfitM's W)) has it, else the first image made primary (its name kept as EXTNAME if
    ``keep_name``)."""
    from astropy.io import fits

    if "blank" in outputs:
        return [fits.PrimaryHDU()] + hdus
    first = hdus[0]
    primary = fits.PrimaryHDU(first.data, header=first.header)
    if keep_name:
        primary.header["EXTNAME"] = first.name
    return [primary] + hdus[1:]


def _write_block(d: FeedmeData, model_img, header, path, outputs=BLOCK_OUTPUTS):
    """GALFIT image block: [0] blank, [1] data (input header), [2] model (fit header),
    [3] residual data - model (the items of ``outputs``, GalfitM's W)).  Replaces an existing
    file, as GALFIT does."""
    from astropy.io import fits

    from .io import write_fits_atomic

    made = {"input": lambda: fits.ImageHDU(d.data, header=_input_header(d.header), name="INPUT_DATA"),
            "model": lambda: fits.ImageHDU(model_img, header=header, name="MODEL"),
            "residual": lambda: fits.ImageHDU(d.data - model_img, name="RESIDUAL")}
    hdus = [made[o]() for o in outputs if o in made]      # GalfitM's W) (default: all four)
    write_fits_atomic(fits.HDUList(_with_primary(hdus, outputs)), path, overwrite=True)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def cmd_galfit(args):
    out = fit_feedme(args.feedme, output_dir=args.out_dir, gain=args.gain, rdnoise=args.rdnoise,
                     ncombine=args.ncombine, exptime=args.exptime, sky=args.sky, max_iter=args.max_iter)
    if out.result is not None:
        r = out.result
        print(f"chi2 {float(r.chi2[0]):.4f}, ndof {int(r.dof[0])}, chi2/nu {float(r.chi2_nu[0]):.5f}, "
              f"status {int(r.status[0])} ({r.status_msg[0]})")
    for k, v in out.files.items():
        print(f"{k}: {v}")


def add_parser(sub) -> argparse.ArgumentParser:
    g = sub.add_parser("galfit", help="run a GALFIT or GalfitM feedme file (fit, image block, restart file, fit.log)")
    g.add_argument("feedme", help="GALFIT input file")
    g.add_argument("--out-dir", default=".", help="where the image block, galfit.NN and fit.log go (default .)")
    g.add_argument("--gain", type=float, help="override the GAIN header keyword (e-/ADU)")
    g.add_argument("--rdnoise", type=float, help="override the RDNOISE header keyword (e-)")
    g.add_argument("--ncombine", type=float, help="override the NCOMBINE header keyword")
    g.add_argument("--exptime", type=float, help="override the EXPTIME header keyword (s; enters the magnitudes)")
    g.add_argument("--sky", type=float, default=0.0, help="sky level already subtracted from the image (ADU; sigma only)")
    g.add_argument("--max-iter", type=int, default=None)
    g.set_defaults(func=cmd_galfit)
    return g
