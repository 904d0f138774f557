"""galmoss_jax: fit 2-D surface-brightness models to galaxy images with JAX."""
from ._errors import (DataError, GalmossError, InputFileError, ParameterError, ProfileError,
                      PSFError, ShapeError)
from .model import Model, Sampling, render
from .profiles import PROFILES, Param, ProfileSpec, get_profile, register_profile
from .sampling import integrate_pixels
from .plot import ImgBlock, elliptical_profile, plot_compare, plot_panels, plot_profile, read_imgblock

__version__ = "0.1.0"

__all__ = [
    "DataError", "GalmossError", "InputFileError", "ParameterError", "ProfileError", "PSFError",
    "ShapeError", "Model", "Sampling", "render", "PROFILES", "Param", "ProfileSpec",
    "get_profile", "register_profile", "integrate_pixels", "ImgBlock", "elliptical_profile", "plot_compare", "plot_panels",
    "plot_profile", "read_imgblock", "__version__",
]
