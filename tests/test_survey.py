"""Streaming survey runs: catalogue input, kill and resume, device sharding, Dask workers.

Every run fits the same small catalogue (14 single-Sérsic cutouts of 13x13 and 16x16 pixels,
rendered by galmoss_jax with Gaussian noise; two rows with a missing file) in batches of 4
padded to 16x16, so that the one compiled fit function serves every run in a process.
References: the injected truth, :func:`galmoss_jax.fit` on the same stamps, and an
uninterrupted run (which a killed and resumed run, a sharded run and a Dask run must equal).
"""
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import galmoss_jax as gj
from galmoss_jax import survey
from galmoss_jax.cli import main, repair_cache
from galmoss_jax import fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZP = 25.0
N = 14
MISSING_IMAGE, MISSING_SIGMA = 5, 10       # rows whose image / sigma file does not exist
SMALL, BIG = 13, 16                        # stamp sides (every third row is small)
N_OK = N - 2                               # 12 galaxies fitted: 3 batches of 4
FIT_ARGS = ["--batch-size", "4", "--bucket", "8", "--max-iter", "10", "--quiet"]
MODEL = gj.Model("sersic")
OPTIONS = gj.FitOptions(max_iter=10)


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    env.update(extra)
    return env


def _cli(*args):
    return [sys.executable, "-m", "galmoss_jax.cli", "fit", *args]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    d = tmp_path_factory.mktemp("cutouts")
    rng = np.random.default_rng(7)
    rows, truths = [], []
    for i in range(N):
        s = SMALL if i % 3 == 0 else BIG
        c = (s - 1) / 2
        p = dict(x0=c + rng.uniform(-1, 1), y0=c + rng.uniform(-1, 1), mag=rng.uniform(16.5, 17.5),
                 r_e=rng.uniform(1.5, 2.5), n=rng.uniform(1.0, 2.5), q=rng.uniform(0.5, 0.9), pa=rng.uniform(-80, 80))
        img = np.asarray(gj.render("sersic", p, (s, s), zeropoint=ZP))
        sig = np.full_like(img, 0.01 * img.max())
        data = img + sig * rng.normal(size=img.shape)
        if i != MISSING_IMAGE:
            fits.writeto(d / f"g{i}_img.fits", data)
        fits.writeto(d / f"g{i}_sig.fits", sig)
        rows.append(dict(id=1000 + i, image=f"g{i}_img.fits",
                         sigma=f"g{i}_sig.fits" if i != MISSING_SIGMA else "g_absent_sig.fits",
                         zeropoint=ZP, sersic_r_e=p["r_e"] * 1.1 if i % 2 else np.nan))
        truths.append(p)
    path = d / "catalog.ecsv"
    Table(rows=rows).write(path)
    truth = {k: np.array([t[k] for t in truths]) for k in truths[0]}
    return path, truth


@pytest.fixture(scope="module")
def reference(catalog, tmp_path_factory):
    """An uninterrupted streaming run, in this process (its output file read back)."""
    out = tmp_path_factory.mktemp("ref") / "ref.ecsv"
    assert main(["fit", "--catalog", str(catalog[0]), "--out", str(out), *FIT_ARGS]) == 0
    assert not os.path.exists(str(out) + ".parts")
    return Table.read(out)


def assert_tables_equal(a, b):
    assert a.colnames == b.colnames
    for c in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[c]), np.asarray(b[c]), err_msg=c)


