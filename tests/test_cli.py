"""The command line gives the same numbers as the Python API."""
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import galmoss_jax as gj
from galmoss_jax.cli import main
from galmoss_jax import fit

IC = os.path.join(os.path.dirname(gj.__file__), "data", "ic3478")


def test_render_cli_matches_python(tmp_path):
    out = tmp_path / "m.fits"
    params = "bulge.x0=15.3,bulge.y0=14.6,bulge.mag=18,bulge.r_e=2.5,bulge.n=3,bulge.q=0.7,bulge.pa=20," \
             "disk.x0=15.3,disk.y0=14.6,disk.mag=17.5,disk.r_s=5,disk.q=0.4,disk.pa=-30"
    assert main(["render", "--model", "bulge:sersic+disk:exponential", "--params", params,
                 "--shape", "31,33", "--zeropoint", "25", "--out", str(out)]) == 0
    img = fits.getdata(out)
    p = {k: float(v) for k, v in (a.split("=") for a in params.split(","))}
    ref = np.asarray(gj.render("bulge:sersic+disk:exponential", p, (31, 33), zeropoint=25.0))
    assert img.shape == (31, 33)
    np.testing.assert_allclose(img, ref, rtol=1e-12, atol=0)


def test_render_cli_table_gives_cube(tmp_path):
    t = Table({"sersic_x0": [10.0, 11.5], "sersic_y0": [10.0, 9.5], "sersic_mag": [18.0, 19.0],
               "sersic_r_e": [2.0, 3.0], "sersic_n": [1.0, 4.0], "sersic_q": [0.5, 0.9], "sersic_pa": [0.0, 45.0]})
    tp = tmp_path / "p.ecsv"
    t.write(tp)
    out = tmp_path / "cube.fits"
    assert main(["render", "--model", "sersic", "--params-table", str(tp), "--shape", "21,21",
                 "--zeropoint", "25", "--out", str(out)]) == 0
    cube = fits.getdata(out)
    assert cube.shape == (2, 21, 21)
    one = np.asarray(gj.render("sersic", {c.replace("sersic_", ""): t[c][1] for c in t.colnames}, (21, 21), zeropoint=25.0))
    np.testing.assert_allclose(cube[1], one, rtol=1e-12)


