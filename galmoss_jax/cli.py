"""The ``galmoss-jax`` command: ``render``, ``fit``, ``example`` and ``plot``.

Errors print one line (``galmoss-jax: error: ...``) and exit with status 2; ``--debug`` shows
the traceback.

The command keeps its compiled programs in a persistent JAX compilation cache, so that a run
of a model and stamp shape seen before skips compiling (a single-Sérsic fit: ~2-3 s of XLA;
a GALFIT-style shell loop of one galaxy per command pays it once): ``--cache-dir DIR``, else
``JAX_COMPILATION_CACHE_DIR``, else ``$XDG_CACHE_HOME/galmoss_jax/jax_compilation_cache``
(``~/.cache/...``), bounded to 1 GiB (least recently used programs evicted first);
``--cache-dir none`` turns it off.  Only the installed command (:func:`console_main`) turns
it on by default: :func:`main` called from Python leaves the caller's JAX configuration alone
unless given ``--cache-dir``.  Entries that a killed run left unfinished are removed first
(:func:`repair_cache`).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ._errors import GalmossError, InputFileError, ParameterError

ZP_KEYS = ("MAGZPT", "MAGZP", "ZEROPT", "MAGZERO", "ZP")


def _parse_assignments(text: str, option: str) -> dict[str, float]:
    out = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ParameterError(f"{option}: expected NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ParameterError(f"{option}: value of {k.strip()!r} is not a number: {v!r}") from None
    if not out:
        raise ParameterError(f"{option}: no NAME=VALUE given")
    return out


def _parse_shape(text: str):
    try:
        h, w = (int(s) for s in text.split(","))
    except ValueError:
        raise ParameterError(f"--shape: expected H,W (two integers), got {text!r}") from None
    if h < 1 or w < 1:
        raise ParameterError(f"--shape: sides must be positive, got {text!r}")
    return h, w


def _table_params(model, table, option):
    """Parameter arrays from a table whose columns are ``component_param`` (or bare names)."""
    params = {}
    for col in table.colnames:
        if col.endswith("_err") or col in ("id", "chi2", "chi2_nu", "dof", "n_iter", "status", "status_msg"):
            continue
        numeric = table[col].dtype.kind in "biuf" and table[col].ndim == 1
        try:
            full = model.resolve(col, option)
        except ParameterError:
            if not numeric:  # names and other text columns hold no parameter values
                continue
            raise ParameterError(f"{option}: column {col!r} is not a parameter of the model "
                                 f"(expected columns like {', '.join(n.replace('.', '_', 1) for n in model.param_names)})") from None
        if not numeric:
            raise ParameterError(f"{option}: column {col!r} must hold one number per row, got dtype {table[col].dtype}")
        params[full] = np.ma.filled(np.ma.asarray(table[col], dtype=float), np.nan)
    return params


def _zeropoint(args, image_path, model):
    if args.zeropoint is not None:
        return args.zeropoint
    if image_path is not None:
        from .io import read_header_value
        v = read_header_value(image_path, ZP_KEYS)
        if v is not None:
            try:
                return float(v)
            except (TypeError, ValueError):
                raise InputFileError(f"IMAGE: the zero point in the header of {image_path!r} is not a number "
                                     f"({v!r}); give --zeropoint") from None
    return None


_SAMPLING_HELP = ("pixel-integration settings changed from the defaults (galmoss_jax.Sampling), e.g. "
                  "psf_window=0 for GALFIT's and Imfit's convolution of pixel-integrated samples")


def _sampling(args):
    from .model import Sampling
    return None if args.sampling is None else Sampling.from_text(args.sampling)


def cmd_render(args):
    from .io import check_output, read_image, read_table, write_image
    from .model import Model, render

    check_output(args.out, overwrite=args.overwrite, name="--out")
    model = Model(args.model)
    shape = _parse_shape(args.shape)
    if args.params is not None:
        params = _parse_assignments(args.params, "--params")
    else:
        params = _table_params(model, read_table(args.params_table, name="--params-table"), "--params-table")
    psf = read_image(args.psf, name="--psf") if args.psf else None
    img = np.asarray(render(model, params, shape, psf=psf, zeropoint=args.zeropoint, oversample=args.oversample,
                            sampling=_sampling(args)))
    write_image(img, args.out, overwrite=args.overwrite, name="--out")
    print(f"wrote {args.out} {img.shape}")


def _build_model(args):
    from .model import Model

    fixed, free, init = {}, [], {}
    base = Model(args.model)
    for item in args.fix or []:
        if "=" in item:
            k, v = item.split("=", 1)
            fixed[k] = _parse_assignments(item, "--fix")[k]
        else:
            fixed[item] = None
    for item in args.free or []:
        if "=" in item:
            k = item.split("=", 1)[0]
            init[k] = _parse_assignments(item, "--free")[k]
            free.append(k)
        else:
            free.append(item)
    tied = {}
    for item in args.tie or []:
        if "=" not in item:
            raise ParameterError(f"--tie: expected NAME=NAME, got {item!r}")
        a, b = item.split("=", 1)
        tied[a.strip()] = b.strip()
    for k in list(fixed):
        base.resolve(k, "--fix")
    modes = {}
    for item in getattr(args, "band_mode", None) or []:
        k, sep, v = (t.strip() for t in item.partition("="))
        if not sep:
            raise ParameterError(f"--band-mode: expected PARAM=free|shared|DEGREE, got {item!r}")
        modes[k] = v if v in ("free", "shared") else _degree(v)
    if modes and not getattr(args, "band", None):
        raise ParameterError("--band-mode needs several bands (--band NAME IMAGE ...)")
    return Model(args.model, fixed=fixed, free=free, tied=tied, bands=modes or None), init


def _degree(text):
    try:
        return int(text)
    except ValueError:
        raise ParameterError(f"--band-mode: expected free, shared or a polynomial degree, got {text!r}") from None


_BAND_KEYS = ("sigma", "psf", "mask", "zeropoint", "wavelength", "gain", "read_noise", "sky", "grid")


def _band_inputs(args):
    """The ``--band NAME IMAGE [KEY=VALUE ...]`` options: per band its image and its own sigma,
    PSF, mask, zero point, wavelength, noise model and grid, else the shared options'."""
    from .io import read_image, read_mask

    bands = {}
    for spec in args.band:
        if len(spec) < 2:
            raise ParameterError(f"--band: expected NAME IMAGE [KEY=VALUE ...], got {' '.join(spec)!r}")
        name, image, *rest = spec
        if name in bands:
            raise ParameterError(f"--band: band {name!r} is given twice")
        opts = {}
        for item in rest:
            k, sep, v = item.partition("=")
            if not sep or k not in _BAND_KEYS:
                raise ParameterError(f"--band {name}: expected KEY=VALUE with KEY one of {', '.join(_BAND_KEYS)}, "
                                     f"got {item!r}")
            opts[k] = v
        bands[name] = (image, opts)
    out = {k: {} for k in ("data",) + _BAND_KEYS}

    def number(b, key, text):
        try:
            return float(text)
        except ValueError:
            raise ParameterError(f"--band {b}: {key} must be a number, got {text!r}") from None

    for b, (image, opts) in bands.items():
        out["data"][b] = read_image(image, name=f"--band {b} IMAGE")
        sig = opts.get("sigma", args.sigma)
        out["sigma"][b] = read_image(sig, name=f"--band {b} sigma") if sig else None
        if out["sigma"][b] is None and args.gain is None and "gain" not in opts and args.stat == "chi2":
            raise ParameterError(f"--band {b}: give sigma=FILE (or --sigma) or a gain")
        psf = opts.get("psf", args.psf)
        out["psf"][b] = read_image(psf, name=f"--band {b} psf") if psf else None
        m = opts.get("mask", args.mask)
        out["mask"][b] = read_mask(m, name=f"--band {b} mask") if m else None
        out["zeropoint"][b] = (number(b, "zeropoint", opts["zeropoint"]) if "zeropoint" in opts
                               else _zeropoint(args, image, None))
        out["gain"][b] = number(b, "gain", opts["gain"]) if "gain" in opts else args.gain
        out["read_noise"][b] = number(b, "read_noise", opts["read_noise"]) if "read_noise" in opts else args.read_noise
        out["sky"][b] = number(b, "sky", opts["sky"]) if "sky" in opts else args.sky
        if "wavelength" in opts:
            out["wavelength"][b] = number(b, "wavelength", opts["wavelength"])
        if "grid" in opts:
            parts = opts["grid"].split(",")
            if len(parts) != 3:
                raise ParameterError(f"--band {b}: grid must be SCALE,DX,DY, got {opts['grid']!r}")
            out["grid"][b] = tuple(number(b, "grid", t) for t in parts)
    if out["wavelength"] and len(out["wavelength"]) != len(bands):
        raise ParameterError("--band: give wavelength=W for every band or for none")
    for k in ("zeropoint",):
        if all(v is None for v in out[k].values()):
            out[k] = None
    return out


