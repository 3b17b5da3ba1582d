"""poolstride: should this layer downsample with pooling or with a strided convolution? Measure it."""

from __future__ import annotations

__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin while waiting are catastrophic on a shared or oversubscribed CPU (10x slower
# training measured on 2 busy cores); must be set before torch is first imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import TYPE_CHECKING

from .errors import DataError, ModelError, PoolstrideError, SiteError, SpecError

if TYPE_CHECKING:
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

# Heavy entry points load on first use, so that `import poolstride` stays light (no torch). `parse` comes through
# `poolstride.ops`: importing it registers the operators whose schemas parse() validates against.
_LAZY = {"parse": "poolstride.ops", "OpSpec": "poolstride.spec"}
_LAZY |= {"inspect": "poolstride.analysis", "profile": "poolstride.analysis", "gradflow": "poolstride.analysis"}
_LAZY.update(sites="poolstride.surgery", convert="poolstride.surgery")
_LAZY.update(compare="poolstride.study")


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'poolstride' has no attribute {name!r}")
