"""GalfitM feedme files (several bands at once): read, fit with :func:`galmoss_jax.fit`, write.

GalfitM (MegaMorph; Häußler et al. 2013, Vika et al. 2013) extends GALFIT's input file to
several bands of the same pixel grid:

* ``A1)`` band labels and ``A2)`` wavelengths (any unit); ``A)``, ``C)``, ``D)``, ``F)`` hold
  comma-separated file names, one per band (or one for all), ``J)`` one zero point per band
  (or one for all).  ``U)`` (non-parametric component), ``V)`` (MultiNest) must be off (first
  item 0); ``W)`` lists the image extensions written (``blank, input, model, residual``).
* A parameter line is ``KEY) values DOF [band|cheb]``: ``values`` one per band or one for all,
  comma-separated; with ``cheb`` they are the coefficients of a Chebyshev series in the
  wavelength scaled to [-1, 1] over the bands' range (``T_0`` weighted 1, not 1/2: the series
  is ``sum_j c_j T_j(t)``).  ``DOF`` is the number of Chebyshev coefficients fitted: 0 fixed,
  1 one value for all bands, k a polynomial of degree k - 1 in wavelength, the number of bands
  (or more) each band free; a comma list of toggles (``1,1,0``) frees the coefficients marked 1.
  A centred profile's x is on line 1 and y on line 2.

Conversion to a :class:`galmoss_jax.Model` with ``bands=`` (:mod:`galmoss_jax._bands`):
DOF 0 is fixed (each band at its own value, ``fixed`` + ``"free"``), DOF 1 shared, DOF k a
polynomial of degree k - 1, DOF >= the number of bands ``"free"``.  GalfitM keeps the
coefficients it does not fit at their initial values; here they must be 0 (the initial band
values lie on the polynomial fitted), or the file is refused with the reason: a polynomial
plus a fixed offset per band is not a model galmoss_jax fits.

Written files: the restart file gives every band's value (``band`` form, the same DOF); the
image block holds ``INPUT_<band>``, ``MODEL_<band>`` (GALFIT's header keywords with that band's
values) and ``RESIDUAL_<band>`` per ``W)``, and GalfitM's tables ``FINAL_BAND`` (a row per
band: ``COMP1_MAG``, ``COMP1_MAG_ERR``, ...), ``FINAL_CHEB`` (a row per Chebyshev order: the
coefficients of every parameter, their errors and ``_FIT`` toggles), ``FIT_INFO`` and
``BAND_INFO``.
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from ._errors import InputFileError, ParameterError
from .galfit import BLOCK_OUTPUTS, _fail, _input_header, _with_primary


def _labels(control) -> tuple:
    rest, ln, raw = control["A1"]
    return tuple(b.strip() for b in rest.split()[0].split(",")) if rest.split() else ()


def scaled_wavelengths(wavelengths) -> np.ndarray:
    """GalfitM's Chebyshev variable: each wavelength scaled to [-1, 1] over the bands' range."""
    lam = np.asarray(wavelengths, float)
    lo, hi = lam.min(), lam.max()
    return np.zeros_like(lam) if hi == lo else 2.0 * (lam - lo) / (hi - lo) - 1.0


def _wavelengths(path, control, n) -> tuple:
    if "A2" not in control:
        return ()
    rest, ln, raw = control["A2"]
    toks = rest.split()[0].split(",") if rest.split() else []
    try:
        lam = tuple(float(t) for t in toks)
    except ValueError:
        _fail(path, ln, raw, "A2): wavelengths must be numbers")
    if len(lam) != n:
        _fail(path, ln, raw, f"A2): {len(lam)} wavelengths for {n} bands (A1)")
    if not all(math.isfinite(v) and v > 0 for v in lam) or len(set(lam)) != n:
        _fail(path, ln, raw, "A2): wavelengths must be positive and different")
    return lam


def band_param_lines(path, lineno, raw, kind, key, tokens, control) -> list:
    """The :class:`~galmoss_jax.galfit.FeedmeParam` (one value per band and its DOF) of a
    GalfitM parameter line; GALFIT's ``1) x y fx fy`` gives lines 1 and 2."""
    from .galfit import FeedmeParam

    bands = _labels(control)
    N = len(bands)
    if key == "1" and kind != "sky" and len(tokens) >= 4 and "," not in tokens[0] \
            and all(t in ("0", "1") for t in tokens[2:4]):
        try:
            x, y = float(tokens[0]), float(tokens[1])
        except ValueError:
            _fail(path, lineno, raw, "position: expected 'x y' and two fit toggles")
        return [FeedmeParam("1", (x,) * N, (tokens[2] == "1",), lineno, int(tokens[2])),
                FeedmeParam("2", (y,) * N, (tokens[3] == "1",), lineno, int(tokens[3]))]
    if len(tokens) < 2:
        _fail(path, lineno, raw, f"parameter {key}): expected 'values DOF [band|cheb]'")
    form = tokens[2].lower() if len(tokens) > 2 else "band"
    if form == "bands":
        form = "band"
    if form not in ("band", "cheb"):
        _fail(path, lineno, raw, f"parameter {key}): expected 'band' or 'cheb' after the degrees of freedom, "
                                 f"got {tokens[2]!r}")
    try:
        vals = [float(t) for t in tokens[0].split(",")]
    except ValueError:
        _fail(path, lineno, raw, f"parameter {key}): not a number in {tokens[0]!r}")
    if not all(math.isfinite(v) for v in vals):
        _fail(path, lineno, raw, f"parameter {key}): values must be finite")
    if "," in tokens[1]:
        flags = tokens[1].split(",")
        if any(f not in ("0", "1") for f in flags) or len(flags) > N:
            _fail(path, lineno, raw, f"parameter {key}): fit toggles must be at most {N} values 0 or 1")
        dof = flags.index("0") if "0" in flags else len(flags)
        if "1" in flags[dof:]:
            _fail(path, lineno, raw, f"parameter {key}): the fitted Chebyshev coefficients must be the lowest "
                                     f"orders (1,1,0 and not 1,0,1), got {tokens[1]!r}")
    else:
        try:
            dof = int(tokens[1])
        except ValueError:
            _fail(path, lineno, raw, f"parameter {key}): the degrees of freedom must be an integer, got {tokens[1]!r}")
        if dof < 0:
            _fail(path, lineno, raw, f"parameter {key}): the degrees of freedom must be >= 0")
    dof = min(dof, N)
    if form == "cheb":
        lam = _wavelengths(path, control, N)
        if not lam:
            _fail(path, lineno, raw, "Chebyshev coefficients need the band wavelengths (A2)")
        if len(vals) > N:
            _fail(path, lineno, raw, f"parameter {key}): {len(vals)} Chebyshev coefficients for {N} bands")
        band_vals = np.polynomial.chebyshev.chebval(scaled_wavelengths(lam), vals)
    else:
        if len(vals) not in (1, N):
            _fail(path, lineno, raw, f"parameter {key}): {len(vals)} values for {N} bands (A1); give one per band "
                                     "or one for all")
        band_vals = vals * N if len(vals) == 1 else vals
    return [FeedmeParam(key, tuple(float(v) for v in band_vals), (dof > 0,), lineno, dof)]


