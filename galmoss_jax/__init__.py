"""galmoss_jax: fit 2-D surface-brightness models to galaxy images with JAX."""
from ._errors import (DataError, GalmossError, InputFileError, ParameterError, ProfileError,
                      PSFError, ShapeError)
from .model import Model, Sampling, render
from .profiles import PROFILES, Param, ProfileSpec, get_profile, register_profile
from .sampling import integrate_pixels
from .init import guess_initial, image_moments, neighbour_mask
from .posterior import forward_model, log_likelihood, sample_nuts

__version__ = "0.1.0"

__all__ = [
    "DataError", "GalmossError", "InputFileError", "ParameterError", "ProfileError", "PSFError",
    "ShapeError", "Model", "Sampling", "render", "PROFILES", "Param", "ProfileSpec",
    "get_profile", "register_profile", "integrate_pixels", "guess_initial", "image_moments",
    "neighbour_mask", "forward_model", "log_likelihood", "sample_nuts", "__version__",
]
