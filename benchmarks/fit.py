"""Throughput of ``galmoss_jax.fit`` on batches of single-Sérsic galaxies.

Problem: 128x128 stamps, one Sérsic each (n 0.7-4, r_e 3-15 px, q 0.3-1, random pa,
sub-pixel centres), convolved with a 41x41 Moffat PSF (FWHM 4 px, beta 3.5, sampled at pixel
centres), per-pixel sigma maps, S/N 20-500 (log-uniform), float32 (x64 is NOT enabled),
Levenberg-Marquardt with ``fit``'s default errors (Gauss-Newton covariance; ``--errors``
hessian / none to change), initial values = truth perturbed (sizes 10-20 %, 0.3 mag, <= 1 px,
10 deg).

Truth: GalSim (``Convolve([gal, psf]).drawImage(method='auto')``, the exact continuous
convolution) by default, or galmoss_jax's own renderer with ``--truth galmoss``.  Noise:
Gaussian, seeded; sigma^2 = s_bg^2 (1 + image / max(image)) (a background plus a source term
that doubles the variance at the peak), s_bg set so that the matched-filter S/N
sqrt(sum(image^2 / sigma^2)) equals the drawn S/N.

Each batch size runs in a fresh subprocess (so its peak RSS is its own) and is timed twice:
the first call (trace + compile + run) and the second call on the same shapes (steady state;
``fit`` returns NumPy arrays, i.e. it has blocked on the result).  Compile time is reported as
first - second.  Sizes whose estimated time would exceed ``--budget`` seconds are skipped
and listed.

    python benchmarks/fit.py                 # sizes 1, 64, 256, 1024, 10-minute budget
    python benchmarks/fit.py --quick         # sizes 1, 8 on 64x64 stamps with a 21x21 PSF
    python benchmarks/fit.py --sizes 1,16 --budget 300
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ZP = 25.0


def make_batch(G, stamp, psf_n, seed, truth_kind):
    """Truth parameters, noisy data, sigma maps, PSF image and perturbed initial values."""
    rng = np.random.default_rng(seed)
    c = (stamp - 1) / 2.0
    scale = stamp / 128.0
    truth = dict(x0=c + rng.uniform(-2, 2, G), y0=c + rng.uniform(-2, 2, G), mag=rng.uniform(14, 18, G),
                 r_e=rng.uniform(3, 15, G) * scale, n=rng.uniform(0.7, 4, G), q=rng.uniform(0.3, 1.0, G),
                 pa=rng.uniform(-90, 90, G))
    snr = np.exp(rng.uniform(np.log(20), np.log(500), G))
    import galsim

    psf_prof = galsim.Moffat(beta=3.5, fwhm=4.0)
    psf = psf_prof.drawImage(nx=psf_n, ny=psf_n, scale=1.0, method="no_pixel").array.astype(np.float64)
    psf /= psf.sum()
    if truth_kind == "galsim":
        clean = np.empty((G, stamp, stamp))
        for g in range(G):
            q = truth["q"][g]
            gal = galsim.Sersic(truth["n"][g], half_light_radius=truth["r_e"][g] * np.sqrt(q),
                                flux=10 ** (-0.4 * (truth["mag"][g] - ZP)))
            gal = gal.shear(q=q, beta=(truth["pa"][g] + 90.0) * galsim.degrees)
            off = (truth["x0"][g] - (stamp - 1) / 2.0, truth["y0"][g] - (stamp - 1) / 2.0)
            clean[g] = galsim.Convolve([gal, psf_prof]).drawImage(
                nx=stamp, ny=stamp, scale=1.0, method="auto", offset=off).array
    else:
        import galmoss_jax as gj

        clean = np.asarray(gj.render("sersic", truth, (stamp, stamp), psf=psf, zeropoint=ZP), np.float64)
    shape_f = 1.0 + clean / clean.max(axis=(1, 2), keepdims=True)
    s_bg = np.sqrt((clean ** 2 / shape_f).sum(axis=(1, 2))) / snr
    sigma = s_bg[:, None, None] * np.sqrt(shape_f)
    data = clean + sigma * rng.normal(size=clean.shape)
    sgn = lambda: rng.choice([-1.0, 1.0], G)  # noqa: E731
    init = dict(x0=truth["x0"] + rng.uniform(-1, 1, G), y0=truth["y0"] + rng.uniform(-1, 1, G),
                mag=truth["mag"] + 0.3 * sgn(), r_e=truth["r_e"] * (1 + sgn() * rng.uniform(0.1, 0.2, G)),
                n=truth["n"] * (1 + sgn() * rng.uniform(0.1, 0.2, G)),
                q=np.clip(truth["q"] * (1 + sgn() * rng.uniform(0.05, 0.15, G)), 0.1, 0.98),
                pa=truth["pa"] + 10.0 * sgn())
    return truth, data.astype(np.float32), sigma.astype(np.float32), psf.astype(np.float32), init


def worker(args):
    """One batch size, in this process: prints one JSON line."""
    import jax

    from galmoss_jax import fit

    assert not jax.config.jax_enable_x64, "the benchmark is float32"
    G = args.worker
    t = time.perf_counter()
    truth, data, sigma, psf, init = make_batch(G, args.stamp, args.psf, args.seed, args.truth)
    t_data = time.perf_counter() - t
    kw = dict(sigma=sigma, psf=psf, init=init, zeropoint=ZP, errors=None if args.errors == "none" else args.errors)
    t0 = time.perf_counter()
    r1 = fit("sersic", data, **kw)
    t1 = time.perf_counter()
    r = fit("sersic", data, **kw)
    t2 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB
    dev = jax.devices()[0]
    dev_peak = None
    try:
        stats = dev.memory_stats()
        if stats:
            dev_peak = stats.get("peak_bytes_in_use", None)
    except Exception:  # noqa: BLE001 - CPU devices may not implement it
        pass
    re_fit = np.asarray(r.values["sersic.r_e"], float)
    ok = r.status == 0
    out = dict(G=G, t_data=t_data, first=t1 - t0, steady=t2 - t1, compile=(t1 - t0) - (t2 - t1),
               gal_per_s=G / (t2 - t1), ok_frac=float(ok.mean()),
               med_dre=float(np.median(np.abs(re_fit - truth["r_e"]) / truth["r_e"])),
               med_dre_ok=float(np.median(np.abs(re_fit[ok] - truth["r_e"][ok]) / truth["r_e"][ok])) if ok.any() else None,
               med_iter=float(np.median(r.n_iter)), max_iter=int(np.max(r.n_iter)), rss_mb=rss_mb, dev_peak_mb=None if dev_peak is None else dev_peak / 2 ** 20,
               status_counts={int(k): int(v) for k, v in zip(*np.unique(r.status, return_counts=True))},
               same=bool(np.array_equal(r1.status, r.status)))
    print("RESULT " + json.dumps(out), flush=True)


def environment():
    import galsim
    import jax
    import jaxlib
    import optax

    dev = jax.devices()
    return (f"python {platform.python_version()}, jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
            f"numpy {np.__version__}, optax {optax.__version__}, galsim {galsim.__version__}\n"
            f"backend {jax.default_backend()}, devices {[str(d) for d in dev]} ({dev[0].device_kind}), "
            f"x64 {jax.config.jax_enable_x64}, CPU cores {os.cpu_count()}, {platform.platform()}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=None, help="comma-separated batch sizes (default 1,64,256,1024)")
    ap.add_argument("--quick", action="store_true", help="sizes 1,8 on 64x64 stamps with a 21x21 PSF")
    ap.add_argument("--stamp", type=int, default=None, help="stamp side, pixels (default 128)")
    ap.add_argument("--psf", type=int, default=None, help="PSF side, pixels (default 41)")
    ap.add_argument("--truth", choices=("galsim", "galmoss"), default="galsim")
    ap.add_argument("--errors", choices=("gn", "hessian", "none"), default="gn",
                    help="covariance: Gauss-Newton (fit's default), full Hessian, or none")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--budget", type=float, default=600.0, help="seconds for all sizes (estimate-based skip)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stamp is None:
        args.stamp = 64 if args.quick else 128
    if args.psf is None:
        args.psf = 21 if args.quick else 41
    if args.worker is not None:
        return worker(args)
    sizes = [int(s) for s in (args.sizes or ("1,8" if args.quick else "1,64,256,1024")).split(",")]

    print(environment())
    print(f"problem: {args.stamp}x{args.stamp} single Sérsic, {args.psf}x{args.psf} Moffat PSF, sigma maps, "
          f"S/N 20-500, float32, LM, errors={args.errors}, truth {args.truth}, seed {args.seed}")
    hdr = (f"{'G':>6} {'first s':>9} {'compile s':>9} {'steady s':>9} {'gal/s':>9} {'status0':>8} "
           f"{'med|dre|/re':>11} {'iter med/max':>12} {'maxRSS MB':>9} {'dev peak MB':>11}")
    print(hdr)
    t_start = time.perf_counter()
    last = None
    skipped = []
    rows = []
    for G in sizes:
        left = args.budget - (time.perf_counter() - t_start)
        if last is not None:
            est = last["compile"] * 1.1 + 2.2 * G / last["gal_per_s"] + last["t_data"] * G / last["G"]
            if est > left:
                skipped.append((G, est))
                print(f"{G:>6} skipped: estimated {est:.0f} s > {left:.0f} s left of the budget", flush=True)
                continue
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(G), "--stamp", str(args.stamp),
               "--psf", str(args.psf), "--truth", args.truth, "--seed", str(args.seed), "--errors", args.errors]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{G:>6} FAILED (rc {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
            continue
        res = json.loads(line[len("RESULT "):])
        rows.append(res)
        last = res
        dev = "n/a" if res["dev_peak_mb"] is None else f"{res['dev_peak_mb']:.0f}"
        print(f"{G:>6} {res['first']:9.1f} {res['compile']:9.1f} {res['steady']:9.2f} {res['gal_per_s']:9.2f} "
              f"{res['ok_frac']:8.3f} {res['med_dre']:11.4f} {res['med_iter']:7.0f}/{res['max_iter']:<4d} {res['rss_mb']:9.0f} {dev:>11}"
              f"   status counts {res['status_counts']}", flush=True)
    print(f"total {time.perf_counter() - t_start:.0f} s; data generation not included in the timings")
    for G, est in skipped:
        print(f"not measured: G={G} (estimated {est:.0f} s, over the {args.budget:.0f} s budget)")
    return rows


if __name__ == "__main__":
    main()
