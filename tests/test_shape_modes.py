"""GALFIT's shape modes (azimuthal Fourier modes, spiral coordinate rotation with inclination)
against GALFIT's own model images, against the rotation function written out from Peng et al.
(2010), against analytic total fluxes, and in fits of simulated galaxies (recovery and pulls)."""
import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.io import fits

import galmoss_jax as gj
from galmoss_jax._conventions import fold_axis_ratio
from galmoss_jax.galfit import feedme_from_imgblock, feedme_model
from galmoss_jax.profiles._shape import rotation_angle

from conftest import DATA

SPIRALS = sorted(s for s in glob.glob(os.path.join(DATA, "galfit_spirals", "sdss_*.fits.gz")) if "_data" not in s)


def _render_vs_galfit(path, change=None):
    """Worst and rms |ours - GALFIT's| over the peak, for the parameters of GALFIT's header
    (read by :func:`galmoss_jax.galfit.feedme_from_imgblock`: 0-based stamp coordinates,
    GALFIT's sky level at the centre of the fitted region)."""
    feedme = feedme_from_imgblock(path)
    model, init = feedme_model(feedme)
    p = {k: float(v) for k, v in model.complete(init).items()}
    if change:
        p = change(p)
    galfit = fits.getdata(path).astype(float)
    img = np.asarray(gj.render(model, p, galfit.shape, zeropoint=feedme.zeropoint))
    peak = (galfit - p["sky.sky"]).max()
    d = np.abs(img - galfit)
    return d.max() / peak, np.sqrt(np.mean(d ** 2)) / peak


@pytest.mark.parametrize("path", SPIRALS, ids=[os.path.basename(s).split(".")[0] for s in SPIRALS])
def test_galfit_spiral_models(path):
    """GALFIT's model images of SDSS spirals (bulge + disk + a Sérsic with power-law rotation,
    inclination and Fourier modes 1 and 3, fitted by SpArcFiRe; GALFIT convolved them with no
    PSF) are reproduced from the parameters in their headers.  GALFIT samples the centre of each
    profile more coarsely than the exact pixel integration here: the worst pixel differs by
    <= 5e-3 of the peak, the rms by <= 3e-4."""
    worst, rms = _render_vs_galfit(path)
    assert worst < 5e-3 and rms < 3e-4, (worst, rms)


def test_galfit_spiral_models_fail_when_conventions_change():
    """The comparison above can fail: each convention changed alone (the phase sign, the
    rotation's direction, the inclination ignored, the sky angle ignored) misses GALFIT's image
    by > 2 % of the peak."""
    path = next(s for s in SPIRALS if "1237668589728366770" in s)
    for change in (lambda p: {**p, "sersic3.f1_pa": -p["sersic3.f1_pa"], "sersic3.f3_pa": -p["sersic3.f3_pa"]},
                   lambda p: {**p, "sersic3.rot_theta": -p["sersic3.rot_theta"]},
                   lambda p: {**p, "sersic3.incl": 0.0},
                   lambda p: {**p, "sersic3.sky_pa": 0.0}):
        assert _render_vs_galfit(path, change)[0] > 0.02


def test_rotation_function_as_published():
    """GALFIT's hyperbolic-tangent rotation with its power-law tail (Peng et al. 2010, sec. 3.3;
    GALFIT manual), written out here: theta(r) = theta_out tanh_(r_in, r_out)(r) ((r/r_out +
    1)/2)^alpha, tanh_(r_in, r_out)(r) = (tanh(B (r/r_out - 1) + 2) + 1)/2, B = (2 - atanh A)
    r_out/(r_out - r_in), A = 2 CDEF/(|theta_out| + CDEF) - 1.00001, CDEF = 0.23 rad; and its
    stated properties: 98.2 % of theta_out at r_out (alpha = 0) and about CDEF at r_in for a
    large rotation."""
    r = np.linspace(0.0, 60.0, 121)
    for r_in, r_out, th_deg, alpha in ((0.0, 8.0, 140.0, 0.87), (5.0, 20.0, -275.0, 0.0), (-7.0, 6.0, 400.0, 0.3)):
        th = math.radians(th_deg)
        a = 2 * 0.23 / (abs(th) + 0.23) - 1.00001
        b = (2 - math.atanh(a)) * r_out / (r_out - r_in)
        want = th_deg * 0.5 * (np.tanh(b * (r / r_out - 1) + 2) + 1) * (0.5 * (r / r_out + 1)) ** alpha
        got = np.asarray(rotation_angle(jnp.asarray(r), r_in, r_out, th_deg, alpha))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert float(rotation_angle(10.0, 0.0, 10.0, 90.0, 0.0)) == pytest.approx(90.0 * 0.5 * (math.tanh(2) + 1), rel=1e-12)
    big = math.radians(3000.0)   # at r_in the tanh factor is (A + 1)/2: about CDEF for a large rotation
    want = big * (0.23 / (big + 0.23) - 0.000005)
    assert math.radians(float(rotation_angle(4.0, 4.0, 12.0, 3000.0, 0.0))) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(0.23, rel=1e-2)