def test_render_cli_sampling_option(tmp_path):
    """--sampling psf_window=0 is GALFIT's and Imfit's convention: the pixel-integrated galaxy
    convolved with the sampled PSF (GalSim's exact pixel integral, convolved here with SciPy);
    the default resolves the centre of this compact, cuspy galaxy finer and differs from it."""
    galsim = pytest.importorskip("galsim")
    from scipy.signal import fftconvolve

    S, h = 25, 4
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    psf = np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.1 ** 2))
    psf /= psf.sum()
    fits.writeto(tmp_path / "psf.fits", psf)
    p = dict(x0=12.3, y0=11.8, mag=18.0, r_e=1.2, n=3.0, q=0.7, pa=30.0)
    params = ",".join(f"{k}={v}" for k, v in p.items())
    gal = galsim.Sersic(p["n"], half_light_radius=p["r_e"] * np.sqrt(p["q"]), flux=10 ** (-0.4 * (p["mag"] - 25)),
                        gsparams=galsim.GSParams(realspace_relerr=1e-7, realspace_abserr=1e-10))
    gal = gal.shear(galsim.Shear(q=p["q"], beta=(p["pa"] + 90) * galsim.degrees))
    big = S + 2 * h
    pix = gal.drawImage(nx=big, ny=big, scale=1.0, method="real_space",
                        offset=galsim.PositionD(p["x0"] + h - (big - 1) / 2, p["y0"] + h - (big - 1) / 2)).array
    plain = fftconvolve(pix, psf, mode="same")[h:-h, h:-h]
    images = {}
    for label, extra in (("plain", ["--sampling", "psf_window=0"]), ("default", [])):
        out = tmp_path / f"{label}.fits"
        assert main(["render", "--model", "sersic", "--params", params, "--shape", f"{S},{S}", "--zeropoint", "25",
                     "--psf", str(tmp_path / "psf.fits"), "--out", str(out)] + extra) == 0
        images[label] = fits.getdata(out)
    peak = plain.max()
    assert np.abs(images["plain"] - plain).max() < 1e-5 * peak
    assert np.abs(images["default"] - plain).max() > 1e-3 * peak
    with pytest.raises(gj.ParameterError, match="n_thetas"):
        gj.Sampling.from_text("n_thetas=4")
    with pytest.raises(gj.ParameterError, match="Sampling.n_theta must be an integer >= 1"):
        gj.Sampling.from_text("n_theta=0")


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = main(["render", "--model", "sersic", "--params", "r_e=2,bogus=1", "--shape", "9,9",
               "--zeropoint", "25", "--out", str(tmp_path / "x.fits")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'bogus'" in err and "Traceback" not in err
    rc = main(["fit", str(tmp_path / "missing.fits"), "--gain", "1", "--zeropoint", "20", "--out", str(tmp_path / "r.ecsv")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_fit_cli_matches_python_on_ic3478(tmp_path):
    """Same fit as tests/test_imfit_ic3478.py (masked, PSF), through the CLI."""
    init = {"x0": 128.0, "y0": 128.0, "pa": 18.0, "q": 0.8, "n": 1.5, "r_e": 25.0, "mag": 10.0}
    Table({f"sersic_{k}": [v] for k, v in init.items()}).write(tmp_path / "init.ecsv")
    out = tmp_path / "res.ecsv"
    with pytest.warns(UserWarning, match="normalised"):
        rc = main(["fit", os.path.join(IC, "ic3478rss_256.fits"), "--gain", "4.725", "--read-noise", "4.3",
                   "--sky", "130.14", "--mask", os.path.join(IC, "ic3478rss_256_mask.fits"),
                   "--psf", os.path.join(IC, "psf_moffat_51.fits"), "--zeropoint", "20",
                   "--init", str(tmp_path / "init.ecsv"), "--out", str(out), "--imgblock", str(tmp_path / "blk")])
    assert rc == 0
    cli = Table.read(out)
    data = fits.getdata(os.path.join(IC, "ic3478rss_256.fits")).astype(float)
    mask = fits.getdata(os.path.join(IC, "ic3478rss_256_mask.fits")) == 0
    psf = fits.getdata(os.path.join(IC, "psf_moffat_51.fits")).astype(float)
    with pytest.warns(UserWarning, match="normalised"):
        py = fit("sersic", data, mask=mask, psf=psf, gain=4.725, read_noise=4.3, sky=130.14, zeropoint=20.0,
                 init=init).to_table()
    for c in ["sersic_x0", "sersic_y0", "sersic_mag", "sersic_r_e", "sersic_n", "sersic_q", "sersic_pa", "chi2",
              "sersic_r_e_err", "sersic_n_err"]:
        np.testing.assert_allclose(cli[c][0], py[c][0], rtol=1e-9, err_msg=c)
    with fits.open(tmp_path / "blk" / "imgblock_0.fits") as hd:
        names = [h.name for h in hd]
        assert names[:4] == ["PRIMARY", "DATA", "MODEL", "RESIDUAL"] and "COMP_SERSIC" in names
        np.testing.assert_allclose(hd["RESIDUAL"].data[mask], (hd["DATA"].data - hd["MODEL"].data)[mask])


def _command(args, env_changes, cwd):
    """The installed command's entry point (``console_main``) in a subprocess."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-m", "galmoss_jax.cli", *args], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def _entries(path):
    return sorted(f for f in os.listdir(path) if not f.startswith(".")) if os.path.isdir(path) else []


def test_command_keeps_compiled_programs_in_the_user_cache(tmp_path):
    """``galmoss-jax`` keeps its compiled programs in ``$XDG_CACHE_HOME/galmoss_jax/...`` and a
    second run reuses them (it adds none) with the same image; ``--cache-dir none`` writes no
    cache.  The first run finds the cache as a killed run left it, one program written only in
    part and without its time of last use: that entry is removed and the new programs are
    kept (JAX <= 0.10 alone would refuse every write, jax-ml/jax#39880)."""
    params = "x0=10.3,y0=9.6,mag=18,r_e=2.5,n=3,q=0.7,pa=20"
    # every program kept, however fast this machine compiles the small render program
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    cache = tmp_path / "xdg" / "galmoss_jax" / "jax_compilation_cache"
    cache.mkdir(parents=True)
    killed = "jit__solve_one-" + "0" * 64 + "-cache"
    (cache / killed).write_bytes(b"\x00" * 1000)
    images = []
    for k, extra in enumerate(([], [], ["--cache-dir", "none"])):
        if k == 2:
            env["XDG_CACHE_HOME"] = str(tmp_path / "xdg2")
        before = _entries(cache)
        out = _command([*extra, "render", "--model", "sersic", "--params", params, "--shape", "21,20",
                        "--zeropoint", "25", "--out", str(tmp_path / f"m{k}.fits")], env, tmp_path)
        images.append(fits.getdata(tmp_path / f"m{k}.fits"))
        assert "Error writing persistent compilation cache" not in out.stderr, out.stderr
        if k == 0:
            kept = _entries(cache)
            assert before == [killed] and killed not in kept
            # the render program, compiled and kept with its time of last use
            programs = [f for f in kept if f.endswith("-cache")]
            assert programs and all(f[:-len("-cache")] + "-atime" in kept for f in programs)
        elif k == 1:
            assert _entries(cache) == before                        # found there: nothing new compiled
    assert not (tmp_path / "xdg2").exists()
    p = {k: float(v) for k, v in (a.split("=") for a in params.split(","))}
    ref = np.asarray(gj.render("sersic", p, (21, 20), zeropoint=25.0))
    # a cached program is the compiled program itself: the same pixels
    np.testing.assert_array_equal(images[1], images[0])
    np.testing.assert_array_equal(images[2], images[0])
    # the command computes in JAX's default precision (float32) there, this process in float64
    np.testing.assert_allclose(images[0], ref, rtol=2e-5, atol=0)


def test_cache_dir_that_cannot_be_made_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert main(["--cache-dir", str(tmp_path / "a_file" / "cache"), "render", "--model", "sersic", "--params",
                 "x0=5,y0=5,mag=18,r_e=2,n=1,q=1,pa=0", "--shape", "11,11", "--zeropoint", "25",
                 "--out", str(tmp_path / "m.fits")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("galmoss-jax: error: --cache-dir: cannot create") and err.count("\n") == 1
    assert not (tmp_path / "m.fits").exists()
