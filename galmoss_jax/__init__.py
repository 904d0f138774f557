"""galmoss_jax: fit 2-D surface-brightness models to galaxy images with JAX.

The public API is flat: ``gj.render`` / ``gj.Renderer`` (the forward model), ``gj.solve`` /
``gj.Solution`` (the pure-JAX fit of one galaxy: jit, vmap and grad), ``gj.fit`` /
``gj.FitOptions`` / ``gj.FitResult`` (batches from NumPy, with automatic starts and errors),
``gj.Model``, the solvers and ``gj.Status``.
"""
from ._errors import (DataError, GalmossError, InputFileError, MemoryLimitError, OutputFileError, ParameterError,
                      ProfileError, PSFError, ShapeError)
from ._status import STATUS_MESSAGES, Status
from ._layout import ParamLayout
from ._noise import mask_from_bad_pixels, sigma_from_data, usable_pixels
from .likelihood import Statistic
from .model import Model, Renderer, Sampling, render
from .profiles import PROFILES, Param, ProfileSpec, get_profile, register_profile
from .sampling import integrate_pixels
from .solvers import LevenbergMarquardt, OptaxSolver
from ._engine import Errors, Solution, solve
from .results import FitResult
from ._fit import FitOptions, fit
from .galfit import Feedme, fit_feedme, format_feedme, read_constraints, read_feedme, write_feedme
from .imfit import ImfitConfig, fit_imfit, read_imfit_config, write_imfit_params
from .plot import (ImgBlock, elliptical_profile, plot_bands, plot_compare, plot_panels, plot_profile,
                   read_imgblock)
from .survey import catalog_galaxies, cube_galaxies, fit_survey
from .init import guess_initial, image_moments, neighbour_mask
from .posterior import forward_model, log_likelihood, sample_nuts

__version__ = "0.1.0"

__all__ = [
    "DataError", "GalmossError", "InputFileError", "MemoryLimitError", "OutputFileError", "ParameterError", "ProfileError", "PSFError",
    "ShapeError", "Status", "STATUS_MESSAGES", "ParamLayout", "mask_from_bad_pixels", "sigma_from_data",
    "usable_pixels", "Statistic", "Model", "Renderer", "Sampling", "render", "PROFILES", "Param", "ProfileSpec",
    "get_profile", "register_profile", "integrate_pixels", "LevenbergMarquardt", "OptaxSolver", "Errors",
    "Solution", "solve", "FitResult", "FitOptions", "fit", "__version__",
    "Feedme", "read_feedme", "read_constraints", "fit_feedme", "format_feedme", "write_feedme",
    "ImfitConfig", "read_imfit_config", "fit_imfit", "write_imfit_params",
    "ImgBlock", "elliptical_profile", "plot_bands", "plot_compare", "plot_panels", "plot_profile", "read_imgblock",
    "catalog_galaxies", "cube_galaxies", "fit_survey",
    "guess_initial", "image_moments", "neighbour_mask", "forward_model", "log_likelihood", "sample_nuts",
]
