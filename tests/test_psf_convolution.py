"""PSF convolution: real HST data against Imfit, and synthetic checks against SciPy / GalSim.

galmoss_jax convolves by FFT on the stamp grown by the PSF half-width on every side
(DESIGN.md A, "PSF"): the PSF is placed with its middle pixel at index (0, 0) of the padded
grid (``galmoss_jax.psf.psf_transform``), multiplied in Fourier space, transformed back and
cropped.  :func:`convolve_padded` below applies exactly these steps to an arbitrary image
(zero padding outside it, as Imfit's ``psfconvolve`` does); the other tests go through
``galmoss_jax.render``.  Tests run in float64 (conftest.py).
"""
from __future__ import annotations

import os
import warnings

import galsim
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.io import fits
from scipy.signal import fftconvolve

import galmoss_jax as gm
from galmoss_jax.psf import check_psf, psf_padding, psf_transform

DATA = os.path.join(os.path.dirname(__file__), "data", "ngc5419")
ZP = 25.0


def convolve_padded(image, psf):
    """Linear convolution of ``image`` (zero outside) with ``psf`` through galmoss_jax.psf:
    zero-pad by the PSF half-width, FFT with the PSF transform, crop back."""
    image = np.asarray(image, float)
    py, px = psf_padding(psf.shape)
    H, W = image.shape
    padded = np.pad(image, ((py, py), (px, px)))
    kt = psf_transform(jnp.asarray(psf), padded.shape)
    conv = jnp.fft.irfft2(jnp.fft.rfft2(padded) * kt, s=padded.shape)
    return np.asarray(conv[py: py + H, px: px + W])


def direct_convolution(image, psf):
    """out[y, x] = sum_{dy, dx} image[y - dy, x - dx] psf[cy + dy, cx + dx] (zero outside)."""
    h, w = psf.shape
    cy, cx = h // 2, w // 2
    H, W = image.shape
    padded = np.pad(image, ((cy, cy), (cx, cx)))
    out = np.zeros_like(image, dtype=float)
    for dy in range(-cy, cy + 1):
        for dx in range(-cx, cx + 1):
            out += psf[cy + dy, cx + dx] * padded[cy - dy: cy - dy + H, cx - dx: cx - dx + W]
    return out