def _cmd_fit_bands(args, model, init, options):
    """``galmoss-jax fit --band ...``: one joint fit of every galaxy in all bands."""
    from ._bands import band_model
    from ._fit import fit
    from ._noise import sigma_from_data
    from .io import imgblock_paths, read_table, write_imgblocks
    from .results import check_table_output, write_table

    if args.image is not None:
        raise ParameterError("give the images with --band NAME IMAGE ..., not as IMAGE")
    check_table_output(args.out, overwrite=args.overwrite, name="--out")
    inp = _band_inputs(args)
    if args.imgblock:   # refused before the fit when blocks exist
        first = next(iter(inp["data"].values()))
        imgblock_paths(args.imgblock, range(1 if first.ndim == 2 else first.shape[0]),
                       overwrite=args.overwrite, name="--imgblock")
    if args.init:
        bm = band_model(model, tuple(inp["data"]), inp["wavelength"] or None, inp["grid"] or None)
        init.update(_table_params(bm, read_table(args.init, name="--init"), "--init"))
    res = fit(model, inp["data"], sigma=inp["sigma"], mask=inp["mask"], psf=inp["psf"], init=init or None,
              zeropoint=inp["zeropoint"], gain=inp["gain"], read_noise=inp["read_noise"], sky=inp["sky"],
              wavelength=inp["wavelength"] or None, grid=inp["grid"] or None, options=options)
    table = res.to_table()
    write_table(table, args.out, overwrite=args.overwrite, name="--out")
    if args.imgblock:   # sigma from the data where a band has no map, as the fit built it
        sigma = {b: s if s is not None else
                 sigma_from_data(np.asarray(inp["data"][b], float), inp["gain"][b], inp["read_noise"][b], inp["sky"][b])
                 for b, s in inp["sigma"].items()}
        write_imgblocks(res, inp["data"], sigma, inp["mask"], args.imgblock, psf=inp["psf"],
                        zeropoint=inp["zeropoint"], oversample=args.oversample, overwrite=args.overwrite)
    ok = int((res.status == 0).sum())
    print(f"fitted {len(table)} galaxies in {len(inp['data'])} bands ({ok} succeeded) -> {args.out}")


