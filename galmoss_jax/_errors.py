"""Typed errors.

Every error the library raises on bad input is a :class:`GalmossError` (a ``ValueError``),
and its message names the offending argument and what was expected.  Numerical failures of
one galaxy inside a batch are never raised: they are status codes in that galaxy's row.
"""
from __future__ import annotations


class GalmossError(ValueError):
    """Base class of every error galmoss_jax raises on bad input."""


class ShapeError(GalmossError):
    """An array has the wrong number of dimensions or a shape that does not match."""


class ParameterError(GalmossError):
    """An unknown parameter or component name, a bad bound, tie or fixed value."""


class ProfileError(GalmossError):
    """An unknown profile, or a profile definition that is not valid."""


class PSFError(GalmossError):
    """A PSF image that cannot be used (even sides, all zero, too large, ...)."""


class DataError(GalmossError):
    """Image, sigma or mask values that cannot be used."""


class MemoryLimitError(GalmossError):
    """A chunk of galaxies whose compiled fit needs more device memory than ``memory_limit``
    (or the device's free memory) allows: raised before the program runs, with the bytes it
    needs and the chunk size that would fit."""


class InputFileError(GalmossError):
    """A missing, unreadable or malformed input file."""


class OutputFileError(InputFileError):
    """An output that cannot be written: it exists (and overwriting was not asked for), its
    directory is missing, or the write failed (full disk, no permission).  A subclass of
    :class:`InputFileError`, which is what file problems on either side were reported as."""