def band_control(path, control) -> dict:
    """Items A1, A2 and the per-band lists of A, C, D, F and J, checked."""
    bands = _labels(control)
    ln, raw = control["A1"][1:]
    N = len(bands)
    if N == 0 or any(not b for b in bands):
        _fail(path, ln, raw, "A1): band labels, comma-separated")
    from ._bands import _BAND_RE
    bad = [b for b in bands if not _BAND_RE.match(b)]
    if bad or len({b.lower() for b in bands}) != N:   # GalfitM: unique without regard to case
        _fail(path, ln, raw, f"A1): band labels must be different names of letters, digits, '_' or '-', got {bands}")
    out = {"bands": bands, "wavelengths": _wavelengths(path, control, N)}
    for letter in "ACDF":
        if letter in control and control[letter][0].split():
            rest, ln, raw = control[letter]
            n = len(rest.split()[0].split(","))
            if n not in (1, N):
                _fail(path, ln, raw, f"{letter}): {n} names for {N} bands (A1); give one per band or one for all")
    zps = (0.0,) * N
    if "J" in control:
        rest, ln, raw = control["J"]
        try:
            z = [float(t) for t in rest.split()[0].split(",")]
        except (ValueError, IndexError):
            _fail(path, ln, raw, "J): zero points must be numbers, comma-separated")
        if len(z) not in (1, N):
            _fail(path, ln, raw, f"J): {len(z)} zero points for {N} bands (A1)")
        zps = tuple(z * N if len(z) == 1 else z)
    out["zeropoints"] = zps
    out["zeropoint"] = zps[0]
    return out


