"""One adapter per fitter: render a model (for ``check_conventions.py``) and fit a batch.

Every adapter takes and returns parameters in galmoss_jax's conventions (``conventions.py``
converts); models are

* ``"sersic"``: keys x0, y0, mag, r_e, n, q, pa;
* ``"bd"``: bulge Sérsic + exponential disk sharing one centre: x0, y0, b_mag, b_r_e, b_n,
  b_q, b_pa, d_mag, d_r_s, d_q, d_pa.

``fit_<tool>(job, starts)`` fits ``job["data"]`` (G, H, W) with ``job["sigma"]``,
``job["mask"]`` (True = pixel used), ``job["psf"]`` (G, h, w), ``job["zp"]``, model
``job["kind"]``, once per start set in ``starts`` ({name: {param: (G,) array}}), and returns
{name: {"values", "errors", "chi2_nu", "ok", "n_iter", "seconds"}}, plus per-call timings.  A
galaxy whose fit raises gets NaN values and ok = False; it never stops the batch.

The bounds given to the peers follow galmoss_jax's defaults (r_e, r_s in [0.2, 500] px, n in
[0.2, 10], centre within 10 px of the start) except where a peer's documentation recommends
none (GALMOSS: its README example sets no ranges).
"""
from __future__ import annotations

import functools
import os
import tempfile
import time
import warnings

import numpy as np

import conventions as cv

SERSIC = ("x0", "y0", "mag", "r_e", "n", "q", "pa")
BD = ("x0", "y0", "b_mag", "b_r_e", "b_n", "b_q", "b_pa", "d_mag", "d_r_s", "d_q", "d_pa")


def param_names(kind):
    return SERSIC if kind == "sersic" else BD


def _nan_row(kind):
    return {k: np.nan for k in param_names(kind)}


def _fold(p, prefix=""):
    """q > 1 -> 1/q and pa + 90 (a fitter without a q <= 1 bound can wander there)."""
    q = p.get(prefix + "q")
    if q is not None and np.isfinite(q) and q > 1:
        p[prefix + "q"] = 1.0 / q
        p[prefix + "pa"] = float(cv.wrap_pa(p[prefix + "pa"] + 90.0))
    return p


def _collect(rows, errs, kind):
    names = param_names(kind)
    return ({k: np.array([r[k] for r in rows], float) for k in names},
            {k: np.array([e.get(k, np.nan) for e in errs], float) for k in names})


# ---------------------------------------------------------------------------------------------
# galmoss_jax
# ---------------------------------------------------------------------------------------------
def _gj_model(kind):
    import galmoss_jax as gj

    if kind == "sersic":
        return gj.Model("sersic")
    return gj.Model("bulge:sersic+disk:exponential", tied={"disk.x0": "bulge.x0", "disk.y0": "bulge.y0"})


def _gj_names(kind):
    """Our flat names -> galmoss_jax's component.param names."""
    if kind == "sersic":
        return {k: f"sersic.{k}" for k in SERSIC}
    m = {"x0": "bulge.x0", "y0": "bulge.y0"}
    for k in BD[2:]:
        comp = "bulge" if k.startswith("b_") else "disk"
        m[k] = f"{comp}.{k[2:]}"
    return m


def render_galmoss_jax(kind, p, shape, psf, zp):
    import galmoss_jax as gj

    names = _gj_names(kind)
    params = {names[k]: v for k, v in p.items()}
    if kind == "bd":
        params["disk.x0"], params["disk.y0"] = p["x0"], p["y0"]
    return np.asarray(gj.render(_gj_model(kind), params, shape, psf=psf, zeropoint=zp), float)