def asymmetric_psf(h, w, seed=0):
    """A positive, visibly asymmetric PSF with odd sides, sum 1: a random speckle field under
    an off-centre, sheared Gaussian."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    cy, cx = h // 2, w // 2
    core = np.exp(-0.5 * (((x - cx - 0.8) / 1.6) ** 2 + ((y - cy + 0.5) / 1.1) ** 2
                          + 0.6 * (x - cx) * (y - cy) / 2.0))
    a = core + 0.02 * rng.uniform(size=(h, w))
    return a / a.sum()


def render(model, params, shape, **kw):
    return np.asarray(gm.render(model, params, shape, zeropoint=ZP, **kw))


# the plain convention (pixel-integrated model (x) sampled PSF), checked exactly below
PLAIN = gm.Sampling(psf_window=0)


def render_padded_no_psf(model, params, shape, pad):
    """The model without PSF on the stamp grown by ``pad = (py, px)`` (what render convolves)."""
    py, px = pad
    p = dict(params)
    p["x0"] = np.asarray(p["x0"], float) + px
    p["y0"] = np.asarray(p["y0"], float) + py
    return render(model, p, (shape[0] + 2 * py, shape[1] + 2 * px))


# ---------------------------------------------------------------------------------------------
# (a) NGC 5419, HST WFPC2/PC F555W: Imfit psfconvolve reference
# ---------------------------------------------------------------------------------------------
def test_ngc5419_matches_imfit_psfconvolve():
    image = fits.getdata(os.path.join(DATA, "n5419f555w_pc_derot_cutout.fits")).astype(float)
    psf_raw = fits.getdata(os.path.join(DATA, "n5419_sin100_psf_pc2scale.fits")).astype(float)
    ref = fits.getdata(os.path.join(DATA, "convolve_out_n5419.fits")).astype(float)
    assert image.shape == ref.shape == (201, 201) and psf_raw.shape == (75, 75)
    # the PSF sums to 32.5: check_psf normalises it and says so
    with pytest.warns(UserWarning, match="does not sum to 1"):
        psf = check_psf(psf_raw)
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    out = convolve_padded(image, psf)
    err = np.abs(out - ref).max() / ref.max()
    assert err <= 1e-5, f"max|galmoss - imfit| / peak = {err:.3g}"
    # the same as SciPy's linear convolution (README: PSF centre = its middle element)
    np.testing.assert_allclose(out, fftconvolve(image, psf, mode="same"), rtol=0,
                               atol=1e-10 * ref.max())


# ---------------------------------------------------------------------------------------------
# (b) synthetic
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pos", [(15, 12), (0, 0), (30, 3), (2, 28)])
def test_delta_image_returns_the_psf_in_place(pos):
    """A unit delta at (x, y) comes back as the PSF with its middle pixel at (x, y), cropped by
    the stamp; a non-square PSF catches a swap of the axes."""
    H, W = 31, 33
    psf = asymmetric_psf(9, 13)
    x, y = pos
    img = np.zeros((H, W))
    img[y, x] = 1.0
    out = convolve_padded(img, psf)
    expect = np.zeros((H + 8, W + 12))                      # PSF pasted on a padded canvas
    expect[y: y + 9, x: x + 13] = psf
    expect = expect[4: 4 + H, 6: 6 + W]
    np.testing.assert_allclose(out, expect, rtol=0, atol=1e-15)
    np.testing.assert_allclose(out, fftconvolve(img, psf, mode="same"), rtol=0, atol=1e-15)


def test_render_asymmetric_psf_is_not_flipped():
    """render(psf=P) equals the linear convolution of the model (rendered on the padded stamp)
    with P -- by SciPy and by a direct sum -- for an asymmetric, non-square PSF, and the light
    moves the way the PSF's centroid says."""
    H, W = 41, 45
    psf = np.zeros((7, 11))
    psf[3, 5] = 0.4
    psf[3 + 2, 5 + 4] = 0.6            # light sent 4 px right (+x) and 2 px up (+y)
    params = dict(x0=20.3, y0=19.6, mag=20.0, r_e=2.0, n=1.5, q=0.7, pa=20.0)
    out = render("sersic", params, (H, W), psf=psf, sampling=PLAIN)
    base = render_padded_no_psf("sersic", params, (H, W), (3, 5))
    ref_fft = fftconvolve(base, psf, mode="same")[3:-3, 5:-5]
    ref_sum = direct_convolution(base, psf)[3:-3, 5:-5]
    peak = out.max()
    np.testing.assert_allclose(ref_fft, ref_sum, rtol=0, atol=1e-12 * peak)
    np.testing.assert_allclose(out, ref_sum, rtol=0, atol=1e-12 * peak)
    # centroid: shifted by the PSF's first moment (0.6 * (4, 2)); the whole galaxy is inside
    nopsf = render("sersic", params, (H, W))
    yy, xx = np.mgrid[:H, :W]
    c0 = np.array([(nopsf * xx).sum(), (nopsf * yy).sum()]) / nopsf.sum()
    c1 = np.array([(out * xx).sum(), (out * yy).sum()]) / out.sum()
    np.testing.assert_allclose(c1 - c0, [2.4, 1.2], atol=2e-3)


@pytest.mark.parametrize("where", ["left", "bottom", "outside"])
def test_no_wraparound(where):
    """Light near one edge of the stamp does not appear at the opposite edge, and light from
    just outside the stamp is scattered in exactly as a linear convolution says."""
    H, W = 41, 45
    y, x = np.mgrid[:21, :21]
    psf = 0.01 + np.exp(-0.5 * ((x - 10) ** 2 + (y - 10) ** 2) / 1.5 ** 2)   # wings to the box edge
    psf /= psf.sum()
    x0, y0 = {"left": (1.2, 20.3), "bottom": (22.4, 0.6), "outside": (-3.5, 20.0)}[where]
    params = dict(x0=x0, y0=y0, mag=15.0, fwhm=1.0, q=1.0, pa=0.0)
    out = render("gaussian", params, (H, W), psf=psf, sampling=PLAIN)
    base = render_padded_no_psf("gaussian", params, (H, W), (10, 10))
    ref = direct_convolution(base, psf)[10:-10, 10:-10]
    peak = ref.max()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12 * peak)
    # the Gaussian holds no light beyond ~5 px of its centre, the PSF reaches 10 px
    if where != "bottom":
        far = out[:, int(x0) + 17:]
    else:
        far = out[int(y0) + 17:, :]
    assert far.size > 0 and np.abs(far).max() < 1e-12 * peak