def output_options(path, control) -> dict:
    """GalfitM's U) and V) (refused unless off) and W) (the image extensions to write)."""
    for letter, what in (("U", "non-parametric components"), ("V", "MultiNest sampling")):
        if letter in control and control[letter][0].split():
            rest, ln, raw = control[letter]
            first = rest.split()[0].split(",")[0]
            if first not in ("0", "0.0"):
                _fail(path, ln, raw, f"{letter}): {what} are not supported (the first item must be 0)")
    if "W" not in control or not control["W"][0].split():
        return {}
    rest, ln, raw = control["W"]
    items = tuple(t.strip().lower() for t in rest.split()[0].split(","))
    bad = [t for t in items if t not in BLOCK_OUTPUTS]
    if bad or not any(t in items for t in BLOCK_OUTPUTS[1:]):
        _fail(path, ln, raw, f"W): output items are {', '.join(BLOCK_OUTPUTS)} (at least one image), got {bad or items}")
    return {"outputs": items}


# ---------------------------------------------------------------------------------------------
# one band of a GalfitM file as a GALFIT file; the Model
# ---------------------------------------------------------------------------------------------
def band_files(value, n: int) -> tuple:
    """A comma list of names, one per band (one name: the same for every band; None stays)."""
    if value is None:
        return (None,) * n
    names = [None if v.strip().lower() in ("", "none") else v.strip() for v in value.split(",")]
    return tuple(names * n if len(names) == 1 else names)


def band_view(feedme, k: int):
    """Band ``k`` of a GalfitM feedme as a one-band GALFIT :class:`Feedme` (its files, zero
    point and values; x and y on line 1)."""
    from .galfit import FeedmeComponent, FeedmeParam

    N = len(feedme.bands)
    comps = []
    for c in feedme.components:
        params, xy = [], {}
        for fp in c.params:
            if c.kind != "sky" and fp.key in ("1", "2"):
                xy[fp.key] = fp
                continue
            params.append(FeedmeParam(fp.key, (fp.values[k],), fp.free, fp.line))
        if xy:
            params.insert(0, FeedmeParam("1", (xy["1"].values[k], xy["2"].values[k]),
                                         (xy["1"].free[0], xy["2"].free[0]), xy["1"].line))
        comps.append(FeedmeComponent(c.kind, tuple(params), c.skip, c.line))
    pick = {f: band_files(getattr(feedme, f), N)[k] for f in ("image", "sigma", "psf", "mask")}
    return dataclasses.replace(feedme, components=tuple(comps), zeropoint=feedme.zeropoints[k], bands=(),
                               wavelengths=(), zeropoints=(), **pick)


