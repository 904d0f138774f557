"""Cost of one forward-mode Jacobian of a render: the whole model differentiated at once against
each surface component differentiated in its own parameters, its magnitude's and the zero
point's derivatives written from its light (``split_jacobian``, what Levenberg-Marquardt's
problem uses).

Models: a Sérsic (7 free parameters), bulge (Sérsic) + disc (exponential) (13) and four
Sérsics (28), on a square stamp with a 27 x 27 Gaussian PSF and the default ``Sampling``.
Printed: the best of 3 rounds of 20 calls of the jitted Jacobian, in ms, for each model and
mode, and the largest difference between the two Jacobians relative to its largest entry.

    python benchmarks/jacobian.py [--stamp 128] [--float32]
"""
from __future__ import annotations

import argparse
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stamp", type=int, default=128)
    ap.add_argument("--float32", action="store_true")
    args = ap.parse_args()

    import jax
    jax.config.update("jax_enable_x64", not args.float32)
    import jax.numpy as jnp
    import numpy as np

    import galmoss_jax as gj
    from galmoss_jax.model import _render_one
    from galmoss_jax.psf import stamp_psf_transform

    H = args.stamp
    yy, xx = np.mgrid[-13:14, -13:14]
    psf = np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.5 ** 2))
    psf /= psf.sum()
    psf_fft = stamp_psf_transform(jnp.asarray(psf), (H, H), 1)
    c = H / 2.0

    def ellipse(x0, mag, size, n, q, pa):
        return {"x0": c + x0, "y0": c - 0.2, "mag": mag, "r_e": size, "n": n, "q": q, "pa": pa}

    models = {
        "sersic": {"sersic." + k: v for k, v in ellipse(0.3, 18.0, 6.0, 2.5, 0.7, 20.0).items()},
        "bulge:sersic+disk:exponential": {
            **{"bulge." + k: v for k, v in ellipse(0.3, 19.0, 2.0, 3.5, 0.8, 20.0).items()},
            **{"disk." + k: v for k, v in ellipse(0.3, 18.5, 7.0, 1.0, 0.5, 40.0).items()
               if k not in ("r_e", "n")}, "disk.r_s": 7.0},
        "a:sersic+b:sersic+c:sersic+d:sersic": {
            f"{name}.{k}": v for i, name in enumerate("abcd")
            for k, v in ellipse(0.3 + i, 19.0 + 0.3 * i, 2.0 + i, 1.0 + 0.5 * i, 0.8 - 0.1 * i, 20.0 * i).items()},
    }

    def best_ms(f, x, n=20):
        f(x).block_until_ready()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                f(x).block_until_ready()
            best = min(best, (time.perf_counter() - t0) / n)
        return 1e3 * best

    print(f"{H} x {H} stamp, 27 x 27 PSF, {'float32' if args.float32 else 'float64'}, backend "
          f"{jax.default_backend()}, jax {jax.__version__}")
    for spec, values in models.items():
        m = gj.Model(spec)
        names = m.free_names
        x = jnp.asarray([values[n] for n in names])

        def render(v, split, m=m, names=names, values=values):
            p = {n: jnp.asarray(values.get(n, 0.0), v.dtype) for n in m.param_names}
            p.update(zip(names, v))
            return _render_one(m, p, (H, H), psf_fft, psf.shape, 1, 25.0, gj.Sampling(), split_jacobian=split)

        jac = {split: jax.jit(jax.jacfwd(lambda v, s=split: render(v, s))) for split in (False, True)}
        whole, split = best_ms(jac[False], x), best_ms(jac[True], x)
        a, b = np.asarray(jac[False](x)), np.asarray(jac[True](x))
        print(f"{spec:38s} {len(names):3d} free: whole {whole:7.2f} ms, by component {split:7.2f} ms "
              f"({whole / split:.2f}x); max |difference| / max |J| {np.abs(a - b).max() / np.abs(a).max():.1e}",
              flush=True)


if __name__ == "__main__":
    main()