def fit_galmoss_jax(job, starts, repeat_first=True, fit_starts="auto"):
    """``galmoss_jax.fit``: one batched Levenberg-Marquardt call per start set (the
    default solver, Gauss-Newton errors, float32 unless x64 is on).  The first start set is
    fitted twice when ``repeat_first``: the first call includes tracing and compilation, the
    second is steady state.  ``fit_starts``: ``"auto"`` (the default: LM from the given start
    and from the best screened candidate, the lower chi2 kept) or 1 (LM from the given start
    alone, as the README recommends when the starts come from a trusted source, and as Imfit
    and AstroPhot are run)."""
    from galmoss_jax import fit

    kind, model = job["kind"], _gj_model(job["kind"])
    names = _gj_names(kind)
    out, timing = {}, {}
    for i, (sname, init) in enumerate(starts.items()):
        gj_init = {names[k]: np.asarray(v, float) for k, v in init.items()}
        kw = dict(sigma=job["sigma"], mask=job["mask"], psf=job["psf"], zeropoint=float(job["zp"]), init=gj_init,
                  starts=fit_starts)
        calls = 2 if (i == 0 and repeat_first) else 1
        for c in range(calls):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fit(model, job["data"], **kw)
            dt = time.perf_counter() - t0
            timing[f"{sname}_call{c}"] = dt
        vals = {k: np.asarray(res.values[names[k]], float) for k in param_names(kind)}
        errs = res.errors
        errs = {k: np.asarray(errs[names[k]], float) for k in param_names(kind)}
        out[sname] = dict(values=vals, errors=errs, chi2_nu=np.asarray(res.chi2_nu, float),
                          ok=np.asarray(res.status) == 0, n_iter=np.asarray(res.n_iter, float), seconds=dt,
                          status=np.asarray(res.status, int))
    return out, timing


# ---------------------------------------------------------------------------------------------
# Imfit (pyimfit)
# ---------------------------------------------------------------------------------------------
def _imfit_model(kind, p, zp, H, W):
    import pyimfit

    md = pyimfit.SimpleModelDescription()
    x, y = p["x0"] + 1.0, p["y0"] + 1.0   # 1-based
    md.x0.setValue(x, [x - 10, x + 10])
    md.y0.setValue(y, [y - 10, y + 10])
    if kind == "sersic":
        comps = [("Sersic", "sersic", cv.to_imfit_sersic(p, zp))]
    else:
        b = {k[2:]: p[k] for k in p if k.startswith("b_")} | {"x0": p["x0"], "y0": p["y0"]}
        d = {k[2:]: p[k] for k in p if k.startswith("d_")}
        comps = [("Sersic", "bulge", cv.to_imfit_sersic(b, zp)), ("Exponential", "disk", cv.to_imfit_exponential(d, zp))]
    for fname, label, v in comps:
        f = pyimfit.make_imfit_function(fname, label=label)
        # PA: free without limits (it is periodic); ell in [0, 0.95] (q >= 0.05)
        f.PA.setValue(v["PA"])
        f.ell.setValue(min(max(v["ell"], 0.0), 0.94), [0.0, 0.95])
        if fname == "Sersic":
            f.n.setValue(min(max(v["n"], 0.21), 9.9), [0.2, 10.0])
            f.I_e.setValue(v["I_e"], [0.0, 1e3 * v["I_e"] + 1e3])
            f.r_e.setValue(min(max(v["r_e"], 0.21), 499.0), [0.2, 500.0])
        else:
            f.I_0.setValue(v["I_0"], [0.0, 1e3 * v["I_0"] + 1e3])
            f.h.setValue(min(max(v["h"], 0.21), 499.0), [0.2, 500.0])
        md.addFunction(f)
    return md


def _imfit_unpack(kind, raw, zp):
    """pyimfit's raw parameter vector: x0, y0, then each function's parameters in order."""
    raw = [float(r) for r in raw]
    if kind == "sersic":
        v = dict(zip(("x0", "y0", "PA", "ell", "n", "I_e", "r_e"), raw))
        return cv.from_imfit_sersic(v, zp)
    vb = dict(zip(("x0", "y0", "PA", "ell", "n", "I_e", "r_e"), raw[:7]))
    vd = dict(zip(("PA", "ell", "I_0", "h"), raw[7:11]))
    b, d = cv.from_imfit_sersic(vb, zp), cv.from_imfit_exponential(vd, zp)
    out = {"x0": b["x0"], "y0": b["y0"]}
    out.update({"b_" + k: b[k] for k in ("mag", "r_e", "n", "q", "pa")})
    out.update({"d_" + k: d[k] for k in ("mag", "r_s", "q", "pa")})
    return out


