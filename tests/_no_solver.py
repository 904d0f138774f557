"""A stand-in for the compiled fit core, for tests of the host-side checks (no JAX compile).

It records what the solver would have been given and returns the start as the result
(statistic 0, status 0, no errors), so that everything the host does before and after the
solver runs as in a real fit.
"""
import numpy as np

import galmoss_jax.fit as fit_module
from galmoss_jax.transforms import to_physical


def install(monkeypatch):
    seen = {}

    def fake_core(prob, u0, fvals, data, sigma, mask, psf, zp, gain, rn, sky, psf_batched):
        seen.update(prob=prob, u0=np.asarray(u0), fvals=np.asarray(fvals), data=np.asarray(data), sigma=np.asarray(sigma),
                    mask=np.asarray(mask), psf=None if psf is None else np.asarray(psf))
        G, P = np.shape(u0)
        pf = np.stack([np.asarray(to_physical(np.asarray(u0)[:, i], lo, hi))
                       for i, (lo, hi) in enumerate(prob.free_bounds)], axis=1) if P else np.zeros((G, 0))
        return (pf, np.full((G, P, P), np.nan), np.zeros(G), np.zeros(G, np.int32),
                np.zeros(G, np.int32))

    monkeypatch.setattr(fit_module, "_fit_core", fake_core)
    return seen
