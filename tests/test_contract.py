"""The contract every registered profile keeps (after JAX-GalSim's contract test).

For each profile in ``galmoss_jax.PROFILES`` (new profiles are picked up automatically):

* jit = eager: ``galmoss_jax.render`` equals the un-jitted single-galaxy path
  ``galmoss_jax.model._render_one``;
* vmap = loop: a batch of 3 galaxies with different parameters equals rendering each one;
* grad = finite differences: ``jax.grad`` of ``sum(image * weights)`` with respect to every
  parameter (those fixed by default, such as ``c0``, included) matches central differences;
* finiteness: the image and the gradient are finite with every parameter near its lower (and,
  separately, upper) bound, with the centre exactly on a pixel centre (r = 0 on a node).

Compilation dominates the cost, so each profile compiles exactly three functions (the single
and the batched render, and the gradient) and reuses them for every parameter set.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import galmoss_jax
from galmoss_jax import PROFILES, Model, Sampling, render
from galmoss_jax.model import _render_one
from galmoss_jax.psf import psf_padding, psf_transform

SHAPE = (21, 21)
ZP = 25.0
CENTRE = (10.3, 9.6)          # off the pixel grid: the sub-pixel windows do not move under +-h
PIXEL_CENTRE = (10.0, 10.0)   # exactly on a pixel centre: r = 0 on a quadrature node
STAND_IN = {"periodic": (-90.0, 90.0), "other": (-100.0, 100.0)}   # for infinite bounds
# The gradient is compiled without LLVM optimisation: the same arithmetic, a third of the
# compile time (the shared sampler makes gradient graphs large).
GRAD_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _psf():
    y, x = np.mgrid[-3:4, -3:4]
    k = np.exp(-0.5 * (x * x + y * y) / 1.2 ** 2)
    return k / k.sum()


def _model(spec):
    # free the parameters fixed by default (c0): the contract covers every parameter
    return Model(spec.name, free=[p.name for p in spec.params if p.fixed])


def _base(spec):
    out = {}
    for p in spec.params:
        v = p.default
        if p.name == "x0":
            v = CENTRE[0]
        elif p.name == "y0":
            v = CENTRE[1]
        elif p.periodic:
            v = 30.0
        out[p.name] = v
    return out


def _perturbed(spec, base, k):
    """base moved k steps towards the upper bound (a step is 5% of the way)."""
    out = {}
    for p in spec.params:
        v = base[p.name]
        if math.isfinite(p.upper):
            out[p.name] = v + 0.05 * k * (p.upper - v)
        else:
            out[p.name] = v + 0.1 * k * max(1.0, abs(v))
    return out


def _near_bound(spec, side):
    """Every parameter at lo + 1e-3 (hi - lo) (side 0) or hi - 1e-3 (hi - lo) (side 1)."""
    out = {}
    for p in spec.params:
        if p.name == "x0":
            out[p.name] = PIXEL_CENTRE[0]
            continue
        if p.name == "y0":
            out[p.name] = PIXEL_CENTRE[1]
            continue
        lo, hi = p.lower, p.upper
        if not math.isfinite(lo) or not math.isfinite(hi):
            lo, hi = STAND_IN["periodic" if p.periodic else "other"]
        d = 1e-3 * (hi - lo)
        out[p.name] = lo + d if side == 0 else hi - d
    return out


def _f64(params):
    # strong float64 scalars (not weakly typed Python floats): one compilation per function
    return {k: np.float64(v) for k, v in params.items()}


def _stack(sets):
    return {k: np.array([s[k] for s in sets], dtype=np.float64) for k in sets[0]}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_contract(name):
    spec = PROFILES[name]
    model = _model(spec)
    psf = _psf() if spec.kind == "point" else None
    kw = dict(psf=psf, zeropoint=ZP)
    base = _f64(_base(spec))

    # -- jit == eager --------------------------------------------------------------------------
    img = np.asarray(render(model, base, SHAPE, **kw))
    assert img.shape == SHAPE and np.all(np.isfinite(img))
    if psf is None:
        psf_fft, psf_shape = None, None
    else:
        psf_shape = psf.shape
        py, px = psf_padding(psf_shape, 1)
        psf_fft = psf_transform(jnp.asarray(psf), (SHAPE[0] + 2 * py, SHAPE[1] + 2 * px))
    full = {k: jnp.asarray(v) for k, v in model.complete(base).items()}
    eager = np.asarray(_render_one(model, full, SHAPE, psf_fft, psf_shape, 1, jnp.asarray(ZP), Sampling()))
    scale = max(np.max(np.abs(img)), 1e-300)
    np.testing.assert_allclose(img, eager, rtol=0, atol=1e-10 * scale, err_msg=f"{name}: jit != eager")
    if spec.kind != "sky":
        assert np.max(np.abs(img)) > 0, f"{name}: the default parameters render an empty stamp"

    # -- a declared magnitude is a pure scale: 10^(-0.4 (m - zp)) times the rest (the split
    #    Jacobian writes those two derivatives from it) ------------------------------------------
    if spec.magnitude is not None:
        d = 0.37
        brighter = np.asarray(render(model, dict(base, **{spec.magnitude: base[spec.magnitude] - d}), SHAPE, **kw))
        np.testing.assert_allclose(brighter, img * 10 ** (0.4 * d), rtol=1e-12, atol=1e-14 * scale,
                                   err_msg=f"{name}: {spec.magnitude} is not a pure scale")
        fainter = np.asarray(render(model, base, SHAPE, psf=psf, zeropoint=ZP - d))
        np.testing.assert_allclose(fainter, img * 10 ** (-0.4 * d), rtol=1e-12, atol=1e-14 * scale,
                                   err_msg=f"{name}: the zero point is not a pure scale")

    # -- vmap == loop --------------------------------------------------------------------------
    sets = [_perturbed(spec, base, k) for k in range(3)]
    batch = np.asarray(render(model, _stack(sets), SHAPE, **kw))
    assert batch.shape == (3,) + SHAPE
    for k, s in enumerate(sets):
        one = np.asarray(render(model, _f64(s), SHAPE, **kw))
        np.testing.assert_allclose(batch[k], one, rtol=0, atol=1e-10 * max(np.max(np.abs(one)), 1e-300),
                                   err_msg=f"{name}: vmap != loop (galaxy {k})")
    if spec.kind != "sky":
        assert not np.allclose(batch[0], batch[2]), f"{name}: the batch galaxies should differ"

    # -- finite at both sides of the bounds, centre on a pixel centre -------------------------
    edge_sets = [_near_bound(spec, 0), _near_bound(spec, 1), dict(base, x0=PIXEL_CENTRE[0], y0=PIXEL_CENTRE[1])
                 if "x0" in base else base]
    edge_imgs = np.asarray(render(model, _stack(edge_sets), SHAPE, **kw))   # the batched compile again
    assert np.all(np.isfinite(edge_imgs)), f"{name}: non-finite image near the bounds: {edge_sets}"

    # -- grad == central finite differences ------------------------------------------------------
    weights = np.random.default_rng(7).normal(size=SHAPE)

    def loss(p):
        return jnp.sum(render(model, p, SHAPE, **kw) * weights)

    grad_fn = jax.jit(jax.grad(loss)).lower(base).compile(compiler_options=GRAD_COMPILER_OPTIONS)
    g = {k: float(v) for k, v in grad_fn(base).items()}
    size = float(np.sum(np.abs(img * weights)))
    for pname, v in base.items():
        h = 1e-5 * max(abs(float(v)), 1.0)
        lp = float(loss(dict(base, **{pname: np.float64(v + h)})))
        lm = float(loss(dict(base, **{pname: np.float64(v - h)})))
        fd = (lp - lm) / (2.0 * h)
        tol = 1e-4 * abs(fd) + 1e-8 * size / max(abs(float(v)), 1.0)
        assert abs(g[pname] - fd) <= tol, f"{name}.{pname}: grad {g[pname]!r} != finite difference {fd!r}"

    for s in edge_sets[:2]:
        ge = grad_fn(_f64(s))
        bad = [k for k, v in ge.items() if not np.isfinite(float(v))]
        assert not bad, f"{name}: non-finite gradient for {bad} at {s}"


def test_every_profile_is_covered():
    """The parametrisation above is built from the registry at import time."""
    assert {"sersic", "ferrer", "king", "broken_exponential", "edge_on_disk", "nuker",
            "core_sersic"} <= set(PROFILES)
    assert galmoss_jax.PROFILES is PROFILES
    # every built-in profile of light declares its magnitude (checked to be a pure scale above)
    assert all(spec.magnitude is not None for spec in PROFILES.values() if spec.kind == "surface")
