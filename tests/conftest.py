"""Test configuration: the reference comparisons run in float64; Hypothesis draws the same
examples in every run.

Hypothesis profiles: "ci" (the default) derandomizes every property test, so a run never depends
on a random seed; HYPOTHESIS_PROFILE=explore draws new random examples (and keeps failing ones in
the example database) to hunt for bugs locally.
"""
import os

import jax

jax.config.update("jax_enable_x64", True)

try:
    from hypothesis import settings
except ImportError:  # only the property tests need it
    pass
else:
    settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    settings.register_profile("explore", derandomize=False)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA = os.path.join(os.path.dirname(__file__), "data")
