"""Figures (galmoss_jax/plot.py): each is written to PNG, and the plotted numbers are checked
against the inputs and against independent calculations on analytic images."""
import os

import matplotlib.image
import numpy as np
import pytest
from astropy.table import Table

from galmoss_jax import Model
from galmoss_jax._errors import GalmossError
from galmoss_jax.cli import main
from galmoss_jax.io import write_imgblocks
from galmoss_jax.plot import (ImgBlock, elliptical_profile, plot_compare, plot_panels, plot_profile,
                              read_imgblock, robust_offset)
from galmoss_jax.results import FitResult

H, W = 40, 44
X0, Y0, Q, PA = 21.3, 19.6, 0.6, 30.0


def _ellipse_r(x, y, x0, y0, q, pa):
    """Independent semi-major radius: project on unit vectors along and across the major axis
    (the major axis points at angle pa + 90 deg from +x, i.e. pa CCW from +y)."""
    phi = np.deg2rad(pa + 90.0)
    u = np.array([np.cos(phi), np.sin(phi)])
    v = np.array([-np.sin(phi), np.cos(phi)])
    d = np.array([x - x0, y - y0])
    return float(np.hypot(d @ u, (d @ v) / q)), float(d @ u), float(d @ v)


def _analytic_block(name="analytic"):
    """A two-component 'fit' whose images are analytic functions of the elliptical radius."""
    r = np.array([[_ellipse_r(x, y, X0, Y0, Q, PA)[0] for x in range(W)] for y in range(H)])
    bulge = 5.0 * np.exp(-r / 1.5)
    disk = 1.0 * np.exp(-r / 6.0)
    model = bulge + disk
    rng = np.random.default_rng(3)
    sigma = 0.01 + 0.02 * np.sqrt(model)
    data = model + sigma * rng.normal(size=model.shape)
    mask = np.ones((H, W), bool)
    mask[2:7, 30:36] = False  # a masked neighbour
    params = {}
    for c in ("bulge", "disk"):
        params.update({f"{c}.x0": X0, f"{c}.y0": Y0, f"{c}.q": Q, f"{c}.pa": PA})
    params.update({"bulge.mag": 20.0, "disk.mag": 19.0})
    return ImgBlock(data=data, model=model, residual=np.where(mask, data - model, 0.0), sigma=sigma,
                    mask=mask, components={"bulge": bulge, "disk": disk}, params=params,
                    errors={k: 0.0 for k in params}, model_spec="bulge:sersic+disk:exponential",
                    chi2_nu=1.02, status=0, name=name)


def _png(fig, path):
    fig.savefig(path, dpi=80)
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


# -- profiles ----------------------------------------------------------------------------------
def test_annulus_means_match_an_independent_calculation():
    edges = np.array([0.0, 1.0, 2.5, 4.0, 6.0, 9.0, 13.0])
    # piecewise constant in the annuli: every annulus mean is that constant exactly
    rr = np.array([[_ellipse_r(x, y, X0, Y0, Q, PA)[0] for x in range(W)] for y in range(H)])
    level = np.digitize(rr, edges).astype(float)
    img = 10.0 ** -level
    sigma = np.full((H, W), 0.3)
    mask = np.ones((H, W), bool)
    mask[::3, ::4] = False
    prof = elliptical_profile(img, X0, Y0, Q, PA, sigma=sigma, mask=mask, edges=edges)
    # independent: loop over pixels, explicit projection
    for k in range(edges.size - 1):
        sel = [(y, x) for y in range(H) for x in range(W)
               if mask[y, x] and edges[k] <= _ellipse_r(x, y, X0, Y0, Q, PA)[0] < edges[k + 1]]
        n = len(sel)
        assert prof["n"][k] == n
        np.testing.assert_allclose(prof["mean"][k], 10.0 ** -(k + 1), rtol=1e-12)
        np.testing.assert_allclose(prof["err"][k], 0.3 / np.sqrt(n), rtol=1e-12)
        rmean = np.mean([_ellipse_r(x, y, X0, Y0, Q, PA)[0] for y, x in sel])
        np.testing.assert_allclose(prof["r"][k], rmean, rtol=1e-12)
    # a smooth image: the means are the pixel averages over the same selection
    smooth = np.exp(-rr / 4.0) + 0.1 * np.sin(np.arange(W))[None, :]
    prof = elliptical_profile(smooth, X0, Y0, Q, PA, mask=mask, edges=edges)
    for k in range(edges.size - 1):
        vals = [smooth[y, x] for y in range(H) for x in range(W)
                if mask[y, x] and edges[k] <= _ellipse_r(x, y, X0, Y0, Q, PA)[0] < edges[k + 1]]
        np.testing.assert_allclose(prof["mean"][k], np.mean(vals), rtol=1e-12)
        assert np.isnan(prof["err"][k])


