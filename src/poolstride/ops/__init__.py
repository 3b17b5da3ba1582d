"""Downsampling operators behind one spec language.

>>> from poolstride import ops
>>> op = ops.build("blur(base=max,size=3)", 16)
>>> op.out_size(32)
16
"""

from __future__ import annotations

# Importing the modules registers the operators, in this order (the order of `poolstride ops`).
# isort: off
from . import pool as _pool  # noqa: F401
from . import conv as _conv  # noqa: F401
from . import blur as _blur  # noqa: F401
from . import mixed as _mixed  # noqa: F401
from . import spectral as _spectral  # noqa: F401
from . import softpool as _softpool  # noqa: F401
from . import stochastic as _stochastic  # noqa: F401
from . import diffstride as _diffstride  # noqa: F401
from . import aps as _aps  # noqa: F401  (aps, lps)

# isort: on
from ..spec import parse  # noqa: E402 - valid once the operators above are registered (poolstride.parse)
from . import registry as _registry
from .registry import *  # noqa: F403 - the registry's API is the package's

__all__ = [*_registry.__all__, "parse"]
