"""Model construction, parameter handling, custom profiles and result folding."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

import galmoss_jax as gj
from galmoss_jax import Model, ParameterError, ProfileError
from galmoss_jax.profiles._spec import MAG, Param, centre_params
from galmoss_jax._conventions import fold_axis_ratio


def test_spec_string_and_names():
    m = Model("bulge:sersic+disk:exponential")
    assert m.component_names == ("bulge", "disk")
    assert "bulge.r_e" in m.param_names and "disk.r_s" in m.param_names
    # c0 is fixed at 0 unless freed
    assert "bulge.c0" not in m.free_names
    assert "bulge.c0" in Model("bulge:sersic+disk:exponential", free=["bulge.c0"]).free_names
    one = Model("sersic")
    assert one.resolve("r_e") == "sersic.r_e" and one.resolve("sersic_r_e") == "sersic.r_e"


def test_bad_models_raise_named_errors():
    with pytest.raises(ProfileError, match="unknown profile 'sersik'"):
        Model("sersik")
    with pytest.raises(ParameterError, match="unknown parameter 'bulge.rr'"):
        Model("bulge:sersic", fixed={"bulge.rr": 1})
    with pytest.raises(ParameterError, match="cycle"):
        Model("a:sersic+b:sersic+c:sersic", tied={"a.x0": "b.x0", "b.x0": "c.x0", "c.x0": "a.x0"})
    with pytest.raises(ParameterError, match="lower bound"):
        Model("sersic", bounds={"n": (4, 1)})
    with pytest.raises(ProfileError, match="used twice"):
        Model([("a", "sersic"), ("a", "exponential")])


def test_ties_and_fixed_values_are_applied():
    m = Model("bulge:sersic+disk:exponential", tied={"disk.x0": "bulge.x0"}, fixed={"disk.q": 0.3})
    p = m.complete({"bulge.x0": 5.0, "bulge.y0": 1, "bulge.mag": 1, "bulge.r_e": 1, "bulge.n": 1, "bulge.q": 1,
                    "bulge.pa": 0, "disk.y0": 1, "disk.mag": 1, "disk.r_s": 1, "disk.pa": 0})
    assert p["disk.x0"] == 5.0 and p["disk.q"] == 0.3 and p["bulge.c0"] == 0.0
    with pytest.raises(ParameterError, match="missing values for .*bulge.n"):
        m.complete({"bulge.x0": 5.0})


def test_user_registered_profile_renders_and_conserves_flux():
    """A Gaussian ring registered from outside the library (analytic total flux)."""
    def ring(p, dx, dy, zeropoint):
        r = jnp.sqrt(dx ** 2 + dy ** 2)
        f = 10 ** (-0.4 * (p["mag"] - zeropoint))
        # total flux of exp(-(r-R)^2/2w^2) over the plane: 2 pi w (w e^{-R^2/2w^2} + sqrt(pi/2) R (1 + erf(R/(sqrt2 w))))
        R, w = p["radius"], p["width"]
        norm = 2 * jnp.pi * w * (w * jnp.exp(-R ** 2 / (2 * w ** 2))
                                 + jnp.sqrt(jnp.pi / 2) * R * (1 + jax_erf(R / (jnp.sqrt(2.0) * w))))
        return f / norm * jnp.exp(-0.5 * ((r - R) / w) ** 2)

    from jax.scipy.special import erf as jax_erf
    spec = gj.ProfileSpec("test_ring", centre_params() + (MAG, Param("radius", 6.0, 0.0, 50.0, unit="pixel"),
                                                           Param("width", 1.5, 0.1, 20.0, unit="pixel")),
                          brightness=ring, total_flux=lambda p, zp: 10 ** (-0.4 * (p["mag"] - zp)))
    gj.register_profile(spec, overwrite=True)
    try:
        img = np.asarray(gj.render("test_ring", dict(x0=20.2, y0=19.6, mag=20.0, radius=6.0, width=1.5),
                                   (41, 41), zeropoint=25.0))
        assert abs(img.sum() / 100.0 - 1) < 1e-6
        # the ring peaks at its radius, not at the centre
        assert img[20, 20 + 6] > 5 * img[20, 20]
        with pytest.raises(ProfileError, match="exists"):
            gj.register_profile(spec)
    finally:
        gj.PROFILES.pop("test_ring", None)


def test_q_above_one_is_folded():
    m = Model("sersic")
    free = m.free_names
    vals = {n: 1.0 for n in m.param_names}
    vals.update({"sersic.q": 2.0, "sersic.r_e": 3.0, "sersic.pa": 30.0})
    cov = np.diag([0.01] * len(free))
    out, cov2 = fold_axis_ratio(m, free, vals, cov)
    assert out["sersic.q"] == 0.5 and out["sersic.r_e"] == 6.0 and out["sersic.pa"] == -60.0
    # same image either way
    a = np.asarray(gj.render(m, {**vals, "x0": 10, "y0": 10}, (21, 21), zeropoint=25))
    b = np.asarray(gj.render(m, {**{k: float(v) for k, v in out.items()}, "x0": 10, "y0": 10}, (21, 21),
                             zeropoint=25))
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * a.max())
    iq = free.index("sersic.q")
    assert math.isclose(cov2[iq, iq], 0.01 / 16)  # d(1/q)/dq = -1/q^2


def test_render_validates_inputs():
    with pytest.raises(ParameterError, match="zeropoint is required"):
        gj.render("sersic", dict(x0=1, y0=1, mag=1, r_e=1, n=1, q=1, pa=0), (9, 9))
    with pytest.raises(gj.ShapeError, match="shape"):
        gj.render("sersic", dict(x0=1, y0=1, mag=1, r_e=1, n=1, q=1, pa=0), (9,), zeropoint=0)
    with pytest.raises(gj.PSFError, match="point-source"):
        gj.render("star:point", dict(x0=1, y0=1, mag=1), (9, 9), zeropoint=0)