@pytest.mark.parametrize("profile, extra", [
    ("sersic[f1,f3,rot]", {"f1": 0.3, "f1_pa": 40.0, "f3": -0.12, "f3_pa": 10.0, "rot_r_in": 2.0, "rot_r_out": 9.0,
                           "rot_theta": 200.0, "rot_alpha": 0.5, "incl": 55.0, "sky_pa": 30.0}),
    ("exponential[f2,f4]", {"f2": 0.2, "f2_pa": 15.0, "f4": -0.08, "f4_pa": 5.0, "c0": 0.6}),
])
def test_total_flux_is_the_unperturbed_profiles(profile, extra):
    """The modes keep the component's total magnitude (GALFIT's convention): the light summed
    over a stamp wide enough to hold it is 10^(-0.4 (mag - zp)) to 1e-3, with the modes' area,
    the boxiness and the inclination of the spiral's disk taken into account."""
    spec = gj.get_profile(profile)
    size = 161
    p = {"x0": 80.3, "y0": 79.6, "mag": 15.0, "q": 0.6, "pa": 25.0, **extra}
    p.update({"r_e": 6.0, "n": 1.5} if "r_e" in spec.param_names else {"r_s": 4.0})
    model = gj.Model(profile, free=[n for n in ("incl", "sky_pa", "c0") if n in extra])
    img = np.asarray(gj.render(model, p, (size, size), zeropoint=25.0))
    assert img.sum() == pytest.approx(10 ** (-0.4 * (15.0 - 25.0)), rel=1e-3)
    # without the normalisation the sum would be off by the area factor (the check can fail)
    plain = np.asarray(gj.render(spec.root.name, {k: v for k, v in p.items() if k in spec.root.param_names},
                                 (size, size), zeropoint=25.0))
    assert abs(plain.sum() - img.sum()) < 2e-3 * img.sum()
    assert np.abs(plain - img).max() > 0.02 * plain.max()


