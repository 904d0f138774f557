"""Imfit configuration files: read, fit with :func:`galmoss_jax.fit`, write Imfit's best-fit
parameter file.

``galmoss-jax imfit CONFIG IMAGE`` runs an Imfit configuration (``X0``/``Y0`` blocks of
``FUNCTION``s, parameter limits ``lo,hi`` or ``fixed``, the options GAIN, READNOISE,
ORIGINAL_SKY, EXPTIME, NCOMBINE) and writes ``bestfit_parameters_imfit.txt`` in Imfit's format.

Conversions (exact; Imfit's conventions at this boundary only):

* ``X0, Y0`` are 1-based: ``x0 = X0 - 1``; every function of a block shares the block's centre
  (the others' ``x0, y0`` are tied to the first).
* ``ell = 1 - q``; ``PA`` is the same angle (CCW from +y, degrees), fitted without limits.
* Intensities: galmoss_jax fits total magnitudes with an internal zero point (``ZEROPOINT`` =
  30; any value gives the same fit).  Imfit's ``I_e`` (Sérsic, counts/pixel at ``r_e`` on the
  major axis), ``I_0`` (exponential, Gaussian, Moffat: central counts/pixel) are the profile
  evaluated at that point, so they are proportional to the flux at fixed shape; ``I_tot``
  (point source) is the flux.  The conversion evaluates each galmoss_jax profile's own
  brightness (:class:`~galmoss_jax.profiles.ProfileSpec`) there; the error of the intensity is
  propagated from the full covariance of the fitted parameters through the gradient of that
  map (the Gauss-Newton covariance transforms exactly under the change of parameters, so this
  is what a fit in ``I_e`` gives).  Surface-brightness profiles (BrokenExponential, Core-Sersic)
  take ``mu = ZEROPOINT - 2.5 log10(I)``, as does FerrersBar2D (galmoss_jax's ``ferrer`` with
  ``beta = 0``, ``alpha = n``, ``r_out = a_bar``) and ModifiedKing (galmoss_jax's ``king``, the
  same law).  EdgeOnDisk is not mapped: Imfit's is a 3-D disk seen at an inclination, not
  galmoss_jax's ``edge_on_disk``.
* Gaussian ``sigma = fwhm / (2 sqrt(2 ln 2))``.
* Limits on ``X0, Y0``, radii, indices and ``ell`` become bounds; limits on mag-type
  intensities (``I_e``, ``I_0`` of a Sérsic/exponential/...) depend on the shape and are not
  imposed (a warning says so if the result lies outside them).
* Noise: ``sigma^2 = (data + sky) / g + rn^2 / g^2`` with ``g = GAIN EXPTIME NCOMBINE``,
  ``rn = READNOISE sqrt(NCOMBINE)`` (Imfit's effective gain and read noise).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import warnings

import numpy as np

from ._errors import DataError, InputFileError, ParameterError
from ._noise import mask_from_bad_pixels

ZEROPOINT = 30.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

# Imfit function -> (galmoss_jax profile, ordered Imfit parameters, intensity parameter and how
# it maps: "r_e" = brightness at r_e on the major axis, "centre" = at the centre, "flux" =
# total flux, "mu" = surface brightness parameter, None = no intensity)
FUNCTIONS = {
    "Sersic": ("sersic", ("PA", "ell", "n", "I_e", "r_e"), "I_e", "r_e"),
    "Sersic_GenEllipse": ("sersic", ("PA", "ell", "c0", "n", "I_e", "r_e"), "I_e", "r_e"),
    "Exponential": ("exponential", ("PA", "ell", "I_0", "h"), "I_0", "centre"),
    "Exponential_GenEllipse": ("exponential", ("PA", "ell", "c0", "I_0", "h"), "I_0", "centre"),
    "Gaussian": ("gaussian", ("PA", "ell", "I_0", "sigma"), "I_0", "centre"),
    "Moffat": ("moffat", ("PA", "ell", "I_0", "fwhm", "beta"), "I_0", "centre"),
    "PointSource": ("point", ("I_tot",), "I_tot", "flux"),
    "FlatSky": ("sky", ("I_sky",), None, None),
    "BrokenExponential": ("broken_exponential", ("PA", "ell", "I_0", "h1", "h2", "r_break", "alpha"), "I_0", "mu"),
    "Core-Sersic": ("core_sersic", ("PA", "ell", "n", "I_b", "r_e", "r_b", "alpha", "gamma"), "I_b", "mu"),
    # I_0 (1 - (m / a_bar)^2)^n: galmoss_jax's ferrer with beta = 0, alpha = n, r_out = a_bar
    "FerrersBar2D": ("ferrer", ("PA", "ell", "c0", "n", "I_0", "a_bar"), "I_0", "mu"),
    "ModifiedKing": ("king", ("PA", "ell", "I_0", "r_c", "r_t", "alpha"), "I_0", "mu"),
}
# Imfit parameter -> galmoss_jax parameter (the intensity maps to mag or mu_*)
_NAMES = {"PA": "pa", "ell": "q", "c0": "c0", "n": "n", "r_e": "r_e", "h": "r_s", "sigma": "fwhm", "fwhm": "fwhm",
          "beta": "beta", "I_sky": "sky", "h1": "h1", "h2": "h2", "r_break": "r_b", "alpha": "alpha",
          "r_b": "r_b", "gamma": "gamma", "r_c": "r_c", "r_t": "r_t"}
_MU = {"BrokenExponential": "mu_0", "Core-Sersic": "mu_b", "FerrersBar2D": "mu_0", "ModifiedKing": "mu_0"}
# per-function exceptions to _NAMES, and galmoss_jax parameters held fixed
_RENAME = {"FerrersBar2D": {"n": "alpha", "a_bar": "r_out"}}
_FIXED = {"FerrersBar2D": {"beta": 0.0}}
_UNITS = {"PA": "deg (CCW from +y axis)", "I_e": "counts/pixel", "I_0": "counts/pixel", "I_b": "counts/pixel",
          "I_sky": "counts/pixel", "I_tot": "counts", "r_e": "pixels", "h": "pixels", "sigma": "pixels",
          "fwhm": "pixels", "a_bar": "pixels", "h1": "pixels", "h2": "pixels", "r_break": "pixels", "r_b": "pixels",
          "r_c": "pixels", "r_t": "pixels"}
OPTIONS = ("GAIN", "READNOISE", "ORIGINAL_SKY", "EXPTIME", "NCOMBINE")


def _fail(path, lineno, text, msg):
    raise InputFileError(f"{path}: line {lineno} ({text.strip()!r}): {msg}")


@dataclasses.dataclass(frozen=True)
class ImfitParam:
    """``name value [lo,hi | fixed]``; ``error`` is filled in for best-fit values."""

    name: str
    value: float
    limits: tuple | None = None
    fixed: bool = False
    line: int = 0
    error: float = math.nan


@dataclasses.dataclass(frozen=True)
class ImfitFunction:
    name: str
    params: tuple
    line: int = 0

    def get(self, name):
        return next(p for p in self.params if p.name == name)


@dataclasses.dataclass(frozen=True)
class ImfitBlock:
    """A function set: its centre ``X0``, ``Y0`` (1-based) and its functions."""

    x0: ImfitParam
    y0: ImfitParam
    functions: tuple


@dataclasses.dataclass(frozen=True)
class ImfitConfig:
    """An Imfit configuration: options (``(("GAIN", 4.725), ...)``) and function blocks."""

    options: tuple
    blocks: tuple
    path: str | None = None

    def option(self, key, default=None):
        return dict(self.options).get(key, default)


def _param(path, lineno, raw, tokens):
    name = tokens[0]
    try:
        value = float(tokens[1])
    except (IndexError, ValueError):
        _fail(path, lineno, raw, f"{name}: expected a number, got {tokens[1] if len(tokens) > 1 else 'nothing'!r}")
    limits, fixed = None, False
    if len(tokens) > 2:
        spec = "".join(tokens[2:])
        if spec.lower() == "fixed":
            fixed = True
        else:
            try:
                lo, hi = (float(s) for s in spec.split(","))
            except ValueError:
                _fail(path, lineno, raw, f"{name}: limits must be 'lo,hi' or 'fixed', got {spec!r}")
            if not lo <= hi:
                _fail(path, lineno, raw, f"{name}: lower limit {lo} above upper limit {hi}")
            if not lo <= value <= hi:
                _fail(path, lineno, raw, f"{name}: initial value {value} outside its limits {lo},{hi}")
            limits = (lo, hi)
    return ImfitParam(name, value, limits, fixed, lineno)


def read_imfit_config(path) -> ImfitConfig:
    """Parse an Imfit configuration file.  Errors name the line (number and text): unknown
    function, unknown or missing parameter, bad number or limits."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"config: file {path!r} does not exist")
    options, blocks = [], []
    x0 = y0 = None
    funcs: list = []
    fn = None   # [name, params, line]

    def close_fn():
        nonlocal fn
        if fn is not None:
            name, params, line = fn
            want = FUNCTIONS[name][1]
            have = [p.name for p in params]
            missing = [w for w in want if w not in have]
            if missing:
                raise InputFileError(f"{path}: line {line} (FUNCTION {name}): missing parameter(s) {', '.join(missing)}")
            funcs.append(ImfitFunction(name, tuple(sorted(params, key=lambda p: want.index(p.name))), line))
            fn = None

    def close_block():
        nonlocal x0, y0, funcs
        close_fn()
        if x0 is not None:
            if not funcs:
                raise InputFileError(f"{path}: line {x0.line}: X0/Y0 block without a FUNCTION")
            blocks.append(ImfitBlock(x0, y0, tuple(funcs)))
        x0 = y0 = None
        funcs = []

    with open(path) as fh:
        lines = fh.read().splitlines()
    for lineno, raw in enumerate(lines, 1):
        tokens = raw.split("#", 1)[0].split()
        if not tokens:
            continue
        key = tokens[0]
        if key in OPTIONS:
            if x0 is not None:
                _fail(path, lineno, raw, f"{key} must come before the first X0")
            try:
                options.append((key, float(tokens[1])))
            except (IndexError, ValueError):
                _fail(path, lineno, raw, f"{key}: expected a number")
        elif key == "X0":
            close_block()
            x0 = _param(path, lineno, raw, tokens)
        elif key == "Y0":
            if x0 is None or y0 is not None or funcs or fn is not None:
                _fail(path, lineno, raw, "Y0 must follow X0")
            y0 = _param(path, lineno, raw, tokens)
        elif key == "FUNCTION":
            if x0 is None or y0 is None:
                _fail(path, lineno, raw, "FUNCTION before X0 and Y0")
            close_fn()
            name = tokens[1] if len(tokens) > 1 else ""
            if name not in FUNCTIONS:
                _fail(path, lineno, raw, f"unknown or unsupported function {name!r}; supported: {', '.join(FUNCTIONS)}")
            fn = [name, [], lineno]
        else:
            if fn is None:
                _fail(path, lineno, raw, f"unknown option {key!r} (options: {', '.join(OPTIONS)}, X0, Y0, FUNCTION)")
            if key not in FUNCTIONS[fn[0]][1]:
                _fail(path, lineno, raw, f"{fn[0]} has no parameter {key!r}; it has {', '.join(FUNCTIONS[fn[0]][1])}")
            if any(p.name == key for p in fn[1]):
                _fail(path, lineno, raw, f"parameter {key!r} given twice")
            fn[1].append(_param(path, lineno, raw, tokens))
    close_block()
    if not blocks:
        raise InputFileError(f"{path}: no X0/Y0 and FUNCTION blocks")
    return ImfitConfig(tuple(options), tuple(blocks), path)


