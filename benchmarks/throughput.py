"""Survey throughput: galaxies per second, peak memory and the time for 10^6 galaxies.

Problem: single-Sérsic galaxies (n 0.7-4, r_e 3-15 px scaled to the stamp, q 0.3-1, random pa,
centres within +-2 px of the middle) rendered by galmoss_jax, convolved with a Moffat PSF
(FWHM 4 px, beta 3.5) sampled at pixel centres, Gaussian noise with a constant sigma per
galaxy (S/N 20-500); float32 (x64 NOT enabled); Levenberg-Marquardt with the default
Gauss-Newton errors; initial values = truth perturbed (sizes 10-20 %, 0.3 mag, <= 1 px, 10 deg).

Two modes.

Grid (default): for every batch size B and stamp side S, N galaxies are written as a FITS cube
(plus a sigma cube) and fitted by a streaming run (:func:`galmoss_jax.survey.fit_survey`: a
reader thread, per-batch part files, the merge), each configuration in its own subprocess (so
its peak RSS is its own).  The compiled function is built first by one ``fit`` call on a batch
of the same shape (*compile*); *gal/s* is then N / the wall time of the whole streaming run;
*10^6 gal* = compile + 10^6 / (gal/s).  Configurations whose estimated time or memory exceeds
``--budget`` or the free memory are skipped and listed.

``--compare-streaming``: N galaxies as individual FITS cutouts (image + sigma) with a catalogue
table and one PSF file, fitted (1) in memory: all stamps already in NumPy arrays, ``fit`` called
on consecutive batches of B (the last one padded), and (2) by a streaming run over the
catalogue (headers scanned, cutouts read and prepared (initial values) ahead by the reader
thread, parts written by the writer thread, merged).  Both use the same compiled function
(built before either is timed) and the same starting values; the script prints both rates and
their ratio (the issue's target: streaming within 10 % of in-memory), the share of each
streaming run in which the engine's stage waited for the other two
(``SurveySummary.idle_fraction``), and checks that the two tables agree.

    python benchmarks/throughput.py --quick                        # a few minutes
    python benchmarks/throughput.py --batch-sizes 1,16,64,256,1024,4096 --stamps 64,128,256 --n 4096
    python benchmarks/throughput.py --compare-streaming --n 10000 --stamp 64 --psf 21 --batch-size 256
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:  # this checkout's galmoss_jax, installed or not
    sys.path.insert(0, ROOT)
ZP = 25.0


def make_galaxies(n, stamp, psf_n, seed, chunk=256):
    """Truth, perturbed init, data and sigma (float32), PSF: rendered in chunks of ``chunk``."""
    import galmoss_jax as gj

    rng = np.random.default_rng(seed)
    c = (stamp - 1) / 2.0
    scale = stamp / 128.0
    truth = dict(x0=c + rng.uniform(-2, 2, n), y0=c + rng.uniform(-2, 2, n), mag=rng.uniform(14, 18, n),
                 r_e=rng.uniform(3, 15, n) * scale, n=rng.uniform(0.7, 4, n), q=rng.uniform(0.3, 1.0, n),
                 pa=rng.uniform(-90, 90, n))
    snr = np.exp(rng.uniform(np.log(20), np.log(500), n))
    yy, xx = np.mgrid[:psf_n, :psf_n] - (psf_n - 1) / 2.0
    alpha = 4.0 / (2 * np.sqrt(2 ** (1 / 3.5) - 1))
    psf = (1 + (xx ** 2 + yy ** 2) / alpha ** 2) ** -3.5
    psf /= psf.sum()
    data = np.empty((n, stamp, stamp), np.float32)
    sigma = np.empty((n, stamp, stamp), np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        clean = np.asarray(gj.render("sersic", {k: v[a:b] for k, v in truth.items()}, (stamp, stamp), psf=psf,
                                     zeropoint=ZP), np.float64)
        s = np.sqrt((clean ** 2).sum(axis=(1, 2))) / snr[a:b]
        sig = np.broadcast_to(s[:, None, None], clean.shape)
        data[a:b] = clean + sig * rng.normal(size=clean.shape)
        sigma[a:b] = sig
    sgn = lambda: rng.choice([-1.0, 1.0], n)  # noqa: E731
    init = dict(x0=truth["x0"] + rng.uniform(-1, 1, n), y0=truth["y0"] + rng.uniform(-1, 1, n),
                mag=truth["mag"] + 0.3 * sgn(), r_e=truth["r_e"] * (1 + sgn() * rng.uniform(0.1, 0.2, n)),
                n=truth["n"] * (1 + sgn() * rng.uniform(0.1, 0.2, n)),
                q=np.clip(truth["q"] * (1 + sgn() * rng.uniform(0.05, 0.15, n)), 0.1, 0.98),
                pa=truth["pa"] + 10.0 * sgn())
    return truth, init, data, sigma, psf.astype(np.float32)


def _peak():
    import jax

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB
    dev = None
    try:
        st = jax.devices()[0].memory_stats()
        if st:
            dev = st.get("peak_bytes_in_use", 0) / 2 ** 20
    except Exception:  # noqa: BLE001 - CPU devices may not implement it
        pass
    return rss, dev


def _warm(B, data, sigma, psf, init, max_iter):
    """Compile the fit core for batches of B (the first B galaxies, padded by repetition)."""
    from galmoss_jax import fit

    idx = np.arange(B) % len(data)
    t = time.perf_counter()
    fit("sersic", data[idx], sigma=sigma[idx], psf=psf, init={k: v[idx] for k, v in init.items()}, zeropoint=ZP,
        max_iter=max_iter)
    return time.perf_counter() - t


def worker_grid(args):
    from astropy.io import fits

    import jax
    from galmoss_jax import survey

    assert not jax.config.jax_enable_x64, "the benchmark is float32"
    B, S, n = args.worker_grid
    t = time.perf_counter()
    truth, init, data, sigma, psf = make_galaxies(n, S, args.psf, args.seed)
    t_data = time.perf_counter() - t
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        fits.writeto(os.path.join(d, "cube.fits"), data)
        fits.writeto(os.path.join(d, "sigma.fits"), sigma)
        fits.writeto(os.path.join(d, "psf.fits"), psf)
        t_compile = _warm(B, data, sigma, psf, init, args.max_iter)
        gals = survey.cube_galaxies(os.path.join(d, "cube.fits"), sigma=os.path.join(d, "sigma.fits"),
                                    psf=os.path.join(d, "psf.fits"), init=init, zeropoint=ZP)
        t = time.perf_counter()
        table, summary = survey.fit_survey(gals, "sersic", max_iter=args.max_iter, out=os.path.join(d, "out.fits"),
                                           batch_size=B,
                                           bucket=args.bucket, quiet=True)
        t_run = time.perf_counter() - t
    rss, dev = _peak()
    ok = np.asarray(table["status"]) == 0
    dre = np.abs(np.asarray(table["sersic_r_e"]) - truth["r_e"]) / truth["r_e"]
    print("RESULT " + json.dumps(dict(B=B, S=S, n=n, t_data=t_data, compile=t_compile, run=t_run,
                                      gal_per_s=n / t_run, ok=float(ok.mean()), idle=summary.idle_fraction,
                                      med_dre=float(np.median(dre[ok])) if ok.any() else None,
                                      med_iter=float(np.median(table["n_iter"])), max_iter=int(np.max(table["n_iter"])),
                                      rss_mb=rss, dev_mb=dev)), flush=True)


def compare_streaming(args):
    """In-memory batched fit vs a streaming run over FITS cutouts, same galaxies and batches."""
    from astropy.io import fits
    from astropy.table import Table

    import jax
    from galmoss_jax import survey
    from galmoss_jax import fit

    assert not jax.config.jax_enable_x64, "the benchmark is float32"
    n, S, B = args.n, args.stamp, args.batch_size
    t = time.perf_counter()
    truth, init, data, sigma, psf = make_galaxies(n, S, args.psf, args.seed)
    print(f"data: {n} galaxies of {S}x{S} rendered in {time.perf_counter() - t:.1f} s", flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        t = time.perf_counter()
        for g in range(n):
            fits.writeto(os.path.join(d, f"g{g:07d}.fits"), data[g])
            fits.writeto(os.path.join(d, f"g{g:07d}_sigma.fits"), sigma[g])
        fits.writeto(os.path.join(d, "psf.fits"), psf)
        cat = Table({"id": np.arange(n), "image": [f"g{g:07d}.fits" for g in range(n)],
                     "sigma": [f"g{g:07d}_sigma.fits" for g in range(n)], "psf": ["psf.fits"] * n,
                     "zeropoint": np.full(n, ZP)})
        for k, v in init.items():
            cat[f"sersic_{k}"] = v
        cat.write(os.path.join(d, "catalog.fits"))
        print(f"wrote {2 * n} cutouts + catalogue in {time.perf_counter() - t:.1f} s", flush=True)
        t_compile = _warm(B, data, sigma, psf, init, args.max_iter)
        print(f"compile (first fit of a batch of {B}): {t_compile:.1f} s", flush=True)
        results = {}
        order = ["memory", "stream"] * args.repeat
        for mode in order:
            t = time.perf_counter()
            c = time.process_time()   # CPU seconds of this process, all threads (robust to other users' load)
            if mode == "memory":
                tabs = []
                for a in range(0, n, B):
                    idx = np.arange(a, a + B)
                    idx = np.where(idx < n, idx, a)          # last batch: padded, not recompiled
                    r = fit("sersic", data[idx], sigma=sigma[idx], psf=psf,
                            init={k: v[idx].astype(np.float32) for k, v in init.items()}, zeropoint=ZP,
                            max_iter=args.max_iter)
                    tabs.append(r.to_table(ids=idx)[: min(B, n - a)])
                from astropy.table import vstack

                table = vstack(tabs)
            else:
                out = os.path.join(d, "out.fits")
                if os.path.exists(out):
                    os.remove(out)
                gals = survey.catalog_galaxies(os.path.join(d, "catalog.fits"), "sersic")
                table, summary = survey.fit_survey(gals, "sersic", max_iter=args.max_iter, out=out, batch_size=B,
                                                   bucket=args.bucket, quiet=True)
                results.setdefault("idle", []).append(summary.idle_fraction)
            dt = time.perf_counter() - t
            dc = time.process_time() - c
            results.setdefault(mode, []).append(dt)
            results.setdefault(mode + "_cpu", []).append(dc)
            results[mode + "_table"] = table
            print(f"{mode:>7}: {n} galaxies in {dt:8.1f} s = {n / dt:7.2f} galaxies/s; CPU {dc:8.1f} s "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    tm, ts = min(results["memory"]), min(results["stream"])
    cm, cs = min(results["memory_cpu"]), min(results["stream_cpu"])
    print(f"CPU time: in-memory {cm:.1f} s, streaming {cs:.1f} s ({100 * (cs / cm - 1):+.1f} %)")
    print("streaming: the engine's stage idle (waiting for reading, initial values or writing) "
          + ", ".join(f"{100 * f:.1f} %" for f in results["idle"]) + " of each run")
    a, b = results["memory_table"], results["stream_table"]
    same = np.allclose(np.asarray(a["sersic_r_e"]), np.asarray(b["sersic_r_e"]), rtol=1e-4, equal_nan=True)
    rss, dev = _peak()
    print(f"in-memory {n / tm:.2f} galaxies/s, streaming {n / ts:.2f} galaxies/s: streaming takes "
          f"{100 * (ts / tm - 1):+.1f} % of the in-memory time (target within +10 %); tables agree: {same}; "
          f"status 0: {float(np.mean(np.asarray(b['status']) == 0)):.3f}; peak RSS {rss:.0f} MB"
          + ("" if dev is None else f", device peak {dev:.0f} MB"))
    print(f"extrapolated 10^6 galaxies: in-memory {1e6 * tm / n / 3600:.1f} h, streaming {1e6 * ts / n / 3600:.1f} h "
          f"(+ {t_compile:.0f} s compile) on this backend")


def environment():
    import jax
    import jaxlib

    dev = jax.devices()
    return (f"python {platform.python_version()}, jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
            f"numpy {np.__version__}\nbackend {jax.default_backend()}, devices {[str(x) for x in dev]} "
            f"({dev[0].device_kind}), x64 {jax.config.jax_enable_x64}, CPU cores {os.cpu_count()}, "
            f"{platform.platform()}, load average {os.getloadavg()}")


def _mem_available_mb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def grid(args):
    Bs = [int(s) for s in args.batch_sizes.split(",")]
    Ss = [int(s) for s in args.stamps.split(",")]
    print(f"problem: single Sérsic, {args.psf}x{args.psf} Moffat PSF, float32, LM, max_iter {args.max_iter}, "
          f"streamed from a FITS cube, seed {args.seed}")
    print(f"{'B':>5} {'stamp':>6} {'N':>6} {'compile s':>9} {'run s':>8} {'gal/s':>8} {'10^6 gal':>10} "
          f"{'status0':>7} {'med|dre|':>8} {'iter med/max':>12} {'maxRSS MB':>9} {'dev MB':>7}")
    t0 = time.perf_counter()
    per_gal = {}   # stamp -> seconds per galaxy of the last run
    rss = {}       # stamp -> [(B, peak RSS MB)] of the runs so far
    skipped = []

    def est_mem(S, B):
        """Peak RSS of (S, B): linear in B through this stamp's last two runs; with one run,
        the growth per batch galaxy of another stamp scaled by the stamp area (or a measured
        default)."""
        pts = rss.get(S, [])
        if len(pts) >= 2:
            (b0, m0), (b1, m1) = pts[-2], pts[-1]
            return m1 + max(0.0, (m1 - m0) / max(b1 - b0, 1)) * (B - b1)
        for S2, p2 in rss.items():
            if len(p2) >= 2 and pts:
                (b0, m0), (b1, m1) = p2[-2], p2[-1]
                slope = max(0.0, (m1 - m0) / max(b1 - b0, 1)) * (S / S2) ** 2
                return pts[-1][1] + slope * (B - pts[-1][0])
        # no second point anywhere: ~1.2 MB per batch galaxy at 128x128 (measured, 2026-12-01)
        b1, m1 = pts[-1] if pts else (0, 1000.0)
        return m1 + 1.2 * (S / 128) ** 2 * (B - b1)
    for S in Ss:
        for B in Bs:
            n = max(B, args.n)
            left = args.budget - (time.perf_counter() - t0)
            if S in per_gal:
                spg = per_gal[S]
                est_t, est_m = 30 + spg * n * 1.5, est_mem(S, B)
                if est_t > left or est_m > 0.8 * _mem_available_mb():
                    skipped.append((B, S, n, est_t, est_m))
                    print(f"{B:>5} {S:>6} {n:>6} skipped: estimated {est_t:.0f} s ({left:.0f} s left), "
                          f"{est_m:.0f} MB", flush=True)
                    continue
            cmd = [sys.executable, os.path.abspath(__file__), "--worker-grid", str(B), str(S), str(n),
                   "--psf", str(args.psf), "--seed", str(args.seed), "--max-iter", str(args.max_iter),
                   "--bucket", str(args.bucket)] + (["--tmp", args.tmp] if args.tmp else [])
            env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
            env.pop("JAX_ENABLE_X64", None)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(f"{B:>5} {S:>6} {n:>6} FAILED (rc {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(line[len("RESULT "):])
            per_gal[S] = r["run"] / n
            rss.setdefault(S, []).append((B, r["rss_mb"]))
            t6 = r["compile"] + 1e6 / r["gal_per_s"]
            dev = "n/a" if r["dev_mb"] is None else f"{r['dev_mb']:.0f}"
            med = "n/a" if r["med_dre"] is None else f"{r['med_dre']:.4f}"
            print(f"{B:>5} {S:>6} {n:>6} {r['compile']:9.1f} {r['run']:8.1f} {r['gal_per_s']:8.2f} "
                  f"{t6 / 3600:8.1f} h {r['ok']:7.3f} {med:>8} {r['med_iter']:7.0f}/{r['max_iter']:<4d} "
                  f"{r['rss_mb']:9.0f} {dev:>7}", flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s (data generation not timed)")
    for B, S, n, t, m in skipped:
        print(f"not measured: B={B}, stamp {S}, N={n} (estimated {t:.0f} s, {m:.0f} MB)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch sizes 1,8,32 on 64x64, N=64, 15x15 PSF")
    ap.add_argument("--batch-sizes", default=None, help="grid: comma-separated (default 1,16,64,256,1024,4096)")
    ap.add_argument("--stamps", default=None, help="grid: stamp sides (default 64,128,256)")
    ap.add_argument("--n", type=int, default=None, help="galaxies per configuration (default 1024; compare: 2000)")
    ap.add_argument("--compare-streaming", action="store_true", help="streaming vs in-memory fit")
    ap.add_argument("--stamp", type=int, default=64, help="compare: stamp side, pixels")
    ap.add_argument("--batch-size", type=int, default=64, help="compare: batch size")
    ap.add_argument("--psf", type=int, default=None, help="PSF side, pixels (default 21; --quick 15)")
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--bucket", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=1, help="compare: alternate the two runs this many times")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--budget", type=float, default=1800.0, help="grid: seconds for all configurations")
    ap.add_argument("--tmp", default=None, help="directory for the temporary FITS files")
    ap.add_argument("--worker-grid", type=int, nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.psf is None:
        args.psf = 15 if args.quick else 21
    if args.worker_grid is not None:
        return worker_grid(args)
    print(environment())
    if args.compare_streaming:
        if args.n is None:
            args.n = 256 if args.quick else 2000
        if args.quick:
            args.batch_size = min(args.batch_size, 32)
        return compare_streaming(args)
    if args.quick:
        args.batch_sizes = args.batch_sizes or "1,8,32"
        args.stamps = args.stamps or "64"
        args.n = args.n or 64
    args.batch_sizes = args.batch_sizes or "1,16,64,256,1024,4096"
    args.stamps = args.stamps or "64,128,256"
    args.n = args.n or 1024
    return grid(args)


if __name__ == "__main__":
    main()