def test_fold_keeps_the_image():
    """A fit at q > 1 is reported as 1/q, pa + 90, radii times q and every Fourier phase - 90
    (the azimuth of the circularised ellipse turns by 90 degrees), and pa wrapped to (-90, 90]
    with the odd modes' phases turned with it; the rotation's radii, which are measured on the
    face-on disk, stay.  Both describe the same image, with pa wrapped or not."""
    model = gj.Model("sersic[f1,f2,f3,rot]", free=["incl", "sky_pa"])
    p = {"x0": 30.2, "y0": 29.7, "mag": 15.0, "r_e": 5.0, "n": 1.2, "q": 1.6, "pa": 20.0, "c0": 0.0,
         "f1": 0.2, "f1_pa": 30.0, "f2": 0.1, "f2_pa": -50.0, "f3": 0.07, "f3_pa": 100.0, "rot_r_in": 1.0,
         "rot_r_out": 8.0, "rot_theta": 120.0, "rot_alpha": 0.4, "incl": 30.0, "sky_pa": 60.0}
    full = {f"sersic.{k}": jnp.asarray(v) for k, v in p.items()}
    free = model.free_names
    folded, _ = fold_axis_ratio(model, free, full, jnp.eye(len(free)))
    assert float(folded["sersic.q"]) == pytest.approx(1 / 1.6)
    assert float(folded["sersic.rot_r_out"]) == 8.0
    a = np.asarray(gj.render(model, p, (61, 61), zeropoint=25.0))
    b = np.asarray(gj.render(model, {k.split(".", 1)[1]: float(v) for k, v in folded.items()}, (61, 61), zeropoint=25.0))
    np.testing.assert_allclose(b, a, atol=1e-9 * a.max())
    # q < 1 at pa = 120, sky_pa = 150: reported at -60 and -30, every odd mode's phase turned by
    # 180 degrees twice
    p2 = dict(p, q=0.7, pa=120.0, sky_pa=150.0)
    folded2, _ = fold_axis_ratio(model, free, {f"sersic.{k}": jnp.asarray(v) for k, v in p2.items()}, jnp.eye(len(free)))
    assert float(folded2["sersic.pa"]) == pytest.approx(-60.0)
    assert float(folded2["sersic.sky_pa"]) == pytest.approx(-30.0)
    assert float(folded2["sersic.f2_pa"]) == pytest.approx(-50.0)
    # a negative amplitude is reported positive, the phase turned by 180/m
    p3 = dict(p, q=0.7, pa=20.0, sky_pa=10.0, f3=-0.07)
    folded3, cov3 = fold_axis_ratio(model, free, {f"sersic.{k}": jnp.asarray(v) for k, v in p3.items()},
                                    jnp.eye(len(free)))
    assert float(folded3["sersic.f3"]) == pytest.approx(0.07) and float(folded3["sersic.f3_pa"]) == pytest.approx(40.0)
    assert float(cov3[free.index("sersic.f3"), free.index("sersic.f3")]) == pytest.approx(1.0)
    e = np.asarray(gj.render(model, p3, (61, 61), zeropoint=25.0))
    f = np.asarray(gj.render(model, {k.split(".", 1)[1]: float(v) for k, v in folded3.items()}, (61, 61), zeropoint=25.0))
    np.testing.assert_allclose(f, e, atol=1e-9 * e.max())
    c = np.asarray(gj.render(model, p2, (61, 61), zeropoint=25.0))
    d = np.asarray(gj.render(model, {k.split(".", 1)[1]: float(v) for k, v in folded2.items()}, (61, 61), zeropoint=25.0))
    np.testing.assert_allclose(d, c, atol=1e-9 * c.max())


def test_gradients_finite_at_the_centre():
    """The azimuth and the face-on radius are undefined at the centre; the derivatives of the
    image there (centre on a pixel centre, where the quadrature has a node) stay finite."""
    model = gj.Model("sersic[f1,f4,rot]", free=["incl", "sky_pa"])
    p = {"x0": 16.0, "y0": 16.0, "mag": 15.0, "r_e": 3.0, "n": 1.0, "q": 0.7, "pa": 10.0, "f1": 0.1, "f1_pa": 20.0,
         "f4": 0.05, "f4_pa": 0.0, "rot_r_in": 0.0, "rot_r_out": 5.0, "rot_theta": 90.0, "rot_alpha": 0.0,
         "incl": 20.0, "sky_pa": 10.0}
    g = jax.grad(lambda d: gj.render(model, d, (33, 33), zeropoint=25.0).sum())({k: jnp.asarray(v) for k, v in p.items()})
    assert all(np.isfinite(float(v)) for v in g.values())
    assert float(g["mag"]) != 0.0


def test_profiles_without_an_ellipse_are_refused():
    for name in ("sky[f1]", "edge_on_disk[f1]", "point[rot]"):
        with pytest.raises(gj.ProfileError, match="not elliptical"):
            gj.get_profile(name)
    with pytest.raises(gj.ProfileError, match="bending"):
        gj.get_profile("sersic[b1]")
    with pytest.raises(gj.ProfileError, match="f11|unknown shape mode"):
        gj.get_profile("sersic[f11]")


# ---- fits of simulated galaxies --------------------------------------------------------------
def _moffat_psf(size=15, fwhm=3.0, beta=3.0):
    y, x = np.mgrid[:size, :size] - size // 2
    rd = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1))
    p = (1 + (x ** 2 + y ** 2) / rd ** 2) ** -beta
    return p / p.sum()