def _imfit_errors(kind, err):
    """Imfit's 1-sigma errors (from the LM covariance) in our parameters.  Imfit reports none
    for a total magnitude (it fits I_e; pyimfit gives no covariance to propagate): NaN."""
    err = [float(e) for e in err]
    if kind == "sersic":
        e = dict(zip(("x0", "y0", "PA", "ell", "n", "I_e", "r_e"), err))
        return dict(x0=e["x0"], y0=e["y0"], pa=e["PA"], q=e["ell"], n=e["n"], r_e=e["r_e"], mag=np.nan)
    return dict(x0=err[0], y0=err[1], b_pa=err[2], b_q=err[3], b_n=err[4], b_r_e=err[6], b_mag=np.nan,
                d_pa=err[7], d_q=err[8], d_r_s=err[10], d_mag=np.nan)


def render_imfit(kind, p, shape, psf, zp):
    import pyimfit

    md = _imfit_model(kind, p, zp, *shape)
    f = pyimfit.Imfit(md, psf=None if psf is None else np.asarray(psf, float))
    return np.asarray(f.getModelImage(shape=shape), float)


def fit_imfit(job, starts):
    """pyimfit's documented fit: ``Imfit(model, psf).fit(image, error=sigma, mask=bad)`` with
    the default Levenberg-Marquardt solver (ftol 1e-8) and Imfit's default pixel subsampling;
    one galaxy at a time (Imfit is multithreaded within a fit)."""
    import pyimfit

    kind, zp = job["kind"], float(job["zp"])
    G, H, W = job["data"].shape
    out, timing = {}, {}
    for sname, init in starts.items():
        rows, errs, chi, ok, nit, secs = [], [], [], [], [], []
        for g in range(G):
            p = {k: float(v[g]) for k, v in init.items()}
            t0 = time.perf_counter()
            try:
                md = _imfit_model(kind, p, zp, H, W)
                f = pyimfit.Imfit(md, psf=np.asarray(job["psf"][g], float))
                f.fit(np.asarray(job["data"][g], float), error=np.asarray(job["sigma"][g], float),
                      mask=(~job["mask"][g]).astype(float), verbose=-1)
                row = _imfit_unpack(kind, f.getRawParameters(), zp)
                if kind == "sersic":
                    _fold(row)
                rows.append(row)
                errs.append(_imfit_errors(kind, f.getParameterErrors()))
                chi.append(f.reducedFitStatistic)
                ok.append(bool(f.fitConverged))
                nit.append(f.nIter)
            except Exception as e:  # noqa: BLE001 - a failed galaxy is a row, not a crash
                rows.append(_nan_row(kind)); errs.append({}); chi.append(np.nan); ok.append(False); nit.append(np.nan)
                print(f"imfit: galaxy {g}: {type(e).__name__}: {e}", flush=True)
            secs.append(time.perf_counter() - t0)
        vals, ers = _collect(rows, errs, kind)
        out[sname] = dict(values=vals, errors=ers, chi2_nu=np.array(chi, float), ok=np.array(ok),
                          n_iter=np.array(nit, float), seconds=float(np.sum(secs)), per_galaxy=secs)
        timing[sname] = secs
    return out, timing


# ---------------------------------------------------------------------------------------------
# AstroPhot
# ---------------------------------------------------------------------------------------------
def _ap_model(kind, p, zp, data, sigma, mask, psf):
    import astrophot as ap

    H, W = data.shape
    tar = ap.TargetImage(data=np.asarray(data, float), pixelscale=1.0, zeropoint=zp,
                         variance=np.asarray(sigma, float) ** 2,
                         mask=None if mask is None else ~np.asarray(mask, bool),
                         psf=None if psf is None else ap.PSFImage(data=np.asarray(psf, float)))
    if kind == "sersic":
        v = cv.to_astrophot_sersic(p, zp)
        return ap.Model(name="sersic", model_type="sersic galaxy model", target=tar, **v), None
    b = {k[2:]: p[k] for k in p if k.startswith("b_")} | {"x0": p["x0"], "y0": p["y0"]}
    d = {k[2:]: p[k] for k in p if k.startswith("d_")} | {"x0": p["x0"], "y0": p["y0"]}
    bulge = ap.Model(name="bulge", model_type="sersic galaxy model", target=tar, **cv.to_astrophot_sersic(b, zp))
    disk = ap.Model(name="disk", model_type="exponential galaxy model", target=tar, **cv.to_astrophot_exponential(d, zp))
    disk.center = bulge.center          # one shared centre parameter
    return ap.Model(name="bd", model_type="group model", target=tar, models=[bulge, disk]), (bulge, disk)


