"""A stand-in for the compiled engine, for tests of the host-side checks (no JAX compile).

It records what the engine would have been given and returns the start as the result
(statistic 0, status 0, no errors), so that everything the host does before and after the
engine runs as in a real fit.
"""
import numpy as np

import galmoss_jax._engine as engine
from galmoss_jax import Status


def install(monkeypatch):
    seen = {}

    def fake_vmapped(problem, u0, galaxies, psf, psf_batched):
        u0 = np.asarray(u0)
        seen.update(prob=problem, u0=u0, fvals=np.asarray(galaxies.fixed), data=np.asarray(galaxies.data),
                    sigma=np.asarray(galaxies.sigma), mask=np.asarray(galaxies.mask),
                    psf=None if psf is None else np.asarray(psf))
        G, P = u0.shape
        lay = problem.layout
        x = np.asarray(lay.to_physical(u0)).reshape(G, P)
        params = {k: np.asarray(v) for k, v in lay.expand(x, np.asarray(galaxies.fixed)).items()}
        n_pixels = np.asarray(galaxies.mask).reshape(G, -1).sum(1).astype(np.int32)
        status = np.where(n_pixels == 0, int(Status.NO_DATA), int(Status.SUCCESS)).astype(np.int32)  # as the engine
        return engine.Solution(params=params, covariance=np.full((G, P, P), np.nan), chi2=np.zeros(G),
                               n_iter=np.zeros(G, np.int32), status=status, n_pixels=n_pixels, free_names=lay.free)

    monkeypatch.setattr(engine, "_solve_vmapped", fake_vmapped)

    def fake_single(problem, u0, galaxy, psf):   # the call of one galaxy: solve's program
        sol = fake_vmapped(problem, np.asarray(u0)[None], engine.jax.tree.map(lambda x: np.asarray(x)[None], galaxy),
                           psf, False)
        return engine.jax.tree.map(lambda v: v[0], sol)

    monkeypatch.setattr(engine, "_solve_jit", fake_single)
    return seen
