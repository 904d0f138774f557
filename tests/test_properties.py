"""Property-based tests (Hypothesis) of the renderer, the parameter transforms, the table I/O
and the command line's argument handling.

Example counts are small (JAX compiles): every render example reuses one compiled shape.
"""
import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.table import Table
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import galmoss_jax as gj
from galmoss_jax.cli import main
from galmoss_jax.io import read_table
from galmoss_jax.results import write_table
from galmoss_jax.transforms import clip_inside, to_physical, to_unconstrained

import _no_solver

# the render examples are few (each costs a JAX evaluation) and drawn the same way in every run
FEW = settings(max_examples=6, deadline=None, derandomize=True)
# derandomized by the suite's Hypothesis profile (conftest.py)
SOME = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# ---------------------------------------------------------------------------------------------
# renderer: finite over the fitting bounds; positive flux, pixels >= 0 to the quadrature error,
# over the documented accuracy domain; jit = eager
# ---------------------------------------------------------------------------------------------
SHAPE = (12, 12)
SERSIC = gj.get_profile("sersic")


def _within(name):
    p = SERSIC.param(name)
    if p.periodic is not None:
        return st.floats(-360.0, 360.0)
    return st.floats(p.lower, p.upper)


sersic_params = st.fixed_dictionaries({
    "x0": st.floats(-2.0, 14.0), "y0": st.floats(-2.0, 14.0), "mag": _within("mag"),
    "r_e": _within("r_e"), "n": _within("n"), "q": _within("q"), "pa": _within("pa"), "c0": _within("c0"),
})
# the domain over which the pixel integration's accuracy is documented (README, Accuracy):
# 0.3 <= n <= 8, r_e >= 0.5 px, q >= 0.3 (q > 1 is the same shape turned by 90 degrees), and
# the centre on the stamp (compact profiles centred beyond the edge get pixels of either sign
# at ~1e-6 of their total flux)
accurate_params = st.fixed_dictionaries({
    "x0": st.floats(-0.5, 11.5), "y0": st.floats(-0.5, 11.5), "mag": _within("mag"),
    "r_e": st.floats(0.5, 500.0), "n": st.floats(0.3, 8.0), "q": st.floats(0.3, 1 / 0.3),
    "pa": _within("pa"), "c0": _within("c0"),
})


@FEW
@given(p=sersic_params)
def test_render_is_finite_over_the_fitting_bounds(p):
    img = np.asarray(gj.render("sersic", p, SHAPE, zeropoint=25.0))
    assert img.shape == SHAPE and np.all(np.isfinite(img))


@FEW
@given(p=accurate_params)
def test_render_flux_is_positive(p):
    img = np.asarray(gj.render("sersic", p, SHAPE, zeropoint=25.0))
    assert img.sum() > 0
    # pixels are integrals of a positive function: >= 0 up to the quadrature's error, which is
    # largest for boxy/disky isophotes (c0 != 0) centred near a corner (measured -7e-6 of the peak)
    assert img.min() >= -1e-4 * img.max()


@settings(max_examples=2, deadline=None, derandomize=True)
@given(p=sersic_params)
def test_render_jit_equals_eager(p):
    jitted = np.asarray(gj.render("sersic", p, SHAPE, zeropoint=25.0))
    with jax.disable_jit():
        eager = np.asarray(gj.render("sersic", p, SHAPE, zeropoint=25.0))
    np.testing.assert_allclose(jitted, eager, rtol=1e-10, atol=1e-14 * max(np.abs(eager).max(), 1e-300))


# ---------------------------------------------------------------------------------------------
# transforms: to_physical(to_unconstrained(p)) == p, both monotone, over every kind of bounds
# ---------------------------------------------------------------------------------------------
EPS = np.finfo(float).eps
finite = st.floats(-1e6, 1e6)
width = st.floats(1e-6, 1e6)


