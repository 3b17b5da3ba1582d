"""poolstride: should this layer downsample with pooling or with a strided convolution? Measure it."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DataError, ModelError, PoolstrideError, SiteError, SpecError
from .spec import OpSpec, parse

__all__ = [
    "DataError",
    "ModelError",
    "OpSpec",
    "PoolstrideError",
    "SiteError",
    "SpecError",
    "__version__",
    "parse",
]