def test_catalog_mixed_sizes_and_missing_files(catalog, reference):
    path, truth = catalog
    t = reference
    assert list(t["id"]) == [1000 + i for i in range(N)]          # catalogue order, ids kept
    bad = [MISSING_IMAGE, MISSING_SIGMA]
    assert list(t["status"][bad]) == [survey.INPUT_MISSING] * 2
    assert f"g{MISSING_IMAGE}_img.fits" in t["status_msg"][MISSING_IMAGE]
    assert "g_absent_sig.fits" in t["status_msg"][MISSING_SIGMA]
    assert np.all(np.isnan(t["sersic_r_e"][bad])) and np.all(t["dof"][bad] == 0)
    ok = np.setdiff1d(np.arange(N), bad)
    assert np.all(t["status"][ok] == 0)
    # both stamp sizes were fitted in their own pixel frame (padding to 16x16 only masked):
    # every parameter within 4 sigma of the injected truth
    for k in ("x0", "y0", "mag", "r_e", "n", "q"):
        pull = (t[f"sersic_{k}"][ok] - truth[k][ok]) / t[f"sersic_{k}_err"][ok]
        assert np.all(np.abs(pull) < 4), (k, pull)
    small = ok[ok % 3 == 0]
    assert len(small) >= 3
    # dof = used pixels - 7: the padding of the small stamps is not counted
    assert np.all(t["dof"][small] == SMALL ** 2 - 7) and np.all(t["dof"][ok[ok % 3 != 0]] == BIG ** 2 - 7)


def test_cube_stream_equals_in_memory_fit(catalog, reference, tmp_path):
    """A (G, H, W) cube streamed in batches through the CLI equals fit() on the same batches."""
    path, _ = catalog
    d = os.path.dirname(path)
    idx = [i for i in range(N) if i % 3 and i not in (MISSING_IMAGE, MISSING_SIGMA)][:7]
    cube = np.stack([fits.getdata(os.path.join(d, f"g{i}_img.fits")) for i in idx])
    sig = np.stack([fits.getdata(os.path.join(d, f"g{i}_sig.fits")) for i in idx])
    fits.writeto(tmp_path / "cube.fits", cube)
    fits.writeto(tmp_path / "sig.fits", sig)
    out = tmp_path / "cube.fits.ecsv"
    assert main(["fit", str(tmp_path / "cube.fits"), "--sigma", str(tmp_path / "sig.fits"), "--zeropoint", "25",
                 "--out", str(out), *FIT_ARGS]) == 0
    got = Table.read(out)
    # the last batch (3 galaxies) was filled with a copy of its first; the in-memory fit of
    # the same 4 stamps gives the same numbers, bit for bit
    batches = [np.arange(4), np.array([4, 5, 6, 4])]
    parts = [fit("sersic", cube[b], sigma=sig[b], zeropoint=ZP, max_iter=10).to_table() for b in batches]
    for c in ("sersic_x0", "sersic_r_e", "sersic_n", "sersic_r_e_err", "chi2", "n_iter"):
        ref = np.concatenate([np.asarray(p[c]) for p in parts])[:7]
        np.testing.assert_array_equal(np.asarray(got[c]), ref, err_msg=c)
    assert list(got["id"]) == list(range(7))
    # the catalogue run fitted the same stamps from other starting values (some r_e given):
    # the same optimum to a small fraction of the error
    diff = np.abs(np.asarray(got["sersic_r_e"]) - np.asarray(reference["sersic_r_e"][idx]))
    assert np.all(diff < 0.1 * np.asarray(got["sersic_r_e_err"])), diff / np.asarray(got["sersic_r_e_err"])


