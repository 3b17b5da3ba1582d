"""Per-node rules: conv/linear MACs, other ops, receptive-field geometry (conventions in docs/conventions.md).

Each captured :class:`~poolstride.analysis.graph.Step` is classified once; the classification gives its
geometry along H and W (a list of ``(kernel, stride, padding)`` stages, ``"global"``, or ``None`` for
"unchanged"), its other ops and their kind, and whether it is a pure view / data movement.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.registry import Downsample
from .graph import Inner, Ref, Step, TMeta

Stage = tuple[float, float, float]

ACT_MODULES: tuple[type, ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
    nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.PReLU, nn.Hardtanh, nn.Softplus, nn.Softsign, nn.Tanhshrink,
)  # fmt: skip
NORM_MODULES: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)  # fmt: skip
PASS_MODULES: tuple[type, ...] = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout)
PAD_MODULES: tuple[type, ...] = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)

ACT_FUNCS: set[Any] = {
    F.relu, F.relu_, F.relu6, F.gelu, F.silu, F.sigmoid, F.tanh, F.hardswish, F.hardsigmoid, F.leaky_relu,
    F.elu, F.selu, F.mish, F.hardtanh, F.softplus, torch.relu, torch.relu_, torch.sigmoid, torch.tanh,
    torch.clamp, torch.clip,
}  # fmt: skip
ACT_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "hardtanh_"}
NORM_FUNCS: set[Any] = {F.layer_norm, F.group_norm, F.batch_norm, F.instance_norm, F.normalize}
ELEM_FUNCS: set[Any] = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
    operator.itruediv, torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum,
}  # fmt: skip
ELEM_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
MERGE_FUNCS: set[Any] = {torch.cat, torch.concat, torch.stack}
VIEW_FUNCS: set[Any] = {
    torch.flatten, torch.reshape, operator.getitem, torch.squeeze, torch.unsqueeze, torch.permute,
    torch.transpose, torch.chunk, torch.split, getattr, torch.narrow,
}  # fmt: skip
VIEW_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "size", "dim", "unsqueeze", "squeeze",
    "expand", "expand_as", "chunk", "split", "view_as", "narrow", "type_as", "to", "float", "half", "detach",
    "clone",
}  # fmt: skip
POOL_FUNCS: set[Any] = {F.max_pool2d, F.avg_pool2d, torch.max_pool2d}
REDUCE_FUNCS: set[Any] = {torch.mean, torch.sum, torch.amax, torch.amin}
REDUCE_METHODS = {"mean", "sum", "amax", "amin", "max"}


@dataclass
class NodeRule:
    """The classification of one step."""

    geometry: tuple[list[Stage], list[Stage]] | str | None = None  # None = unchanged; "global"; "guess"
    other_ops: int = 0
    other_kind: str = ""
    view: bool = False  # pure view / data movement (no new activation counted, no ops)
    merge: bool = False  # an elementwise merge / concat: align branches
    matmul_macs: int = 0  # MACs of functional conv/linear/matmul at graph level
    matmul_weight_ref: Ref | None = None
    note: str = ""
    uncounted: bool = False
    first_only: bool = False  # only the first tensor argument carries the receptive field


def _arg(step: Step, i: int, name: str, default: Any = None) -> Any:
    if name in step.kwargs:
        return step.kwargs[name]
    if len(step.args) > i:
        return step.args[i]
    return default


def _pair(v: Any) -> tuple[Any, Any]:
    if isinstance(v, (tuple, list)):
        return (v[0], v[1]) if len(v) >= 2 else (v[0], v[0])
    return v, v


def _meta(steps: Sequence[Step], v: Any) -> TMeta | None:
    if isinstance(v, Ref):
        out = steps[v.index].out
        return out if isinstance(out, TMeta) else None
    return None


def first_tensor_in(step: Step, steps: Sequence[Step]) -> TMeta | None:
    for a in list(step.args) + list(step.kwargs.values()):
        m = _meta(steps, a)
        if m is not None:
            return m
        if isinstance(a, (list, tuple)):
            for b in a:
                m = _meta(steps, b)
                if m is not None:
                    return m
    return None


def _conv_stages(k: Any, s: Any, p: Any, d: Any, hw_in: tuple[int, int] | None) -> tuple[list[Stage], list[Stage]]:
    k2, s2, d2 = _pair(k), _pair(s), _pair(d)
    out: list[list[Stage]] = [[], []]
    for a in range(2):
        ke = d2[a] * (k2[a] - 1) + 1
        pa = ((ke - 1) // 2 if p == "same" else 0) if isinstance(p, str) else _pair(p)[a]
        out[a].append((float(ke), float(s2[a]), float(pa)))
    return out[0], out[1]


def _adaptive(
    in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[tuple[list[Stage], list[Stage]] | str, int, str]:
    """Geometry of an adaptive pool: global when the output is 1x1; exact k = s = in/out when divisible;
    otherwise stride in/out and the largest window ceil(in/out)+1 (approximate). Returns (geometry, window
    area, note)."""
    if out_hw == (1, 1):
        return "global", in_hw[0] * in_hw[1], ""
    st: list[list[Stage]] = [[], []]
    win = 1
    note = ""
    for a in range(2):
        i, o = in_hw[a], out_hw[a]
        if i % o == 0:
            k = i // o
            st[a].append((float(k), float(k), 0.0))
        else:
            k = math.ceil(i / o) + 1
            st[a].append((float(k), i / o, 0.0))
            note = "adaptive pool with non-divisible sizes: largest window, fractional stride"
        win *= min(k, i)
    return (st[0], st[1]), win, note


def _downsample_stages(op: Downsample) -> tuple[list[Stage], list[Stage]] | str:
    stages: list[Stage] = []
    for g in op.geometry():
        if g.kernel is None:
            return "global"
        stages.append((float(g.kernel), float(g.stride), float(g.padding)))
    return stages, list(stages)


def _getitem_stages(idx: Any, ndim: int, shape: Sequence[int] | None = None) -> tuple[list[Stage], list[Stage]] | None:
    """Stages of a slice ``x[..., a::s, b::t]`` along H and W (kernel 1, stride = the step, padding = -start);
    ``None`` when the index cannot be followed (a tensor index, a negative step, a negative start with no
    ``shape`` to resolve it)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    if any(isinstance(i, Ref) for i in idx):
        return None
    # expand Ellipsis to find what indexes H (dim 2) and W (dim 3)
    items = list(idx)
    if Ellipsis in items:
        e = items.index(Ellipsis)
        fill = ndim - (len(items) - 1 - sum(1 for i in items if i is None))
        items = items[:e] + [slice(None)] * fill + items[e + 1 :]
    items = [i for i in items if i is not None]
    items += [slice(None)] * (ndim - len(items))
    res: list[list[Stage]] = [[], []]
    for a, dim in enumerate((2, 3)):
        sl = items[dim] if dim < len(items) else slice(None)
        if isinstance(sl, slice):
            if any(isinstance(v, Ref) for v in (sl.start, sl.step)):
                return None
            start = sl.start or 0
            step = sl.step or 1
            if start < 0 and shape is not None and dim < len(shape):
                start = max(start + shape[dim], 0)
            if start < 0 or step < 1:
                return None
            if start or step != 1:
                res[a].append((1.0, float(step), float(-start)))
    return res[0], res[1]


