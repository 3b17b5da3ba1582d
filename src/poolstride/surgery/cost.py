"""Cost as data: parameter and MAC counts for the surgery's before/after tables, and the per-variant cost table
that ``poolstride cost`` prints (:func:`cost_table`, callable from a notebook).

Counts come from :func:`poolstride.analysis.core.cost_summary` (conv/linear MACs and pooling "other ops" per the
project's counting conventions); if the analysis fails on a model, :func:`model_cost` and :func:`site_cost` fall
back to ``torch.utils.flop_counter`` (conv/linear/matmul FLOPs / 2 = MACs; pooling is not counted there and
``other_ops`` is None) and say so with a :class:`CostFallbackWarning`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..analysis.core import CONVENTIONS, cost_summary, inspect
from ..analysis.documents import document_head
from ..analysis.profile import profile
from ..extras import first_line
from .find import eval_mode

#: the ``source`` of :func:`model_cost` when the analysis counted, and when the flop counter did
ANALYSIS_SOURCE = "poolstride.analysis.cost_summary"
FLOP_COUNTER_SOURCE = "torch.utils.flop_counter (FLOPs/2)"


class CostFallbackWarning(UserWarning):
    """The analysis could not count a model: its MACs come from ``torch.utils.flop_counter``, other ops are
    unknown."""


def _flop_macs(m: nn.Module, x: torch.Tensor) -> int:
    with eval_mode(m), torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    return int(fc.get_total_flops()) // 2


def _input_for(m: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    p: torch.Tensor | None = next(m.parameters(), None)
    if p is None:
        p = next((b for b in m.buffers() if b.dtype.is_floating_point), None)
    return torch.zeros(shape, device=None if p is None else p.device, dtype=torch.float32 if p is None else p.dtype)


def _fallback(what: str, e: Exception) -> None:
    warnings.warn(
        f"cost analysis failed on {what} ({type(e).__name__}: {first_line(e)}); MACs from "
        f"{FLOP_COUNTER_SOURCE}, other ops unknown",
        CostFallbackWarning,
        stacklevel=3,
    )


def module_macs(m: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Conv/linear MACs of ``m`` for one input of ``in_shape`` (batch dimension included)."""
    return _flop_macs(m, _input_for(m, tuple(in_shape)))


def site_cost(m: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, int | None]:
    """(conv/linear MACs, other ops or None) of one module for one input of ``in_shape`` (batch 1)."""
    if len(in_shape) == 4 and in_shape[0] == 1:
        try:
            with eval_mode(m):  # restores every submodule's own training flag afterwards
                d = cost_summary(m, tuple(in_shape[1:]))
            return int(d["macs"]), (None if d.get("other_ops") is None else int(d["other_ops"]))
        except Exception as e:  # noqa: BLE001 - fall back to the flop counter, visibly
            _fallback(type(m).__name__, e)
    return module_macs(m, in_shape), None


def model_cost(model: nn.Module, input_size: Iterable[int]) -> dict[str, Any]:
    """``{"params", "macs", "other_ops", "source"}`` for one sample of ``input_size`` (C, H, W)."""
    size = tuple(int(v) for v in input_size)
    try:
        with eval_mode(model):
            d = dict(cost_summary(model, size))
        return {
            "params": int(d.get("params", sum(p.numel() for p in model.parameters()))),
            "macs": int(d["macs"]),
            "other_ops": d.get("other_ops"),
            "source": ANALYSIS_SOURCE,
        }
    except Exception as e:  # noqa: BLE001 - fall back to the flop counter rather than fail a table, visibly
        _fallback(type(model).__name__, e)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": _flop_macs(model, _input_for(model, (1, *size))),
        "other_ops": None,
        "source": FLOP_COUNTER_SOURCE,
    }


# ------------------------------------------------------------------------------------------- cost table
#: the counts :attr:`CostRow.ratio` divides by the first row's
RATIO_KEYS = ("params", "macs", "other_ops", "activation_bytes", "train_step_macs")

#: ``guard(model, label, batch, train)``: a context around each analysis of one model (the CLI turns a failure
#: into a one-line "this input does not fit" error there)
Guard = Callable[[nn.Module, str, int, bool], AbstractContextManager[Any]]


def _no_guard(model: nn.Module, label: str, batch: int, train: bool) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class CostOptions:
    """How :func:`cost_table` measures: ``latency`` (and peak memory) at ``batch`` on ``devices`` (None: the
    CPU, and CUDA when available), median of ``repeats`` timed runs after ``warmup`` untimed ones."""

    latency: bool = True
    batch: int = 1
    repeats: int = 5
    warmup: int = 1
    devices: tuple[str, ...] | None = None

    def device_list(self) -> list[str]:
        if self.devices is not None:
            return list(self.devices)
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@dataclass
class Latency:
    """Measured forward and training-step time (median and IQR, ms) and peak memory on one device."""

    batch: int
    forward_ms: float
    forward_iqr_ms: float
    train_step_ms: float | None
    train_step_iqr_ms: float | None
    peak_memory_bytes: int | None
    memory_method: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CostRow:
    """One variant: static counts at batch 1, the measured latency per device (None when not measured), and the
    ratio of each count to the table's first row (:data:`RATIO_KEYS`, and ``forward_ms_DEVICE``)."""

    variant: str
    params: int
    trainable_params: int
    macs: int
    flops: int
    other_ops: int
    activation_bytes: int
    train_step_macs: int
    rf: float | None
    jump: float | None
    misaligned: int
    latency: dict[str, Latency] | None = None
    ratio: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["latency"] = None if self.latency is None else {k: v.to_json() for k, v in self.latency.items()}
        d["ratio"] = dict(self.ratio)
        return d


