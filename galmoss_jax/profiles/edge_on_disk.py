"""Edge-on disk (GALFIT ``edgedisk``; van der Kruit & Searle 1981), and the modified Bessel
function K1 that it needs (JAX has none)."""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..geometry import flux_from_mag, rotate
from ._spec import Param, ProfileSpec, centre_params, register_profile

# x K1(x) for x <= 2 (Abramowitz & Stegun 9.6.11 with n = 1, y = x^2/4):
#   x K1(x) = 1 + y [log(y) A(y) - C(y)],
#   A(y) = sum_k y^k / (k! (k+1)!)                              (I1(x) = (x/2) A(y)),
#   C(y) = sum_k [psi(k+1) + psi(k+2)] y^k / (k! (k+1)!).
# 14 terms: the first neglected one is < 1e-22 at y = 1.
_NSER = 14


def _series_coefficients():
    psi = [-0.57721566490153286061]                  # psi(1) = -Euler's gamma
    for m in range(1, _NSER + 2):
        psi.append(psi[-1] + 1.0 / m)                 # psi(m+1) = psi(m) + 1/m
    a = [1.0 / (math.factorial(k) * math.factorial(k + 1)) for k in range(_NSER)]
    c = [(psi[k] + psi[k + 1]) * a[k] for k in range(_NSER)]
    return np.array(a[::-1]), np.array(c[::-1])      # highest degree first (Horner)


_A, _C = _series_coefficients()

# sqrt(x) e^x K1(x) for x >= 2 as a Chebyshev series in t = 4/x - 1 (t in (-1, 1]); the
# coefficients were computed at 40 digits (mpmath, Chebyshev-Gauss nodes), the first neglected
# one is 6e-18; maximum relative error against scipy.special.k1e on [2, 1e5]: 4.4e-16.
_CHEB = np.array([
    1.3603130952422213347, 0.10392373657681723844, -0.0028578168596227793868,
    0.00019521551847135163111, -1.93619797416608296e-05, 2.4064849478372171171e-06,
    -3.5019606030878125421e-07, 5.7410841254500492923e-08, -1.0345762465678097027e-08,
    2.0150497551970346161e-09, -4.1903547593419255842e-10, 9.2183151876053141258e-11,
    -2.1299678384277910216e-11, 5.1396396734823435404e-12, -1.2891739609498229352e-12,
    3.3484196660522431201e-13, -8.9767051820101460692e-14, 2.4771544242195986813e-14,
    -7.0198370892147688513e-15, 2.0387031662398608799e-15, -6.0570472706430178228e-16,
    1.8380935752430454256e-16, -5.6894628491936483742e-17, 1.7940510478863572914e-17,
])


def _horner(coef, y):
    out = jnp.zeros_like(y) + coef[0]
    for c in coef[1:]:
        out = out * y + c
    return out


def _clenshaw(coef, t):
    b1 = jnp.zeros_like(t)
    b2 = jnp.zeros_like(t)
    for c in coef[:0:-1]:
        b1, b2 = 2.0 * t * b1 - b2 + c, b1
    return t * b1 - b2 + coef[0]


def xk1(x):
    """``x K1(x)`` for ``x >= 0`` (``K1`` the modified Bessel function of the second kind).

    Power series (A&S 9.6.11) for ``x <= 2``, a Chebyshev series of ``sqrt(x) e^x K1(x)`` in
    ``4/x - 1`` beyond; relative error < 1e-14.  Finite value and gradient everywhere, with
    ``x K1(x) -> 1`` and ``d(x K1)/dx -> 0`` at ``x = 0`` (``x K1(x) = 1 + (x^2/2) log(x/2) + ...``).
    """
    x = jnp.asarray(x)
    small = x <= 2.0
    # small-x branch: y = x^2/4; y log y -> 0 at y = 0 (double-where keeps the gradient finite)
    xs = jnp.where(small, x, 1.0)
    y = 0.25 * xs * xs
    pos = y > 0
    ys = jnp.where(pos, y, 1.0)
    ylogy_a = jnp.where(pos, ys * jnp.log(ys), 0.0) * _horner(_A, y)
    v_small = 1.0 + ylogy_a - y * _horner(_C, y)
    # large-x branch
    xl = jnp.where(small, 2.0, x)
    v_large = jnp.sqrt(xl) * jnp.exp(-xl) * _clenshaw(_CHEB, 4.0 / xl - 1.0)
    return jnp.where(small, v_small, v_large)


def k1(x):
    """Modified Bessel function of the second kind of order 1, ``K1(x)`` for ``x > 0``."""
    x = jnp.asarray(x)
    return xk1(x) / x


def _sech2(z):
    """sech(z)^2 = 4 e^(-2|z|) / (1 + e^(-2|z|))^2: no overflow, finite gradients."""
    e = jnp.exp(-2.0 * jnp.abs(z))
    return 4.0 * e / (1.0 + e) ** 2


def edge_on_disk_brightness(p, dx, dy, zeropoint):
    """Edge-on disk (GALFIT ``edgedisk``; van der Kruit & Searle 1981):

    Sigma(x', y') = Sigma_0 (|x'|/r_s) K1(|x'|/r_s) sech^2(y'/h_s),

    with ``x'`` along the major axis (the disk plane, at position angle ``pa``), ``y'``
    perpendicular to it, and ``Sigma_0 = 10^(-0.4 (mu_0 - zp))`` the central surface
    brightness.  No axis ratio or boxiness: the shape is set by ``h_s / r_s``.

    Parameters: ``mu_0`` (mag / pixel^2), ``h_s`` scale height and ``r_s`` scale length
    (pixels), ``pa`` (deg).  Total flux: ``F = 2 pi Sigma_0 r_s h_s``.
    """
    xm, ym = rotate(dx, dy, p["pa"])
    s0 = flux_from_mag(p["mu_0"], zeropoint)
    return s0 * xk1(jnp.abs(xm) / p["r_s"]) * _sech2(ym / p["h_s"])


def edge_on_disk_total_flux(p, zeropoint):
    return 2.0 * jnp.pi * flux_from_mag(p["mu_0"], zeropoint) * p["r_s"] * p["h_s"]


EDGE_ON_DISK = register_profile(ProfileSpec(
    name="edge_on_disk",
    params=centre_params() + (
        Param("mu_0", 20.0, -10.0, 40.0, unit="mag / pixel^2", doc="central surface brightness"),
        Param("h_s", 2.0, 0.05, 500.0, unit="pixel", doc="scale height (perpendicular to the disk plane)"),
        Param("r_s", 10.0, 0.05, 500.0, unit="pixel", doc="scale length (along the disk plane)"),
        Param("pa", 0.0, unit="deg", doc="position angle of the disk plane, CCW from +y", periodic=180.0),
    ),
    brightness=edge_on_disk_brightness,
    magnitude="mu_0",   # the brightness is 10^(-0.4 (mu_0 - zeropoint)) times the rest
    total_flux=edge_on_disk_total_flux,
    doc=edge_on_disk_brightness.__doc__,
))