# ---------------------------------------------------------------------------------------------
# intensity <-> magnitude (exact, through each profile's own definition)
# ---------------------------------------------------------------------------------------------
def _intensity(fname, spec, p, zp):
    """Imfit's intensity parameter of galmoss_jax component parameters ``p`` (jax-traceable)."""
    import jax.numpy as jnp

    kind = FUNCTIONS[fname][3]
    if kind == "flux":
        return spec.total_flux(p, zp)
    if kind == "mu":
        return 10.0 ** (-0.4 * (p[_MU[fname]] - zp))
    if kind == "r_e":   # on the major axis at r_e: pa = 0 puts it along +y
        return spec.brightness(dict(p, pa=jnp.zeros_like(p["pa"])), jnp.zeros_like(p["r_e"]), p["r_e"], zp)
    return spec.brightness(p, jnp.zeros_like(p["x0"]), jnp.zeros_like(p["x0"]), zp)


def _mag_of_intensity(fname, spec, p, value, zp):
    """Magnitude (or mu) giving intensity ``value`` at the other parameters ``p``."""
    kind = FUNCTIONS[fname][3]
    if value <= 0:
        raise ParameterError(f"{fname}: intensity {value} must be positive")
    if kind == "mu":
        return zp - 2.5 * math.log10(value)
    unit = float(_intensity(fname, spec, dict(p, mag=zp), zp))   # intensity of flux 1
    return zp - 2.5 * math.log10(value / unit)


