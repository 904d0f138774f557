"""Throughput of ``galmoss_jax.render``: PSF-convolved Sérsic model images per second.

Problem: 128x128 stamps, one Sérsic each (n 0.7-4, r_e 3-15 px, q 0.3-1, random pa,
sub-pixel centres), exact pixel integration (default ``Sampling``), convolved with a 41x41
Moffat PSF (FWHM 4 px, beta 3.5, sampled at pixel centres, sum 1), float32 (x64 is NOT
enabled), on JAX's default device.

For each batch size G the parameters are arrays of length G (one ``render`` call renders the
whole batch).  Reported per batch size:

* first call: the first ``galmoss_jax.render`` call on these shapes (trace + compile + run);
* compile: then trace + lower + XLA compile of the same computation alone
  (``jax.jit(...).lower(params).compile()``);
* steady: after that warm-up, the median over repeated ``render`` calls on the same shapes,
  each ending in ``block_until_ready`` (the public call, host-side PSF check included);
  images/s = G / steady; "best" uses the fastest call instead of the median.

    python benchmarks/render.py              # batches 1, 64, 1024
    python benchmarks/render.py --quick      # batches 1, 8, 64
    python benchmarks/render.py --sizes 1,16 --stamp 64 --psf 21
    python benchmarks/render.py --sampling n_mid=8,n_theta=48,n_r=24   # other Sampling settings
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)  # float32 throughout

import galmoss_jax as gm  # noqa: E402

ZP = 25.0


def moffat_psf(size: int, fwhm: float = 4.0, beta: float = 3.5) -> np.ndarray:
    """Circular Moffat sampled at pixel centres, centred on the middle pixel, sum 1."""
    r_d = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    psf = (1.0 + (x * x + y * y) / r_d ** 2) ** (-beta)
    return (psf / psf.sum()).astype(np.float32)


def make_params(G: int, stamp: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    c = (stamp - 1) / 2.0
    s = stamp / 128.0
    p = dict(x0=c + rng.uniform(-2, 2, G), y0=c + rng.uniform(-2, 2, G), mag=rng.uniform(14, 18, G),
             r_e=rng.uniform(3, 15, G) * s, n=rng.uniform(0.7, 4, G), q=rng.uniform(0.3, 1.0, G),
             pa=rng.uniform(-90, 90, G))
    return {k: v.astype(np.float32) for k, v in p.items()}


def bench(G: int, stamp: int, psf: np.ndarray, min_time: float, max_reps: int, sampling=None):
    params = make_params(G, stamp)
    shape = (stamp, stamp)

    def call():
        return gm.render("sersic", params, shape, psf=psf, zeropoint=ZP,
                         sampling=sampling).block_until_ready()

    t0 = time.perf_counter()
    out = call()                      # first call of the public path: trace + compile + run
    first = time.perf_counter() - t0
    # compile alone: trace + lower + XLA compile of the same computation (AOT, public API;
    # done after the first call, so Python-side trace caches are warm, XLA compiles afresh)
    t0 = time.perf_counter()
    jax.jit(lambda p: gm.render("sersic", p, shape, psf=psf, zeropoint=ZP, sampling=sampling)
            ).lower(params).compile()
    compile_s = time.perf_counter() - t0
    assert out.shape == (G, stamp, stamp) and out.dtype == np.float32, (out.shape, out.dtype)
    assert bool(np.all(np.isfinite(np.asarray(out))))
    times = []
    t_start = time.perf_counter()
    while len(times) < max_reps and (len(times) < 3 or time.perf_counter() - t_start < min_time):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    return dict(G=G, first=first, compile=compile_s, steady=steady, reps=len(times),
                rate=G / steady, best=G / min(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="batches 1, 8, 64")
    ap.add_argument("--sizes", default=None, help="comma-separated batch sizes (overrides --quick)")
    ap.add_argument("--stamp", type=int, default=128, help="stamp side in pixels (default 128)")
    ap.add_argument("--psf", type=int, default=41, help="PSF side in pixels, odd (default 41)")
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds of steady-state timing per size")
    ap.add_argument("--max-reps", type=int, default=50)
    ap.add_argument("--sampling", default="", help="Sampling fields, e.g. n_mid=8,n_theta=48,n_r=24")
    a = ap.parse_args(argv)
    sampling = gm.Sampling(**{k: int(v) for k, v in (kv.split("=") for kv in a.sampling.split(",") if kv)})
    sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else ([1, 8, 64] if a.quick else [1, 64, 1024])

    dev = jax.devices()[0]
    print(f"galmoss_jax {gm.__version__}  jax {jax.__version__}  numpy {np.__version__}  "
          f"python {platform.python_version()}")
    print(f"backend {jax.default_backend()}  device {dev.device_kind} ({dev})  "
          f"host CPUs {os.cpu_count()}  {platform.machine()} {platform.system()}")
    print(f"problem: Sérsic {a.stamp}x{a.stamp}, Moffat PSF {a.psf}x{a.psf} (FWHM 4, beta 3.5), "
          f"float32, {sampling}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'batch':>6} {'first call s':>13} {'compile s':>10} {'steady s/call':>14} {'reps':>5} "
          f"{'images/s':>10} {'ms/image':>9} {'best img/s':>11}")
    psf = moffat_psf(a.psf)
    for G in sizes:
        r = bench(G, a.stamp, psf, a.min_time, a.max_reps, sampling)
        print(f"{r['G']:>6} {r['first']:>13.2f} {r['compile']:>10.2f} {r['steady']:>14.4f} "
              f"{r['reps']:>5} {r['rate']:>10.1f} {1e3 / r['rate']:>9.2f} {r['best']:>11.1f}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