@st.composite
def bounded_points(draw):
    kind = draw(st.sampled_from(["both", "lower", "upper", "none"]))
    lo = draw(finite) if kind in ("both", "lower") else -math.inf
    if kind == "both":
        hi = lo + draw(width)
        assume(hi > lo)
    else:
        hi = draw(finite) if kind == "upper" else math.inf
    a, b = (lo, hi) if kind == "both" else ((lo, lo + 1e6) if kind == "lower" else (hi - 1e6, hi) if kind == "upper"
                                               else (-1e6, 1e6))
    ps = draw(st.lists(st.floats(a, b), min_size=2, max_size=8))
    ps = np.sort(np.asarray(clip_inside(np.asarray(ps), lo, hi)))
    return lo, hi, ps


@SOME
@given(case=bounded_points())
def test_transform_round_trip_and_monotone(case):
    lo, hi, p = case
    # JAX on a JAX array (inside a fit's program), NumPy on a host array (a fit's starts)
    u_host = to_unconstrained(p, lo, hi)
    assert isinstance(u_host, np.ndarray) and isinstance(to_unconstrained(jnp.asarray(p), lo, hi), jax.Array)
    for u in (np.asarray(to_unconstrained(jnp.asarray(p), lo, hi)), u_host):
        back = np.asarray(to_physical(jnp.asarray(u), lo, hi))
        assert np.all(np.isfinite(u))
        # rounding of the map: a few ulps of the largest magnitude involved
        scale = np.abs(p) + (0 if not math.isfinite(lo) else abs(lo)) + (0 if not math.isfinite(hi) else abs(hi))
        np.testing.assert_array_less(np.abs(back - p), 64 * EPS * scale + 1e-300)
        # monotone: u increases with p, except with an upper bound only (p = hi - softplus(u))
        sign = -1 if (math.isfinite(hi) and not math.isfinite(lo)) else 1
        assert np.all(sign * np.diff(u) >= 0) and np.all(np.diff(back) >= 0)
        assert np.all(back >= lo) and np.all(back <= hi)


@SOME
@given(lo=finite, w=width, us=st.lists(st.floats(-50, 50), min_size=2, max_size=8))
def test_to_physical_stays_inside_and_is_monotone(lo, w, us):
    hi = lo + w
    assume(hi > lo)
    u = np.sort(np.asarray(us))
    for a, b, sign in ((lo, hi, 1), (lo, math.inf, 1), (-math.inf, hi, -1)):
        p = np.asarray(to_physical(jnp.asarray(u), a, b))
        assert np.all(np.isfinite(p)) and np.all(p >= a) and np.all(p <= b)
        assert np.all(sign * np.diff(p) >= 0)


# ---------------------------------------------------------------------------------------------
# table I/O: write_table then read_table gives the same table, for every format
# ---------------------------------------------------------------------------------------------
HAVE_PARQUET = importlib.util.find_spec("pyarrow") is not None
FORMATS = [".fits", ".ecsv", ".csv"] + ([".parquet"] if HAVE_PARQUET else [])

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
# text, including text that reads as a number, a boolean or a CSV quote (CSV has no types: the
# writer quotes text and the reader keeps quoted columns as text)
text = st.one_of(
    st.sampled_from(["00", "007", "1e5", "0x1", "nan", "-inf", "1", "-0.0", "True", '"q"', "a,b"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12).map(str.strip).filter(bool),
)


@st.composite
def result_tables(draw):
    n = draw(st.integers(1, 4))
    t = Table()
    t["id"] = np.asarray(draw(st.lists(st.integers(-2**62, 2**62), min_size=n, max_size=n)), np.int64)
    for name in ("sersic_r_e", "sersic_r_e_err", "chi2"):
        t[name] = np.asarray(draw(st.lists(floats, min_size=n, max_size=n)), float)
    t["status"] = np.asarray(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), np.int32)
    t["status_msg"] = draw(st.lists(text, min_size=n, max_size=n))
    return t