# ---------------------------------------------------------------------------------------------
# config -> Model
# ---------------------------------------------------------------------------------------------
def _names(config):
    profs = [FUNCTIONS[f.name][0] for b in config.blocks for f in b.functions]
    return [p if profs.count(p) == 1 else f"{p}{i}" for i, p in enumerate(profs, 1)]


def _intersect(lo, hi, plo, phi, what):
    lo, hi = max(lo, plo), min(hi, phi)
    if not lo < hi:
        raise ParameterError(f"{what}: limits do not overlap the parameter's allowed range [{plo}, {phi}]")
    return lo, hi


def imfit_model(config: ImfitConfig):
    """The :class:`~galmoss_jax.model.Model`, initial values and the layout
    ``[(component, function, block index)]`` of an Imfit configuration."""
    from .model import Model
    from .profiles import get_profile

    names = _names(config)
    comps, fixed, free, init, bounds, tied, layout = [], {}, [], {}, {}, {}, []
    k = 0
    for bi, block in enumerate(config.blocks):
        first = None
        for f in block.functions:
            cname = names[k]
            k += 1
            prof, _, inten, kind = FUNCTIONS[f.name]
            spec = get_profile(prof)
            comps.append((cname, prof))
            layout.append((cname, f, bi))
            vals = {}

            def put(pname, value, limits, is_fixed, transform=None, what=None):
                full = f"{cname}.{pname}"
                if is_fixed:
                    fixed[full] = value
                else:
                    init[full] = value
                    if spec.param(pname).fixed:    # fixed by default (c0): the config frees it
                        free.append(full)
                if limits is not None and not is_fixed:
                    lo, hi = transform(limits) if transform else limits
                    par = spec.param(pname)
                    if par.periodic is None:
                        bounds[full] = _intersect(lo, hi, par.lower, par.upper, what or full)
                vals[pname] = value

            if "x0" in spec.param_names:
                if first is None:
                    first = cname
                    put("x0", block.x0.value - 1, block.x0.limits, block.x0.fixed, lambda l: (l[0] - 1, l[1] - 1), "X0")
                    put("y0", block.y0.value - 1, block.y0.limits, block.y0.fixed, lambda l: (l[0] - 1, l[1] - 1), "Y0")
                else:
                    tied[f"{cname}.x0"] = f"{first}.x0"
                    tied[f"{cname}.y0"] = f"{first}.y0"
                    vals["x0"], vals["y0"] = block.x0.value - 1, block.y0.value - 1
            for ip in f.params:
                if ip.name == inten:
                    continue
                if ip.name == "ell":
                    put("q", 1.0 - ip.value, ip.limits, ip.fixed, lambda l: (1.0 - l[1], 1.0 - l[0]), f"{f.name} ell")
                elif ip.name == "sigma":
                    put("fwhm", ip.value * _FWHM_PER_SIGMA, ip.limits, ip.fixed,
                        lambda l: (l[0] * _FWHM_PER_SIGMA, l[1] * _FWHM_PER_SIGMA), f"{f.name} sigma")
                else:
                    put(_name(f.name, ip.name), ip.value, ip.limits, ip.fixed, None, f"{f.name} {ip.name}")
            for pname, v in _FIXED.get(f.name, {}).items():
                fixed[f"{cname}.{pname}"] = v
                vals[pname] = v
            if inten is None:
                continue
            ip = f.get(inten)
            if kind == "mu":
                mu = _mag_of_intensity(f.name, spec, vals, ip.value, ZEROPOINT)
                lim = None
                if ip.limits is not None and ip.limits[0] > 0:   # mu decreases as I grows
                    lim = (ZEROPOINT - 2.5 * math.log10(ip.limits[1]), ZEROPOINT - 2.5 * math.log10(ip.limits[0]))
                put(_MU[f.name], mu, lim, ip.fixed, None, f"{f.name} {inten}")
                continue
            p = dict(spec.defaults(), **vals)
            if ip.fixed and any(f"{cname}.{n}" in init for n in spec.param_names if n not in ("x0", "y0", "pa")):
                raise ParameterError(f"{config.path}: line {ip.line}: a fixed {inten} with free shape parameters "
                                     "is not supported (galmoss_jax fits the total magnitude)")
            put("mag", _mag_of_intensity(f.name, spec, p, ip.value, ZEROPOINT), None, ip.fixed)
    model = Model(comps, fixed=fixed, free=free, tied=tied, bounds=bounds)
    return model, init, layout