def fit_options(args):
    """The :class:`galmoss_jax.FitOptions` of ``galmoss-jax fit``'s options, the same for an
    in-memory and a streaming run."""
    from ._fit import FitOptions
    from .multistart import parse_starts_option
    from .uncertainty import parse_errors_option

    errors, n_boot = parse_errors_option(args.errors)
    return FitOptions(stat=args.stat, solver=args.solver, max_iter=args.max_iter, oversample=args.oversample,
                      scale_errors=args.scale_errors, starts=parse_starts_option(args.starts),
                      mask_neighbours=args.mask_neighbours, errors=errors, bootstrap=n_boot,
                      bootstrap_method=args.bootstrap_method, sampling=_sampling(args))


def cmd_fit(args):
    from ._fit import fit
    from .io import imgblock_paths, read_image, read_mask, read_table, write_imgblocks
    from ._noise import sigma_from_data
    from .results import check_table_output, write_table
    from . import survey

    model, init = _build_model(args)
    options = fit_options(args)
    if args.band:
        if survey.wants_survey(args):
            raise ParameterError("--band: a streaming run (--catalog/--batch-size/--resume) of several bands is "
                                 "not available yet")
        _cmd_fit_bands(args, model, init, options)
        return
    if survey.wants_survey(args):
        survey.cmd_fit_survey(args, model, init, options, _table_params)
        return
    if args.image is None:
        raise ParameterError("IMAGE is required (or --catalog TABLE)")

    check_table_output(args.out, overwrite=args.overwrite, name="--out")
    data = read_image(args.image, name="IMAGE")
    if args.imgblock:
        imgblock_paths(args.imgblock, range(1 if data.ndim == 2 else data.shape[0]), overwrite=args.overwrite,
                       name="--imgblock")
    sigma = read_image(args.sigma, name="--sigma") if args.sigma else None
    if sigma is None and args.gain is None and args.stat == "chi2":
        raise ParameterError("give --sigma SIGMA or --gain G (sigma is then built from the data)")
    mask = read_mask(args.mask, name="--mask") if args.mask else None
    psf = read_image(args.psf, name="--psf") if args.psf else None
    if args.init:
        init.update(_table_params(model, read_table(args.init, name="--init"), "--init"))
    zp = _zeropoint(args, args.image, model)
    res = fit(model, data, sigma=sigma, mask=mask, psf=psf, init=init or None, zeropoint=zp,
              gain=args.gain, read_noise=args.read_noise, sky=args.sky, options=options)
    table = res.to_table()
    write_table(table, args.out, overwrite=args.overwrite, name="--out")
    if args.imgblock:
        d3 = data if data.ndim == 3 else data[None]
        s3 = sigma if sigma is not None else sigma_from_data(d3, args.gain, args.read_noise, args.sky)
        # the mask the fit used (the given one less dropped pixels and neighbours)
        write_imgblocks(res, d3, np.broadcast_to(s3, d3.shape), res.mask, args.imgblock, psf=psf,
                        zeropoint=zp, oversample=args.oversample, overwrite=args.overwrite)
    ok = int((res.status == 0).sum())
    print(f"fitted {len(table)} galaxies ({ok} succeeded) -> {args.out}")