def test_major_axis_strip_selection():
    img = np.arange(H * W, dtype=float).reshape(H, W)
    edges = np.arange(0.0, 15.0, 1.5)
    prof = elliptical_profile(img, X0, Y0, Q, PA, edges=edges, mode="major", width=2.0)
    for k in range(edges.size - 1):
        vals = []
        for y in range(H):
            for x in range(W):
                _, along, across = _ellipse_r(x, y, X0, Y0, Q, PA)
                if abs(across) <= 1.0 and edges[k] <= abs(along) < edges[k + 1]:
                    vals.append(img[y, x])
        assert prof["n"][k] == len(vals)
        np.testing.assert_allclose(prof["mean"][k], np.mean(vals), rtol=1e-12)


def test_profile_figure_plots_the_annulus_means(tmp_path):
    b = _analytic_block()
    zp, scale = 22.5, 0.4
    fig = plot_profile(b, zeropoint=zp, pixscale=scale)
    ax, axr = fig.axes
    _png(fig, tmp_path / "profile.png")
    used = b.mask
    prof = elliptical_profile(b.data, X0, Y0, Q, PA, sigma=b.sigma, mask=used)
    mprof = elliptical_profile(b.model, X0, Y0, Q, PA, mask=used)
    ok = prof["mean"] > 0
    mu = zp - 2.5 * np.log10(prof["mean"][ok] / scale ** 2)
    pts = ax.containers[0].lines[0]
    np.testing.assert_allclose(pts.get_xdata(), prof["r"][ok] * scale)
    np.testing.assert_allclose(pts.get_ydata(), mu)
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"model", "bulge", "disk"}
    np.testing.assert_allclose(lines["model"].get_ydata(), zp - 2.5 * np.log10(mprof["mean"] / scale ** 2))
    cprof = elliptical_profile(b.components["disk"], X0, Y0, Q, PA, mask=used)
    np.testing.assert_allclose(lines["disk"].get_ydata(), zp - 2.5 * np.log10(cprof["mean"] / scale ** 2))
    res = axr.containers[0].lines[0]
    np.testing.assert_allclose(res.get_ydata(), mu - (zp - 2.5 * np.log10(mprof["mean"][ok] / scale ** 2)))
    assert ax.yaxis_inverted()
    assert "arcsec" in ax.get_ylabel() and "arcsec" in axr.get_xlabel()
    # without a zero point: log10 flux per pixel against pixels
    fig = plot_profile(b, mode="major")
    ax = fig.axes[0]
    _png(fig, tmp_path / "profile_log.png")
    prof = elliptical_profile(b.data, X0, Y0, Q, PA, mask=used, mode="major")
    ok = prof["mean"] > 0
    np.testing.assert_allclose(ax.containers[0].lines[0].get_ydata(), np.log10(prof["mean"][ok]))
    assert "log" in ax.get_ylabel() and "pixel" in fig.axes[1].get_xlabel()


def test_profile_geometry_defaults_to_the_brightest_component():
    b = _analytic_block()
    params = dict(b.params, **{"bulge.q": 0.9, "bulge.pa": -10.0})
    b2 = ImgBlock(**{**b.__dict__, "params": params})
    assert b2.geometry() == (X0, Y0, Q, PA)          # the disk holds more light
    assert b2.geometry("bulge") == (X0, Y0, 0.9, -10.0)
    with pytest.raises(GalmossError, match="component"):
        b2.geometry("halo")


# -- panels ------------------------------------------------------------------------------------
def test_panels_show_data_model_components_residual(tmp_path):
    b = _analytic_block()
    fig = plot_panels(b)
    _png(fig, tmp_path / "panels.png")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["data", "model", "bulge", "disk", r"data $-$ model"]
    assert len(fig.axes) == 5 + 2  # five images and two colour bars
    arrays = [ax.images[0].get_array() for ax in panels]
    np.testing.assert_array_equal(arrays[0], b.data)
    np.testing.assert_array_equal(arrays[1], b.model)
    np.testing.assert_array_equal(arrays[2], b.components["bulge"])
    np.testing.assert_array_equal(arrays[3], b.components["disk"])
    np.testing.assert_array_equal(arrays[4], np.where(b.mask, b.data - b.model, 0.0))
    norms = [ax.images[0].norm for ax in panels]
    assert all(n is norms[0] for n in norms[:4]) and norms[4] is not norms[0]  # one shared scale
    assert type(norms[0]).__name__ == "AsinhNorm"
    assert norms[4].vmin == -norms[4].vmax  # symmetric residual scale
    # masked pixels drawn over (opaque) on the data and residual panels only
    for ax in (panels[0], panels[4]):
        over = ax.images[1].get_array()
        assert np.all(over[~b.mask][:, 3] > 0) and np.all(over[b.mask][:, 3] == 0)
    assert len(panels[1].images) == 1
    # residual in units of sigma
    fig = plot_panels(b, residual="sigma")
    np.testing.assert_allclose(fig.axes[4].images[0].get_array(), np.where(b.mask, (b.data - b.model) / b.sigma, 0.0))
    _png(fig, tmp_path / "panels_sigma.png")