def _name(fname, iname):
    rename = _RENAME.get(fname, {})
    return rename[iname] if iname in rename else _NAMES[iname]


# ---------------------------------------------------------------------------------------------
# results -> Imfit parameters
# ---------------------------------------------------------------------------------------------
def imfit_values(config: ImfitConfig, result, layout) -> ImfitConfig:
    """The configuration with best-fit values and errors (Imfit units) from a fit of
    :func:`imfit_model`'s model."""
    import jax
    import jax.numpy as jnp

    model = result.model
    free = list(model.free_names)
    vals = {n: float(np.asarray(v)[0]) for n, v in result.values.items()}
    errs = {n: float(np.asarray(v)[0]) for n, v in result.errors.items()}
    cov = np.asarray(result.covariance)[0]
    blocks = []
    for bi, block in enumerate(config.blocks):
        funcs = []
        centre = next((c for c, f, b in layout if b == bi and "x0" in model.spec(c).param_names), None)
        for cname, f, b in layout:
            if b != bi:
                continue
            spec = model.spec(cname)
            prof, _, inten, kind = FUNCTIONS[f.name]
            cp = {n.split(".", 1)[1]: v for n, v in vals.items() if n.startswith(cname + ".")}
            new = []
            for ip in f.params:
                if ip.name == inten:
                    idx = [free.index(f"{cname}.{n}") if f"{cname}.{n}" in free else -1 for n in spec.param_names]

                    def fun(vec):
                        p = {n: (vec[i] if i >= 0 else jnp.asarray(cp[n])) for n, i in zip(spec.param_names, idx)}
                        return _intensity(f.name, spec, p, ZEROPOINT)

                    vec = jnp.asarray([vals[n] for n in free])
                    value = float(fun(vec))
                    g = np.asarray(jax.grad(fun)(vec)) if free else np.zeros(0)
                    err = float(np.sqrt(max(g @ cov @ g, 0.0))) if free else 0.0
                    if ip.limits is not None and not ip.limits[0] <= value <= ip.limits[1]:
                        warnings.warn(f"{f.name} {inten} = {value:.6g} lies outside its config limits "
                                      f"{ip.limits} (not imposed on a magnitude fit)", stacklevel=2)
                elif ip.name == "ell":
                    value, err = 1.0 - vals[f"{cname}.q"], errs[f"{cname}.q"]
                elif ip.name == "sigma":
                    value, err = vals[f"{cname}.fwhm"] / _FWHM_PER_SIGMA, errs[f"{cname}.fwhm"] / _FWHM_PER_SIGMA
                else:
                    n = f"{cname}.{_name(f.name, ip.name)}"
                    value, err = vals[n], errs[n]
                new.append(dataclasses.replace(ip, value=value, error=0.0 if ip.fixed else err))
            funcs.append(dataclasses.replace(f, params=tuple(new)))
        if centre is not None:
            x0 = dataclasses.replace(block.x0, value=vals[f"{centre}.x0"] + 1, error=errs[f"{centre}.x0"])
            y0 = dataclasses.replace(block.y0, value=vals[f"{centre}.y0"] + 1, error=errs[f"{centre}.y0"])
        else:
            x0, y0 = block.x0, block.y0
        blocks.append(ImfitBlock(x0, y0, tuple(funcs)))
    return dataclasses.replace(config, blocks=tuple(blocks))


