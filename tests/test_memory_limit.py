"""Memory-aware chunks: a call's compiled program is checked against the device memory
(``memory_limit``, or what the device reports free) before it runs.

The bytes are XLA's own accounting of the compiled program (``memory_analysis``).  What is
checked here is the behaviour around it: a vmapped chunk of galaxies needs about chunk times
the memory of one (the physical expectation: every lane holds its own images, Jacobian and
pixel-integration nodes), a chunk given that does not fit is refused before anything runs with
a chunk that does, the default chunk shrinks until it fits, and the fits are those of one galaxy
at a time.  The CPU backend reports no device memory, so without ``memory_limit`` nothing is
checked there (the default chunk on CPU is one galaxy)."""
from __future__ import annotations

import re

import jax
import numpy as np
import pytest

import galmoss_jax as gj
from galmoss_jax import _engine
from galmoss_jax._fit import FitOptions

G, N = 8, 16
ZP = 25.0
# Adam runs vmapped chunks (each to its slowest member's end), so memory grows with the chunk
OPTS = dict(starts=1, solver="adam", max_iter=5, sampling=gj.Sampling(n_theta=8, n_r=4, mid_window=5, n_mid=4,
                                                                      ring_window=0))
KW = dict(zeropoint=ZP, **OPTS)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    truth = {"sersic.x0": 7.5 + rng.uniform(-1, 1, G), "sersic.y0": 7.5 + rng.uniform(-1, 1, G),
             "sersic.mag": rng.uniform(16, 17, G), "sersic.r_e": rng.uniform(2, 3, G),
             "sersic.n": rng.uniform(1, 2, G), "sersic.q": rng.uniform(0.5, 0.9, G),
             "sersic.pa": rng.uniform(-60, 60, G)}
    clean = np.asarray(gj.render("sersic", truth, (N, N), zeropoint=ZP, sampling=OPTS["sampling"]))
    sigma = np.full_like(clean, 0.02 * clean.max())
    return clean + sigma * rng.normal(size=clean.shape), sigma


def _mib(text, pattern):
    return float(re.search(pattern, text).group(1))


def test_a_chunk_that_does_not_fit_is_refused_with_one_that_does(images):
    data, sigma = images
    # not even one galaxy: the message gives the bytes of a single-galaxy call
    with pytest.raises(gj.MemoryLimitError, match="single galaxy") as e:
        gj.fit("sersic", data, sigma=sigma, chunk_size=8, memory_limit=1024, **KW)
    one = _mib(str(e.value), r"needs ([0-9.]+) MiB")
    assert one > 0
    # room for about 3 galaxies: the chunk of 8 (about 8 vmapped lanes) is refused before it
    # runs, and the message names the chunk of 2, found by halving.  A lane of a vmapped chunk
    # holds more than the single galaxy's program, which has no batch axis (1.4x, measured)
    with pytest.raises(gj.MemoryLimitError, match=r"chunk_size=8: .*chunk_size=2 fits") as e:
        gj.fit("sersic", data, sigma=sigma, chunk_size=8, memory_limit=int(3 * one * 2**20), **KW)
    need8, need2 = _mib(str(e.value), r"needs ([0-9.]+) MiB"), _mib(str(e.value), r"fits \(([0-9.]+) MiB")
    print(f"\nsingle galaxy {one} MiB, chunk of 8 {need8} MiB, chunk of 2 {need2} MiB")
    assert 6 * one < need8 < 14 * one and 1.5 * one < need2 < 3 * one and 3 * need2 < need8 < 5 * need2


def test_the_default_chunk_shrinks_until_it_fits_and_gives_the_same_fits(images, monkeypatch):
    data, sigma = images
    peaks = []
    measure = _engine.program_bytes
    monkeypatch.setattr(_engine, "program_bytes", lambda c: peaks.append(measure(c)) or peaks[-1])
    ref = gj.fit("sersic", data, sigma=sigma, chunk_size=1, **KW)   # one galaxy a call
    assert peaks == []   # the CPU backend reports no device memory: nothing checked
    gj.fit("sersic", data[:1], sigma=sigma[:1], chunk_size=1, memory_limit=2**40, **KW)
    one = peaks.pop()
    # an accelerator's default, the whole batch (8) in one call, under room for ~3 galaxies
    # (a vmapped lane holds more than the single galaxy's program: see above)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    res = gj.fit("sersic", data, sigma=sigma, memory_limit=int(3 * one), **KW)
    assert len(peaks) == 3 and peaks[0] > peaks[1] > peaks[2]   # chunks of 8, 4, 2
    assert peaks[2] <= 3 * one < peaks[1]
    for k in ("r_e", "n", "mag", "q"):
        np.testing.assert_allclose(res[k], ref[k], rtol=1e-9, err_msg=k)
    np.testing.assert_allclose(res.chi2, ref.chi2, rtol=1e-9)


def test_memory_limit_is_checked():
    for bad in (0, -5, 1.5, True, "1GB"):
        with pytest.raises(gj.ParameterError, match="memory_limit"):
            FitOptions(memory_limit=bad)
    # the CPU backend reports no device memory: nothing to check there without a limit
    assert _engine.device_free_bytes() is None