@dataclass(frozen=True)
class Node:
    """What a counter sees of one step: the step, all steps (to read its arguments' shapes), its first tensor
    input and its output summary."""

    step: Step
    steps: Sequence[Step]
    tin: TMeta | None
    out: Any

    @property
    def numel(self) -> int:
        return self.out.numel if isinstance(self.out, TMeta) else 0

    @property
    def spatial_out(self) -> bool:
        return isinstance(self.out, TMeta) and self.out.spatial

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        return _arg(self.step, i, name, default)

    def meta(self, v: Any) -> TMeta | None:
        return _meta(self.steps, v)

    def tensor_args(self) -> int:
        return sum(1 for a in self.step.args if self.meta(a) is not None)


#: a counter: the rule of one node, or None when it cannot tell (the node is then a "guess")
Counter = Callable[[Any, Node], NodeRule | None]

_MODULE_COUNTERS: dict[type, Counter] = {}
_FUNCTION_COUNTERS: dict[Any, Counter] = {}
_METHOD_COUNTERS: dict[str, Counter] = {}


def register_counter(module_type: type[nn.Module], handler: Counter) -> None:
    """Count the calls of ``module_type`` (and its subclasses that have no counter of their own) with
    ``handler(module, node) -> NodeRule | None`` (fvcore-style); replaces an existing counter of that type.

    A counter applies where the module is one node of the traced graph: a poolstride operator (a ``Downsample``
    subclass) or one of ``torch.nn``'s own layers (the fx leaf rule of :mod:`poolstride.analysis.trace`). A user's
    own ``nn.Module`` (even a subclass of a torch layer) is traced through and counted by the operations inside it,
    so a counter registered for it is not called."""
    _MODULE_COUNTERS[module_type] = handler


