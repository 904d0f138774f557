"""Parameter conventions of the peer fitters, and conversions to and from galmoss_jax's.

galmoss_jax (DESIGN.md, Part A) is the reference frame of every comparison:

* pixel centres at integer 0-based coordinates: the centre of ``image[0, 0]`` is (x, y) = (0, 0),
  x along columns, y along rows;
* ``pa`` in degrees counter-clockwise from +y (+y = increasing row index), wrapped to (-90, 90];
* ``q = b/a`` in (0, 1];
* radii (``r_e``, ``r_s``) along the semi-major axis, pixels;
* ``mag = zp - 2.5 log10 F`` with F the total flux (to infinity, before the PSF).

Each peer's convention below was read from its documentation and source (versions in
RESULTS.md) and is verified numerically by ``check_conventions.py``, which renders the same
galaxy with each tool and with ``galmoss_jax.render``.

Imfit / pyimfit (Imfit manual, "Coordinate conventions" and the Sersic/Exponential function
descriptions; pyimfit ``SimpleModelDescription``):
  x0, y0 are 1-based FITS/IRAF pixel coordinates: x0_imfit = x0 + 1, y0_imfit = y0 + 1.
  PA is degrees counter-clockwise from +y, as ours (Imfit keeps it in [0, 180)).
  ell = 1 - q.  r_e (Sersic) and h (Exponential) along the major axis, pixels.
  The Sersic amplitude is I_e, the surface brightness at r_e in counts/pixel (not a magnitude):
  F = 2 pi q r_e^2 I_e n e^{b_n} b_n^{-2n} Gamma(2n); the Exponential's is the central I_0,
  F = 2 pi q h^2 I_0.

AstroPhot 0.18 (``models/mixins/transform.py`` InclinedMixin, ``models/mixins/sersic.py``,
``image/image_object.py``):
  ``center`` = [x, y] in the image's tangent-plane coordinates; with ``pixelscale=1``,
  crpix = crval = crtan = 0 (the defaults) these are 0-based pixel coordinates, as ours
  (``TargetImage.data`` is indexed [row=y, col=x]).  With a pixel scale s (arcsec/pixel) every
  length (center, Re) would be in arcsec and Ie in flux/arcsec^2; we use s = 1 so that they
  are pixels and flux/pixel^2.
  PA in RADIANS, "East of North": the model's coordinates are rotated by (-PA + pi/2), which
  with the default (identity) CD matrix is counter-clockwise from +y, i.e. ours in radians,
  kept in [0, pi).
  q = b/a.  Re = half-light radius along the major axis (R = sqrt(x'^2 + (y'/q)^2)).
  Ie = surface brightness at Re (flux/pixel^2 here), the same relation to F as Imfit's I_e.
  Exponential: ``exponential galaxy model`` is parametrised by the half-light radius Re and
  Ie = I(Re): Re = b_1 r_s (b_1 = 1.678347), Ie = I_0 e^{-b_1}.

GALMOSS 2.2 (``galmoss/fitting.py`` make_grid, ``profile/basic.py`` revise_grid/make_radius,
``profile/light_profile.py``, ``Parameter/decorater.py``):
  The grid puts column j at x = j + 0.5 and row i at y = H - 0.5 - i; ``revise_grid`` subtracts
  cen_x and (H - cen_y).  So the profile centre sits at j = cen_x - 0.5, i = cen_y - 0.5:
  cen_x = x0 + 0.5, cen_y = y0 + 0.5 (pixel corners at integers, as SExtractor's 1-based
  centres minus 0.5).
  pa (degrees, ``angle=True``; stored in radians): ``make_radius`` receives [x, y] but names
  them (y_grid, x_grid), and its y axis points to decreasing rows; the two flips cancel and
  the major axis lies at pa counter-clockwise from +y, i.e. ours.  Wrapped to (-90, 90].
  axis_r = q.  eff_r = r_e along the major axis, in pixels when ``pix_scale`` is None.
  mag with ``M0=zp``: F = 10^(-0.4 (mag - M0)), ours.  ExpDisk refers to an attribute ``con``
  that no profile sets (it raises AttributeError in 2.2), so a disk is a Sersic with n fixed
  at 1 and eff_r = b_1 r_s.
  GALMOSS evaluates the profile at pixel centres (no sub-pixel integration) and convolves
  with ``F.conv2d(padding="same")`` (zero padding at the stamp edge).
"""
from __future__ import annotations

import numpy as np
from scipy.special import gamma, gammaincinv

B1 = float(gammaincinv(2.0, 0.5))     # b_n of n = 1: r_e = B1 * r_s for an exponential


def sersic_bn(n):
    """Exact Sérsic b_n: P(2n, b_n) = 1/2."""
    return gammaincinv(2.0 * np.asarray(n, float), 0.5)


def flux_of_mag(mag, zp):
    return 10.0 ** (-0.4 * (np.asarray(mag, float) - zp))