def cmd_example(args):
    """Fit the bundled SDSS galaxies: single Sérsic for all three, bulge + disk for J100247."""
    from ._fit import fit
    from .io import read_image, read_mask, write_imgblocks
    from .model import Model
    from .results import write_table

    here = os.path.join(os.path.dirname(__file__), "data", "sdss")
    names = ["J092800.99+014011.9", "J100247.00+042559.8", "J162123.19+322056.4"]
    labels = {"J162123.19+322056.4": 2}
    data = np.stack([read_image(os.path.join(here, f"{n}_image.fits")) for n in names])
    sigma = np.stack([read_image(os.path.join(here, f"{n}_sigma.fits")) for n in names])
    psf = np.stack([read_image(os.path.join(here, f"{n}_psf.fits")) for n in names])
    mask = np.stack([read_mask(os.path.join(here, f"{n}_mask.fits"), keep_labels=(0, labels.get(n, 1))) for n in names])
    zp = 22.5  # nanomaggies
    os.makedirs(args.out, exist_ok=True)
    res = fit("sersic", data, sigma=sigma, mask=mask, psf=psf, zeropoint=zp)
    t = res.to_table()
    t.add_column(names, name="name", index=1)
    write_table(t, os.path.join(args.out, "sersic.ecsv"), overwrite=True)
    blocks = write_imgblocks(res, data, sigma, mask, os.path.join(args.out, "sersic"), psf=psf, zeropoint=zp,
                             overwrite=True)
    t.pprint(max_width=200)
    g = 1
    bd = Model("bulge:sersic+disk:exponential", tied={"disk.x0": "bulge.x0", "disk.y0": "bulge.y0"})
    # start the decomposition from the single-Sérsic fit: a compact bulge and a larger disk
    # sharing its light (automatic bulge/disk splits are the subject of later work)
    single = {k: float(v[g]) for k, v in res.values.items()}
    init = {"bulge.x0": single["sersic.x0"], "bulge.y0": single["sersic.y0"],
            "bulge.mag": single["sersic.mag"] + 0.75, "bulge.r_e": 0.1 * single["sersic.r_e"],
            "bulge.n": 4.0, "bulge.q": 0.9, "bulge.pa": single["sersic.pa"],
            "disk.mag": single["sersic.mag"] + 0.75, "disk.r_s": 0.4 * single["sersic.r_e"],
            "disk.q": min(single["sersic.q"], 0.8), "disk.pa": single["sersic.pa"]}
    res2 = fit(bd, data[g], sigma=sigma[g], mask=mask[g], psf=psf[g], zeropoint=zp, init=init)
    t2 = res2.to_table()
    t2.add_column([names[g]], name="name", index=1)
    write_table(t2, os.path.join(args.out, "bulge_disk.ecsv"), overwrite=True)
    blocks += write_imgblocks(res2, data[g], sigma[g], mask[g], os.path.join(args.out, "bulge_disk"), psf=psf[g],
                              zeropoint=zp, ids=[g], overwrite=True)
    t2.pprint(max_width=200)
    figures = _example_figures(blocks, os.path.join(args.out, "figures"), zp)
    print(f"results (sersic.ecsv, bulge_disk.ecsv) and image blocks (sersic/, bulge_disk/) written under "
          f"{args.out}; figures: {', '.join(os.path.relpath(f, args.out) for f in figures)}")