def _register(table: dict[Any, Counter], keys: Any, handler: Counter) -> None:
    for k in keys:
        table.setdefault(k, handler)  # the first rule registered for a key wins


def _module_counter(m: nn.Module) -> Counter | None:
    for cls in type(m).__mro__:
        if cls in _MODULE_COUNTERS:
            return _MODULE_COUNTERS[cls]
    return None


def classify(step: Step, steps: Sequence[Step]) -> NodeRule:
    """The rule of one step, from the counter registered for its module type, function or method name."""
    node = Node(step, steps, first_tensor_in(step, steps), step.out)
    t = step.target
    if step.kind == "module":
        handler = _module_counter(t)
    elif step.kind == "function":
        handler = _FUNCTION_COUNTERS.get(t)
        if handler is None and getattr(t, "__name__", "") == "match":
            handler = _f_shortcut_match
    elif step.kind == "method":
        handler = _METHOD_COUNTERS.get(t) if isinstance(t, str) else None
    else:
        return NodeRule(None, view=True)
    rule = handler(t, node) if handler is not None else None
    if rule is not None:
        return rule
    return NodeRule("guess", uncounted=step.kind == "module" or isinstance(node.out, TMeta))


# -- module counters -------------------------------------------------------------------------------------------------
def _m_downsample(m: Downsample, n: Node) -> NodeRule:
    tin = n.tin
    c, h, w = (tin.shape[1], tin.shape[2], tin.shape[3]) if tin is not None and tin.spatial else (0, 0, 0)
    b = tin.shape[0] if tin is not None else 1
    return NodeRule(_downsample_stages(m), b * m.other_ops(c, h, w), m.op_name)


def _m_conv(m: Any, n: Node) -> NodeRule:
    hw = n.tin.hw if n.tin is not None and n.tin.spatial else None
    return NodeRule(_conv_stages(m.kernel_size, m.stride, m.padding, m.dilation, hw))


def _m_conv_transpose(m: Any, n: Node) -> NodeRule:
    s = _pair(m.stride)
    return NodeRule(([(1.0, 1 / s[0], 0.0)], [(1.0, 1 / s[1], 0.0)]), note="transposed conv: RF approximate")


def _m_linear(m: nn.Module, n: Node) -> NodeRule:
    return NodeRule("global" if not n.spatial_out else None)


def _m_pool(m: Any, n: Node) -> NodeRule:
    k = _pair(m.kernel_size)
    st: Any = m.stride if m.stride is not None else m.kernel_size
    d = getattr(m, "dilation", 1)
    is_max = isinstance(m, nn.MaxPool2d)
    per = k[0] * k[1] - 1 if is_max else k[0] * k[1]
    note = "ceil_mode: the last window may hang over the edge" if m.ceil_mode else ""
    geo = _conv_stages(m.kernel_size, st, m.padding, d, None)
    return NodeRule(geo, n.numel * per, "max" if is_max else "avg", note=note)


def _m_lp_pool(m: Any, n: Node) -> NodeRule:
    k = _pair(m.kernel_size)
    st: Any = m.stride if m.stride is not None else m.kernel_size
    return NodeRule(_conv_stages(m.kernel_size, st, 0, 1, None), n.numel * 2 * k[0] * k[1], "lp")


def _adaptive_pool(avg: bool, n: Node) -> NodeRule | None:
    """An adaptive average (``avg``) or max pool, module or function."""
    if n.tin is None or not isinstance(n.out, TMeta):
        return None
    geo, win, note = _adaptive(n.tin.hw, n.out.hw)
    return NodeRule(geo, n.numel * (win if avg else win - 1), "avg" if avg else "max", note=note)


def _m_adaptive_pool(m: nn.Module, n: Node) -> NodeRule | None:
    return _adaptive_pool(isinstance(m, nn.AdaptiveAvgPool2d), n)


def _per_element(kind: str, factor: int = 1) -> Counter:
    """An elementwise layer: ``factor`` ops per output element of kind ``kind``, geometry unchanged."""

    def count(m: Any, n: Node) -> NodeRule:
        return NodeRule(None, n.numel * factor, kind)

    return count


def _m_pass(m: nn.Module, n: Node) -> NodeRule:
    return NodeRule(None, view=isinstance(m, nn.Identity))


def _m_flatten(m: nn.Module, n: Node) -> NodeRule:
    return NodeRule("global" if not n.spatial_out else None, view=True)


def _m_pixel_unshuffle(m: Any, n: Node) -> NodeRule:
    r = float(m.downscale_factor)
    return NodeRule(([(r, r, 0.0)], [(r, r, 0.0)]), view=True)