def _simulate(rng, G, with_modes, size=48):
    """Sérsic galaxies with Fourier modes 1 and 3 (amplitudes 0.06-0.2 at random phases, or all
    0), the truth drawn at random, rendered with a Moffat PSF, Gaussian noise of known sigma."""
    t = {"x0": rng.uniform(23, 24, G), "y0": rng.uniform(23, 24, G), "mag": rng.uniform(15.5, 16.5, G),
         "r_e": rng.uniform(4, 7, G), "n": rng.uniform(0.8, 2.5, G), "q": rng.uniform(0.5, 0.9, G),
         "pa": rng.uniform(-90, 90, G), "c0": np.zeros(G)}
    for m in (1, 3):
        t[f"f{m}"] = rng.uniform(0.06, 0.2, G) * with_modes
        t[f"f{m}_pa"] = rng.uniform(-180 / m, 180 / m, G)
    psf = _moffat_psf()
    clean = np.asarray(gj.render("sersic[f1,f3]", t, (size, size), psf=psf, zeropoint=25.0))
    sigma = np.full_like(clean, 0.02 * clean.max(axis=(1, 2))[:, None, None].mean())
    return t, clean + rng.normal(0, 1, clean.shape) * sigma, sigma, psf


@pytest.fixture(scope="module")
def mode_fits():
    rng = np.random.default_rng(18)
    out = {}
    for key, with_modes, G in (("modes", 1.0, 32), ("ellipse", 0.0, 16)):
        t, data, sigma, psf = _simulate(rng, G, with_modes)
        init = {k: v for k, v in t.items() if not k.startswith("f")}   # shape from the truth, modes at 0
        res = gj.fit("sersic[f1,f3]", data, sigma=sigma, psf=psf, zeropoint=25.0, init=init, starts=1)
        out[key] = (t, res)
    return out


def _mode_pulls(t, res, m):
    """Pulls of mode m's amplitude and phase, the fit's (a, phi) taken as (-a, phi + 180/m) where
    a < 0 (the same image)."""
    a, ph = np.array(res.values[f"sersic.f{m}"]), np.array(res.values[f"sersic.f{m}_pa"])
    ea, ep = np.array(res.errors[f"sersic.f{m}"]), np.array(res.errors[f"sersic.f{m}_pa"])
    ph = np.where(a < 0, ph + 180.0 / m, ph)
    a = np.abs(a)
    per = 360.0 / m
    dph = (ph - t[f"f{m}_pa"] + per / 2) % per - per / 2
    return (a - t[f"f{m}"]) / ea, dph / ep


def test_modes_recovered_with_calibrated_errors(mode_fits):
    """32 simulated galaxies with modes 1 and 3 (S/N of the peak 50, PSF FWHM 3 px), fitted from
    the documented start (amplitudes 0): every fit converges, amplitudes and phases come back
    with pulls of width 0.75-1.3 (the width of 64 normal pulls is known to ~9 %) and mean
    within 3 standard errors of 0."""
    t, res = mode_fits["modes"]
    assert np.all(np.asarray(res.status) == 0)
    pa_, pp_ = zip(*(_mode_pulls(t, res, m) for m in (1, 3)))
    pa_, pp_ = np.concatenate(pa_), np.concatenate(pp_)
    assert np.all(np.isfinite(pa_)) and np.all(np.isfinite(pp_))
    for pulls in (pa_, pp_):
        assert 0.75 < np.std(pulls) < 1.3, np.std(pulls)
        assert abs(np.mean(pulls)) < 3 / np.sqrt(len(pulls))    # unbiased to 3 standard errors
    # and the amplitudes are measured: the errors are a small part of them
    assert np.median(np.asarray(res.errors["sersic.f1"])) < 0.3 * np.median(t["f1"])


