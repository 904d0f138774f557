"""Profile registry: every built-in profile registers itself here on import."""
from ._spec import PROFILES, Param, ProfileSpec, get_profile, register_profile
from . import (broken_exponential, core_sersic, edge_on_disk, ferrer, king,  # noqa: F401  (registration)
               nuker, sersic, sky)

__all__ = ["PROFILES", "Param", "ProfileSpec", "get_profile", "register_profile"]
