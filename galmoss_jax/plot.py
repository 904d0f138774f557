"""Figures of fits: image panels, 1-D surface-brightness profiles, and result-table comparisons.

Every function returns a :class:`matplotlib.figure.Figure` drawn on the Agg canvas; nothing is
shown and no global matplotlib state (pyplot figures, ``rcParams``) is touched, so the
functions are safe in scripts, tests and notebooks alike (``fig.savefig("x.png")``; in a
notebook a returned figure displays itself).  matplotlib is an optional dependency:
``pip install "galmoss_jax[plot]"``.

The image-panel and profile figures take an :class:`ImgBlock`: the data, model, residual,
σ, mask and per-component images of ONE galaxy, read from a file that
:func:`galmoss_jax.io.write_imgblocks` wrote (:func:`read_imgblock`) or rendered from a
:class:`~galmoss_jax.results.FitResult` (:meth:`ImgBlock.from_result`).

Units: images are in image units per pixel (e.g. nanomaggies); radii are along the
semi-major axis in pixels (arcsec when a pixel scale is given); surface brightness is
``mu = zp - 2.5 log10(I / s^2)`` in mag/arcsec² for a pixel scale ``s`` in arcsec/px
(mag/px² without one), or ``log10(I)`` (image units per pixel) without a zero point.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from ._errors import GalmossError, InputFileError, ParameterError, ShapeError

__all__ = ["ImgBlock", "read_imgblock", "elliptical_profile", "robust_offset", "plot_panels",
           "plot_profile", "plot_compare", "plot_bands", "cmd_plot", "add_parser"]

_DIAGNOSTIC_COLUMNS = ("id", "chi2", "chi2_nu", "dof", "n_iter", "status", "status_msg")


def _mpl():
    """matplotlib's Figure class and Agg canvas, imported on first use."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise GalmossError('plotting needs matplotlib: pip install "galmoss_jax[plot]"') from None
    return Figure, FigureCanvasAgg


def _new_figure(figsize):
    Figure, Canvas = _mpl()
    fig = Figure(figsize=figsize, layout="constrained")
    Canvas(fig)  # draw with Agg whatever backend pyplot may have chosen elsewhere
    return fig


# -- image blocks ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImgBlock:
    """One fitted galaxy: images (H, W) in image units per pixel, and the fitted parameters.

    Attributes:
        data, model, residual, sigma: images; ``residual = data - model`` on used pixels, 0 on
            masked ones.
        mask: boolean, True = pixel used in the fit.
        components: ``{component name: image}`` (each rendered alone, PSF-convolved).
        params: ``{"comp.param": value}`` best-fit values (pixels, degrees, magnitudes).
        errors: ``{"comp.param": 1-sigma error}`` (NaN where undefined).
        model_spec: e.g. ``"bulge:sersic+disk:exponential"``.
        chi2_nu: reduced statistic; NaN if unknown.
        status: the fit's status code (0 = success); -1 if unknown.
        name: a label for titles (file stem or galaxy id).
    """

    data: np.ndarray
    model: np.ndarray
    residual: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    components: dict
    params: dict
    errors: dict
    model_spec: str = ""
    chi2_nu: float = float("nan")
    status: int = -1
    name: str = ""

    @classmethod
    def from_result(cls, result, data, sigma, mask=None, *, index=0, psf=None, zeropoint=None,
                    oversample=1, name=None):
        """Render galaxy ``index`` of a :class:`FitResult` (as ``write_imgblocks`` does).

        ``data``, ``sigma``, ``mask`` and ``psf`` are those given to the fit: (H, W) or
        (G, H, W) (a (G, h, w) PSF cube), and ``zeropoint`` a scalar or one per galaxy.
        """
        from .model import Model, render

        g = int(index)
        G = int(np.asarray(result.status).shape[0])
        if not 0 <= g < G:
            raise ParameterError(f"index: galaxy {g} is not in the result (it holds {G})")

        def pick(a, what):
            a = np.asarray(a)
            return a[g] if a.ndim == 3 else a

        d = pick(data, "data").astype(float)
        if d.ndim != 2:
            raise ShapeError(f"data must be (H, W) or (G, H, W), got shape {np.shape(data)}")
        s = np.broadcast_to(pick(sigma, "sigma").astype(float), d.shape)
        m = np.ones(d.shape, bool) if mask is None else np.broadcast_to(pick(mask, "mask").astype(bool), d.shape)
        p = None if psf is None else pick(psf, "psf")
        zp = None if zeropoint is None else float(np.broadcast_to(np.asarray(zeropoint, float), (G,))[g])
        model = result.model
        values = {k: float(np.asarray(v)[g]) for k, v in result.values.items()}
        errs = {k: float(np.asarray(v)[g]) for k, v in result.errors.items()}
        full = np.asarray(render(model, values, d.shape, psf=p, zeropoint=zp, oversample=oversample))
        comps = {}
        for cname, spec in model.components:
            if spec.kind == "point" and p is None:
                continue
            pv = {k: v for k, v in values.items() if k.startswith(cname + ".")}
            comps[cname] = np.asarray(render(Model({cname: spec}), pv, d.shape,
                                             psf=None if spec.kind == "sky" else p, zeropoint=zp,
                                             oversample=oversample))
        return cls(data=d, model=full, residual=np.where(m, d - full, 0.0), sigma=np.asarray(s),
                   mask=np.asarray(m), components=comps, params=values, errors=errs,
                   model_spec=model.spec_string, chi2_nu=float(np.asarray(result.chi2_nu)[g]),
                   status=int(np.asarray(result.status)[g]), name=str(g) if name is None else str(name))

    def geometry(self, component=None):
        """``(x0, y0, q, pa)`` of ``component`` (pixels, degrees).  Default: the component with
        the largest flux among those with an elliptical geometry (``x0, y0, q, pa``)."""
        comps = _component_names(self.params)
        shaped = [c for c in comps if all(f"{c}.{k}" in self.params for k in ("x0", "y0", "q", "pa"))]
        if component is None:
            if not shaped:
                raise ParameterError("geometry: no component has x0, y0, q and pa; give the geometry explicitly")
            flux = {c: float(np.sum(self.components[c])) if c in self.components else -np.inf for c in shaped}
            component = max(shaped, key=lambda c: flux[c])
        elif component not in shaped:
            raise ParameterError(f"component: {component!r} is not a component with x0, y0, q and pa; "
                                 f"those are {', '.join(shaped) or 'none'}")
        return tuple(float(self.params[f"{component}.{k}"]) for k in ("x0", "y0", "q", "pa"))