def _t(x):
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, float)


def _ap_read(kind, model, parts, zp, cov=None):
    def vals(m, attr="value"):
        names = ["center", "q", "PA", "n", "Re", "Ie"] if m.model_type.startswith("sersic") else ["center", "q", "PA", "Re", "Ie"]
        return {k: _t(getattr(getattr(m, k), attr)) for k in names}

    def mag_err(v, e, nfixed=None):
        # mag = zp - 2.5 log10(Ie * K(n) * q * Re^2): diagonal propagation of AstroPhot's
        # reported uncertainties (its LM gives them per parameter)
        n = float(v["n"]) if "n" in v else 1.0
        F = cv.sersic_flux(float(v["Ie"]), float(v["Re"]), n, float(v["q"]))
        h = 1e-4
        terms = [(e["Ie"] / v["Ie"]) ** 2, (2 * e["Re"] / v["Re"]) ** 2, (e["q"] / v["q"]) ** 2]
        if "n" in v:
            dF = (cv.sersic_flux(float(v["Ie"]), float(v["Re"]), n + h, float(v["q"])) - F) / h / F
            terms.append((dF * e["n"]) ** 2)
        return float(1.0857362 * np.sqrt(np.sum(terms)))

    if kind == "sersic":
        v, e = vals(model), vals(model, "uncertainty")
        row = cv.from_astrophot_sersic({k: (v[k] if k == "center" else float(v[k])) for k in v}, zp)
        err = dict(x0=float(e["center"][0]), y0=float(e["center"][1]), q=float(e["q"]),
                   pa=float(np.rad2deg(e["PA"])), n=float(e["n"]), r_e=float(e["Re"]), mag=mag_err(v, e))
        return _fold(row), err
    bulge, disk = parts
    vb, eb = vals(bulge), vals(bulge, "uncertainty")
    vd, ed = vals(disk), vals(disk, "uncertainty")
    b = cv.from_astrophot_sersic({k: (vb[k] if k == "center" else float(vb[k])) for k in vb}, zp)
    d = cv.from_astrophot_exponential({k: (vd[k] if k == "center" else float(vd[k])) for k in vd}, zp)
    row = {"x0": b["x0"], "y0": b["y0"]}
    row.update({"b_" + k: b[k] for k in ("mag", "r_e", "n", "q", "pa")})
    row.update({"d_" + k: d[k] for k in ("mag", "r_s", "q", "pa")})
    err = dict(x0=float(eb["center"][0]), y0=float(eb["center"][1]), b_q=float(eb["q"]), b_pa=float(np.rad2deg(eb["PA"])),
               b_n=float(eb["n"]), b_r_e=float(eb["Re"]), b_mag=mag_err(vb, eb), d_q=float(ed["q"]),
               d_pa=float(np.rad2deg(ed["PA"])), d_r_s=float(ed["Re"]) / cv.B1, d_mag=mag_err(vd, ed))
    return row, err


def render_astrophot(kind, p, shape, psf, zp):
    model, _ = _ap_model(kind, p, zp, np.zeros(shape), np.ones(shape), None, psf)
    return _t(model().data)


