"""Parameter and MAC counts for the surgery's before/after tables.

Uses :func:`poolstride.analysis.cost_summary` (conv/linear MACs and pooling "other ops" per the project's
counting conventions); if the analysis fails on a model, falls back to ``torch.utils.flop_counter``
(conv/linear/matmul FLOPs / 2 = MACs; pooling is not counted there and ``other_ops`` is None).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def _summary() -> Any:
    from ..analysis import cost_summary

    return cost_summary


def _flop_macs(m: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from .find import eval_mode

    with eval_mode(m), torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    return int(fc.get_total_flops()) // 2


def _input_for(m: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    p: torch.Tensor | None = next(m.parameters(), None)
    if p is None:
        p = next((b for b in m.buffers() if b.dtype.is_floating_point), None)
    return torch.zeros(shape, device=None if p is None else p.device, dtype=torch.float32 if p is None else p.dtype)


def module_macs(m: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Conv/linear MACs of ``m`` for one input of ``in_shape`` (batch dimension included)."""
    return _flop_macs(m, _input_for(m, tuple(in_shape)))


def site_cost(m: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, int | None]:
    """(conv/linear MACs, other ops or None) of one module for one input of ``in_shape`` (batch 1)."""
    cs = _summary()
    if cs is not None and len(in_shape) == 4 and in_shape[0] == 1:
        from .find import eval_mode

        try:
            with eval_mode(m):  # restores every submodule's own training flag afterwards
                d = cs(m, tuple(in_shape[1:]))
            return int(d["macs"]), (None if d.get("other_ops") is None else int(d["other_ops"]))
        except Exception:  # noqa: BLE001 - fall back to the flop counter
            pass
    return module_macs(m, in_shape), None


def model_cost(model: nn.Module, input_size: Iterable[int]) -> dict[str, Any]:
    """``{"params", "macs", "other_ops", "source"}`` for one sample of ``input_size`` (C, H, W)."""
    size = tuple(int(v) for v in input_size)
    cs = _summary()
    if cs is not None:
        from .find import eval_mode

        try:
            with eval_mode(model):
                d = dict(cs(model, size))
            return {
                "params": int(d.get("params", sum(p.numel() for p in model.parameters()))),
                "macs": int(d["macs"]),
                "other_ops": d.get("other_ops"),
                "source": "poolstride.analysis.cost_summary",
            }
        except Exception:  # noqa: BLE001 - fall back to the flop counter rather than fail a table
            pass
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": _flop_macs(model, _input_for(model, (1, *size))),
        "other_ops": None,
        "source": "torch.utils.flop_counter (FLOPs/2)",
    }


__all__ = ["model_cost", "module_macs", "site_cost"]
