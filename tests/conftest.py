"""Test configuration.

* The reference comparisons run in float64 (``jax_enable_x64``); tests/test_float32.py and the
  solver tests' float32 cases switch it off in their own bodies.
* One persistent JAX compilation cache, in the user's cache folder
  (``$XDG_CACHE_HOME/galmoss_jax/jax_compilation_cache``, by default under ``~/.cache``; set
  ``JAX_COMPILATION_CACHE_DIR`` to use another): the test processes (pytest-xdist workers),
  their subprocesses (CLI, Dask workers, notebooks) and later runs, from this checkout or a
  fresh clone, compile each program once.  Its size is bounded (1 GiB, least recently used
  programs evicted first).  A cached program is the compiled program itself, keyed by the
  program, the JAX version and the XLA flags, so results do not depend on whether it came
  from the cache.  On a machine without it the suite compiles everything (benchmarks/README.md:
  the CI figures, cold and warm).
* XLA:CPU compiles with its LLVM IR emitters (``FAST_COMPILE``, below): the same programs,
  compiled in about 40 % less time.
* Python's cyclic garbage collector runs less often in the test processes (below): tracing
  leaves millions of long-lived objects (JAX's caches of traced and compiled programs) that
  every full collection scans again.  Reference counting still frees everything else at once;
  only how often cycles are looked for changes, so no result depends on it.
* Hypothesis profiles: "ci" (the default) derandomizes every property test, so a run never
  depends on a random seed; HYPOTHESIS_PROFILE=explore draws new random examples (and keeps
  failing ones in the example database) to hunt for bugs locally.
"""
import gc
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cache_dir() -> str:
    """The compilation cache's folder: ``JAX_COMPILATION_CACHE_DIR`` if set, else the user's
    cache folder (the folder of ``galmoss_jax.cli.default_cache_dir``, written out here because
    importing the package would load JAX before this file has set up its environment), else
    (not writable) ``.jax_cache/`` in the checkout (git-ignored)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for path in (os.path.join(base, "galmoss_jax", "jax_compilation_cache"), os.path.join(ROOT, ".jax_cache")):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    return os.path.join(ROOT, ".jax_cache")


# environment variables, so that the subprocesses (CLI, Dask workers, notebook kernels) share it
CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir()
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# bytes, LRU eviction (needs filelock): the command's bound, galmoss_jax.cli.CACHE_MAX_BYTES
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 ** 30))

#: XLA:CPU's LLVM IR emitters instead of its newer MLIR fusion emitters: the same optimised HLO
#: programs, compiled in ~40 % less time (a single-Sersic LM fit: 2.6 -> 1.5 s; the screen of
#: starts: 0.7 -> 0.4 s), LM run at the same speed, the float32 screen 10-16 % slower
#: (benchmarks/compile.py).  Compiling is most of the suite's time on two cores.
#: tests/test_example.py fits a galaxy in a subprocess with XLA's default settings and checks it
#: against the same fit in the test process, so both code generators are held to one answer.
#: GALMOSS_TEST_XLA_DEFAULTS=1 runs everything with the defaults.
FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"


def _with_fast_compile(flags: str) -> str:
    """``flags`` plus :data:`FAST_COMPILE` where this jaxlib accepts it (XLA aborts on a flag it
    does not know, so a version without it runs the suite with the defaults)."""
    if os.environ.get("GALMOSS_TEST_XLA_DEFAULTS") or "xla_cpu_use_fusion_emitters" in flags:
        return flags
    trial = f"{flags} {FAST_COMPILE}".strip()
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices('cpu')"], env=dict(os.environ, XLA_FLAGS=trial),
                           capture_output=True, timeout=300)
    return trial if probe.returncode == 0 else flags


# set before jax starts a backend, and inherited by the pytest-xdist workers and every subprocess
os.environ["XLA_FLAGS"] = _with_fast_compile(os.environ.get("XLA_FLAGS", ""))

#: gc thresholds (700, 10, 10 by default): a young collection every 100,000 net allocations and a
#: full one every 20 x 50 of those.  Four of the longest test modules on two workers: 83-85 s
#: (121-123 s user) against 87-90 s (126-132 s) with the defaults; the whole suite 5:19 against
#: 5:28, the same peak memory (4.9 GB in the largest process).
gc.set_threshold(100_000, 50, 20)

import jax  # noqa: E402  (after the environment that configures its cache)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))

from galmoss_jax.cli import repair_cache  # noqa: E402

# an entry left unfinished by a killed process (the survey tests kill runs on purpose) would stop
# JAX from writing any new program to the cache, in this run and every later one
repair_cache(CACHE, int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))

try:
    from hypothesis import settings
except ImportError:  # only the property tests need it
    pass
else:
    settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    settings.register_profile("explore", derandomize=False)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA = os.path.join(os.path.dirname(__file__), "data")


# The longest modules first (measured, cold compilation cache): pytest-xdist hands whole files
# (--dist loadfile) to the two workers in collection order, so a long file collected last would
# leave one worker idle at the end.
SLOW_FIRST = ("test_notebooks.py", "test_fit_recovery.py", "test_init_multistart.py", "test_engine.py", "test_bands.py",
              "test_survey.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(SLOW_FIRST)))