def fit_astrophot(job, starts):
    """AstroPhot's recommended fit (its Getting Started tutorial): ``ap.fit.LM(model).fit()``
    (defaults: max_iter 100, relative tolerance 1e-5, uncertainties from the LM covariance)
    on a ``TargetImage`` with the variance (sigma^2), mask and PSF; default sampling
    (``sampling_mode="auto"``, ``integrate_mode="bright"``); one galaxy at a time."""
    import astrophot as ap

    kind, zp = job["kind"], float(job["zp"])
    G = job["data"].shape[0]
    out, timing = {}, {}
    for sname, init in starts.items():
        rows, errs, chi, ok, nit, secs = [], [], [], [], [], []
        for g in range(G):
            p = {k: float(v[g]) for k, v in init.items()}
            t0 = time.perf_counter()
            try:
                model, parts = _ap_model(kind, p, zp, job["data"][g], job["sigma"][g], job["mask"][g], job["psf"][g])
                model.initialize()
                res = ap.fit.LM(model, verbose=0).fit()
                row, err = _ap_read(kind, model, parts, zp)
                rows.append(row); errs.append(err)
                chi.append(float(_t(res.chi2_ndf())))
                ok.append("success" in res.message and "fail" not in res.message)
                nit.append(max(len(res.loss_history) - 1, 0))
            except Exception as e:  # noqa: BLE001
                rows.append(_nan_row(kind)); errs.append({}); chi.append(np.nan); ok.append(False); nit.append(np.nan)
                print(f"astrophot: galaxy {g}: {type(e).__name__}: {e}", flush=True)
            secs.append(time.perf_counter() - t0)
        vals, ers = _collect(rows, errs, kind)
        out[sname] = dict(values=vals, errors=ers, chi2_nu=np.array(chi, float), ok=np.array(ok),
                          n_iter=np.array(nit, float), seconds=float(np.sum(secs)), per_galaxy=secs)
        timing[sname] = secs
    return out, timing


# ---------------------------------------------------------------------------------------------
# GALMOSS
# ---------------------------------------------------------------------------------------------
def _gm_profiles(kind, init, zp, fit_flags=True):
    """GALMOSS profile objects for a batch, as in its tutorial: ``p(value, angle=True)`` for
    pa, ``log=True`` for n, ``M0=zp`` for mag, lengths in pixels (no ``pix_scale``)."""
    import galmoss as gm
    import torch

    def P(v, **kw):
        return gm.p(torch.as_tensor(np.asarray(v, np.float64)), **kw)

    if kind == "sersic":
        g = {k: np.array([cv.to_galmoss_sersic({kk: init[kk][i] for kk in SERSIC})[k] for i in range(len(init["x0"]))])
             for k in ("cen_x", "cen_y", "pa", "axis_r", "eff_r", "ser_n", "mag")}
        s = gm.lp.Sersic(cen_x=P(g["cen_x"]), cen_y=P(g["cen_y"]), pa=P(g["pa"], angle=True), axis_r=P(g["axis_r"]),
                         eff_r=P(g["eff_r"]), ser_n=P(g["ser_n"], log=True), mag=P(g["mag"], M0=zp))
        return {"sersic": s}
    G = len(init["x0"])
    bg = [cv.to_galmoss_sersic(dict(x0=init["x0"][i], y0=init["y0"][i], mag=init["b_mag"][i], r_e=init["b_r_e"][i],
                                    n=init["b_n"][i], q=init["b_q"][i], pa=init["b_pa"][i])) for i in range(G)]
    # GALMOSS 2.2's ExpDisk cannot be evaluated (it reads an unset attribute ``con``): the disk is
    # a Sersic with n fixed at 1 and eff_r = b_1 r_s
    dg = [cv.to_galmoss_sersic(dict(x0=init["x0"][i], y0=init["y0"][i], mag=init["d_mag"][i], r_e=cv.B1 * init["d_r_s"][i],
                                    n=1.0, q=init["d_q"][i], pa=init["d_pa"][i])) for i in range(G)]
    col = lambda L, k: np.array([d[k] for d in L])  # noqa: E731
    cx, cy = P(col(bg, "cen_x")), P(col(bg, "cen_y"))
    bulge = gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=P(col(bg, "pa"), angle=True), axis_r=P(col(bg, "axis_r")),
                         eff_r=P(col(bg, "eff_r")), ser_n=P(col(bg, "ser_n"), log=True), mag=P(col(bg, "mag"), M0=zp))
    disk = gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=P(col(dg, "pa"), angle=True), axis_r=P(col(dg, "axis_r")),
                        eff_r=P(col(dg, "eff_r")), ser_n=P(col(dg, "ser_n"), fit=False), mag=P(col(dg, "mag"), M0=zp))
    return {"bulge": bulge, "disk": disk}


