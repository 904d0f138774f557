"""galmoss_jax: fit 2-D surface-brightness models to galaxy images with JAX."""
from ._errors import (DataError, GalmossError, InputFileError, ParameterError, ProfileError,
                      PSFError, ShapeError)
from .model import Model, Sampling, render
from .profiles import PROFILES, Param, ProfileSpec, get_profile, register_profile
from .sampling import integrate_pixels
from .survey import FitOptions, catalog_galaxies, cube_galaxies, fit_survey

__version__ = "0.1.0"

__all__ = [
    "DataError", "GalmossError", "InputFileError", "ParameterError", "ProfileError", "PSFError",
    "ShapeError", "Model", "Sampling", "render", "PROFILES", "Param", "ProfileSpec",
    "get_profile", "register_profile", "integrate_pixels", "FitOptions", "catalog_galaxies",
    "cube_galaxies", "fit_survey", "__version__",
]