def test_stream_takes_every_fit_option(catalog, tmp_path):
    """Streaming takes exactly fit()'s options: with --starts 3, --errors bootstrap=8 and
    --mask-neighbours the streamed rows equal fit() with the same options on the same batches;
    and those options acted (bootstrap errors are not the Gauss-Newton ones; the neighbour's
    pixels left the fit)."""
    pytest.importorskip("sep")
    path, _ = catalog
    d = os.path.dirname(path)
    idx = [i for i in range(N) if i % 3 and i not in (MISSING_IMAGE, MISSING_SIGMA)][:5]
    sig = np.stack([fits.getdata(os.path.join(d, f"g{i}_sig.fits")) for i in idx])
    # a compact neighbour in a corner of every stamp
    star = np.asarray(gj.render("sersic", dict(x0=12.5, y0=3.0, mag=17.0, r_e=1.0, n=1.0, q=0.9, pa=0.0),
                                (BIG, BIG), zeropoint=ZP))
    cube = np.stack([fits.getdata(os.path.join(d, f"g{i}_img.fits")) for i in idx]) + star
    fits.writeto(tmp_path / "cube.fits", cube)
    fits.writeto(tmp_path / "sig.fits", sig)
    out = tmp_path / "opts.ecsv"
    opts = ["--starts", "3", "--errors", "bootstrap=8", "--mask-neighbours"]
    assert main(["fit", str(tmp_path / "cube.fits"), "--sigma", str(tmp_path / "sig.fits"), "--zeropoint", "25",
                 "--out", str(out), *opts, *FIT_ARGS]) == 0
    got = Table.read(out)
    options = gj.FitOptions(max_iter=10, starts=3, errors="bootstrap", bootstrap=8, mask_neighbours=True)
    batches = [np.arange(4), np.array([4, 4, 4, 4])]
    parts = [fit("sersic", cube[b], sigma=sig[b], zeropoint=ZP, options=options).to_table() for b in batches]
    for c in ("sersic_x0", "sersic_r_e", "sersic_n", "sersic_r_e_err", "sersic_n_err", "chi2", "dof", "n_iter"):
        ref = np.concatenate([np.asarray(p[c]) for p in parts])[:5]
        np.testing.assert_array_equal(np.asarray(got[c]), ref, err_msg=c)
    plain = fit("sersic", cube[:4], sigma=sig[:4], zeropoint=ZP, max_iter=10, starts=3).to_table()
    assert np.all(np.asarray(got["dof"][:4]) < np.asarray(plain["dof"]))             # neighbour masked
    assert not np.allclose(np.asarray(got["sersic_r_e_err"][:4]), np.asarray(plain["sersic_r_e_err"]))


def test_in_memory_cli_bootstrap_equals_fit(catalog, tmp_path):
    """``galmoss-jax fit CUBE --errors bootstrap=10`` without streaming options (the in-memory
    path) writes the bootstrap errors: those of fit(errors="bootstrap", bootstrap=10) on the
    same cube, bit for bit, not the Gauss-Newton ones (same compiled fit as the runs above)."""
    path, _ = catalog
    d = os.path.dirname(path)
    idx = [i for i in range(N) if i % 3 and i not in (MISSING_IMAGE, MISSING_SIGMA)][:4]
    cube = np.stack([fits.getdata(os.path.join(d, f"g{i}_img.fits")) for i in idx])
    sig = np.stack([fits.getdata(os.path.join(d, f"g{i}_sig.fits")) for i in idx])
    fits.writeto(tmp_path / "cube.fits", cube)
    fits.writeto(tmp_path / "sig.fits", sig)
    out = tmp_path / "boot.ecsv"
    assert main(["fit", str(tmp_path / "cube.fits"), "--sigma", str(tmp_path / "sig.fits"), "--zeropoint", "25",
                 "--errors", "bootstrap=10", "--max-iter", "10", "--out", str(out)]) == 0
    assert not os.path.exists(str(out) + ".parts")
    got = Table.read(out)
    res = fit("sersic", cube, sigma=sig, zeropoint=ZP, max_iter=10, errors="bootstrap", bootstrap=10)
    py = res.to_table()
    gn = np.sqrt(np.diagonal(res.hessian_covariance, axis1=1, axis2=2))      # the Gauss-Newton errors
    for i, name in enumerate(res.free_names):
        c = name.replace(".", "_", 1)
        np.testing.assert_array_equal(np.asarray(got[c]), np.asarray(py[c]), err_msg=c)
        np.testing.assert_array_equal(np.asarray(got[c + "_err"]), np.asarray(py[c + "_err"]), err_msg=c)
        ratio = np.asarray(got[c + "_err"]) / gn[:, i]
        assert np.all(ratio != 1) and 0.5 < np.median(ratio) < 2, (c, ratio)


# catalogue with one PSF per row: two Gaussian PSFs of different widths and sizes (padded to
# the larger within a batch), GalSim galaxies convolved with their own PSF
PSF_SIGMAS = {"psf_narrow.fits": (1.0, 9), "psf_wide.fits": (1.5, 13)}
N_PSF = 8