def _component_names(params):
    out = []
    for k in params:
        c = k.split(".", 1)[0]
        if c not in out:
            out.append(c)
    return out


def read_imgblock(path, *, name=None, band=None) -> ImgBlock:
    """Read an image block written by :func:`galmoss_jax.io.write_imgblocks`; of a multiband
    block, the ``band`` named (its images and that band's parameters)."""
    from astropy.io import fits

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"imgblock: file {path!r} does not exist")
    try:
        with fits.open(path, memmap=False) as hdul:
            bands = [b for b in str(hdul[0].header.get("BANDS", "")).split(",") if b]
            if bands and band not in bands:
                raise InputFileError(f"imgblock: {path!r} holds the bands {', '.join(bands)}; "
                                     f"name one with band=, got {band!r}")
            if not bands and band is not None:
                raise InputFileError(f"imgblock: {path!r} holds one band; band={band!r} does not apply")
            suffix = f"_{band.upper()}" if bands else ""
            hdus = [h for h in hdul[1:] if h.name.upper().endswith(suffix)] if bands else list(hdul)
            ext = {h.name.upper()[:len(h.name) - len(suffix)]: h for h in hdus}
            missing = [e for e in ("DATA", "MODEL", "RESIDUAL", "SIGMA", "MASK") if e not in ext]
            if missing:
                raise InputFileError(f"imgblock: {path!r} lacks the extension(s) {', '.join(missing)} "
                                     "(expected a file written by write_imgblocks / --imgblock)")
            imgs = {e: np.asarray(ext[e].data, float) for e in ("DATA", "MODEL", "RESIDUAL", "SIGMA")}
            mask = np.asarray(ext["MASK"].data) != 0
            hdr = ext["MODEL"].header
            comp_hdus = {k[5:]: np.asarray(h.data, float) for k, h in ext.items() if k.startswith("COMP_")}
            spec = str(hdr.get("MODEL", ""))
            chi2_nu = float(hdr.get("CHI2NU", np.nan))
            status = int(hdr.get("STATUS", -1))
            params, errors, comps = {}, {}, {}
            for item in filter(None, spec.split("+")):
                cname = item.split(":", 1)[0]
                if cname.upper() in comp_hdus:
                    comps[cname] = comp_hdus.pop(cname.upper())
                prefix = cname.upper() + "_"
                for key in hdr:
                    if key.startswith(prefix) and not key.endswith("_ERR"):
                        pname = f"{cname}.{key[len(prefix):].lower()}"
                        params[pname] = float(hdr[key])
                        err = float(hdr.get(key + "_ERR", np.nan))
                        errors[pname] = np.nan if err == -1.0 else err
            for k, v in comp_hdus.items():  # a component not named in the spec
                comps[k.lower()] = v
    except (OSError, ValueError, TypeError) as e:
        if isinstance(e, GalmossError):
            raise
        raise InputFileError(f"imgblock: {path!r} is not a readable FITS file ({e})") from None
    shape = imgs["DATA"].shape
    if len(shape) != 2 or any(a.shape != shape for a in (*imgs.values(), mask)):
        raise ShapeError(f"imgblock: {path!r}: DATA, MODEL, RESIDUAL, SIGMA and MASK must be images of one shape")
    label = os.path.splitext(os.path.basename(path))[0] if name is None else str(name)
    return ImgBlock(data=imgs["DATA"], model=imgs["MODEL"], residual=imgs["RESIDUAL"], sigma=imgs["SIGMA"],
                    mask=mask, components=comps, params=params, errors=errors, model_spec=spec,
                    chi2_nu=np.nan if chi2_nu == -1.0 else chi2_nu, status=status, name=label)