def fit_statistics(result) -> dict:
    """chi2, dof, reduced chi2, AIC (corrected, as Imfit) and BIC of a single-galaxy fit."""
    chi2 = float(result.chi2[0])
    dof = int(result.dof[0])
    k = len(result.free_names)
    n = dof + k
    return {"chi2": chi2, "dof": dof, "reduced_chi2": chi2 / dof if dof > 0 else math.nan, "n_free": k,
            "n_pixels": n, "AIC": chi2 + 2 * k + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.nan,
            "BIC": chi2 + k * math.log(n) if n > 0 else math.nan, "status": int(result.status[0]),
            "status_msg": result.status_msg[0], "n_iter": int(result.n_iter[0]), "stat": result.stat}


def _line(p: ImfitParam):
    v = f"{p.value:.8g}"
    if p.fixed:
        s = f"{p.name}\t\t{v}\t\tfixed\t# +/- 0"
    else:
        s = f"{p.name}\t\t{v} # +/- {p.error:.5g}"
    u = _UNITS.get(p.name)
    return s + (f"\t{u}" if u else "")


def write_imfit_params(config: ImfitConfig, stats: dict, *, image=None) -> str:
    """Text of Imfit's ``bestfit_parameters_imfit.txt``: ``#`` header lines with the fit
    statistic, reduced chi^2, AIC and BIC, then the configuration with the best-fit values and
    ``# +/- error`` comments (a valid configuration file again)."""
    stat_name = {"chi2": "chi^2 (data-based errors)", "model-chi2": "chi^2 (model-based errors)",
                 "poisson-mlr": "Poisson MLR", "cash": "Cash statistic"}.get(stats.get("stat"), stats.get("stat"))
    out = ["# Best-fit model parameters (galmoss-jax imfit, Imfit's bestfit_parameters_imfit.txt format)"]
    if image:
        out.append(f"# Image: {image}")
    if config.path:
        out.append(f"# Configuration file: {config.path}")
    out += [f"# Fit statistic: {stat_name} = {stats['chi2']:.6f}  ({stats['dof']} DOF)",
            f"# Reduced Chi^2 = {stats['reduced_chi2']:.6f}",
            f"# AIC = {stats['AIC']:.6f}, BIC = {stats['BIC']:.6f}",
            f"# Solver: Levenberg-Marquardt, {stats['n_iter']} iterations, status {stats['status']} ({stats['status_msg']})",
            f"# Intensities converted exactly from the fitted total magnitudes (internal zero point {ZEROPOINT:g});",
            "# their errors propagated from the full covariance.", ""]
    for k, v in config.options:
        out.append(f"{k}\t{v:g}")
    if config.options:
        out.append("")
    for block in config.blocks:
        out += [_line(block.x0), _line(block.y0)]
        for f in block.functions:
            out.append(f"FUNCTION {f.name}")
            out += [_line(p) for p in f.params]
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImfitFit:
    result: object
    best: ImfitConfig
    stats: dict