def _m_pixel_shuffle(m: Any, n: Node) -> NodeRule:
    r = float(m.upscale_factor)
    return NodeRule(([(1.0, 1 / r, 0.0)], [(1.0, 1 / r, 0.0)]), view=True)


def _m_pad(m: nn.Module, n: Node) -> NodeRule:
    pad_attr: Any = getattr(m, "padding", 0)
    p = pad_attr if isinstance(pad_attr, tuple) else (pad_attr,) * 4
    return NodeRule(([(1.0, 1.0, float(p[2]))], [(1.0, 1.0, float(p[0]))]), view=True)


def _m_upsample(m: nn.Module, n: Node) -> NodeRule | None:
    if n.tin is None or not isinstance(n.out, TMeta):
        return None
    return NodeRule(_rescale(n.tin, n.out), note="upsampling: RF approximate")


for _types, _handler in (
    ((Downsample,), _m_downsample),
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), _m_conv),
    ((nn.ConvTranspose2d,), _m_conv_transpose),
    ((nn.Linear,), _m_linear),
    ((nn.MaxPool2d, nn.AvgPool2d), _m_pool),
    ((nn.LPPool2d,), _m_lp_pool),
    ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), _m_adaptive_pool),
    (NORM_MODULES, _per_element("norm")),
    (ACT_MODULES, _per_element("act")),
    (PASS_MODULES, _m_pass),
    ((nn.Flatten,), _m_flatten),
    ((nn.PixelUnshuffle,), _m_pixel_unshuffle),
    ((nn.PixelShuffle,), _m_pixel_shuffle),
    (PAD_MODULES, _m_pad),
    ((nn.Upsample,), _m_upsample),
    ((nn.Softmax,), _per_element("softmax", 3)),
):
    _register(_MODULE_COUNTERS, _types, _handler)


# -- function and method counters -----------------------------------------------------------------------------------
def _f_elementwise(t: Any, n: Node) -> NodeRule:
    if isinstance(t, str):
        kind = "add" if t.startswith("add") else "mul"
    else:
        kind = "add" if t in (operator.add, operator.iadd, torch.add) else "mul"
    return NodeRule(None, n.numel, kind, merge=n.tensor_args() > 1)


def _f_merge(t: Any, n: Node) -> NodeRule:
    return NodeRule(None, view=True, merge=True)


def _f_pool(t: Any, n: Node) -> NodeRule:
    is_max = t in (F.max_pool2d, torch.max_pool2d)
    k = n.arg(1, "kernel_size")
    s = n.arg(2, "stride") or k
    p = n.arg(3, "padding", 0)
    d = n.arg(4, "dilation", 1) if is_max else 1
    kk = _pair(k)
    per = kk[0] * kk[1] - 1 if is_max else kk[0] * kk[1]
    return NodeRule(_conv_stages(k, s, p, d, None), n.numel * per, "max" if is_max else "avg")


def _f_adaptive_pool(t: Any, n: Node) -> NodeRule | None:
    return _adaptive_pool(t is F.adaptive_avg_pool2d, n)


def _f_conv(t: Any, n: Node) -> NodeRule:
    wref = n.arg(1, "weight")
    wm = n.meta(wref)
    hw = n.tin.hw if n.tin is not None and n.tin.spatial else None
    k = wm.shape[-2:] if wm is not None else 1
    geo = _conv_stages(k, n.arg(3, "stride", 1), n.arg(4, "padding", 0), n.arg(5, "dilation", 1), hw)
    macs = n.numel * (math.prod(wm.shape[1:]) if wm is not None else 0)
    return NodeRule(geo, matmul_macs=macs, matmul_weight_ref=wref if isinstance(wref, Ref) else None)


def _f_matmul(t: Any, n: Node) -> NodeRule:
    wref = n.arg(1, "weight")
    wl = n.meta(wref)
    inner = wl.shape[-1] if (wl is not None and t is F.linear) else (n.tin.shape[-1] if n.tin is not None else 0)
    return NodeRule(
        "global" if not n.spatial_out else None, matmul_macs=n.numel * inner,
        matmul_weight_ref=wref if isinstance(wref, Ref) else None,
    )  # fmt: skip


def _f_pad(t: Any, n: Node) -> NodeRule:
    pad = n.arg(1, "pad", ())
    pl = float(pad[0]) if len(pad) >= 2 else 0.0
    pt = float(pad[2]) if len(pad) >= 4 else 0.0
    return NodeRule(([(1.0, 1.0, pt)], [(1.0, 1.0, pl)]), view=True)


