"""Studies: variants x seeds, resumable and shardable (``poolstride.study``).

>>> import poolstride
>>> summary = poolstride.compare()          # the default study, same as `poolstride compare`
>>> [(v["name"], v["acc_mean"]) for v in summary["variants"]]
"""

from __future__ import annotations

from ..results.study import run_dir_of
from .core import (
    DEFAULT_RECIPE,
    DEFAULT_VARIANTS,
    StudyOptions,
    Variant,
    auto_name,
    compare,
    make_variants,
    parse_seeds,
    parse_shard,
)
from .store import StudyError, acquire_lock, ci95, release_lock, status, summarize_study, write_summary

__all__ = [
    "DEFAULT_RECIPE",
    "DEFAULT_VARIANTS",
    "StudyError",
    "StudyOptions",
    "Variant",
    "acquire_lock",
    "auto_name",
    "ci95",
    "compare",
    "make_variants",
    "parse_seeds",
    "parse_shard",
    "release_lock",
    "run_dir_of",
    "status",
    "summarize_study",
    "write_summary",
]
