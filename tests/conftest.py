"""Test configuration: the reference comparisons run in float64."""
import os

import jax

jax.config.update("jax_enable_x64", True)

DATA = os.path.join(os.path.dirname(__file__), "data")