def _gm_write(tmp, job, g):
    from astropy.io import fits

    names = {}
    for key, arr in (("image", job["data"][g]), ("sigma", job["sigma"][g]), ("psf", job["psf"][g]),
                     # GALMOSS mask, mode "bg" with mask_index 1: 0 = use, any other label but 1 = exclude
                     ("mask", np.where(job["mask"][g], 0, 2).astype(np.int32))):
        path = os.path.join(tmp, f"g{g}_{key}.fits")
        fits.writeto(path, np.asarray(arr), overwrite=True)
        names[key] = path
    return names


def _gm_dataset(job, tmp, profiles, G):
    import galmoss as gm
    import torch

    files = [_gm_write(tmp, job, g) for g in range(G)]
    ds = gm.DataSet(galaxy_index=[f"g{g}" for g in range(G)], image_path=[f["image"] for f in files],
                    sigma_path=[f["sigma"] for f in files], psf_path=[f["psf"] for f in files],
                    mask_path=[f["mask"] for f in files], mask_index=[1] * G, device="cpu", data_type=torch.float32)
    ds.define_profiles(**profiles)
    return ds


def _gm_read(kind, profiles, with_errors):
    def val(prm):
        return np.asarray(prm.total_best_value_numpy, float).reshape(-1)

    def err(prm):
        u = getattr(prm, "uncertainty", None)
        return np.asarray(u.detach().cpu().numpy(), float).reshape(-1) if (with_errors and u is not None) else None

    if kind == "sersic":
        s = profiles["sersic"]
        V = {k: val(getattr(s, k)) for k in ("cen_x", "cen_y", "pa", "axis_r", "eff_r", "ser_n", "mag")}
        E = {k: err(getattr(s, k)) for k in V}
        G = len(V["mag"])
        vals, errs = [], []
        for i in range(G):
            r = cv.from_galmoss_sersic({k: float(V[k][i]) for k in V})
            vals.append(_fold(r))
            e = {}
            for ours, theirs in (("x0", "cen_x"), ("y0", "cen_y"), ("pa", "pa"), ("q", "axis_r"), ("r_e", "eff_r"),
                                 ("n", "ser_n"), ("mag", "mag")):
                e[ours] = float(E[theirs][i]) if E[theirs] is not None else np.nan
            errs.append(e)
        return vals, errs
    b, d = profiles["bulge"], profiles["disk"]
    Vb = {k: val(getattr(b, k)) for k in ("cen_x", "cen_y", "pa", "axis_r", "eff_r", "ser_n", "mag")}
    Vd = {k: (val(getattr(d, k)) if getattr(d, k).fit else np.asarray(getattr(d, k).total_initial_value_numpy, float).reshape(-1))
          for k in ("cen_x", "cen_y", "pa", "axis_r", "eff_r", "ser_n", "mag")}
    Eb = {k: err(getattr(b, k)) for k in Vb}
    Ed = {k: (err(getattr(d, k)) if getattr(d, k).fit else None) for k in Vd}
    G = len(Vb["mag"])
    vals, errs = [], []
    for i in range(G):
        rb = _fold(cv.from_galmoss_sersic({k: float(Vb[k][i]) for k in Vb}))
        rd = _fold(cv.from_galmoss_sersic({k: float(Vd[k][i]) for k in Vd}))
        row = {"x0": rb["x0"], "y0": rb["y0"]}
        row.update({"b_" + k: rb[k] for k in ("mag", "r_e", "n", "q", "pa")})
        row.update({"d_mag": rd["mag"], "d_r_s": rd["r_e"] / cv.B1, "d_q": rd["q"], "d_pa": rd["pa"]})
        vals.append(row)
        g_ = lambda E, k: float(E[k][i]) if E.get(k) is not None else np.nan  # noqa: E731
        errs.append(dict(x0=g_(Eb, "cen_x"), y0=g_(Eb, "cen_y"), b_pa=g_(Eb, "pa"), b_q=g_(Eb, "axis_r"),
                         b_r_e=g_(Eb, "eff_r"), b_n=g_(Eb, "ser_n"), b_mag=g_(Eb, "mag"), d_pa=g_(Ed, "pa"),
                         d_q=g_(Ed, "axis_r"), d_r_s=g_(Ed, "eff_r") / cv.B1, d_mag=g_(Ed, "mag")))
    return vals, errs


