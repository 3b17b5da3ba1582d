"""Typed exceptions. Every user error raised by the library is a :class:`PoolstrideError`;
the CLI turns it into one line on stderr and exit status 2."""

from __future__ import annotations


class PoolstrideError(Exception):
    """Base class of the errors a user can cause (bad spec, bad model name, bad data...)."""


class SpecError(PoolstrideError, ValueError):
    """A downsampling spec string (or policy) is malformed, names an unknown operator,
    or has an unknown argument or an out-of-range value. The message lists what is valid."""


class SiteError(PoolstrideError, ValueError):
    """An operator cannot be placed at a site (channel mismatch, map too small...)."""


class ModelError(PoolstrideError, ValueError):
    """Unknown model name or bad model arguments."""


class DataError(PoolstrideError, ValueError):
    """Unknown dataset, missing or corrupted files."""
