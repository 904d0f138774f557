"""galmoss_jax: fit 2-D surface-brightness models to galaxy images with JAX."""
from ._errors import (DataError, GalmossError, InputFileError, OutputFileError, ParameterError,
                      ProfileError, PSFError, ShapeError)
from .galfit import Feedme, fit_feedme, format_feedme, read_constraints, read_feedme, write_feedme
from .imfit import ImfitConfig, fit_imfit, read_imfit_config, write_imfit_params
from .model import Model, Sampling, render
from .profiles import PROFILES, Param, ProfileSpec, get_profile, register_profile
from .sampling import integrate_pixels
from .plot import ImgBlock, elliptical_profile, plot_compare, plot_panels, plot_profile, read_imgblock
from .survey import FitOptions, catalog_galaxies, cube_galaxies, fit_survey
from .init import guess_initial, image_moments, neighbour_mask
from .posterior import forward_model, log_likelihood, sample_nuts

__version__ = "0.1.0"

__all__ = [
    "DataError", "GalmossError", "InputFileError", "OutputFileError", "ParameterError", "ProfileError", "PSFError",
    "ShapeError", "Model", "Sampling", "render", "PROFILES", "Param", "ProfileSpec",
    "get_profile", "register_profile", "integrate_pixels", "__version__",
    "Feedme", "read_feedme", "read_constraints", "fit_feedme", "format_feedme", "write_feedme",
    "ImfitConfig", "read_imfit_config", "fit_imfit", "write_imfit_params",
    "ImgBlock", "elliptical_profile", "plot_compare", "plot_panels", "plot_profile", "read_imgblock",
    "FitOptions", "catalog_galaxies", "cube_galaxies", "fit_survey",
    "guess_initial", "image_moments", "neighbour_mask", "forward_model", "log_likelihood", "sample_nuts",
]
