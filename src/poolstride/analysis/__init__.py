"""Analysis: honest static cost, graph-aware receptive field, measured latency/memory, gradient flow.

* :func:`inspect` - per-layer shapes, params, MACs, other ops, activation bytes, receptive field (size,
  jump, centre offset) and downsampling sites, with forward and training-step totals;
* :func:`cost_summary` - the forward totals only (a stable helper for other modules);
* :func:`profile` - measured latency (median, IQR) and peak memory;
* :func:`gradflow` and :func:`erf` - gradient norms per layer and the effective receptive field.

>>> from poolstride import analysis, models
>>> s = analysis.cost_summary(models.build("tiny"), (3, 32, 32))
>>> s["macs"], s["rf"], s["jump"]
(2802304, 22.0, 8.0)
"""

from __future__ import annotations

from . import alias
from .alias import AliasResult
from .core import CONVENTIONS, Inspection, Layer, cost_summary, inspect
from .explain import explain_ops, explain_stem, explain_vgg
from .gradflow import ERF, GradFlow, LayerGrad, erf, gradflow
from .profile import BatchProfile, Profile, Timing, profile
from .rf import RF, Axis, chain, merge

__all__ = [
    "AliasResult",
    "CONVENTIONS",
    "ERF",
    "RF",
    "Axis",
    "BatchProfile",
    "GradFlow",
    "Inspection",
    "Layer",
    "LayerGrad",
    "Profile",
    "Timing",
    "alias",
    "chain",
    "cost_summary",
    "erf",
    "explain_ops",
    "explain_stem",
    "explain_vgg",
    "gradflow",
    "inspect",
    "merge",
    "profile",
]
