"""Operator registry: one :class:`OpInfo` per downsampling operator.

Adding an operator = one small file with a :class:`Downsample` subclass decorated by :func:`register`,
plus an import in ``ops/__init__.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from typing_extensions import Required, TypedDict, Unpack  # typing has them from Python 3.11; torch requires it

from ..errors import SiteError, SpecError
from ..spec import OpSpec, Param, declare, parse


@dataclass(frozen=True)
class Geometry:
    """One stage of an operator's receptive-field geometry along one spatial axis.

    ``kernel`` is the support (after dilation) in input pixels, ``None`` for a global operator
    (spectral methods: every output depends on every input). ``stride`` may be fractional
    (DiffStride). ``padding`` is the padding *before* the first pixel. The centre offset of the first
    output relative to the first input pixel is ``(kernel - 1) / 2 - padding``.
    """

    kernel: int | None
    stride: float
    padding: float = 0.0

    @property
    def center_offset(self) -> float:
        if self.kernel is None:
            return 0.0
        return (self.kernel - 1) / 2 - self.padding


@dataclass(frozen=True)
class OpInfo:
    name: str
    cls: type[Downsample]
    params: tuple[Param, ...]
    summary: str
    source: str
    learnable: bool
    shape_rule: str
    changes_channels: bool = False
    params_formula: str = "0"
    onnx: bool = True
    onnx_note: str = ""


_REGISTRY: dict[str, OpInfo] = {}


class OpDoc(TypedDict, total=False):
    """What an operator declares about itself besides its parameters: the remaining fields of :class:`OpInfo`
    (whose defaults apply to the optional ones)."""

    summary: Required[str]
    source: Required[str]
    learnable: Required[bool]
    shape_rule: Required[str]
    changes_channels: bool
    params_formula: str
    onnx: bool
    onnx_note: str


def register(
    name: str, *, params: Sequence[Param] = (), **doc: Unpack[OpDoc]
) -> Callable[[type[Downsample]], type[Downsample]]:
    """Class decorator that registers a :class:`Downsample` subclass under ``name`` with its parameter schema and
    its :class:`OpDoc` (the remaining :class:`OpInfo` fields)."""

    def deco(cls: type[Downsample]) -> type[Downsample]:
        if name in _REGISTRY:
            raise RuntimeError(f"operator {name!r} registered twice")
        cls.op_name = name
        declare(name, params)
        _REGISTRY[name] = OpInfo(name=name, cls=cls, params=tuple(params), **doc)
        return cls

    return deco


def names() -> list[str]:
    """Names of all registered operators, in registration order."""
    return list(_REGISTRY)


def get_info(name: str) -> OpInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown operator {name!r}; valid operators: {', '.join(_REGISTRY)}") from None


def infos() -> list[OpInfo]:
    return list(_REGISTRY.values())


class Downsample(nn.Module):
    """Base class of every downsampling operator.

    Subclasses set their behaviour from ``self.spec`` (a validated :class:`OpSpec`) and declare:

    * :meth:`out_size` - the output length along one spatial axis for an input length ``n``;
    * :meth:`geometry` - the chain of :class:`Geometry` stages (for receptive-field analysis);
    * :meth:`other_ops` - operations *not* done by ``nn.Conv2d``/``nn.Linear`` submodules
      (pool comparisons/adds, blur taps...), per the counting conventions in the README.
    """

    op_name: str = "?"

    def __init__(self, spec: OpSpec, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        # A map smaller than the operator's window is a user error (SiteError), not a deep torch traceback.
        self.register_forward_pre_hook(_check_input_hook)

    @classmethod
    def can_change_channels(cls, spec: OpSpec) -> bool:
        """Whether this operator (with these arguments) can map in_channels to a different out_channels."""
        return get_info(spec.name).changes_channels

    @property
    def info(self) -> OpInfo:
        return get_info(self.op_name)

    @property
    def learnable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def out_size(self, n: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def out_shape(self, h: int, w: int) -> tuple[int, int]:
        return self.out_size(h), self.out_size(w)

    def geometry(self) -> list[Geometry]:  # pragma: no cover - abstract
        raise NotImplementedError

    def other_ops(self, c: int, h: int, w: int) -> int:
        """Non-conv/linear operations for one sample of input shape (c, h, w)."""
        return 0

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def min_input(self) -> int:
        """The smallest legal input length along one axis."""
        return 1

    def extra_repr(self) -> str:
        return f"spec={self.spec}, in={self.in_channels}, out={self.out_channels}, stride={self.stride}"


class Window(Downsample):
    """An operator with one ``k x k`` window (``k`` from its spec) at its stride, padded by ``(k-1)//2``: the
    output size, geometry and smallest input of a pool or a strided conv."""

    @property
    def k(self) -> int:
        return int(self.spec["k"])

    @property
    def pad(self) -> int:
        return (self.k - 1) // 2

    def out_size(self, n: int) -> int:
        return conv_out(n, self.k, self.stride, self.pad)

    def geometry(self) -> list[Geometry]:
        return [Geometry(self.k, self.stride, self.pad)]

    def min_input(self) -> int:
        return max(1, self.k - 2 * self.pad)


def _check_input_hook(op: Downsample, args: tuple) -> None:
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and x.dim() >= 2 and not torch.jit.is_tracing():
        h, w = x.shape[-2], x.shape[-1]
        if isinstance(h, int) and isinstance(w, int):
            check_input(op, h, w)


def conv_out(n: int, k: int, s: int, p: int, ceil: bool = False) -> int:
    """PyTorch's output length rule for conv/pool: floor((n + 2p - k) / s) + 1 (ceil with ceil_mode)."""
    num = n + 2 * p - k
    return (math.ceil(num / s) if ceil else num // s) + 1


def build(spec: str | OpSpec, in_channels: int, out_channels: int | None = None, stride: int = 2) -> Downsample:
    """Build a downsampling operator from a spec.

    >>> build("blur(base=max,size=3)", 16).out_size(32)
    16

    Raises :class:`SpecError` for a bad spec and :class:`SiteError` when the operator cannot map
    ``in_channels`` to ``out_channels`` (pooling keeps channels: use ``conv``, ``convpool`` or ``s2d``).
    """
    s = parse(spec)
    info = get_info(s.name)
    out = in_channels if out_channels is None else out_channels
    if in_channels < 1 or out < 1:
        raise SiteError(f"{s}: channels must be >= 1 (got in={in_channels}, out={out})")
    if not isinstance(stride, int) or stride < 1:
        raise SiteError(f"{s}: stride must be an integer >= 1 (got {stride!r})")
    if out != in_channels and not info.cls.can_change_channels(s):
        raise SiteError(
            f"{s}: {s.name} keeps the channel count but the site maps {in_channels} -> {out} channels; "
            f"use one of {', '.join(i.name for i in infos() if i.changes_channels)} "
            "or a site whose channels do not change"
        )
    return info.cls(s, in_channels, out, stride)


def check_input(op: Downsample, h: int, w: int) -> None:
    """Raise :class:`SiteError` if a ``h x w`` map is too small for ``op``."""
    m = op.min_input()
    if h < m or w < m:
        raise SiteError(f"{op.spec}: input {h}x{w} is too small; this operator needs at least {m}x{m}")


__all__ = [
    "Downsample",
    "Geometry",
    "OpDoc",
    "OpInfo",
    "Window",
    "build",
    "check_input",
    "conv_out",
    "get_info",
    "infos",
    "names",
    "register",
]