@dataclass
class CostSubject:
    """A model to cost: its row name, the module, and notes about how it was built (printed once each)."""

    name: str
    model: nn.Module
    notes: Sequence[str] = ()


@dataclass
class CostTable:
    """What ``poolstride cost`` prints: one :class:`CostRow` per variant of ``model`` at ``input_size``."""

    model: str
    input_size: tuple[int, ...]
    num_classes: int | None
    notes: list[str]
    options: CostOptions
    devices: list[str]
    rows: list[CostRow]

    def to_json(self) -> dict[str, Any]:
        """The ``poolstride cost --json`` document (``"schema": 1``, docs/analysis.md)."""
        return {
            **document_head(self.model, self.input_size),
            "num_classes": self.num_classes,
            "notes": self.notes,
            "latency_batch": self.options.batch if self.options.latency else None,
            "devices": self.devices if self.options.latency else [],
            "conventions": CONVENTIONS,
            "variants": [r.to_json() for r in self.rows],
        }


def _measure(m: nn.Module, size: Sequence[int], device: str, opts: CostOptions) -> Latency:
    p = profile(m, size, device, batch_sizes=(opts.batch,), warmup=opts.warmup, repeats=opts.repeats)
    b = p.batches[0]
    return Latency(
        batch=opts.batch,
        forward_ms=b.forward.median_ms,
        forward_iqr_ms=b.forward.iqr_ms,
        train_step_ms=b.train_step.median_ms if b.train_step else None,
        train_step_iqr_ms=b.train_step.iqr_ms if b.train_step else None,
        peak_memory_bytes=b.peak_memory_bytes,
        memory_method=p.memory_method,
    )


def cost_row(
    name: str, m: nn.Module, size: Sequence[int], opts: CostOptions, label: str | None = None, guard: Guard = _no_guard
) -> CostRow:
    """The counts (and, with ``opts.latency``, the measured latency) of one model; ``ratio`` is left empty."""
    label = label or name
    with warnings.catch_warnings(), guard(m, label, 1, False):
        warnings.simplefilter("ignore")
        t = inspect(m, size).totals
    row = CostRow(
        variant=name,
        params=t["params"],
        trainable_params=t["trainable_params"],
        macs=t["macs"],
        flops=t["flops"],
        other_ops=t["other_ops"],
        activation_bytes=t["activation_bytes"],
        train_step_macs=t["train_step"]["macs"],
        rf=t["rf"],
        jump=t["jump"],
        misaligned=len(t["misaligned"]),
    )
    if opts.latency:
        row.latency = {}
        for d in opts.device_list():
            with guard(m, label, opts.batch, True):
                row.latency[d] = _measure(m, size, d, opts)
            if d == "cuda":
                m.to("cpu")
    return row


def _ratios(row: CostRow, first: CostRow, devices: list[str]) -> dict[str, float | None]:
    ratio: dict[str, float | None] = {}
    for k in RATIO_KEYS:
        a, b = getattr(row, k), getattr(first, k)
        ratio[k] = a / b if b else None
    if row.latency is not None and first.latency is not None:
        for d in devices:
            a, b = row.latency[d].forward_ms, first.latency[d].forward_ms
            ratio[f"forward_ms_{d}"] = a / b if b else None
    return ratio


def cost_table(
    subjects: Iterable[CostSubject | tuple[str, nn.Module]],
    input_size: Sequence[int],
    options: CostOptions | None = None,
    *,
    model: str = "model",
    num_classes: int | None = None,
    guard: Guard = _no_guard,
) -> CostTable:
    """One :class:`CostRow` per subject (a :class:`CostSubject` or a ``(name, module)`` pair), in order, with each
    row's ratio to the first. ``subjects`` may be a generator: each model is built, costed and released before the
    next. ``guard`` wraps each analysis (see :data:`Guard`).

    >>> from poolstride import models
    >>> t = cost_table([("tiny", models.build("tiny"))], (3, 32, 32), CostOptions(latency=False), model="tiny")
    >>> t.rows[0].macs, t.rows[0].ratio["macs"]
    (2802304, 1.0)
    """
    opts = options or CostOptions()
    devices = opts.device_list()
    size = tuple(int(v) for v in input_size)
    rows: list[CostRow] = []
    notes: list[str] = []
    for s in subjects:
        subject = s if isinstance(s, CostSubject) else CostSubject(*s)
        for line in subject.notes:
            if line not in notes:
                notes.append(line)
        label = f"{model} ({subject.name})"
        rows.append(cost_row(subject.name, subject.model, size, opts, label, guard))
    for row in rows:
        row.ratio = _ratios(row, rows[0], devices)
    return CostTable(model, size, num_classes, notes, opts, devices, rows)


__all__ = [
    "CostFallbackWarning",
    "CostOptions",
    "CostRow",
    "CostSubject",
    "CostTable",
    "Latency",
    "cost_row",
    "cost_table",
    "model_cost",
    "module_macs",
    "site_cost",
]