def mag_of_flux(F, zp):
    return zp - 2.5 * np.log10(F)


def sersic_ie(F, r_e, n, q):
    """Surface brightness at r_e (flux/pixel^2) of a Sérsic of total flux F."""
    b = sersic_bn(n)
    return F / (2 * np.pi * q * r_e ** 2 * n * np.exp(b) * b ** (-2 * n) * gamma(2 * n))


def sersic_flux(ie, r_e, n, q):
    b = sersic_bn(n)
    return ie * 2 * np.pi * q * r_e ** 2 * n * np.exp(b) * b ** (-2 * n) * gamma(2 * n)


def wrap_pa(pa):
    """Degrees into (-90, 90]."""
    return 90.0 - np.mod(90.0 - np.asarray(pa, float), 180.0)


def pa_distance(a, b):
    """|a - b| for axes (period 180 degrees), in [0, 90]."""
    d = np.mod(np.asarray(a, float) - np.asarray(b, float), 180.0)
    return np.minimum(d, 180.0 - d)


# --- Imfit ----------------------------------------------------------------------------------
def to_imfit_sersic(p, zp):
    """galmoss_jax Sérsic dict -> Imfit (x0, y0, PA, ell, n, I_e, r_e)."""
    F = flux_of_mag(p["mag"], zp)
    return dict(x0=p["x0"] + 1.0, y0=p["y0"] + 1.0, PA=float(np.mod(p["pa"], 180.0)), ell=1.0 - p["q"],
                n=p["n"], I_e=float(sersic_ie(F, p["r_e"], p["n"], p["q"])), r_e=p["r_e"])


def from_imfit_sersic(v, zp):
    q = 1.0 - v["ell"]
    F = sersic_flux(v["I_e"], v["r_e"], v["n"], q)
    return dict(x0=v["x0"] - 1.0, y0=v["y0"] - 1.0, mag=float(mag_of_flux(F, zp)), r_e=v["r_e"], n=v["n"],
                q=q, pa=float(wrap_pa(v["PA"])))


def to_imfit_exponential(p, zp):
    F = flux_of_mag(p["mag"], zp)
    return dict(PA=float(np.mod(p["pa"], 180.0)), ell=1.0 - p["q"], I_0=float(F / (2 * np.pi * p["q"] * p["r_s"] ** 2)),
                h=p["r_s"])


def from_imfit_exponential(v, zp):
    q = 1.0 - v["ell"]
    F = v["I_0"] * 2 * np.pi * q * v["h"] ** 2
    return dict(mag=float(mag_of_flux(F, zp)), r_s=v["h"], q=q, pa=float(wrap_pa(v["PA"])))


# --- AstroPhot (pixelscale = 1) -------------------------------------------------------------
def to_astrophot_sersic(p, zp):
    F = flux_of_mag(p["mag"], zp)
    return dict(center=[p["x0"], p["y0"]], q=p["q"], PA=float(np.deg2rad(np.mod(p["pa"], 180.0))), n=p["n"],
                Re=p["r_e"], Ie=float(sersic_ie(F, p["r_e"], p["n"], p["q"])))


def from_astrophot_sersic(v, zp):
    F = sersic_flux(v["Ie"], v["Re"], v["n"], v["q"])
    return dict(x0=v["center"][0], y0=v["center"][1], mag=float(mag_of_flux(F, zp)), r_e=v["Re"], n=v["n"],
                q=v["q"], pa=float(wrap_pa(np.rad2deg(v["PA"]))))


def to_astrophot_exponential(p, zp):
    F = flux_of_mag(p["mag"], zp)
    Re = B1 * p["r_s"]
    return dict(center=[p["x0"], p["y0"]], q=p["q"], PA=float(np.deg2rad(np.mod(p["pa"], 180.0))), Re=Re,
                Ie=float(sersic_ie(F, Re, 1.0, p["q"])))


def from_astrophot_exponential(v, zp):
    F = sersic_flux(v["Ie"], v["Re"], 1.0, v["q"])
    return dict(x0=v["center"][0], y0=v["center"][1], mag=float(mag_of_flux(F, zp)), r_s=v["Re"] / B1,
                q=v["q"], pa=float(wrap_pa(np.rad2deg(v["PA"]))))


# --- GALMOSS (pixels: pix_scale None; M0 = zp) ----------------------------------------------
def to_galmoss_sersic(p):
    return dict(cen_x=p["x0"] + 0.5, cen_y=p["y0"] + 0.5, pa=float(wrap_pa(p["pa"])), axis_r=p["q"],
                eff_r=p["r_e"], ser_n=p["n"], mag=p["mag"])


def from_galmoss_sersic(v):
    return dict(x0=v["cen_x"] - 0.5, y0=v["cen_y"] - 0.5, mag=v["mag"], r_e=v["eff_r"], n=v["ser_n"],
                q=v["axis_r"], pa=float(wrap_pa(v["pa"])))