# -- profiles ----------------------------------------------------------------------------------
def _annulus_edges(r_max, min_width, growth):
    edges = [0.0]
    while edges[-1] < r_max:
        edges.append(edges[-1] + max(min_width, growth * edges[-1]))
    return np.asarray(edges)


def elliptical_profile(image, x0, y0, q, pa, *, sigma=None, mask=None, edges=None, mode="annuli",
                       width=2.0, min_pixels=1):
    """Mean of ``image`` in elliptical annuli (or along the major axis).

    Pixel ``(i, j)`` (row ``y = i``, column ``x = j``, 0-based centres) lies at semi-major
    radius ``r = sqrt(x'^2 + (y'/q)^2)`` where ``x'``, ``y'`` are its offsets along the
    major and minor axes of the ellipse centred at ``(x0, y0)`` with axis ratio ``q`` and
    position angle ``pa`` (degrees CCW from +y).  ``mode="major"`` uses instead the pixels
    within ``width / 2`` pixels of the major axis, at radius ``|x'|``.

    Args:
        image: (H, W) image, units per pixel.
        sigma: (H, W) 1-σ errors; the error of a bin mean is ``sqrt(sum σ²) / N``.
        mask: (H, W) boolean, True = pixel used; other pixels are left out.
        edges: bin edges in pixels along the semi-major axis; default from 0 with widths
            ``max(1 px, 0.1 r)`` out to the largest ellipse that fits in the stamp.
        min_pixels: bins with fewer used pixels are dropped.

    Returns:
        dict of 1-D arrays, one entry per kept bin: ``r`` (mean radius of its pixels, px),
        ``r_in``, ``r_out`` (its edges, px), ``mean``, ``err`` (NaN without sigma) and ``n``
        (pixels).
    """
    img = np.asarray(image, float)
    if img.ndim != 2:
        raise ShapeError(f"image must be an (H, W) image, got shape {img.shape}")
    if mode not in ("annuli", "major"):
        raise ParameterError(f"mode must be 'annuli' or 'major', got {mode!r}")
    if not 0 < q <= 1.0 + 1e-12:
        raise ParameterError(f"q must be in (0, 1], got {q}")
    H, W = img.shape
    use = np.isfinite(img) if mask is None else (np.broadcast_to(np.asarray(mask, bool), img.shape) & np.isfinite(img))
    sig = None if sigma is None else np.broadcast_to(np.asarray(sigma, float), img.shape)
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    t = np.deg2rad(pa)
    dx, dy = xx - x0, yy - y0
    xm = -dx * np.sin(t) + dy * np.cos(t)   # along the major axis (DESIGN.md A: pa CCW from +y)
    ym = -dx * np.cos(t) - dy * np.sin(t)   # along the minor axis
    if mode == "annuli":
        r = np.hypot(xm, ym / q)
    else:
        r = np.abs(xm)
        use = use & (np.abs(ym) <= width / 2.0)
    if edges is None:
        # the largest ellipse (semi-major a) whose bounding box stays inside the stamp
        hx = np.sqrt(np.sin(t) ** 2 + (q * np.cos(t)) ** 2)
        hy = np.sqrt(np.cos(t) ** 2 + (q * np.sin(t)) ** 2)
        if mode == "major":
            hx, hy = abs(np.sin(t)) + 1e-12, abs(np.cos(t)) + 1e-12
        a_max = min((x0 + 0.5) / hx, (W - 0.5 - x0) / hx, (y0 + 0.5) / hy, (H - 0.5 - y0) / hy)
        edges = _annulus_edges(max(a_max, 1.0), 1.0, 0.1)
    edges = np.asarray(edges, float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ParameterError("edges must be an increasing 1-D sequence of at least two radii (pixels)")
    which = np.digitize(r, edges) - 1       # bin k holds edges[k] <= r < edges[k+1]
    out = {k: [] for k in ("r", "r_in", "r_out", "mean", "err", "n")}
    for k in range(edges.size - 1):
        sel = use & (which == k)
        n = int(sel.sum())
        if n < min_pixels:
            continue
        out["r"].append(r[sel].mean())
        out["r_in"].append(edges[k])
        out["r_out"].append(edges[k + 1])
        out["mean"].append(img[sel].mean())
        out["err"].append(np.sqrt(np.sum(sig[sel] ** 2)) / n if sig is not None else np.nan)
        out["n"].append(n)
    return {k: np.asarray(v, int if k == "n" else float) for k, v in out.items()}


def _surface_brightness(flux, zeropoint, pixscale):
    """Per-pixel mean flux -> plotted quantity (mag/arcsec², mag/px² or log10 flux per px)."""
    flux = np.asarray(flux, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = np.where(flux > 0, flux, np.nan)
        if zeropoint is None:
            return np.log10(pos)
        area = 1.0 if pixscale is None else pixscale ** 2
        return zeropoint - 2.5 * np.log10(pos / area)


def plot_profile(block: ImgBlock, *, geometry=None, component=None, zeropoint=None, pixscale=None,
                 mode="annuli", edges=None, width=2.0, title=None, figsize=(6.4, 5.6)):
    """1-D profile: data (points, σ error bars), total and component models, residuals.

    The bins are elliptical annuli (``mode="annuli"``) or a strip ``width`` px wide along the
    major axis (``mode="major"``), of the ellipse ``geometry = (x0, y0, q, pa)`` (pixels,
    degrees CCW from +y), by default that of the brightest elliptical component of the fit
    (or of ``component``).  Data and models are averaged over the same used pixels.

    Y axis: with a ``zeropoint``, ``mu = zp - 2.5 log10(<I> / s^2)`` in mag/arcsec² for a
    ``pixscale`` s (arcsec/px; the radius is then in arcsec too) or mag/px² without one;
    error bars ``1.0857 err / <I>`` mag.  Without a zero point, ``log10(<I>)`` (image units per
    pixel) with error bars ``0.4343 err / <I>`` dex.  Bins whose mean is not positive cannot be
    drawn and are left out.  The lower panel shows ``data - model`` in the same units (mag or
    dex).

    Returns:
        the Figure; its axes are ``[profile, residual]``.
    """
    x0, y0, q, pa = block.geometry(component) if geometry is None else (float(v) for v in geometry)
    if q > 1:  # report-style geometry: q <= 1 with pa + 90
        q, pa = 1.0 / q, pa + 90.0
    used = np.asarray(block.mask, bool) & np.isfinite(block.data)
    common = dict(mask=used, edges=edges, mode=mode, width=width)
    prof = elliptical_profile(block.data, x0, y0, q, pa, sigma=block.sigma, **common)
    model_prof = elliptical_profile(block.model, x0, y0, q, pa, **common)
    comp_prof = {c: elliptical_profile(img, x0, y0, q, pa, **common) for c, img in block.components.items()}
    if prof["r"].size == 0:
        raise ShapeError("plot_profile: no bin holds enough used pixels; check the mask and geometry")
    rscale = 1.0 if pixscale is None else float(pixscale)
    mag = zeropoint is not None
    k = 2.5 / np.log(10.0) if mag else 1.0 / np.log(10.0)
    y = _surface_brightness(prof["mean"], zeropoint, pixscale)
    with np.errstate(divide="ignore", invalid="ignore"):
        yerr = k * prof["err"] / np.where(prof["mean"] > 0, prof["mean"], np.nan)
    ym = _surface_brightness(model_prof["mean"], zeropoint, pixscale)
    ok = np.isfinite(y)

    fig = _new_figure(figsize)
    ax, axr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    r = prof["r"] * rscale
    ax.errorbar(r[ok], y[ok], yerr=np.where(np.isfinite(yerr[ok]), yerr[ok], 0.0), fmt="o", ms=3.5,
                color="k", ecolor="0.4", elinewidth=1, capsize=0, label="data", zorder=3)
    ax.plot(model_prof["r"] * rscale, ym, "-", color="C3", lw=1.8, label="model", zorder=4)
    for i, (c, cp) in enumerate(comp_prof.items()):
        if len(comp_prof) > 1 and cp["r"].size:
            ax.plot(cp["r"] * rscale, _surface_brightness(cp["mean"], zeropoint, pixscale), "--",
                    color=f"C{i}", lw=1.4, label=c, zorder=5)
    span = np.concatenate([y[ok], ym[ok][np.isfinite(ym[ok])]])
    if span.size:  # limits from the points and the model over them, not the error bars
        pad = 0.08 * (span.max() - span.min()) + 0.1
        ax.set_ylim(span.min() - pad, span.max() + pad)
    if mag:
        ax.invert_yaxis()
        unit = "mag arcsec$^{-2}$" if pixscale is not None else "mag pixel$^{-2}$"
        ax.set_ylabel(rf"$\mu$ [{unit}]")
        axr.set_ylabel(r"data $-$ model [mag]")
    else:
        ax.set_ylabel(r"$\log_{10}$ flux per pixel [image units]")
        axr.set_ylabel(r"data $-$ model [dex]")
    # data - model in the plotted units (both on the data's bins: same pixels)
    res = y - ym if model_prof["r"].size == prof["r"].size else np.full_like(y, np.nan)
    axr.axhline(0.0, color="C3", lw=1)
    axr.errorbar(r[ok], res[ok], yerr=np.where(np.isfinite(yerr[ok]), yerr[ok], 0.0), fmt="o", ms=3,
                 color="k", ecolor="0.4", elinewidth=1, capsize=0)
    if mag:
        axr.invert_yaxis()
    finite = res[ok][np.isfinite(res[ok])]
    if finite.size:
        lim = max(0.1, 1.2 * np.percentile(np.abs(finite), 95))
        axr.set_ylim((lim, -lim) if mag else (-lim, lim))
    what = "semi-major axis" if mode == "annuli" else "distance along the major axis"
    axr.set_xlabel(f"{what} [{'arcsec' if pixscale is not None else 'pixel'}]")
    ax.legend(loc="upper right", fontsize="small", framealpha=0.85)
    ax.set_title(title if title is not None else _title(block, "elliptical annuli" if mode == "annuli" else "major axis",
                                                        two_lines=True), fontsize="medium")
    ax.text(0.03, 0.04, f"x0={x0:.2f}, y0={y0:.2f}, q={q:.3f}, pa={pa:.1f}°", transform=ax.transAxes,
            fontsize="small", color="0.3")
    return fig


def _title(block, what, two_lines=False):
    parts = [block.model_spec] if block.model_spec else []
    if np.isfinite(block.chi2_nu):
        parts.append(rf"$\chi^2_\nu$ = {block.chi2_nu:.3f}")
    parts.append(f"({what})")
    rest = "  ".join(parts)
    if not block.name:
        return rest
    return f"{block.name}\n{rest}" if two_lines else f"{block.name}  {rest}"


# -- image panels ------------------------------------------------------------------------------
def plot_panels(block: ImgBlock, *, linear_width=1.0, percentiles=(0.5, 99.8), residual="data", cmap="viridis",
                mask_color=(0.85, 0.85, 0.85, 0.85), title=None, panel_size=2.6):
    """Data, model, each component (when the model has more than one) and residual images.

    Data, model and components share one asinh stretch (matplotlib's ``AsinhNorm``, linear
    within ``linear_width`` times the median σ of the used pixels, logarithmic beyond) between
    the ``percentiles`` of the used data pixels (up to the model's peak), with one colour bar,
    image units per pixel.  The residual ``data - model`` (``residual="sigma"``:
    ``(data - model) / σ``) has its own symmetric asinh scale (± the 99.5th percentile of
    ``|residual|``) and colour bar.  Masked pixels (not used in the fit) are drawn over in ``mask_color`` on the data and
    residual panels.  Axes are 0-based pixel coordinates (pixel centres on integers).

    Returns:
        the Figure; its first axes are the image panels in the order data, model, components,
        residual, followed by the two colour-bar axes.
    """
    from matplotlib.colors import AsinhNorm

    if residual not in ("data", "sigma"):
        raise ParameterError(f"residual must be 'data' or 'sigma', got {residual!r}")
    d, m, used = block.data, block.model, np.asarray(block.mask, bool)
    vals = d[used & np.isfinite(d)]
    if vals.size == 0:
        raise ShapeError("plot_panels: the block has no used pixel")
    lo, hi = np.percentile(vals, percentiles)
    hi = max(hi, float(np.max(m)) if np.isfinite(m).all() else hi)
    if not hi > lo:
        hi = lo + 1.0
    sig = np.asarray(block.sigma, float)[used]
    noise = float(np.median(sig[np.isfinite(sig) & (sig > 0)])) if np.any(np.isfinite(sig) & (sig > 0)) else 0.0
    if not noise > 0:
        noise = 0.01 * (hi - lo)
    width = linear_width * noise
    norm = AsinhNorm(linear_width=width, vmin=lo, vmax=hi)
    if residual == "sigma":
        with np.errstate(divide="ignore", invalid="ignore"):
            res = np.where(used, (d - m) / block.sigma, 0.0)
        rlabel, runit = r"(data $-$ model) / $\sigma$", r"$\sigma$"
    else:
        res = np.where(used, d - m, 0.0)
        rlabel, runit = r"data $-$ model", "image units / pixel"
    rv = np.abs(res[used & np.isfinite(res)])
    rlim = float(np.percentile(rv, 99.5)) if rv.size else 1.0
    rlim = rlim if rlim > 0 else 1.0
    rnorm = AsinhNorm(linear_width=linear_width * (1.0 if residual == "sigma" else noise), vmin=-rlim, vmax=rlim)
    comps = list(block.components.items()) if len(block.components) > 1 else []
    panels = [("data", d, norm), ("model", m, norm)] + [(c, img, norm) for c, img in comps] + [(rlabel, res, rnorm)]
    n = len(panels)
    fig = _new_figure((panel_size * n + 0.4, panel_size + 1.5))
    axes = fig.subplots(1, n, sharex=True, sharey=True)
    overlay = np.zeros(d.shape + (4,))
    overlay[~used] = mask_color
    ims = []
    for i, (ax, (label, img, nrm)) in enumerate(zip(axes, panels)):
        is_res = i == n - 1
        im = ax.imshow(img, origin="lower", norm=nrm, cmap="RdBu_r" if is_res else cmap, interpolation="nearest")
        if i == 0 or is_res:
            ax.imshow(overlay, origin="lower", interpolation="nearest")
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel("x [pixel]")
        ims.append(im)
    axes[0].set_ylabel("y [pixel]")
    cb = fig.colorbar(ims[0], ax=list(axes[:-1]), location="bottom", shrink=0.6 if n > 2 else 0.9,
                      aspect=35, pad=0.02)
    _asinh_ticks(cb, norm)
    cb.set_label("image units / pixel (asinh stretch)")
    cbr = fig.colorbar(ims[-1], ax=axes[-1], location="bottom", aspect=18, pad=0.02)
    _asinh_ticks(cbr, rnorm, n=5)
    cbr.set_label(runit)
    if (~used).any():
        axes[0].text(0.02, 0.98, "grey: masked", transform=axes[0].transAxes, va="top", ha="left",
                     fontsize="x-small", color="k", bbox=dict(boxstyle="round,pad=0.2", fc="w", ec="none", alpha=0.7))
    fig.suptitle(title if title is not None else _title(block, "asinh stretch"), fontsize="medium")
    return fig


def _asinh_ticks(cb, norm, n=6):
    """Colour-bar ticks evenly spaced in the stretched scale, rounded to one significant figure
    (matplotlib's own asinh locator crowds them around zero)."""
    vals = [norm.inverse(u) for u in np.linspace(0.0, 1.0, n)]
    ticks = []
    for v in np.asarray(vals, float).ravel():
        t = 0.0 if v == 0 else float(f"{v:.1g}")
        if abs(v) < 0.25 * norm.linear_width:
            t = 0.0
        if norm.vmin <= t <= norm.vmax and t not in ticks:
            ticks.append(t)
    cb.ax.minorticks_off()
    cb.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])