def test_catalog_with_psfs_recovers_truth(tmp_path):
    """Streaming fits of GalSim galaxies, each convolved with its own PSF (the ``psf`` column
    names a 9x9 or a 13x13 Gaussian image; 16x16 stamps, S/N 80): every parameter within 4
    sigma of the injected truth.  The same catalogue with the PSFs swapped gives sizes > 15 %
    too large (PSF too narrow) or collapsed (too wide): each galaxy was fitted with its own
    PSF, centred in the padded PSF stamp."""
    import galsim

    import _sims as S

    rng = np.random.default_rng(33)
    psfs = {}
    for name, (sigma, side) in PSF_SIGMAS.items():
        psfs[name] = galsim.Gaussian(sigma=sigma)
        img = psfs[name].drawImage(nx=side, ny=side, scale=1.0, method="no_pixel").array.astype(float)
        fits.writeto(tmp_path / name, img / img.sum())
    names = list(PSF_SIGMAS)
    rows, truth = [], []
    for i in range(N_PSF):
        c = (BIG - 1) / 2
        t = dict(x0=c + rng.uniform(-1, 1), y0=c + rng.uniform(-1, 1), mag=rng.uniform(16.0, 17.0),
                 r_e=rng.uniform(1.5, 2.5), n=rng.uniform(0.8, 2.5), q=rng.uniform(0.5, 0.9), pa=rng.uniform(-80, 80))
        psf = names[i % 2]
        gal = galsim.Sersic(t["n"], half_light_radius=t["r_e"] * np.sqrt(t["q"]), flux=10 ** (-0.4 * (t["mag"] - ZP))
                            ).shear(q=t["q"], beta=(t["pa"] + 90.0) * galsim.degrees)
        clean = galsim.Convolve([gal, psfs[psf]]).drawImage(
            nx=BIG, ny=BIG, scale=1.0, method="auto", offset=(t["x0"] - c, t["y0"] - c)).array.astype(float)
        sig = np.full_like(clean, np.sqrt((clean ** 2).sum()) / 80.0)
        fits.writeto(tmp_path / f"p{i}_img.fits", clean + sig * rng.normal(size=clean.shape))
        fits.writeto(tmp_path / f"p{i}_sig.fits", sig)
        start = dict(t, r_e=t["r_e"] * 1.15, n=t["n"] * 0.85, q=min(t["q"] * 1.1, 0.95), pa=t["pa"] + 8.0,
                     mag=t["mag"] + 0.2)
        rows.append(dict(id=i, image=f"p{i}_img.fits", sigma=f"p{i}_sig.fits", psf=psf, zeropoint=ZP,
                         **{f"sersic_{k}": v for k, v in start.items()}))
        truth.append(t)
    truth = {k: np.array([t[k] for t in truth]) for k in truth[0]}
    options = gj.FitOptions(sampling=S.SAMPLING, starts=1)

    def run(catalog, out):
        catalog.write(tmp_path / f"{out}.ecsv")
        gals = survey.catalog_galaxies(tmp_path / f"{out}.ecsv", MODEL)
        assert sorted({g.psf_shape for g in gals}) == [(9, 9), (13, 13)]
        t, summary = survey.fit_survey(gals, MODEL, options=options, out=tmp_path / f"{out}_res.ecsv", batch_size=4,
                                       bucket=8, quiet=True)
        assert summary.n_batches == 2
        return t

    t = run(Table(rows=rows), "own")
    assert np.all(t["status"] == 0)
    for k in ("x0", "y0", "mag", "r_e", "n", "q", "pa"):
        d = t[f"sersic_{k}"] - truth[k]
        pull = (S.wrap_pa(d) if k == "pa" else d) / t[f"sersic_{k}_err"]
        print(f"{k:4s} pulls {np.round(np.asarray(pull), 2)}")
        assert np.all(np.abs(pull) < 4), (k, pull)
    swapped = Table(rows=rows)
    swapped["psf"] = [names[(i + 1) % 2] for i in range(N_PSF)]
    w = run(swapped, "swapped")
    off = np.asarray(w["sersic_r_e"]) / truth["r_e"] - 1
    print("swapped PSFs: r_e / truth - 1", np.round(off, 2), "status", list(w["status"]))
    too_narrow = np.arange(N_PSF) % 2 == 1     # seen through the wide PSF, fitted with the narrow one
    assert np.all(off[too_narrow] > 0.15) and np.all(off[~too_narrow] < -0.4)