def _mode(path, comp_kind, fp, t):
    """The band mode of a parameter line: 'fixed', 'shared', 'free' or a degree; refused where
    the initial values do not lie on the polynomial fitted (GalfitM's fixed higher orders)."""
    vals = np.asarray(fp.values, float)
    N = len(vals)
    d = fp.dof
    same = np.allclose(vals, vals[0], rtol=1e-9, atol=0.0)
    if d == 0:
        return "fixed" if same else "fixed_bands"
    if d >= N:
        return "free"
    if N > 1 and not same:
        coef = np.polynomial.chebyshev.chebfit(t, vals, N - 1)
        scale = max(1.0, float(np.max(np.abs(vals))))
        if np.any(np.abs(coef[d:]) > 1e-5 * scale):
            raise InputFileError(
                f"{path}: line {fp.line}: the {comp_kind} values {tuple(fp.values)} with {d} free Chebyshev "
                f"coefficient(s) keep fixed higher orders (GalfitM's offsets); galmoss_jax fits a polynomial of "
                f"degree {d - 1} through the bands: give values on such a polynomial (e.g. all equal), or DOF "
                f"{N} to free every band")
    return "shared" if d == 1 else d - 1


def band_feedme_model(feedme, constraints=()):
    """The :class:`~galmoss_jax.Model` (with ``bands=``) and initial values of a GalfitM feedme
    (galmoss_jax units; band-dependent ones as ``"comp.param_band"``)."""
    from .galfit import _comp_params, _constraint_param, _frame, _resolve, component_names, feedme_model
    from .model import Model

    N = len(feedme.bands)
    t = scaled_wavelengths(feedme.wavelengths) if feedme.wavelengths else np.zeros(N)
    view = band_view(feedme, 0)
    base, _ = feedme_model(view, constraints)    # components, bounds, ties (as the one-band file)
    fr = _frame(feedme)
    names = component_names(feedme)
    fixed, free_default, init, modes = {}, [], {}, {}
    tied = dict(base.tied)
    for cname, comp in zip(names, feedme.components):
        lines = {}
        for fp in comp.params:
            lines[fp.key] = fp
        for pname, _, _, fp0 in _comp_params(view.components[names.index(cname)]):
            key = "2" if pname == "y0" and comp.kind != "sky" else fp0.key
            fp = lines[key]
            full = f"{cname}.{pname}"
            mode = _mode(feedme.path, f"{full} ({key})", fp, t)
            vals = [fr.to_internal(pname, v) for v in fp.values]
            if full in tied:
                continue
            if mode in ("fixed", "fixed_bands"):
                if mode == "fixed":
                    fixed[full] = vals[0]
                else:
                    fixed[full] = None
                    modes[full] = "free"
                    init.update({f"{full}_{b}": v for b, v in zip(feedme.bands, vals)})
                continue
            if pname == "c0":
                free_default.append(full)
            if mode == "shared":
                init[full] = vals[0]
            else:
                modes[full] = mode
                init.update({f"{full}_{b}": v for b, v in zip(feedme.bands, vals)})
    cpath = _resolve(feedme, feedme.constraints) if feedme.constraints else None
    for c in constraints:   # a range relative to the initial value needs one initial value
        for i in c.components if c.kind == "relative" else ():
            full = f"{names[i - 1]}.{_constraint_param(view.components[i - 1], c.param, c, cpath)}"
            if full in modes:
                raise InputFileError(f"{cpath}: line {c.line} ({c.text.strip()!r}): a range relative to the "
                                     f"initial value of {full}, which differs between bands, is not supported; "
                                     "give it as 'lo to hi'")
    model = Model(base.components, fixed=fixed, free=free_default, tied=tied, bounds=dict(base.bounds),
                  bands=modes)
    return model, init


# ---------------------------------------------------------------------------------------------
# running a GalfitM file
# ---------------------------------------------------------------------------------------------
def _row(layout, name):
    """The row of the linear map from the free vector to parameter ``name`` (None if fixed)."""
    tied = dict(layout.tied)
    name = tied.get(name, name)
    row = np.zeros(len(layout.free))
    if name in layout.free:
        row[layout.free.index(name)] = 1.0
        return row
    w = layout.derived_weights(name)
    if w is None:
        return None
    for i, wi in w:
        row[i] = wi
    return row