def fit_imfit(config, image, *, mask=None, psf=None, noise=None, errors_are_variances=False,
              errors_are_weights=False, gain=None, read_noise=None, sky=None, exptime=None, ncombine=None,
              stat="chi2", max_iter=None) -> ImfitFit:
    """Fit an Imfit configuration (path or :class:`ImfitConfig`) to ``image`` (path).

    ``mask``: FITS, non-zero = bad; ``psf``: FITS PSF (normalised); ``noise``: sigma image
    (or variances / weights 1/sigma^2).  ``gain`` ... ``ncombine`` override the config options.
    """
    from ._fit import fit
    from .io import read_image

    if not isinstance(config, ImfitConfig):
        config = read_imfit_config(config)
    data = read_image(image, name="IMAGE", allow_cube=False)
    opt = {k: config.option(k) for k in OPTIONS}
    for k, v in (("GAIN", gain), ("READNOISE", read_noise), ("ORIGINAL_SKY", sky), ("EXPTIME", exptime),
                 ("NCOMBINE", ncombine)):
        if v is not None:
            opt[k] = float(v)
    g = (opt["GAIN"] or 1.0) * (opt["EXPTIME"] or 1.0) * (opt["NCOMBINE"] or 1.0)
    rn = (opt["READNOISE"] or 0.0) * math.sqrt(opt["NCOMBINE"] or 1.0)
    sigma = None
    if noise is not None:
        s = read_image(noise, name="--noise", allow_cube=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma = np.sqrt(s) if errors_are_variances else (1.0 / np.sqrt(s) if errors_are_weights else s)
        if sigma.shape != data.shape:
            raise DataError(f"--noise: shape {sigma.shape} differs from the image's {data.shape}")
    m = None
    if mask is not None:
        m = mask_from_bad_pixels(read_image(mask, name="--mask", allow_cube=False))
        if m.shape != data.shape:
            raise DataError(f"--mask: shape {m.shape} differs from the image's {data.shape}")
    p = read_image(psf, name="--psf", allow_cube=False) if psf is not None else None
    if p is not None:
        p = p / p.sum()   # Imfit normalises the PSF
    model, init, layout = imfit_model(config)
    res = fit(model, data, sigma=sigma, mask=m, psf=p, init=init, zeropoint=ZEROPOINT,
              gain=g if (sigma is None or stat != "chi2") else None, read_noise=rn, sky=opt["ORIGINAL_SKY"] or 0.0,
              stat=stat, max_iter=max_iter)
    return ImfitFit(res, imfit_values(config, res, layout), fit_statistics(res))


def cmd_imfit(args):
    stat = "model-chi2" if args.model_errors else "poisson-mlr" if args.poisson_mlr else "cash" if args.cashstat else "chi2"
    out = fit_imfit(args.config, args.image, mask=args.mask, psf=args.psf, noise=args.noise,
                    errors_are_variances=args.errors_are_variances, errors_are_weights=args.errors_are_weights,
                    gain=args.gain, read_noise=args.readnoise, sky=args.sky, exptime=args.exptime,
                    ncombine=args.ncombine, stat=stat, max_iter=args.max_iter)
    if os.path.exists(args.save_params) and not args.overwrite:
        raise InputFileError(f"--save-params: {args.save_params!r} exists; pass --overwrite to replace it")
    text = write_imfit_params(out.best, out.stats, image=args.image)
    with open(args.save_params, "w") as fh:
        fh.write(text)
    print(text)
    print(f"Saving best-fit parameters in file \"{args.save_params}\"")


def add_parser(sub) -> argparse.ArgumentParser:
    i = sub.add_parser("imfit", help="fit an Imfit configuration file (writes bestfit_parameters_imfit.txt)")
    i.add_argument("config", help="Imfit configuration file")
    i.add_argument("image", help="FITS image")
    i.add_argument("--mask", help="mask image (non-zero = bad)")
    i.add_argument("--psf", help="PSF image")
    i.add_argument("--noise", help="noise image (sigma unless --errors-are-variances / --errors-are-weights)")
    i.add_argument("--errors-are-variances", action="store_true")
    i.add_argument("--errors-are-weights", action="store_true")
    i.add_argument("--gain", type=float, help="e-/ADU (overrides GAIN)")
    i.add_argument("--readnoise", type=float, help="e- (overrides READNOISE)")
    i.add_argument("--sky", type=float, help="original sky level, ADU (overrides ORIGINAL_SKY)")
    i.add_argument("--exptime", type=float, help="overrides EXPTIME")
    i.add_argument("--ncombine", type=float, help="overrides NCOMBINE")
    i.add_argument("--model-errors", action="store_true", help="chi^2 with model-based errors")
    i.add_argument("--poisson-mlr", action="store_true", help="Poisson maximum-likelihood-ratio statistic")
    i.add_argument("--cashstat", action="store_true", help="Cash statistic")
    i.add_argument("--max-iter", type=int, default=None)
    i.add_argument("--save-params", default="bestfit_parameters_imfit.txt", help="output parameter file")
    i.add_argument("--overwrite", action="store_true")
    i.set_defaults(func=cmd_imfit)
    return i