# -- table comparison --------------------------------------------------------------------------
def robust_offset(a, b, *, periodic=None):
    """Median offset ``median(a - b)`` and scatter ``1.4826 MAD(a - b)`` over finite pairs.

    ``periodic``: wrap differences into ``(-periodic/2, periodic/2]`` (180 for position angles
    in degrees).  Returns ``(offset, scatter, n)``.
    """
    from astropy.stats import mad_std

    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a - b
    if periodic is not None:
        diff = _wrap(diff, periodic)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return np.nan, np.nan, 0
    return float(np.median(diff)), float(mad_std(diff)), int(diff.size)


def _wrap(x, period):
    w = np.mod(x + period / 2.0, period) - period / 2.0
    return np.where(w == -period / 2.0, period / 2.0, w)


def _parameter_columns(t):
    return [c for c in t.colnames if c not in _DIAGNOSTIC_COLUMNS and not c.endswith("_err")
            and np.issubdtype(np.asarray(t[c]).dtype, np.number)]


def plot_compare(table, reference, columns=None, *, match=None, labels=("this fit", "reference"),
                 ncols=3, title=None, panel_size=3.0):
    """Compare two result tables parameter by parameter, one panel per parameter.

    Each panel plots ``table`` (y) against ``reference`` (x) with error bars from the ``_err``
    columns where present, the 1:1 line, and the median offset and robust scatter
    (``1.4826 MAD``) of ``table - reference`` (position angles ``*_pa`` wrapped to ±90°,
    and drawn within 90° of the reference).

    Args:
        table, reference: :class:`astropy.table.Table` objects (or anything ``Table()``
            accepts), e.g. a fit and a GALFIT catalogue or the injected truth.
        columns: names present in both, or ``{column in table: column in reference}``;
            default all numeric parameter columns the two share.
        match: a column in both by which rows are paired (e.g. ``"id"``); default row order
            (equal lengths required).
        labels: axis labels of the two tables.

    Returns:
        the Figure; its first axes are the panels in column order (unused grid cells removed).
    """
    from astropy.table import Table, join

    t, ref = Table(table), Table(reference)
    if columns is None:  # shared parameter columns, less those fixed at one value in both
        cols = [c for c in _parameter_columns(t) if c in ref.colnames
                and not _constant_equal(_float(t[c]), _float(ref[c]))]
        pairs = list(zip(cols, cols))
    elif isinstance(columns, dict):
        pairs = list(columns.items())
    else:
        pairs = [(c, c) for c in columns]
    if not pairs:
        raise ParameterError("columns: the tables share no numeric parameter column that varies; name the columns "
                             "to compare (columns={name: reference name}; CLI: --columns NAME=REFNAME)")
    for a, b in pairs:
        if a not in t.colnames:
            raise ParameterError(f"columns: {a!r} is not a column of the table (it has {', '.join(t.colnames)})")
        if b not in ref.colnames:
            raise ParameterError(f"columns: {b!r} is not a column of the reference (it has {', '.join(ref.colnames)})")
    if match is not None:
        for name, tt in (("table", t), ("reference", ref)):
            if match not in tt.colnames:
                raise ParameterError(f"match: {match!r} is not a column of the {name}")
        keep_t = [match] + sorted({c for a, _ in pairs for c in (a, a + "_err") if c in t.colnames} - {match})
        keep_r = [match] + sorted({c for _, b in pairs for c in (b, b + "_err") if c in ref.colnames} - {match})
        joined = join(t[keep_t], ref[keep_r], keys=match, table_names=["a", "b"], uniq_col_name="{col_name}__{table_name}")

        def col(name, side):
            key = f"{name}__{side}" if f"{name}__{side}" in joined.colnames else name
            return _float(joined[key]) if key in joined.colnames else None
    else:
        if len(t) != len(ref):
            raise ShapeError(f"the table has {len(t)} rows and the reference {len(ref)}; give match='id' "
                             "(a column in both) to pair rows")

        def col(name, side):
            tt = t if side == "a" else ref
            return _float(tt[name]) if name in tt.colnames else None

    n = len(pairs)
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    fig = _new_figure((panel_size * ncols + 0.3, panel_size * nrows + 0.5))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (a, b) in zip(axes, pairs):
        ya, xb = col(a, "a"), col(b, "b")
        ea, eb = col(a + "_err", "a"), col(b + "_err", "b")
        periodic = 180.0 if a.endswith("_pa") or a == "pa" else None
        off, scat, cnt = robust_offset(ya, xb, periodic=periodic)
        if periodic is not None:  # draw each angle within 90° of its reference
            ya = xb + _wrap(ya - xb, periodic)
        ok = np.isfinite(ya) & np.isfinite(xb)
        ax.errorbar(xb[ok], ya[ok], xerr=None if eb is None else np.nan_to_num(eb[ok]),
                    yerr=None if ea is None else np.nan_to_num(ea[ok]), fmt="o", ms=3.5, color="C0",
                    ecolor="0.6", elinewidth=0.8, capsize=0)
        if ok.any():
            lo = min(np.min(xb[ok]), np.min(ya[ok]))
            hi = max(np.max(xb[ok]), np.max(ya[ok]))
            pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "-", color="0.5", lw=1, zorder=0)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
        unit = _unit_of(t, a)
        ax.set_xlabel(f"{b} ({labels[1]}){unit}", fontsize="small")
        ax.set_ylabel(f"{a} ({labels[0]}){unit}", fontsize="small")
        ax.set_title(f"median Δ = {off:.3g}\n1.4826 MAD = {scat:.3g},  N = {cnt}", fontsize="small")
        ax.tick_params(labelsize="small")
    for ax in axes[n:]:
        ax.remove()
    fig.suptitle(title if title is not None else f"{labels[0]} vs {labels[1]}", fontsize="medium")
    return fig