def render_galmoss(kind, p, shape, psf, zp):
    """GALMOSS's own model path: ``Fitting.make_grid``, ``Fitting.modeling`` of the initial
    values and ``Fitting.add_convolution``."""
    import galmoss as gm
    import torch

    init = {k: np.array([v], float) for k, v in p.items()}
    profiles = _gm_profiles(kind, init, zp)
    H, W = shape
    job = dict(data=np.zeros((1, H, W)), sigma=np.ones((1, H, W)), mask=np.ones((1, H, W), bool),
               psf=np.asarray(psf, float)[None] if psf is not None else np.zeros((1, 1, 1)))
    with tempfile.TemporaryDirectory() as tmp:
        ds = _gm_dataset(job, tmp, profiles, 1)
        f = gm.Fitting(dataset=ds, batch_size=1, iteration=1)
        f.make_grid()
        f._index = ["g0"]
        f._psf = torch.as_tensor(job["psf"], dtype=torch.float32)
        conv = f.modeling(ds.Profiles.conv_profile_dict, mode="initial_model").to(torch.float32)
        img = f.add_convolution(conv.sum(axis=0)) if psf is not None else conv.sum(axis=0)
    return np.asarray(img.detach().numpy(), float).reshape(H, W)


def fit_galmoss(job, starts, iteration=1500, with_errors=True):
    """GALMOSS's documented loop (its tutorial): ``DataSet`` of FITS files, ``Fitting(dataset,
    batch_size, iteration).fit()`` with its default optimiser (DiffGrad, step 0.015, early
    stop after 50 small improvements) then ``fitting.uncertainty(method="covar_mat")``; all
    the galaxies in one batch, as GALMOSS batches them; CPU torch, float32."""
    import contextlib
    import io

    import galmoss as gm

    kind, zp = job["kind"], float(job["zp"])
    G = job["data"].shape[0]
    out, timing = {}, {}
    for sname, init in starts.items():
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            profiles = _gm_profiles(kind, {k: np.asarray(v, float) for k, v in init.items()}, zp)
            ds = _gm_dataset(job, tmp, profiles, G)
            fitting = gm.Fitting(dataset=ds, batch_size=G, iteration=iteration)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                fitting.fit()
            t_fit = time.perf_counter() - t0
            if with_errors:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    fitting.uncertainty(method="covar_mat", bs=1)
            rows, errs = _gm_read(kind, profiles, with_errors)
            chi = np.asarray(fitting.total_best_chi_mu.detach().cpu().numpy(), float)
            nit = np.asarray(fitting.total_eff_iter.detach().cpu().numpy(), float)
        dt = time.perf_counter() - t0
        vals, ers = _collect(rows, errs, kind)
        out[sname] = dict(values=vals, errors=ers, chi2_nu=chi, ok=np.isfinite(chi), n_iter=nit, seconds=dt,
                          seconds_fit=t_fit)
        timing[sname] = dt
    return out, timing


FITTERS = {"galmoss_jax": fit_galmoss_jax, "galmoss_jax_1": functools.partial(fit_galmoss_jax, fit_starts=1),
           "imfit": fit_imfit, "astrophot": fit_astrophot, "galmoss": fit_galmoss}
RENDERERS = {"galmoss_jax": render_galmoss_jax, "imfit": render_imfit, "astrophot": render_astrophot,
             "galmoss": render_galmoss}
MODULES = {"galmoss_jax": "galmoss_jax", "galmoss_jax_1": "galmoss_jax", "imfit": "pyimfit", "astrophot": "astrophot",
           "galmoss": "galmoss"}
