"""Batch throughput on an accelerator: galaxies/s, lane occupancy and peak device memory.

One command, at most ~5 minutes on one GPU (``--budget``, seconds, skips what would not fit):

    python benchmarks/gpu.py                  # 64^2 and 128^2 stamps, batches 256 ... 16384
    python benchmarks/gpu.py --quick          # CPU check of the script: 32^2, batches 16, 64

Problem: single Sérsic galaxies (``benchmarks/fit.py``'s ``make_batch`` with galmoss_jax as the
renderer, so that 16k stamps are drawn in seconds: n 0.7-4, r_e 3-15 px x stamp/128, q 0.3-1,
S/N 20-500, Gaussian noise) with a 41x41 Moffat PSF (FWHM 4 px, beta 3.5) given as an image,
and bulge (Sérsic) + disk (exponential) galaxies with a shared centre on the same stamps;
float32 (the accelerator's precision); started near the truth (sizes 10-20 %, 0.3 mag, <= 1 px,
10 deg), ``fit(..., starts=1, chunk_size=L)``: ``L = min(batch, --lanes)`` refilled lanes
(``galmoss_jax.solvers.queue``), the default Gauss-Newton errors.

Printed per (model, stamp, batch): the first call (trace + compile + run), the steady time of a
second call on new galaxies of the same shapes, galaxies/s, LM iterations (median / max),
lane occupancy = evaluations / (lanes x passes) of the refilled loop, and the device's peak
memory (``memory_stats()['peak_bytes_in_use']``; resident memory of the process on CPU).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def bulge_disk_batch(G, stamp, psf, seed):
    import numpy as np

    import galmoss_jax as gj
    from fit import ZP

    rng = np.random.default_rng(seed)
    c, s = (stamp - 1) / 2.0, stamp / 128.0
    bt = rng.uniform(0.2, 0.6, G)
    tot = rng.uniform(14.0, 17.0, G)
    truth = {"bulge.x0": c + rng.uniform(-2, 2, G), "bulge.y0": c + rng.uniform(-2, 2, G),
             "bulge.mag": tot - 2.5 * np.log10(bt), "bulge.r_e": rng.uniform(2.0, 5.0, G) * s,
             "bulge.n": rng.uniform(2.0, 4.5, G), "bulge.q": rng.uniform(0.6, 0.95, G),
             "bulge.pa": rng.uniform(-90, 90, G), "disk.mag": tot - 2.5 * np.log10(1 - bt),
             "disk.r_s": rng.uniform(4.0, 12.0, G) * s, "disk.q": rng.uniform(0.3, 0.9, G),
             "disk.pa": rng.uniform(-90, 90, G)}
    model = gj.Model("bulge:sersic+disk:exponential", tied={"disk.x0": "bulge.x0", "disk.y0": "bulge.y0"})
    clean = np.asarray(gj.render(model, truth, (stamp, stamp), psf=psf, zeropoint=ZP), np.float64)
    snr = np.exp(rng.uniform(np.log(50), np.log(500), G))
    sigma = np.broadcast_to((np.sqrt((clean ** 2).sum(axis=(1, 2))) / snr)[:, None, None], clean.shape).copy()
    data = clean + sigma * rng.normal(size=clean.shape)
    init = {k: v + (rng.uniform(-1, 1, G) if k.endswith(("x0", "y0")) else rng.choice([-0.3, 0.3], G)
                    if k.endswith("mag") else rng.choice([-10.0, 10.0], G) if k.endswith("pa") else 0.0)
            for k, v in truth.items()}
    for k in ("bulge.r_e", "bulge.n", "disk.r_s"):
        init[k] = truth[k] * (1 + rng.choice([-1, 1], G) * rng.uniform(0.1, 0.2, G))
    for k in ("bulge.q", "disk.q"):
        init[k] = np.clip(truth[k] * (1 + rng.choice([-1, 1], G) * rng.uniform(0.05, 0.1, G)), 0.1, 0.98)
    return model, data.astype(np.float32), sigma.astype(np.float32), init


def peak_memory_mb():
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2 ** 20, "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process RSS"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stamps", default="64,128")
    ap.add_argument("--batches", default="256,1024,4096,16384")
    ap.add_argument("--models", default="sersic,bulge_disk")
    ap.add_argument("--lanes", type=int, default=4096, help="most refilled lanes (chunk_size) per call")
    ap.add_argument("--psf", type=int, default=41)
    ap.add_argument("--budget", type=float, default=290.0, help="seconds; later sizes are skipped")
    ap.add_argument("--quick", action="store_true", help="32x32 stamps, 21x21 PSF, batches 16, 64")
    args = ap.parse_args(argv)
    if args.quick:
        args.stamps, args.batches, args.psf, args.lanes = "32", "16,64", 21, 16
    t_start = time.time()

    import jax
    import numpy as np

    import galmoss_jax as gj
    from galmoss_jax import _engine
    from fit import ZP, make_batch

    dev = jax.devices()[0]
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, device {dev.device_kind} x{len(jax.devices())}, "
          f"float32, lanes <= {args.lanes}", flush=True)
    print(f"{'model':>10s} {'stamp':>5s} {'batch':>6s} {'lanes':>6s} {'first s':>8s} {'steady s':>8s} {'gal/s':>8s} "
          f"{'iter med/max':>12s} {'occupancy':>9s} {'peak MB':>9s}", flush=True)
    counters = getattr(_engine, "refill_counters", None)
    last = last_G = None
    for stamp in (int(s) for s in args.stamps.split(",")):
        for model_name in args.models.split(","):
            for G in (int(b) for b in args.batches.split(",")):
                left = args.budget - (time.time() - t_start)
                if last is not None and last * G / last_G * 2.2 > left:
                    print(f"{model_name:>10s} {stamp:5d} {G:6d}  skipped: about {last * G / last_G * 2.2:.0f} s, "
                          f"{left:.0f} s of the budget left", flush=True)
                    continue
                sets = []
                for seed in (1, 2):   # the first call compiles, the second (new galaxies) is timed
                    truth, data, sigma, psf, init = make_batch(G, stamp, args.psf, seed, "galmoss")
                    model = "sersic"
                    if model_name == "bulge_disk":
                        model, data, sigma, init = bulge_disk_batch(G, stamp, psf, seed)
                    sets.append((model, data, sigma, psf, init))
                lanes = min(G, args.lanes)
                times, stats = [], []
                for model, data, sigma, psf, init in sets:
                    with (counters() if counters else _nullcontext()) as rec:
                        t = time.time()
                        res = gj.fit(model, data, sigma=sigma, psf=psf, init=init, zeropoint=ZP, starts=1,
                                     chunk_size=lanes)
                        times.append(time.time() - t)
                    stats = list(rec or [])
                steady = times[1]
                last, last_G = steady + times[0], G
                occ = (sum(float(s.evaluations) for s in stats) /
                       max(sum(float(s.lanes) * float(s.passes) for s in stats), 1)) if stats else float("nan")
                mem, where = peak_memory_mb()
                it = res.n_iter
                print(f"{model_name:>10s} {stamp:5d} {G:6d} {lanes:6d} {times[0]:8.1f} {steady:8.2f} {G / steady:8.1f} "
                      f"{int(np.median(it)):5d} / {int(it.max()):4d} {occ:9.3f} {mem:9.0f}", flush=True)
    print(f"peak memory: {where}; total {time.time() - t_start:.0f} s", flush=True)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