def _tables(feedme, model, result, dof_of, stats, band_data):
    """GalfitM's FINAL_BAND, FINAL_CHEB, FIT_INFO and BAND_INFO tables."""
    from astropy.table import Table

    from .galfit import HEADER_KEYS, _frame, component_names

    bands = feedme.bands
    N = len(bands)
    fr = _frame(feedme)
    lay = model.layout
    errs = result.errors
    cov = np.asarray(result.covariance[0], float)
    t = scaled_wavelengths(feedme.wavelengths) if feedme.wavelengths else np.zeros(N)
    V = np.polynomial.chebyshev.chebvander(t, N - 1)          # band values = V @ coefficients
    Vinv = np.linalg.inv(V) if feedme.wavelengths else None
    final_band = Table()
    final_band["BAND"] = list(bands)
    final_band["WL"] = list(feedme.wavelengths) if feedme.wavelengths else [math.nan] * N
    final_cheb = Table()
    for i, (cname, (_, spec)) in enumerate(zip(component_names(feedme), model.components), 1):
        for pname in spec.param_names:
            if pname not in HEADER_KEYS:
                continue
            one = f"{cname}.{pname}"
            joint = [dict(model.per_band[k])[one] for k in range(N)]
            col = f"COMP{i}_{HEADER_KEYS[pname]}"
            vals = np.array([fr.to_galfit(pname, float(result.values[j][0])) for j in joint])
            final_band[col] = vals
            final_band[col + "_ERR"] = [float(errs[j][0]) for j in joint]
            if Vinv is None:
                continue
            coef = Vinv @ vals
            rows = [_row(lay, j) for j in joint]
            if any(r is None for r in rows):
                cerr = np.zeros(N)
            else:
                A = Vinv @ np.stack(rows)
                cerr = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", A, cov, A), 0, None))
            final_cheb[col] = coef
            final_cheb[col + "_ERR"] = cerr
            final_cheb[col + "_FIT"] = (np.arange(N) < dof_of.get(one, 0)).astype(np.int16)
    info = Table()
    for k_, v in stats.items():
        if k_ in ("CHISQ", "NDOF", "NFREE", "NFIX", "CHI2NU", "NITER", "STATUS"):
            info[k_] = [v]
    info["INITFILE"] = [os.path.basename(feedme.path) if feedme.path else "none"]
    info["LOGFILE"] = [stats.get("LOGFILE", "fit.log")]
    info["CONSTRNT"] = [feedme.constraints or "none"]
    x0, x1, y0, y1 = stats["region"]
    info["FITSECT"] = [f"[{x0}:{x1},{y0}:{y1}]"]
    band_info = Table()
    band_info["BAND"] = list(bands)
    band_info["WL"] = final_band["WL"]
    for f, c in (("image", "DATAIN"), ("sigma", "SIGMA"), ("psf", "PSF"), ("mask", "MASK")):
        band_info[c] = [v or "none" for v in band_files(getattr(feedme, f), N)]
    band_info["MAGZPT"] = list(feedme.zeropoints)
    band_info["NGOOD"] = [int(np.sum(d.mask)) for d in band_data]
    band_info["NMASK"] = [int(np.sum(~d.mask)) for d in band_data]
    band_info["CHISQ"] = [float(result.chi2_band[b][0]) for b in bands]
    return {"FINAL_BAND": final_band, "FINAL_CHEB": final_cheb, "FIT_INFO": info, "BAND_INFO": band_info}


def _dof_of(feedme, model) -> dict:
    """The DOF of each one-band parameter as the fit ran it (for the restart file and
    FINAL_CHEB's toggles)."""
    N = len(feedme.bands)
    modes = dict(model.band_modes)
    out = {}
    fixed = dict(model.fixed)
    for n in model.param_names:
        if n in fixed:
            out[n] = 0
        elif n in dict(model.tied):
            out[n] = 0
        else:
            m = modes.get(n)
            out[n] = 1 if m is None else (N if m == "free" else m + 1)
    return out


