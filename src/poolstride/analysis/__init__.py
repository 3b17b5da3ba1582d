"""Analysis: honest static cost, graph-aware receptive field, measured latency/memory, gradient flow.

>>> from poolstride import analysis, models
>>> s = analysis.cost_summary(models.build("tiny"), (3, 32, 32))
>>> s["rf"], s["jump"]
(22.0, 8.0)
"""

from __future__ import annotations

from .core import CONVENTIONS, Layer, Report, cost_summary, inspect

__all__ = ["CONVENTIONS", "Layer", "Report", "cost_summary", "inspect"]
