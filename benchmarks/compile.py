"""Compile time of a fit, and its run time once compiled, under the XLA settings of the process.

Problem: ``G`` (default 8) single-Sérsic galaxies on ``--stamp`` x ``--stamp`` pixels (default
64) with a 21 x 21 Gaussian PSF (sigma 1.5 px), float64, fitted by ``gj.fit`` with the defaults
(``starts="auto"``) and with ``starts=1`` from a start near the truth.  Printed: the wall time of
the first call (tracing + compiling + running), the seconds XLA spent compiling each program
(JAX's compile log), and the best of ``--repeat`` later calls.  Run it once per setting:

    python benchmarks/compile.py
    XLA_FLAGS=--xla_cpu_use_fusion_emitters=false python benchmarks/compile.py

No persistent compilation cache is used (``JAX_COMPILATION_CACHE_DIR`` is cleared).
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import time

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)


class _CompileLog(logging.Handler):
    """Seconds of XLA compilation per program, from JAX's compile log."""
    RX = re.compile(r"Finished (XLA compilation of|tracing) (.+?) in ([0-9.e-]+) s")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seconds = collections.Counter()

    def emit(self, record):
        m = self.RX.search(record.getMessage())
        if m:
            kind = "xla" if m.group(1).startswith("XLA") else "trace"
            self.seconds[(kind, m.group(2).split(" ")[0])] += float(m.group(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--galaxies", type=int, default=8)
    ap.add_argument("--stamp", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import jax
    import numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_log_compiles", True)
    log = _CompileLog()
    for name in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax._src.compiler"):
        logger = logging.getLogger(name)
        logger.addHandler(log)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False

    import galmoss_jax as gj

    G, H = args.galaxies, args.stamp
    yy, xx = np.mgrid[-10:11, -10:11]
    psf = np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.5 ** 2))
    psf /= psf.sum()
    rng = np.random.default_rng(1)
    truth = {"sersic.x0": H / 2 + rng.uniform(-1, 1, G), "sersic.y0": H / 2 + rng.uniform(-1, 1, G),
             "sersic.mag": rng.uniform(17, 19, G), "sersic.r_e": rng.uniform(3, 8, G),
             "sersic.n": rng.uniform(0.8, 4, G), "sersic.q": rng.uniform(0.4, 0.9, G),
             "sersic.pa": rng.uniform(-80, 80, G)}
    clean = np.asarray(gj.render("sersic", truth, (H, H), psf=psf, zeropoint=25.0))
    sigma = 0.02 * clean.max(axis=(1, 2), keepdims=True) * np.ones_like(clean)
    data = clean + sigma * rng.normal(size=clean.shape)
    init = {k: v * (1.1 if k.endswith(("r_e", "n")) else 1.0) for k, v in truth.items()}
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, {G} galaxies {H}x{H}, 21x21 PSF, "
          f"{jax.default_backend()}, {len(os.sched_getaffinity(0))} cores")
    for label, kw in (("starts=1", dict(starts=1, init=init)), ("defaults", {})):
        log.seconds.clear()
        t = time.perf_counter()
        gj.fit("sersic", data, sigma=sigma, psf=psf, zeropoint=25.0, **kw)
        first = time.perf_counter() - t
        later = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            res = gj.fit("sersic", data, sigma=sigma, psf=psf, zeropoint=25.0, **kw)
            later.append(time.perf_counter() - t)
        big = {k: v for k, v in log.seconds.items() if v > 0.05}
        xla = sum(v for (kind, _), v in log.seconds.items() if kind == "xla")
        trace = sum(v for (kind, _), v in log.seconds.items() if kind == "trace")
        print(f"{label:9s} first call {first:.2f} s (XLA {xla:.2f} s, tracing {trace:.2f} s), "
              f"then {min(later):.3f} s; status 0: {int(np.sum(res.status == 0))}/{G}")
        for (kind, name), v in sorted(big.items(), key=lambda kv: -kv[1]):
            print(f"    {kind:5s} {name:28s} {v:.2f} s")


if __name__ == "__main__":
    main()