def _f_getitem(t: Any, n: Node) -> NodeRule:
    if n.tin is not None and n.tin.spatial and n.spatial_out:
        g = _getitem_stages(n.arg(1, "idx"), 4)
        if g is not None:
            return NodeRule(g, view=True)
    return NodeRule(None, view=True)


def _f_interpolate(t: Any, n: Node) -> NodeRule | None:
    if n.tin is None or not isinstance(n.out, TMeta) or not n.out.spatial:
        return None
    return NodeRule(_rescale(n.tin, n.out), note="upsampling: RF approximate")


def _f_pixel_unshuffle(t: Any, n: Node) -> NodeRule:
    r = float(n.arg(1, "downscale_factor"))
    return NodeRule(([(r, r, 0.0)], [(r, r, 0.0)]), view=True)


def _f_reduce(t: Any, n: Node) -> NodeRule:
    return _reduce(n.step, n.tin, n.out)


def _f_view(t: Any, n: Node) -> NodeRule:
    return NodeRule(None, view=True)


def _f_shortcut_match(t: Any, n: Node) -> NodeRule | None:
    """:func:`poolstride.models.shortcuts.match` (auto-wrapped by the tracer): resizes a shortcut to the main path."""
    if n.tin is None or not isinstance(n.out, TMeta):
        return None
    if n.tin.hw == n.out.hw:
        return NodeRule(None, view=True, first_only=True)
    geo, win, note = _adaptive(n.tin.hw, n.out.hw)
    return NodeRule(geo, n.out.numel * win, "avg", note=note or "shortcut resized", first_only=True)


def _f_dropout(t: Any, n: Node) -> NodeRule:
    return NodeRule(None)


for _keys, _handler in (
    (ACT_FUNCS, _per_element("act")),
    (NORM_FUNCS, _per_element("norm")),
    (ELEM_FUNCS, _f_elementwise),
    (MERGE_FUNCS, _f_merge),
    (POOL_FUNCS, _f_pool),
    ((F.adaptive_avg_pool2d, F.adaptive_max_pool2d), _f_adaptive_pool),
    ((F.conv2d, torch.conv2d), _f_conv),
    ((F.linear, torch.matmul, operator.matmul, torch.mm, torch.bmm), _f_matmul),
    ((F.pad, torch.constant_pad_nd), _f_pad),
    ((operator.getitem,), _f_getitem),
    ((F.interpolate,), _f_interpolate),
    ((F.pixel_unshuffle, torch.pixel_unshuffle), _f_pixel_unshuffle),
    (REDUCE_FUNCS, _f_reduce),
    ((torch.flatten, *VIEW_FUNCS), _f_view),
    ((F.dropout, F.dropout2d), _f_dropout),
    ((F.softmax, torch.softmax, F.log_softmax), _per_element("softmax", 3)),
):
    _register(_FUNCTION_COUNTERS, _keys, _handler)

for _names, _handler in (
    (ACT_METHODS, _per_element("act")),
    (ELEM_METHODS, _f_elementwise),
    (REDUCE_METHODS, _f_reduce),
    (VIEW_METHODS, _f_view),
    (("softmax",), _per_element("softmax", 3)),
):
    _register(_METHOD_COUNTERS, _names, _handler)


def _rescale(tin: TMeta, out: TMeta) -> tuple[list[Stage], list[Stage]]:
    return [(1.0, tin.hw[0] / out.hw[0], 0.0)], [(1.0, tin.hw[1] / out.hw[1], 0.0)]


def _reduce(step: Step, tin: TMeta | None, out: Any) -> NodeRule:
    if tin is None:
        return NodeRule(None, view=True)
    dims = _arg(step, 1, "dim")
    if dims is None:
        dims = tuple(range(len(tin.shape)))
    if isinstance(dims, int):
        dims = (dims,)
    nd = len(tin.shape)
    dims = {d % nd for d in dims if isinstance(d, int)}
    spatial = nd == 4 and bool(dims & {2, 3})
    return NodeRule("global" if spatial else None, tin.numel, "avg" if spatial else "reduce")


def inner_macs(inner: Sequence[Inner]) -> tuple[int, int]:
    """(MACs, bias adds) of the conv/linear module calls seen in a node."""
    macs = bias = 0
    for i in inner:
        m: Any = i.module
        w = m.weight
        if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            macs += i.inp.numel * math.prod(w.shape[1:])
        elif isinstance(m, nn.Linear):
            macs += i.out.numel * m.in_features
        else:
            macs += i.out.numel * math.prod(w.shape[1:])
        if getattr(m, "bias", None) is not None:
            bias += i.out.numel
    return macs, bias


__all__ = ["Counter", "Node", "NodeRule", "classify", "first_tensor_in", "inner_macs", "register_counter"]