def test_pure_ellipse_gives_amplitudes_consistent_with_zero(mode_fits):
    """16 galaxies without modes fitted with free modes 1 and 3: each mode is a pair of linear
    terms (a cos, a sin), so (a / sigma_a)^2 follows chi^2 with 2 degrees of freedom: mean 2
    (here 1.2-3.0 for 32 values), none above 16 (p = 3e-4)."""
    t, res = mode_fits["ellipse"]
    assert np.all(np.asarray(res.status) == 0)
    z2 = np.concatenate([(np.asarray(res.values[f"sersic.f{m}"]) / np.asarray(res.errors[f"sersic.f{m}"])) ** 2
                         for m in (1, 3)])
    assert np.all(np.isfinite(z2)) and z2.max() < 16, z2
    assert 1.2 < z2.mean() < 3.0, z2.mean()


def test_several_bands_share_the_modes():
    """Two bands of one galaxy with mode 1 (shared by the bands, one magnitude per band): the
    joint fit finds the mode (reported with a positive amplitude); a band mode on the pa or a
    mode of a component with Fourier modes is refused (the modes are measured from its pa)."""
    rng = np.random.default_rng(3)
    t = {"x0": 16.3, "y0": 15.8, "r_e": 4.0, "n": 1.5, "q": 0.6, "pa": 30.0, "f1": 0.15, "f1_pa": 40.0}
    data, sig = {}, {}
    for b, mag in (("g", 16.5), ("r", 16.0)):
        img = np.asarray(gj.render("sersic[f1]", dict(t, mag=mag), (32, 32), zeropoint=25.0))
        sig[b] = np.full_like(img, 0.02 * img.max())
        data[b] = img + rng.normal(0, 1, img.shape) * sig[b]
    model = gj.Model("sersic[f1]", bands={"sersic.mag": "free"})
    res = gj.fit(model, data, sigma=sig, zeropoint=25.0, init={"sersic.f1": 0.05, **{k: v for k, v in t.items()
                                                                                   if k != "f1"}}, starts=1)
    assert int(res.status[0]) == 0
    for name, want in (("f1", 0.15), ("f1_pa", 40.0)):
        v, e = float(res.values[f"sersic.{name}"][0]), float(res.errors[f"sersic.{name}"][0])
        assert abs(v - want) < 4 * e, (name, v, e)
    for bad in ({"sersic.pa": "free"}, {"sersic.f1": 1}, {"sersic.f1_pa": "free"}):
        with pytest.raises(gj.ParameterError, match="shared by every band"):
            gj.Model("sersic[f1]", bands=bad)


def test_pixel_integration_keeps_its_accuracy():
    """The exact pixel integration of a compact shaped profile (r_e = 2.5 px, n = 2, Fourier
    modes, a tight spiral seen at 50 degrees) against the brightness averaged on 41 x 41 points
    in every pixel (81 x 81 in the central 5 x 5): within 1e-3 of the peak."""
    spec = gj.get_profile("sersic[f1,f3,rot]")
    p = {"x0": 16.3, "y0": 15.6, "mag": 15.0, "r_e": 2.5, "n": 2.0, "q": 0.7, "pa": 25.0, "c0": 0.0, "f1": 0.2,
         "f1_pa": 30.0, "f3": 0.1, "f3_pa": -20.0, "rot_r_in": 0.5, "rot_r_out": 3.0, "rot_theta": 150.0,
         "rot_alpha": 0.5, "incl": 50.0, "sky_pa": 40.0}
    model = gj.Model("sersic[f1,f3,rot]", free=["incl", "sky_pa"])
    ours = np.asarray(gj.render(model, p, (33, 33), zeropoint=25.0))
    pj = {k: jnp.asarray(v) for k, v in p.items()}

    def averaged(x0, x1, y0, y1, k):
        u = (np.arange(k) + 0.5) / k - 0.5
        ys, xs = np.meshgrid(np.arange(y0, y1), np.arange(x0, x1), indexing="ij")
        X = (xs[..., None, None] + u[None, None, None, :]) - p["x0"]
        Y = (ys[..., None, None] + u[None, None, :, None]) - p["y0"]
        return np.asarray(spec.brightness(pj, jnp.asarray(X), jnp.asarray(Y), 25.0)).mean(axis=(-1, -2))

    ref = averaged(0, 33, 0, 33, 41)
    ref[13:19, 14:19] = averaged(14, 19, 13, 19, 81)
    assert np.abs(ours - ref).max() < 1e-3 * ref.max(), np.abs(ours - ref).max() / ref.max()