def test_one_component_has_no_component_panels():
    b = _analytic_block()
    one = ImgBlock(**{**b.__dict__, "components": {"disk": b.components["disk"]}})
    fig = plot_panels(one)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["data", "model", r"data $-$ model"]


# -- comparisons -------------------------------------------------------------------------------
def _tables():
    rng = np.random.default_rng(7)
    n = 25
    ref = Table({"id": np.arange(n), "sersic_n": rng.uniform(0.8, 5, n), "sersic_mag": rng.uniform(16, 20, n),
                 "sersic_pa": rng.uniform(-90, 90, n), "sersic_c0": np.zeros(n)})
    fit = Table({"id": np.arange(n), "sersic_n": ref["sersic_n"] * 1.0 + 0.1 + 0.05 * rng.normal(size=n),
                 "sersic_n_err": np.full(n, 0.05), "sersic_mag": ref["sersic_mag"] - 0.02 + 0.01 * rng.normal(size=n),
                 "sersic_pa": ref["sersic_pa"] + 3.0 * rng.normal(size=n), "sersic_c0": np.zeros(n),
                 "chi2_nu": np.ones(n)})
    fit["sersic_pa"][0] = ref["sersic_pa"][0] + 178.0  # same axis, other side of the wrap
    return fit, ref


def test_robust_offset_is_median_and_scaled_mad():
    fit, ref = _tables()
    d = np.asarray(fit["sersic_n"] - ref["sersic_n"])
    off, scat, n = robust_offset(fit["sersic_n"], ref["sersic_n"])
    assert n == len(d)
    np.testing.assert_allclose(off, np.median(d))
    np.testing.assert_allclose(scat, 1.4826 * np.median(np.abs(d - np.median(d))), rtol=1e-4)
    off, _, _ = robust_offset([89.0, 10.0, 10.0], [-89.0, 12.0, 13.0], periodic=180.0)
    assert off == -2.0


def test_compare_figure_one_panel_per_parameter(tmp_path):
    fit, ref = _tables()
    shuffled = ref[np.random.default_rng(0).permutation(len(ref))]
    fig = plot_compare(fit, shuffled, match="id", labels=("galmoss_jax", "truth"))
    _png(fig, tmp_path / "compare.png")
    # the constant c0 (fixed in both) is left out; one panel per remaining parameter
    assert len(fig.axes) == 3
    for ax, col in zip(fig.axes, ["sersic_n", "sersic_mag", "sersic_pa"]):
        assert col in ax.get_xlabel() and "truth" in ax.get_xlabel() and "galmoss_jax" in ax.get_ylabel()
        pts = ax.containers[0].lines[0]
        x, y = pts.get_xdata(), pts.get_ydata()
        np.testing.assert_allclose(x, ref[col])  # the join on id restored the row order
        per = 180.0 if col.endswith("_pa") else None
        off, scat, n = robust_offset(fit[col], ref[col], periodic=per)
        assert f"median Δ = {off:.3g}" in ax.get_title() and f"1.4826 MAD = {scat:.3g}" in ax.get_title()
        assert f"N = {n}" in ax.get_title()
        if per is None:
            np.testing.assert_allclose(y, fit[col])
        else:
            assert np.all(np.abs(y - x) <= 90.0)
            np.testing.assert_allclose(y[0], ref[col][0] - 2.0)
    assert len(fig.axes[0].containers[0].lines[2]) > 0  # error bars of sersic_n_err
    # chosen columns, renamed in the reference; row order pairing
    ref2 = ref.copy()
    ref2.rename_column("sersic_n", "N_GALFIT")
    fig = plot_compare(fit, ref2, {"sersic_n": "N_GALFIT"})
    assert len(fig.axes) == 1
    np.testing.assert_allclose(fig.axes[0].containers[0].lines[0].get_xdata(), ref["sersic_n"])
    with pytest.raises(GalmossError, match="match='id'"):
        plot_compare(fit, ref[:-1])
    with pytest.raises(GalmossError, match="'nope'"):
        plot_compare(fit, ref, ["nope"])