def test_existing_output_is_refused(catalog, reference, tmp_path, capsys):
    out = tmp_path / "r.ecsv"
    out.write_text("x")
    assert main(["fit", "--catalog", str(catalog[0]), "--out", str(out), *FIT_ARGS]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--resume" in err and "--overwrite" in err
    # a parts directory of another run (other options) is refused on --resume
    os.makedirs(str(out) + ".parts")
    with open(os.path.join(str(out) + ".parts", "manifest.json"), "w") as f:
        f.write('{"plan": "0", "options": {}, "n_galaxies": 1, "batch_size": 4, "bucket": 8}')
    assert main(["fit", "--catalog", str(catalog[0]), "--out", str(out), "--resume", *FIT_ARGS]) == 2
    assert "different run" in capsys.readouterr().err


def _repair_cache():
    """After a process of this run was killed: the entry it may have been writing to the shared
    compilation cache removed (galmoss_jax.cli.repair_cache), so the other test processes go
    on writing theirs."""
    repair_cache(os.environ["JAX_COMPILATION_CACHE_DIR"], int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))


def test_sigkill_then_resume_equals_uninterrupted(catalog, reference, tmp_path):
    """A run killed (SIGKILL, by the survey's testing hook) right after its first part is
    written leaves that part and no output; --resume fits only the other batches, and the
    merged table equals the uninterrupted run's bit for bit."""
    out = tmp_path / "killed.ecsv"
    parts = tmp_path / "killed.ecsv.parts"
    cmd = _cli("--catalog", str(catalog[0]), "--out", str(out), *FIT_ARGS)
    res = subprocess.run(cmd, env=_env(**{survey.KILL_AFTER_PART_ENV: "0"}), capture_output=True, text=True)
    _repair_cache()
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert not out.exists()
    assert sorted(p.name for p in parts.iterdir() if p.name.startswith("batch-")) == ["batch-000000.fits"]
    res = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{N_OK} succeeded" in res.stdout and f"{N_OK - 4} fitted" in res.stdout
    assert_tables_equal(Table.read(out), reference)
    assert not parts.exists()


def test_dask_local_cluster_equals_streaming(catalog, reference, tmp_path, monkeypatch):
    """Two worker processes fit chunks of two batches; the worker that fits the first chunk
    is killed (SIGKILL, by the survey's testing hook) right after it writes part 0, half-way
    through its chunk; the scheduler reruns the chunk on a new worker, which reads part 0 and
    fits batch 1.  The table equals the uninterrupted run's."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    gals = survey.catalog_galaxies(catalog[0], MODEL)
    out = tmp_path / "dask.ecsv"
    env = {"PYTHONPATH": _env()["PYTHONPATH"], "JAX_PLATFORMS": "cpu", survey.KILL_AFTER_PART_ENV: "0"}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=env) as cluster, distributed.Client(cluster) as client:
        files = client.run(lambda: __import__("galmoss_jax").__file__)
        assert all(f.startswith(ROOT) for f in files.values())
        before = set(client.run(os.getpid).values())
        table, summary = survey.fit_survey(gals, MODEL, options=OPTIONS, out=out, batch_size=4, bucket=8,
                                           client=client, chunk_batches=2, retries=1, quiet=True)
        after = set(client.run(os.getpid).values())
    _repair_cache()
    assert len(before - after) == 1, (before, after)      # one worker was killed (and replaced)
    assert summary.counts == {0: N_OK, survey.INPUT_MISSING: 2}
    assert_tables_equal(Table.read(out), reference)


def test_sharded_over_two_devices_equals_single_device(catalog, reference, tmp_path):
    script = textwrap.dedent(f"""
        import jax
        assert len(jax.devices()) == 2, jax.devices()
        import galmoss_jax as gj
        from galmoss_jax import survey
        s = survey.galaxy_sharding(4)
        assert s is not None and s.mesh.devices.size == 2
        gals = survey.catalog_galaxies({str(catalog[0])!r}, gj.Model("sersic"))
        opts = gj.FitOptions(max_iter=10)
        t, summary = survey.fit_survey(gals, gj.Model("sersic"), options=opts, out={str(tmp_path / 'sharded.ecsv')!r}, batch_size=3,
                                       bucket=8, quiet=True)
        assert summary.n_devices == 2 and summary.batch_size == 4, summary
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert res.returncode == 0, res.stderr[-3000:]
    got = Table.read(tmp_path / "sharded.ecsv")
    assert list(got["status"]) == list(reference["status"])
    for c in reference.colnames:
        if reference[c].dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(got[c]), np.asarray(reference[c]), rtol=1e-9, atol=1e-12, err_msg=c)