def test_psf_cube_one_psf_per_galaxy():
    """A (G, h, w) PSF cube convolves galaxy g with PSF g: equal to rendering each galaxy with
    its own PSF."""
    G, shape = 4, (29, 33)
    cube = np.stack([
        galsim.Moffat(beta=2.5 + g, fwhm=2.0 + 0.7 * g).shear(e1=0.1 * g - 0.15, e2=0.05)
        .drawImage(nx=15, ny=15, scale=1.0, method="no_pixel", dtype=np.float64).array
        for g in range(G)])
    cube /= cube.sum(axis=(1, 2), keepdims=True)
    params = dict(x0=np.array([14.2, 16.0, 10.5, 20.7]), y0=np.array([13.9, 15.1, 9.6, 16.0]),
                  mag=np.array([19.0, 20.0, 21.0, 18.5]), r_e=np.array([1.5, 3.0, 2.2, 0.9]),
                  n=np.array([1.0, 4.0, 2.5, 0.6]), q=np.array([0.9, 0.5, 0.7, 0.3]),
                  pa=np.array([10.0, -40.0, 75.0, 0.0]))
    out = render("sersic", params, shape, psf=cube)
    assert out.shape == (G,) + shape
    for g in range(G):
        one = render("sersic", {k: v[g] for k, v in params.items()}, shape, psf=cube[g])
        np.testing.assert_allclose(out[g], one, rtol=0, atol=1e-12 * one.max())
    # and the galaxies really were convolved with different PSFs
    same = render("sersic", params, shape, psf=cube[0])
    assert np.abs(same[3] - out[3]).max() > 1e-2 * out[3].max()


@pytest.mark.parametrize("pos", [(17.0, 23.0), (1.0, 30.0), (39.0, 0.0)])
def test_point_source_at_integer_position_is_the_psf(pos):
    """``star:point`` at an integer (x0, y0) renders flux * PSF with its middle pixel there."""
    H, W = 33, 41
    psf = asymmetric_psf(11, 15, seed=3)
    x0, y0 = pos
    mag = 18.0
    out = render("star:point", dict(x0=x0, y0=y0, mag=mag), (H, W), psf=psf)
    flux = 10 ** (-0.4 * (mag - ZP))
    expect = np.zeros((H + 10, W + 14))
    xi, yi = int(x0), int(y0)
    expect[yi: yi + 11, xi: xi + 15] = flux * psf
    expect = expect[5: 5 + H, 7: 7 + W]
    np.testing.assert_allclose(out, expect, rtol=0, atol=1e-12 * flux)


def test_point_source_adds_to_galaxy():
    H, W = 33, 41
    psf = asymmetric_psf(11, 15, seed=3)
    gal = dict(x0=20.3, y0=16.1, mag=19.0, r_e=3.0, n=2.0, q=0.6, pa=30.0)
    star = dict(x0=12.0, y0=20.0, mag=18.0)
    both = render("gal:sersic+star:point",
                  {**{f"gal.{k}": v for k, v in gal.items()}, **{f"star.{k}": v for k, v in star.items()}},
                  (H, W), psf=psf)
    np.testing.assert_allclose(both, render("sersic", gal, (H, W), psf=psf)
                               + render("star:point", star, (H, W), psf=psf),
                               rtol=0, atol=1e-12 * both.max())


@pytest.mark.parametrize("shape", [(41, 41), (40, 42)])
@pytest.mark.parametrize("pos", [(20.37, 19.81), (20.5, 19.5), (21.0, 18.25)])
def test_point_source_subpixel(shape, pos):
    """At a sub-pixel position the point source conserves flux, has its centroid at (x0, y0)
    to 1e-3 px, and equals GalSim's PSF sampled at pixel centres around (x0, y0) -- the exact
    sub-pixel shift of a well-sampled (band-limited) PSF.  Even and odd padded FFT sizes."""
    H, W = shape
    sigma = 2.0                                     # FWHM 4.7 px: well sampled
    gpsf = galsim.Gaussian(sigma=sigma).shear(e1=0.1, e2=-0.07)
    psf = gpsf.drawImage(nx=31, ny=31, scale=1.0, method="no_pixel", dtype=np.float64).array
    psf /= psf.sum()
    x0, y0 = pos
    mag = 17.0
    flux = 10 ** (-0.4 * (mag - ZP))
    out = render("star:point", dict(x0=x0, y0=y0, mag=mag), shape, psf=psf)
    assert out.sum() == pytest.approx(flux, rel=1e-9)
    yy, xx = np.mgrid[:H, :W]
    assert abs((out * xx).sum() / out.sum() - x0) < 1e-3
    assert abs((out * yy).sum() / out.sum() - y0) < 1e-3
    ref = flux * gpsf.drawImage(nx=W, ny=H, scale=1.0, method="no_pixel", dtype=np.float64,
                                offset=(x0 - (W - 1) / 2, y0 - (H - 1) / 2)).array
    assert np.abs(out - ref).max() < 1e-6 * ref.max()