# -- image blocks and the command line -------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A hand-made FitResult of a bulge + disk on a small stamp, its image block on disk."""
    model = Model("bulge:sersic+disk:exponential", tied={"disk.x0": "bulge.x0", "disk.y0": "bulge.y0"})
    vals = {"bulge.x0": 15.4, "bulge.y0": 16.2, "bulge.mag": 19.0, "bulge.r_e": 2.0, "bulge.n": 3.0,
            "bulge.q": 0.8, "bulge.pa": 20.0, "bulge.c0": 0.0, "disk.mag": 18.2, "disk.r_s": 5.0,
            "disk.q": 0.5, "disk.pa": 25.0, "disk.c0": 0.0}
    vals["disk.x0"], vals["disk.y0"] = vals["bulge.x0"], vals["bulge.y0"]
    free = model.free_names
    res = FitResult(values={k: np.array([v]) for k, v in vals.items()},
                    covariance=np.eye(len(free))[None] * 1e-4, chi2=np.array([900.0]),
                    chi2_nu=np.array([0.95]), dof=np.array([1014]), n_iter=np.array([9]),
                    status=np.array([0]), model=model, free_names=free, stat="chi2", batched=False)
    from galmoss_jax import render
    truth = np.asarray(render(model, vals, (32, 32), zeropoint=25.0))
    rng = np.random.default_rng(11)
    sigma = np.full((32, 32), 0.02 * truth.max())
    data = truth + sigma * rng.normal(size=truth.shape)
    mask = np.ones((32, 32), bool)
    mask[25:29, 3:8] = False
    d = tmp_path_factory.mktemp("blocks")
    path, = write_imgblocks(res, data, sigma, mask, str(d), zeropoint=25.0, ids=[7])
    return res, data, sigma, mask, path


def test_read_imgblock_round_trips_write_imgblocks(fitted):
    res, data, sigma, mask, path = fitted
    b = read_imgblock(path)
    mem = ImgBlock.from_result(res, data, sigma, mask, zeropoint=25.0)
    assert b.name == "imgblock_7" and b.model_spec == "bulge:sersic+disk:exponential"
    assert set(b.components) == {"bulge", "disk"} and b.status == 0 and b.chi2_nu == pytest.approx(0.95)
    np.testing.assert_array_equal(b.data, data)
    np.testing.assert_array_equal(b.mask, mask)
    np.testing.assert_allclose(b.model, mem.model, rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.components["disk"], mem.components["disk"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.residual, mem.residual, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b.model, mem.components["bulge"] + mem.components["disk"], rtol=1e-10)
    for k, v in res.values.items():
        assert b.params[k] == pytest.approx(float(v[0]))
        assert mem.params[k] == pytest.approx(float(v[0]))
    assert b.errors["bulge.n"] == pytest.approx(1e-2)
    assert b.geometry() == pytest.approx((15.4, 16.2, 0.5, 25.0))  # the disk is brighter


def test_cli_plot_image_blocks_and_tables(fitted, tmp_path, capsys):
    *_, path = fitted
    out = tmp_path / "figs"
    assert main(["plot", path, "--out", str(out), "--zeropoint", "25", "--pixscale", "0.4"]) == 0
    names = sorted(os.listdir(out))
    assert names == ["imgblock_7_panels.png", "imgblock_7_profile.png"]
    for n in names:
        assert matplotlib.image.imread(out / n).ndim == 3
    assert main(["plot", path, "--out", str(out)]) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err
    assert main(["plot", path, "--out", str(out), "--kind", "profile", "--component", "bulge",
                 "--overwrite"]) == 0
    fit, ref = _tables()
    fit.write(tmp_path / "fit.ecsv")
    ref.write(tmp_path / "truth.ecsv")
    assert main(["plot", str(tmp_path / "fit.ecsv"), "--compare", str(tmp_path / "truth.ecsv"),
                 "--match", "id", "--out", str(out)]) == 0
    assert (out / "fit_vs_truth.png").exists()
    capsys.readouterr()
    for argv, msg in ([[str(tmp_path / "fit.ecsv")], "--compare"],
                      [[path, "--kind", "corner"], "--kind"],
                      [[str(tmp_path / "missing.fits")], "does not exist"],
                      [[path, "--component", "halo"], "halo"]):
        assert main(["plot", *argv, "--out", str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("galmoss-jax: error:") and msg in err and err.count("\n") == 1