def _example_figures(blocks, directory, zeropoint):
    """Data / model / residual panels and the elliptical-annulus profile of each image block,
    as PNG files in ``directory``; returns their paths."""
    from .plot import plot_panels, plot_profile, read_imgblock

    os.makedirs(directory, exist_ok=True)
    out = []
    for path in blocks:
        block = read_imgblock(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        prefix = os.path.basename(os.path.dirname(path))
        for kind, fig in (("panels", plot_panels(block)), ("profile", plot_profile(block, zeropoint=zeropoint))):
            out.append(os.path.join(directory, f"{prefix}_{stem}_{kind}.png"))
            fig.savefig(out[-1], dpi=100)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="galmoss-jax", description="Fit 2-D surface-brightness models to galaxy images.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--cache-dir", metavar="DIR|none",
                   help="persistent compilation cache: compiled programs are kept there and reused by later runs "
                        "(default: JAX_COMPILATION_CACHE_DIR, else ~/.cache/galmoss_jax/jax_compilation_cache; "
                        "'none': no cache)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="write a model image (GALFIT's model-only mode)")
    r.add_argument("--model", required=True, help="profile name or named components, e.g. bulge:sersic+disk:exponential")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--params", help="NAME=VALUE[,NAME=VALUE...]; NAME is component.param")
    g.add_argument("--params-table", help="FITS/ECSV/CSV table, one galaxy per row, columns component_param")
    r.add_argument("--shape", required=True, help="H,W in pixels")
    r.add_argument("--zeropoint", type=float, help="magnitude zero point")
    r.add_argument("--psf", help="PSF FITS image (odd sides, centred)")
    r.add_argument("--oversample", type=int, default=1, help="PSF fine-sampling factor")
    r.add_argument("--sampling", metavar="NAME=N[,NAME=N...]", help=_SAMPLING_HELP)
    r.add_argument("--out", required=True, help="output FITS image")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(func=cmd_render)

    f = sub.add_parser("fit", help="fit a model to an image or a cube of galaxies")
    f.add_argument("image", nargs="?", help="FITS image (H, W) or cube (G, H, W)")
    f.add_argument("--sigma", help="1-sigma error map (FITS)")
    f.add_argument("--gain", type=float, help="electrons per image unit (sigma from the data)")
    f.add_argument("--read-noise", type=float, default=0.0, help="read noise, electrons")
    f.add_argument("--sky", type=float, default=0.0, help="sky level already subtracted, image units")
    f.add_argument("--psf", help="PSF FITS image or (G, h, w) cube")
    f.add_argument("--oversample", type=int, default=1, help="PSF fine-sampling factor")
    f.add_argument("--sampling", metavar="NAME=N[,NAME=N...]", help=_SAMPLING_HELP)
    f.add_argument("--mask", help="bad-pixel mask (FITS, non-zero = bad)")
    f.add_argument("--model", default="sersic", help="profile name or named components (default sersic)")
    f.add_argument("--init", help="table of initial values, one row per galaxy, result-table column names")
    f.add_argument("--fix", action="append", metavar="NAME[=VALUE]", help="hold a parameter fixed")
    f.add_argument("--free", action="append", metavar="NAME[=VALUE]", help="free a parameter fixed by default")
    f.add_argument("--tie", action="append", metavar="NAME=NAME", help="tie the first parameter to the second")
    f.add_argument("--zeropoint", type=float, help="magnitude zero point (else from the FITS header)")
    f.add_argument("--stat", default="chi2", choices=["chi2", "model-chi2", "poisson-mlr", "cash"])
    f.add_argument("--solver", default="lm", choices=["lm", "adam"])
    f.add_argument("--max-iter", type=int, default=None)
    f.add_argument("--scale-errors", action="store_true", help="scale errors by sqrt(chi2_nu)")
    f.add_argument("--errors", default="gn", metavar="gn|hessian|bootstrap[=N]",
                   help="error method (default gn: Gauss-Newton; bootstrap=N: N refits, default 100)")
    f.add_argument("--bootstrap-method", default="pixels", choices=["pixels", "residuals"])
    f.add_argument("--starts", default="auto", metavar="auto|S",
                   help="starting strategy: auto (screened grid, default), 1 (init only) or S best starts")
    f.add_argument("--mask-neighbours", action="store_true",
                   help="mask other sources found by sep detection/deblending (needs the detect extra)")
    f.add_argument("--band", action="append", nargs="+", metavar="ITEM",
                   help="NAME IMAGE [KEY=VALUE ...]: one band of a joint multiband fit (repeat per band): its name, image and its own "
                        "sigma=, psf=, mask=, zeropoint=, wavelength=, gain=, read_noise=, sky=, "
                        "grid=SCALE,DX,DY (else the shared --sigma, --psf, ... options)")
    f.add_argument("--band-mode", action="append", metavar="PARAM=free|DEGREE",
                   help="how a parameter changes between bands: free (one value per band) or a polynomial "
                        "degree in wavelength (default: shared by every band)")
    f.add_argument("--imgblock", metavar="DIR", help="write per-galaxy image blocks into DIR")
    f.add_argument("--out", required=True, help="result table (.fits, .ecsv, .csv, .parquet)")
    f.add_argument("--overwrite", action="store_true")
    from .survey import add_arguments as _survey_arguments
    _survey_arguments(f)
    f.set_defaults(func=cmd_fit)

    e = sub.add_parser("example", help="fit the bundled SDSS galaxies (quick start)")
    e.add_argument("--out", default="galmoss_jax_example", help="output directory")
    e.set_defaults(func=cmd_example)

    from . import galfit, imfit
    galfit.add_parser(sub)
    imfit.add_parser(sub)
    from .plot import add_parser as add_plot_parser  # figures: galmoss_jax/plot.py
    add_plot_parser(sub)
    return p


#: the cache's size bound, bytes (JAX evicts the least recently used programs beyond it)
CACHE_MAX_BYTES = 2 ** 30
#: programs that compile faster than this (seconds) are not kept (JAX's default is 1 s, which
#: leaves the screen of starts and the renders out: a warm single-galaxy fit took 4.2 s instead
#: of 3.6 s, the cold one 7.2 s; the cache then holds ~0.4 MB for it)
CACHE_MIN_COMPILE_SECONDS = 0.1


def default_cache_dir() -> str:
    """The command's compilation cache when neither ``--cache-dir`` nor
    ``JAX_COMPILATION_CACHE_DIR`` names one: ``$XDG_CACHE_HOME/galmoss_jax/jax_compilation_cache``
    (``XDG_CACHE_HOME`` defaults to ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "galmoss_jax", "jax_compilation_cache")


def repair_cache(path: str, max_size: int) -> list[str]:
    """Remove the entries of the compilation cache in ``path`` (bounded to ``max_size`` bytes;
    -1: no bound) that a killed process left unfinished; the names of the removed files.

    JAX writes an entry as two files, the program (``KEY-cache``) and then its time of last use
    (``KEY-atime``).  A process killed before the second is written (SIGKILL, a lost node)
    leaves the first alone, possibly truncated.  With a size bound set, as here, JAX up to 0.10
    then fails every later write to the cache (jax-ml/jax#39880, fixed upstream by #39883):
    the cache stops growing, each new program is compiled again in every run, and each write
    warns.  Such an entry is removed (its program is compiled once more), under the lock with
    which JAX guards the folder (``.lockfile``; if another process holds it for 30 s, nothing
    is removed).  Nothing is removed from a cache without a bound: JAX writes no ``KEY-atime``
    files there."""
    import filelock

    if max_size == -1:
        return []

    def unfinished(names):
        return sorted(n for n in names if n.endswith("-cache") and n[:-len("-cache")] + "-atime" not in names)

    try:
        if not unfinished(set(os.listdir(path))):
            return []
        with filelock.FileLock(os.path.join(path, ".lockfile"), timeout=30):
            removed = []
            for n in unfinished(set(os.listdir(path))):
                try:
                    os.remove(os.path.join(path, n))
                except FileNotFoundError:
                    continue
                removed.append(n)
            return removed
    except (OSError, filelock.Timeout):
        return []


def _use_cache(path: str) -> None:
    """Keep compiled programs in ``path`` (``"none"``: no persistent cache) in this process and
    the processes it starts (Dask workers, sharding subprocesses inherit the environment)."""
    import jax
    from jax.experimental.compilation_cache.compilation_cache import reset_cache

    if path.lower() == "none":
        jax.config.update("jax_enable_compilation_cache", False)
        os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
        reset_cache()   # JAX decides once per process whether it caches: decide again
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ParameterError(f"--cache-dir: cannot create {path!r} ({e.strerror}); give another folder or 'none'") \
            from None
    if not os.access(path, os.W_OK):
        raise ParameterError(f"--cache-dir: {path!r} is not writable; give another folder or 'none'")
    size = int(os.environ.get("JAX_COMPILATION_CACHE_MAX_SIZE", CACHE_MAX_BYTES))
    repair_cache(path, size)
    least = float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", CACHE_MIN_COMPILE_SECONDS))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(size)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(least)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_compilation_cache_max_size", size)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", least)
    jax.config.update("jax_enable_compilation_cache", True)
    reset_cache()


def main(argv=None, *, default_cache: str | None = None) -> int:
    """Run the command with the arguments ``argv`` (default ``sys.argv[1:]``); the exit status.

    ``default_cache``: the compilation cache folder when ``--cache-dir`` is not given and
    ``JAX_COMPILATION_CACHE_DIR`` is not set (:func:`console_main` passes
    :func:`default_cache_dir`; None leaves JAX's configuration as it is)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cache = args.cache_dir or (None if os.environ.get("JAX_COMPILATION_CACHE_DIR") else default_cache)
        if cache:
            _use_cache(cache)
        args.func(args)
    except Exception as e:  # every failure is one line; --debug shows the traceback
        if args.debug:
            raise
        msg = str(e) if isinstance(e, GalmossError) else f"{type(e).__name__}: {e} (--debug shows the traceback)"
        print(f"galmoss-jax: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    return 0


def console_main() -> int:
    """The installed ``galmoss-jax`` command: :func:`main` with the persistent compilation cache
    on by default (module docstring)."""
    return main(default_cache=default_cache_dir())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
