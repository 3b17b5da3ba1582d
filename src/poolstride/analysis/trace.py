"""The one ``torch.fx`` tracer of poolstride.

Leaf rule (shared by the analysis graph capture and the surgery site finder): a module is a leaf when it
is a registered poolstride operator (:class:`~poolstride.ops.Downsample`, traced as one call whose cost
comes from its declared geometry) or when ``torch.fx`` treats it as one by default (the standard
``torch.nn`` layers). The residual shortcut helper :func:`poolstride.models.shortcuts.match` is
auto-wrapped, so its shape-dependent branches do not break the trace.
"""

from __future__ import annotations

from torch import fx, nn

from ..models.shortcuts import match as _shortcut_match
from ..ops.registry import Downsample


def is_leaf(m: nn.Module) -> bool:
    """True for a registered poolstride operator (one node in the graph, never traced through)."""
    return isinstance(m, Downsample)


class Tracer(fx.Tracer):
    """fx tracer that keeps poolstride operators (and torch's own layers) as leaves."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=(_shortcut_match,))

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_leaf(m) or super().is_leaf_module(m, module_qualified_name)


def symbolic_trace(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` with :class:`Tracer`; raises whatever the trace raises."""
    tracer = Tracer()
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def try_trace(model: nn.Module) -> tuple[fx.GraphModule | None, str | None]:
    """Trace ``model``; returns (GraphModule, None) or (None, the reason it failed: ``Type: first line``)."""
    try:
        return symbolic_trace(model), None
    except Exception as e:  # noqa: BLE001 - any trace failure means "no graph"; the reason is reported
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"{type(e).__name__}: {msg[:200]}"


__all__ = ["Tracer", "is_leaf", "symbolic_trace", "try_trace"]
