"""A joint fit in three bands against a one-band fit of the same galaxies.

Problem: ``G`` (default 64) GalSim Sérsic galaxies drawn in g, r, i (``tests/test_bands.py``'s
simulation: 32x32 stamps, a different Gaussian PSF per band, S/N 25 / 150 / 80, shared centre
and shape, r_e and n linear in wavelength), float64.  Timed, after one run to compile:

* ``one band``: ``fit("sersic", r-band cube, ...)``;
* ``three bands``: ``fit(Model("sersic", bands={"mag": "free", "r_e": 1, "n": 1}), {g, r, i}, ...)``,

both from the same start near the truth (``starts=1``) and with the defaults (``starts="auto"``:
one band screens its starts; three bands screen the same starts in every band, r_e and n
taking each band's best, and run the joint fit once).  Printed: seconds,
galaxies/s and the ratio three bands / one band (target <= 3.5: three bands hold three times
the pixels), in wall time and in the process's CPU time (less sensitive to a shared machine's
other load; each the best of ``--repeat`` runs, one band and three bands alternated).

    python benchmarks/bands.py [--galaxies 64] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--galaxies", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import jax
    jax.config.update("jax_enable_x64", True)
    import test_bands as T

    import galmoss_jax as gj

    T.G = args.galaxies
    data, sigma, psf, truth, start = T.three_bands.__wrapped__()
    one_init = {k: start[f"sersic_{k}_r"] if f"sersic_{k}_r" in start else start[f"sersic_{k}"]
                for k in ("x0", "y0", "mag", "r_e", "n", "q", "pa")}

    def one_band(starts):
        kw = {"init": one_init} if starts == 1 else {}
        return gj.fit("sersic", data["r"], sigma=sigma["r"], psf=psf["r"], zeropoint=T.ZP, sampling=T.SAMPLING,
                      starts=starts, **kw)

    def three_bands(starts):
        kw = {"init": start} if starts == 1 else {}
        return gj.fit(T.MODEL, data, sigma=sigma, psf=psf, zeropoint=T.ZP, wavelength=T.WAVE, sampling=T.SAMPLING,
                      starts=starts, **kw)

    print(f"{args.galaxies} galaxies, 32x32 stamps, 11x11 PSFs, backend {jax.default_backend()}, "
          f"{len(os.sched_getaffinity(0))} cores")
    runs = (("one band", one_band), ("three bands", three_bands))
    for starts in (1, "auto"):
        times, cpu, res = {}, {}, {}
        for name, f in runs:
            f(starts)   # compile
            times[name] = cpu[name] = float("inf")
        for _ in range(args.repeat):   # alternated, so that a slow spell of the machine hits both
            for name, f in runs:
                t0, c0 = time.perf_counter(), time.process_time()
                res[name] = f(starts)
                times[name] = min(times[name], time.perf_counter() - t0)
                cpu[name] = min(cpu[name], time.process_time() - c0)
        for name, _ in runs:
            ok = int((res[name].status == 0).sum())
            print(f"  starts={starts!s:5} {name:12} {times[name]:7.2f} s  {args.galaxies / times[name]:7.1f} gal/s  "
                  f"CPU {cpu[name]:6.2f} s  status 0: {ok}/{args.galaxies}  mean n_iter {res[name].n_iter.mean():.1f}")
        print(f"  starts={starts!s:5} three bands / one band: {times['three bands'] / times['one band']:.2f} "
              f"(CPU time of the process, all threads: {cpu['three bands'] / cpu['one band']:.2f})")


if __name__ == "__main__":
    main()