def format_band_feedme(feedme, bm, values: dict, *, header_lines=()) -> str:
    """The text of a GalfitM restart file: every band's value (``band`` form) with the DOF the
    fit ran."""
    from .galfit import _DESCR, _fmt, _frame, _lines, component_names, format_feedme

    N = len(feedme.bands)
    fr = _frame(feedme)
    dof = _dof_of(feedme, bm.base)
    head = format_feedme(dataclasses.replace(feedme, components=()), header_lines=header_lines)
    head = head.rsplit("=" * 80, 1)[0]
    out = [head.replace(f"J) {feedme.zeropoint:<20.4f}", "J) " + f"{','.join(f'{z:.4f}' for z in feedme.zeropoints):<20s}")]
    out.insert(1, "")
    lines = []
    for i, (cname, comp) in enumerate(zip(component_names(feedme), feedme.components), 1):
        lines += [f"# Component number: {i}", f" 0) {comp.kind:<24s} #  Component type"]
        spec = dict(bm.components)[cname]
        for fp in comp.params:
            pname = _lines(comp.kind, True)[fp.key][0]
            one = f"{cname}.{pname}"
            if pname in spec.param_names:
                joint = [dict(bm.per_band[k])[one] for k in range(N)]
                vals = ",".join(_fmt(fr.to_galfit(pname, float(np.asarray(values[j]).reshape(-1)[0]))) for j in joint)
                d = dof[one]
            else:   # a line the profile does not use (a flat sky's gradients): as read, fixed
                vals, d = ",".join(_fmt(v) for v in fp.values), 0
            key = f"{fp.key})"
            what = {"x0": "position x [pixel]", "y0": "position y [pixel]"}.get(pname, _DESCR.get(pname, ""))
            lines.append(f"{key:>4s} {vals}  {d}  band  #  {what}")
        lines += [f" Z) {1 if comp.skip else 0:<24d} #  Skip this model in output image?  (yes=1, no=0)", ""]
    bands_head = [f"A1) {','.join(feedme.bands):<20s} # Band labels"]
    if feedme.wavelengths:
        bands_head.append(f"A2) {','.join(f'{v:g}' for v in feedme.wavelengths):<20s} # Band wavelengths")
    text = "\n".join(out).rstrip("\n") + "\n"
    a_line = next(ln for ln in text.splitlines() if ln.startswith("A) "))
    text = text.replace(a_line, a_line + "\n" + "\n".join(bands_head), 1)
    return text + "\n".join(lines) + "\n" + "=" * 80 + "\n"


