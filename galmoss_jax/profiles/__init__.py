"""Profile registry: every built-in profile registers itself here on import."""
from ._spec import PROFILES, Param, ProfileSpec, get_profile, register_profile
from . import sersic, sky  # noqa: F401  (registration)

__all__ = ["PROFILES", "Param", "ProfileSpec", "get_profile", "register_profile"]