def test_plan_is_deterministic_and_bucketed():
    """Batches: one per bucket of padded shapes, catalogue order, PSFs padded to the bucket's
    largest; the plan (and its digest) does not depend on anything but the inputs."""
    def gal(i, shape, psf_shape=None):
        return survey.Galaxy(row=i, id=i, image=f"g{i}.fits", shape=shape, psf="p.fits" if psf_shape else None,
                             psf_shape=psf_shape)
    gals = [gal(0, (20, 20)), gal(1, (33, 30)), gal(2, (24, 17)), gal(3, (30, 40)),
            gal(4, (16, 16), (5, 5)), gal(5, (12, 10), (9, 7)),
            dataclasses.replace(gal(6, (20, 20)), status=survey.INPUT_MISSING, error="x")]
    plan = survey.plan_batches(gals, 2, bucket=16)
    assert [(b.shape, b.psf_shape, [g.row for g in b.galaxies]) for b in plan] == [
        ((16, 16), (9, 7), [4, 5]), ((32, 32), None, [0, 2]), ((32, 48), None, [3]), ((48, 32), None, [1])]
    assert [b.index for b in plan] == list(range(4)) and all(b.size == 2 for b in plan)
    again = survey.plan_batches(list(gals), 2, bucket=16)
    assert survey.plan_digest(plan, gals[-1:]) == survey.plan_digest(again, gals[-1:])
    assert survey.plan_digest(plan, gals[-1:]) != survey.plan_digest(survey.plan_batches(gals, 3, bucket=16), gals[-1:])
    # bucket 1: no stamp padding, one bucket per shape
    assert len(survey.plan_batches(gals, 8, bucket=1)) == 6


def test_input_problems_become_statuses(tmp_path):
    """Scan: a corrupt FITS, a mask of the wrong shape, an even PSF -> status 11; a missing
    file -> 10.  Load: a file gone after the scan -> an empty (fully masked) slot, status 10."""
    good = np.ones((20, 20))
    fits.writeto(tmp_path / "a.fits", good)
    fits.writeto(tmp_path / "m.fits", np.zeros((21, 20)))
    fits.writeto(tmp_path / "p.fits", np.ones((4, 4)))
    (tmp_path / "bad.fits").write_text("not a FITS file")
    cat = Table({"image": ["a.fits", "bad.fits", "a.fits", "a.fits", "gone.fits", "a.fits"],
                 "mask": ["", "", "m.fits", "", "", ""], "psf": ["", "", "", "p.fits", "", ""],
                 "zeropoint": [25.0] * 5 + [np.nan], "sigma": ["a.fits"] * 6})
    gals = survey.catalog_galaxies(cat, "sersic", base_dir=tmp_path)
    assert [g.status for g in gals] == [0, survey.INPUT_INVALID, survey.INPUT_INVALID, survey.INPUT_INVALID,
                                        survey.INPUT_MISSING, survey.INPUT_INVALID]
    assert "not a readable FITS" in gals[1].error and "shape" in gals[2].error and "odd" in gals[3].error
    assert "zero point" in gals[5].error
    gone = dataclasses.replace(gals[0], row=9, image=str(tmp_path / "gone.fits"))
    batch = survey.plan_batches([gals[0], gone], 4, bucket=8)[0]
    bd = survey.load_batch(batch, "sersic")
    assert list(bd.failed) == [1] and bd.failed[1][0] == survey.INPUT_MISSING
    assert bd.arrays["data"].shape == (4, 24, 24)
    m = bd.arrays["mask"]
    assert m[0, :20, :20].all() and not m[0, 20:].any() and not m[0, :, 20:].any() and not m[1].any()
    np.testing.assert_array_equal(bd.arrays["data"][0, :20, :20], good)
    np.testing.assert_array_equal(m[2], m[0])   # padding slots copy the first galaxy
    # initial values by bare, full or column name reach the fit; the rest are left to fit()
    # (which measures them with the PSF, as for an in-memory fit)
    seeded = dataclasses.replace(gals[0], init=(("r_e", 3.25), ("sersic.n", 1.5), ("sersic_q", 0.6)))
    bd = survey.load_batch(survey.plan_batches([seeded], 2, bucket=8)[0], "sersic")
    assert list(bd.arrays["init"]["sersic.r_e"]) == [3.25, 3.25] and bd.arrays["init"]["sersic.n"][0] == 1.5
    assert bd.arrays["init"]["sersic.q"][0] == 0.6 and set(bd.arrays["init"]) == {"sersic.r_e", "sersic.n", "sersic.q"}