def test_oversampled_psf_matches_galsim():
    """render(oversample=3) with a PSF sampled 3x finer than the pixels equals GalSim's
    galaxy (x) PSF (x) pixel to 1e-3 of the peak, for a PSF (FWHM 1.5 px) that is under-sampled
    at the image scale."""
    k, shape = 3, (25, 27)
    gsp = galsim.GSParams(folding_threshold=1e-3, maxk_threshold=1e-4, kvalue_accuracy=1e-6)
    gpsf = galsim.Gaussian(fwhm=1.5, gsparams=gsp).shear(e1=0.12, e2=0.05).shift(0.2, -0.1)
    psf = gpsf.drawImage(nx=31, ny=31, scale=1.0 / k, method="no_pixel", dtype=np.float64).array
    psf /= psf.sum()
    # Sérsic n <= 1 at any r_e and n = 2 at r_e >= 3 px (measured <= 4e-4; at oversample = 1
    # with the PSF sampled at the pixel scale the same galaxies are off by 1-10 %; compact
    # n >= 2 galaxies need a finer PSF: see test_galsim.py)
    cases = [dict(n=0.5, r_e=0.8), dict(n=1.0, r_e=0.8), dict(n=1.0, r_e=2.5), dict(n=2.0, r_e=3.0),
             dict(n=2.0, r_e=8.0)]
    rng = np.random.default_rng(7)
    for i, c in enumerate(cases):
        c.update(x0=13 + rng.uniform(-0.5, 0.5), y0=12 + rng.uniform(-0.5, 0.5), mag=20.0,
                 q=(0.8, 0.5, 0.35, 0.65, 0.9)[i], pa=(15.0, -60.0, 100.0, 35.0, 0.0)[i])
    params = {key: np.array([c[key] for c in cases]) for key in cases[0]}
    out = render("sersic", params, shape, psf=psf, oversample=k)
    for g, c in enumerate(cases):
        gal = galsim.Sersic(n=c["n"], half_light_radius=c["r_e"] * np.sqrt(c["q"]),
                            flux=10 ** (-0.4 * (c["mag"] - ZP)), gsparams=gsp
                            ).shear(q=c["q"], beta=(c["pa"] + 90.0) * galsim.degrees)
        ref = galsim.Convolve([gal, gpsf], gsparams=gsp).drawImage(
            nx=shape[1], ny=shape[0], scale=1.0, method="auto", dtype=np.float64,
            offset=(c["x0"] - (shape[1] - 1) / 2, c["y0"] - (shape[0] - 1) / 2)).array
        err = np.abs(out[g] - ref).max() / ref.max()
        assert err <= 1e-3, f"{c}: max|diff|/peak = {err:.3g}"