@pytest.mark.parametrize("ext", FORMATS)
@SOME
@given(t=result_tables())
def test_table_round_trip_is_exact(tmp_path, ext, t):
    path = tmp_path / f"r{ext}"
    write_table(t, path, overwrite=True)
    back = read_table(path)
    assert back.colnames == t.colnames and len(back) == len(t)
    for c in t.colnames:
        a, b = np.asarray(t[c]), np.asarray(back[c])
        if a.dtype.kind == "f":
            assert b.dtype.kind == "f" and np.array_equal(a, b, equal_nan=True), c
            num = ~np.isnan(a)
            assert np.array_equal(np.signbit(a[num]), np.signbit(b[num])), c   # -0.0 stays -0.0
        elif a.dtype.kind in "iu":
            assert b.dtype.kind in "iu" and np.array_equal(a, b), c
        else:
            assert b.dtype.kind in "US", c                               # text stays text
            assert [str(x) for x in a] == [str(x) for x in b], c


def test_parquet_needs_its_package_or_round_trips(tmp_path):
    t = Table({"id": [1], "chi2": [2.5]})
    if HAVE_PARQUET:
        write_table(t, tmp_path / "r.parquet")
        assert read_table(tmp_path / "r.parquet")["chi2"][0] == 2.5
    else:
        with pytest.raises(gj.OutputFileError, match=r"writing .parquet needs an optional package"):
            write_table(t, tmp_path / "r.parquet")
        assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# CLI: random malformed values give exit 2 with one line, never a traceback
# ---------------------------------------------------------------------------------------------
junk = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=12),
    st.sampled_from(["", "nan", "inf", "-inf", "-1", "0", "1e999", "3,", ",", "=", "a=b", "x0=", "=3", "1,2,3",
                     "sersic+", "a:b:c", "r_e=nan", "n=-3", "q=0", "0,0", "-5,5", "9" * 30]),
)
RENDER_OPTS = ["--model", "--params", "--shape", "--zeropoint", "--oversample"]
FIT_OPTS = ["--model", "--fix", "--free", "--tie", "--zeropoint", "--gain", "--read-noise", "--sky", "--max-iter",
            "--oversample", "--stat", "--solver"]


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
    from astropy.io import fits
    d = tmp_path_factory.mktemp("cli")
    fits.writeto(d / "img.fits", 5 + np.random.default_rng(0).normal(size=(8, 8)))
    return d


def _run_cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse: usage line and "error:", exit 2
        err = capsys.readouterr().err
        assert e.code == 2 and "usage: galmoss-jax" in err and "error:" in err, err
        return 2, err
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc != 0:
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("galmoss-jax: error: "), err
    return rc, err


@SOME
@given(opt=st.sampled_from(RENDER_OPTS), value=junk)
def test_cli_render_malformed_values(cli_dir, capsys, monkeypatch, opt, value):
    args = {"--model": "sersic", "--params": "x0=3,y0=3,mag=18,r_e=2,n=1,q=0.8,pa=0", "--shape": "8,8",
            "--zeropoint": "25", "--oversample": "1", "--out": str(cli_dir / "m.fits")}
    args[opt] = value
    monkeypatch.setattr("galmoss_jax.model._render_jit", lambda *a, **k: jnp.ones(a[2]))  # no compile
    rc, _ = _run_cli(["render", *(f"{k}={v}" for k, v in args.items())], capsys)
    if rc == 0:  # the value happened to be valid
        os.remove(cli_dir / "m.fits")


@SOME
@given(opt=st.sampled_from(FIT_OPTS), value=junk)
def test_cli_fit_malformed_values(cli_dir, capsys, monkeypatch, opt, value):
    _no_solver.install(monkeypatch)
    args = {"--zeropoint": "25", "--gain": "2", "--out": str(cli_dir / "r.ecsv")}
    args[opt] = value
    rc, _ = _run_cli(["fit", str(cli_dir / "img.fits"), *(f"{k}={v}" for k, v in args.items())], capsys)
    if rc == 0:
        os.remove(cli_dir / "r.ecsv")