def test_stages_overlap_and_a_failed_write_keeps_finished_parts(catalog, reference, tmp_path, monkeypatch):
    """The three stages of a streaming run work side by side: the next batch is prepared
    (initial values) in the reader thread while the engine fits the current one, and the
    tables are written by the writer thread; the run equals the reference, and the summary's
    engine time lies within the run's.  A write that fails stops the run with that error, and
    the parts written before it stay for a resume, which then equals the reference."""
    import threading

    gals = survey.catalog_galaxies(catalog[0], MODEL)
    prepared = threading.Semaphore(0)
    where = {"prepare": set(), "table": set()}
    waited = []
    real_prepare, real_table, real_run = survey.prepare_batch, survey.batch_table, gj._fit._run_prepared

    def prepare(bd, model, options):
        where["prepare"].add(threading.current_thread().name)
        out = real_prepare(bd, model, options)
        prepared.release()
        return out

    def table(bd, model, res):
        where["table"].add(threading.current_thread().name)
        return real_table(bd, model, res)

    def run(prep, sharding=None):
        # the engine's first batch does not return before the next batch has been prepared: a
        # pipeline that prepared each batch in this thread would wait here until the timeout
        if not waited:
            waited.append(prepared.acquire(timeout=60) and prepared.acquire(timeout=60))
        return real_run(prep, sharding)

    monkeypatch.setattr(survey, "prepare_batch", prepare)
    monkeypatch.setattr(survey, "batch_table", table)
    monkeypatch.setattr(gj._fit, "_run_prepared", run)
    out = tmp_path / "staged.ecsv"
    t, summary = survey.fit_survey(gals, MODEL, options=OPTIONS, out=out, batch_size=4, bucket=8, quiet=True)
    assert_tables_equal(Table.read(out), reference)
    assert where == {"prepare": {"galmoss-reader"}, "table": {"galmoss-writer"}}
    assert waited == [True]
    assert 0 < summary.fit_seconds <= summary.seconds and 0 <= summary.idle_fraction < 1

    # a failed write: the error reaches the caller, the parts before it stay, a resume completes
    real_write = survey.write_part
    calls = []

    def write(table, parts_dir, index):
        calls.append(index)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_write(table, parts_dir, index)

    monkeypatch.setattr(survey, "write_part", write)
    out = tmp_path / "failed.ecsv"
    with pytest.raises(OSError, match="disk full"):
        survey.fit_survey(gals, MODEL, options=OPTIONS, out=out, batch_size=4, bucket=8, quiet=True)
    parts = sorted(os.listdir(str(out) + ".parts"))
    assert [p for p in parts if p.startswith("batch-")] == ["batch-000000.fits"]
    monkeypatch.setattr(survey, "write_part", real_write)
    survey.fit_survey(gals, MODEL, options=OPTIONS, out=out, batch_size=4, bucket=8, resume=True, quiet=True)
    assert_tables_equal(Table.read(out), reference)