def plot_bands(result, galaxy: int = 0, params=None, *, alone=None, ncols=3, panel_size=3.0, title=None):
    """Each band-dependent parameter of a multiband fit against wavelength, with 1-sigma errors.

    Args:
        result: a :class:`~galmoss_jax.results.FitResult` of several bands (``fit`` of
            ``{band: image}``).
        galaxy: the row to plot.
        params: one-band parameter names (``"sersic.r_e"``, or bare for one component);
            default every parameter that differs between bands.
        alone: ``{band: FitResult}`` of one-band fits of the same galaxies (each band fitted
            alone), drawn beside the joint values.
    Returns:
        the Figure; axis x is the wavelength given to the fit (the band order when the fit had
        none), each point labelled by its band.
    """
    bm = result.model
    if not hasattr(bm, "bands"):
        raise ParameterError("plot_bands needs the result of a multiband fit (data given as {band: image})")
    names = sorted(bm.banded, key=bm.base.layout.names.index) if params is None else \
        [bm.base.resolve(p, "params") for p in params]
    for n in names:
        if n not in bm.banded:
            raise ParameterError(f"params: {n!r} is shared by every band; nothing to plot against wavelength")
    if not names:
        raise ParameterError("this fit has no parameter that differs between bands")
    if not 0 <= galaxy < result.status.shape[0]:
        raise ParameterError(f"galaxy must be in 0 .. {result.status.shape[0] - 1}, got {galaxy}")
    lam = np.asarray(bm.wavelengths if bm.wavelengths is not None else np.arange(len(bm.bands)), float)
    errs = result.errors
    n = len(names)
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    fig = _new_figure((panel_size * ncols + 0.3, panel_size * nrows + 0.5))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        joint = [dict(t)[name] for t in bm.per_band]
        y = np.array([result.values[j][galaxy] for j in joint], float)
        e = np.array([errs[j][galaxy] for j in joint], float)
        fitted = np.array([j in bm.layout.free for j in joint])
        ax.errorbar(lam, y, yerr=np.nan_to_num(e), fmt="o", ms=4, color="C0", ecolor="C0", capsize=2, label="joint")
        if (~fitted).any():   # interpolated bands: open symbols
            ax.plot(lam[~fitted], y[~fitted], "o", ms=4, mfc="white", mec="C0", zorder=3)
        if alone:
            idx = [i for i, b in enumerate(bm.bands) if b in alone]
            ya = np.array([alone[bm.bands[i]].values[name][galaxy] for i in idx], float)
            ea = np.array([alone[bm.bands[i]].errors[name][galaxy] for i in idx], float)
            shift = 0.01 * (lam.max() - lam.min() if lam.size > 1 else 1.0)
            ax.errorbar(lam[idx] + shift, ya, yerr=np.nan_to_num(ea), fmt="s", ms=3.5, color="C1", capsize=2,
                        label="alone")
        for i, b in enumerate(bm.bands):
            ax.annotate(b, (lam[i], y[i]), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
        unit = bm.base.param(name).unit
        if unit == "mag" or name.split(".", 1)[1].startswith("mu_"):
            ax.invert_yaxis()   # brighter up
        ax.set_ylabel(f"{name}" + (f" ({unit})" if unit else ""), fontsize="small")
        ax.set_xlabel("wavelength" if bm.wavelengths is not None else "band", fontsize="small")
        ax.tick_params(labelsize="small")
    axes[0].legend(fontsize="x-small")
    for ax in axes[n:]:
        ax.remove()
    fig.suptitle(title if title is not None else f"galaxy {galaxy}: {bm.spec_string}", fontsize="medium")
    return fig


def _constant_equal(a, b):
    v = np.concatenate([a, b])
    v = v[np.isfinite(v)]
    return v.size == 0 or bool(np.all(v == v[0]))


def _float(column):
    return np.ma.filled(np.ma.asarray(column, dtype=float), np.nan)


def _unit_of(t, name):
    u = getattr(t[name], "unit", None)
    return f" [{u}]" if u not in (None, "") and str(u) else ""


# -- command line ------------------------------------------------------------------------------
def add_parser(subparsers):
    """Register ``galmoss-jax plot`` on an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "plot", help="figures of fits: image panels and 1-D profiles of image blocks, table comparisons",
        description="RESULTS: image blocks (FITS files written by --imgblock / example) give a panel "
                    "figure and a 1-D profile figure each; a result table with --compare REFERENCE gives "
                    "a parameter-by-parameter comparison.")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="image-block FITS files or a result table")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--kind", default="panels,profile", help="for image blocks: panels, profile or both (default)")
    p.add_argument("--compare", metavar="REFERENCE", help="reference table to compare a result table with")
    p.add_argument("--columns", help="comma-separated columns to compare (NAME or NAME=REFNAME)")
    p.add_argument("--match", help="column pairing rows of the two tables (default: row order)")
    p.add_argument("--zeropoint", type=float, help="magnitude zero point: profiles in mag (else log10 flux)")
    p.add_argument("--pixscale", type=float, help="arcsec per pixel: profiles in mag/arcsec² against arcsec")
    p.add_argument("--component", help="component whose x0, y0, q, pa define the annuli (default: brightest)")
    p.add_argument("--mode", default="annuli", choices=["annuli", "major"], help="elliptical annuli or major-axis strip")
    p.add_argument("--residual", default="data", choices=["data", "sigma"], help="residual panel: data-model or (data-model)/sigma")
    p.add_argument("--format", default="png", choices=["png", "pdf", "svg"], help="figure format (default png)")
    p.add_argument("--dpi", type=int, default=110)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_plot)
    return p


def _is_imgblock(path):
    from astropy.io import fits

    if os.path.splitext(path)[1].lower() not in (".fits", ".fit", ".fts", ".gz"):
        return False
    try:
        with fits.open(path, memmap=False) as hdul:
            return any(h.name.upper() == "DATA" for h in hdul) and any(h.name.upper() == "MODEL" for h in hdul)
    except (OSError, ValueError):
        return False


def _save(fig, path, overwrite, dpi):
    if os.path.exists(path) and not overwrite:
        raise InputFileError(f"--out: {path!r} exists; pass --overwrite to replace it")
    fig.savefig(path, dpi=dpi)
    print(f"wrote {path}")


def cmd_plot(args):
    """``galmoss-jax plot``: write figures of image blocks or a table comparison under ``--out``."""
    from .io import read_table

    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("panels", "profile")]
    if bad or not kinds:
        raise ParameterError(f"--kind: expected panels, profile or panels,profile, got {args.kind!r}")
    for path in args.results:
        if not os.path.exists(path):
            raise InputFileError(f"RESULTS: file {path!r} does not exist")
    blocks = [p for p in args.results if _is_imgblock(p)]
    tables = [p for p in args.results if p not in blocks]
    if tables and blocks:
        raise ParameterError("RESULTS: give image blocks or one result table, not both")
    if tables:
        if len(tables) != 1 or args.compare is None:
            raise ParameterError("RESULTS: a result table is plotted against a reference: give one table and "
                                 "--compare REFERENCE")
    elif args.compare is not None:
        raise ParameterError("--compare: compares result tables; RESULTS are image blocks")
    os.makedirs(args.out, exist_ok=True)
    ext = "." + args.format
    if tables:
        t = read_table(tables[0], name="RESULTS")
        ref = read_table(args.compare, name="--compare")
        cols = None
        if args.columns:
            cols = {}
            for item in filter(None, (s.strip() for s in args.columns.split(","))):
                a, _, b = item.partition("=")
                cols[a] = b or a
        stem = f"{_stem(tables[0])}_vs_{_stem(args.compare)}"
        fig = plot_compare(t, ref, cols, match=args.match,
                           labels=(_stem(tables[0]), _stem(args.compare)))
        _save(fig, os.path.join(args.out, stem + ext), args.overwrite, args.dpi)
        return
    for path in blocks:
        block = read_imgblock(path)
        stem = _stem(path)
        if "panels" in kinds:
            _save(plot_panels(block, residual=args.residual), os.path.join(args.out, f"{stem}_panels{ext}"),
                  args.overwrite, args.dpi)
        if "profile" in kinds:
            fig = plot_profile(block, component=args.component, zeropoint=args.zeropoint,
                               pixscale=args.pixscale, mode=args.mode)
            _save(fig, os.path.join(args.out, f"{stem}_profile{ext}"), args.overwrite, args.dpi)


def _stem(path):
    base = os.path.basename(path)
    for e in (".gz",):
        if base.endswith(e):
            base = base[: -len(e)]
    return os.path.splitext(base)[0]