def test_fit_with_oversampled_psf_recovers_galsim_truth():
    """fit(oversample=3) with a PSF sampled 3x finer than the pixels (Gaussian FWHM 1.5 px,
    sheared: under-sampled at the image scale) on GalSim images of galaxy (x) PSF (x) pixel
    (16x16, six galaxies n 0.5-2, r_e 1-3 px, S/N 100): the model at the truth is GalSim's to
    far below the noise, every fitted parameter is within 3.5 sigma of the truth and chi2_nu ~ 1.
    With the PSF sampled at the pixel scale instead (oversample=1) the model at the truth is off
    by chi2 of a few at this S/N: the fine sampling is what the fit relies on."""
    import _sims as S

    k, shape, c = 3, (16, 16), 7.5
    gsp = galsim.GSParams(folding_threshold=1e-3, maxk_threshold=1e-4, kvalue_accuracy=1e-6)
    gpsf = galsim.Gaussian(fwhm=1.5, gsparams=gsp).shear(e1=0.12, e2=0.05)
    psf = gpsf.drawImage(nx=27, ny=27, scale=1.0 / k, method="no_pixel", dtype=np.float64).array
    psf /= psf.sum()
    psf_coarse = gpsf.drawImage(nx=9, ny=9, scale=1.0, method="no_pixel", dtype=np.float64).array
    psf_coarse /= psf_coarse.sum()
    cases = [(0.7, 1.0, 0.6, 20.0), (1.0, 1.5, 0.5, -60.0), (1.0, 2.5, 0.7, 75.0), (1.5, 2.0, 0.55, -20.0),
             (2.0, 3.0, 0.65, 40.0), (0.5, 1.2, 0.45, -85.0)]
    rng = np.random.default_rng(8)
    truth = {key: [] for key in S.PARAMS}
    clean = []
    for n, r_e, q, pa in cases:
        x0, y0 = c + rng.uniform(-0.5, 0.5), c + rng.uniform(-0.5, 0.5)
        for key, v in zip(("n", "r_e", "q", "pa", "x0", "y0", "mag"), (n, r_e, q, pa, x0, y0, 16.0)):
            truth[key].append(v)
        gal = galsim.Sersic(n=n, half_light_radius=r_e * np.sqrt(q), flux=10 ** (-0.4 * (16.0 - ZP)), gsparams=gsp
                            ).shear(q=q, beta=(pa + 90.0) * galsim.degrees)
        clean.append(galsim.Convolve([gal, gpsf], gsparams=gsp).drawImage(
            nx=shape[1], ny=shape[0], scale=1.0, method="auto", dtype=np.float64, offset=(x0 - c, y0 - c)).array)
    clean = np.stack(clean)
    truth = {key: np.array(v) for key, v in truth.items()}
    sig = S.noise_sigma(clean, 100.0)
    fine = np.asarray(gm.render("sersic", truth, shape, psf=psf, oversample=k, zeropoint=ZP, sampling=S.SAMPLING))
    coarse = np.asarray(gm.render("sersic", truth, shape, psf=psf_coarse, zeropoint=ZP, sampling=S.SAMPLING))
    d_fine = (((fine - clean) / sig) ** 2).sum(axis=(1, 2))
    d_coarse = (((coarse - clean) / sig) ** 2).sum(axis=(1, 2))
    print("\nsum(((model(truth) - GalSim) / sigma)^2): oversample=3", np.round(d_fine, 4),
          " PSF at the pixel scale", np.round(d_coarse, 2))
    assert np.all(d_fine < 0.1) and np.median(d_coarse) > 2
    data = clean + rng.normal(size=clean.shape) * sig
    init = dict(truth, r_e=truth["r_e"] * 1.15, n=truth["n"] * 0.85, q=np.minimum(truth["q"] * 1.1, 0.95),
                pa=truth["pa"] + 8.0, mag=truth["mag"] + 0.2, x0=truth["x0"] + 0.3)
    res = gm.fit("sersic", data, sigma=sig, psf=psf, oversample=k, zeropoint=ZP, sampling=S.SAMPLING, init=init,
                 starts=1)
    assert np.all(res.status == 0), res.status_msg
    assert np.all(np.abs(res.chi2_nu - 1) < 5 * np.sqrt(2.0 / res.dof)), res.chi2_nu
    for key in S.PARAMS:
        d = res[key] - truth[key]
        pull = (S.wrap_pa(d) if key == "pa" else d) / res.errors[f"sersic.{key}"]
        print(f"  {key:4s} pulls {np.round(pull, 2)}")
        assert np.all(np.abs(pull) < 3.5), (key, pull)


@pytest.mark.parametrize("psf_shape", [(20, 21), (21, 20), (2, 20, 21), (16, 16)])
def test_even_psf_raises(psf_shape):
    psf = np.ones(psf_shape) / np.prod(psf_shape[-2:])
    params = dict(x0=10.0, y0=10.0, mag=20.0, r_e=2.0, n=1.0, q=1.0, pa=0.0)
    if len(psf_shape) == 3:
        params = {k: np.full(psf_shape[0], v) for k, v in params.items()}
    with pytest.raises(gm.PSFError, match="odd"):
        gm.render("sersic", params, (21, 21), psf=psf, zeropoint=ZP)
    with pytest.raises(gm.PSFError):
        check_psf(psf)


def test_unnormalised_psf_is_normalised_with_a_warning():
    psf = asymmetric_psf(9, 9, seed=5)
    params = dict(x0=10.3, y0=9.8, mag=20.0, r_e=2.0, n=1.0, q=0.8, pa=10.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*does not sum to 1")   # normalised: no warning
        good = render("sersic", params, (21, 21), psf=psf)
    with pytest.warns(UserWarning, match="does not sum to 1"):
        scaled = render("sersic", params, (21, 21), psf=3.7 * psf)
    np.testing.assert_allclose(scaled, good, rtol=0, atol=1e-13 * good.max())