def fit_band_feedme(feedme, *, output_dir=".", gain=None, rdnoise=None, ncombine=None, exptime=None, sky=0.0,
                    max_iter=None, write=True):
    """:func:`galmoss_jax.galfit.fit_feedme` of a GalfitM file (module docstring)."""
    from ._fit import fit
    from ._bands import band_model
    from .galfit import (FeedmeFit, _galfit_units, _render_output, _resolve, format_fit_log, galfit_header,
                         load_feedme_data, next_restart_name, read_constraints, rebase_paths)

    bands = feedme.bands
    N = len(bands)
    cons = read_constraints(_resolve(feedme, feedme.constraints)) if feedme.constraints else ()
    model, init = band_feedme_model(feedme, cons)
    views = [band_view(feedme, k) for k in range(N)]
    if feedme.mode == 1 and all(v.image is None or v.image.lower() == "none" for v in views):
        data = None
    else:
        data = [load_feedme_data(v, gain=gain, rdnoise=rdnoise, ncombine=ncombine, exptime=exptime, sky=sky)
                for v in views]
    if data is not None and any(d.psf is None for d in data) and any(s.kind == "point" for _, s in model.components):
        raise ParameterError("a psf component needs a PSF image (D) in every band")
    if not os.path.isdir(output_dir):
        raise InputFileError(f"output directory {output_dir!r} does not exist")
    out_path = os.path.join(output_dir, feedme.output)
    files = {}
    bm = band_model(model, bands, feedme.wavelengths or None)
    if feedme.mode in (1, 2):
        values = bm.layout.fill(_completed(bm, init))
        return _write_initial(feedme, bm, values, views, data, out_path, write, files)
    res = fit(model, {b: d.data for b, d in zip(bands, data)}, sigma={b: d.sigma for b, d in zip(bands, data)},
              mask={b: d.mask for b, d in zip(bands, data)}, psf={b: d.psf for b, d in zip(bands, data)},
              zeropoint={b: d.zeropoint for b, d in zip(bands, data)},
              gain={b: (d.gain if d.sigma is None else None) for b, d in zip(bands, data)},
              read_noise={b: d.read_noise for b, d in zip(bands, data)}, sky={b: d.sky for b, d in zip(bands, data)},
              wavelength=dict(zip(bands, feedme.wavelengths)) if feedme.wavelengths else None,
              init=init, max_iter=max_iter, oversample=feedme.psf_fine)
    values = {k: v[0] for k, v in res.values.items()}
    n_fix = sum(1 for n in bm.layout.names if n not in bm.layout.free and n not in dict(bm.layout.derived))
    stats = {"region": data[0].region, "exptime": data[0].exptime, "CHISQ": float(res.chi2[0]),
             "NDOF": int(res.dof[0]), "NFREE": len(bm.layout.free), "NFIX": n_fix, "CHI2NU": float(res.chi2_nu[0]),
             "NITER": int(res.n_iter[0]), "STATUS": int(res.status[0])}
    best = _with_band_values(feedme, bm, values)
    if write:
        hdus = []
        log = []
        one = model.without_bands()
        for k, b in enumerate(bands):
            pk = bm.band_params(values, k)
            ek = {n: float(res.errors[j][0]) for n, j in bm.per_band[k]}
            gv, ge = _galfit_units(views[k], one, pk, ek)
            fixed = {n for n, j in bm.per_band[k] if j not in bm.layout.free}
            hdr = galfit_header(views[k], gv, ge, {**stats, "fixed": fixed, "CHISQ": float(res.chi2_band[b][0])})
            hdr["BAND"] = b
            hdus.append((b, data[k], _render_output(one, views[k], pk, data[k].data.shape, data[k]),
                         hdr))
            log.append((views[k], gv, ge))
        restart = next_restart_name(output_dir)
        stats["LOGFILE"] = os.path.basename(restart)
        _write_block(feedme, hdus, _tables(feedme, bm, res, _dof_of(feedme, model), stats, data), out_path)
        moved = rebase_paths(best, restart)
        text = format_band_feedme(moved, bm, values, header_lines=(
            f"Input menu file: {os.path.basename(feedme.path) if feedme.path else 'none'}", "",
            f"Chi^2/nu = {stats['CHI2NU']:.3f},  Chi^2 = {stats['CHISQ']:.3f},  Ndof = {stats['NDOF']}"))
        with open(restart, "x") as fh:
            fh.write(text)
        with open(os.path.join(output_dir, "fit.log"), "a") as fh:
            for (v, gv, ge), b in zip(log, bands):
                st = {**stats, "CHISQ": float(res.chi2_band[b][0])}
                fh.write(f"Band {b}\n" + format_fit_log(v, gv, ge, st, restart=restart, output=out_path))
        files.update(imgblock=out_path, restart=restart, log=os.path.join(output_dir, "fit.log"))
    return FeedmeFit(res, bm, best, files)


def _completed(bm, init) -> dict:
    """Initial values of every free and open-fixed joint parameter (model-only runs: every
    value is in the file)."""
    lay = bm.layout
    out = {}
    for n in list(lay.free) + [n for n, v in zip(lay.fixed, lay.fixed_values) if v is None]:
        v = init.get(n, init.get(bm.base_name(n)))
        if v is not None:
            out[n] = v
        elif n in lay.free:
            raise InputFileError(f"no initial value for {n}")
    return out   # parameters fixed at a profile default (c0) take it


def _with_band_values(feedme, bm, values):
    """``feedme`` with every band's best-fit value (GALFIT units)."""
    from .galfit import _frame, _lines, component_names

    fr = _frame(feedme)
    names = component_names(feedme)
    comps = []
    for cname, comp in zip(names, feedme.components):
        spec = dict(bm.base.components)[cname]
        new = []
        for fp in comp.params:
            pname = _lines(comp.kind, True)[fp.key][0]
            one = f"{cname}.{pname}"
            if pname not in spec.param_names:
                new.append(fp)
                continue
            vals = tuple(fr.to_galfit(pname, float(np.asarray(values[dict(bm.per_band[k])[one]]).reshape(-1)[0]))
                         for k in range(len(bm.bands)))
            new.append(dataclasses.replace(fp, values=vals))
        comps.append(dataclasses.replace(comp, params=tuple(new)))
    return dataclasses.replace(feedme, components=tuple(comps))


def _write_initial(feedme, bm, values, views, data, out_path, write, files):
    """P) 1 (each band's model image, extensions MODEL_<band>) and P) 2 (the image block) of
    the initial values."""
    from astropy.io import fits

    from .galfit import FeedmeFit, _galfit_units, _render_output, galfit_header
    from .io import write_fits_atomic

    one = bm.base.without_bands()
    region = feedme.region
    hdus = []
    for k, b in enumerate(bm.bands):
        pk = bm.band_params(values, k)
        if data is None:
            if region is None:
                raise InputFileError(f"{feedme.path}: a model without input images (A) none) needs the region H)")
            shape = (region[3] - region[2] + 1, region[1] - region[0] + 1)
            from .galfit import FeedmeData
            d = FeedmeData(np.zeros(shape), None, np.ones(shape, bool), _psf(views[k]), None,
                           feedme.zeropoints[k], 1.0, 0.0, 0.0, region)
        else:
            d = data[k]
        img = _render_output(one, views[k], pk, d.data.shape, d)
        gv, _ = _galfit_units(views[k], one, pk, None)
        hdr = galfit_header(views[k], gv, None, {"region": d.region, "exptime": d.exptime})
        hdr["BAND"] = b
        hdus.append((b, d, img, hdr))
    if write:
        if feedme.mode == 1:
            hl = fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(img, header=h, name=f"MODEL_{b}")
                                                     for b, _, img, h in hdus])
            write_fits_atomic(hl, out_path, overwrite=True)
            files["model"] = out_path
        else:
            _write_block(feedme, hdus, {}, out_path)
            files["imgblock"] = out_path
    return FeedmeFit(None, bm, feedme, files)


def _psf(view):
    from .galfit import _resolve
    from .io import read_image

    return None if view.psf is None else read_image(_resolve(view, view.psf), name="psf (D)", allow_cube=False)


def _write_block(feedme, hdus, tables, path):
    """GalfitM's image block: per ``W)`` a blank primary and each band's INPUT_, MODEL_ and
    RESIDUAL_ extensions, then the tables."""
    from astropy.io import fits

    from .io import write_fits_atomic

    out = []
    for b, d, img, hdr in hdus:
        if "input" in feedme.outputs:
            out.append(fits.ImageHDU(d.data, header=_input_header(d.header), name=f"INPUT_{b}"))
        if "model" in feedme.outputs:
            out.append(fits.ImageHDU(img, header=hdr, name=f"MODEL_{b}"))
        if "residual" in feedme.outputs:
            out.append(fits.ImageHDU(d.data - img, name=f"RESIDUAL_{b}"))
    out = _with_primary(out, feedme.outputs, keep_name=True)
    out += [fits.table_to_hdu(t) for t in tables.values()]
    for h, name in zip(out[-len(tables):] if tables else [], tables):
        h.name = name
    write_fits_atomic(fits.HDUList(out), path, overwrite=True)
