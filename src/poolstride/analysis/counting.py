"""Per-node rules: conv/linear MACs, other ops, receptive-field geometry (conventions in docs/conventions.md).

Each captured :class:`~poolstride.analysis.graph.Step` is classified once; the classification gives its
geometry along H and W (a list of ``(kernel, stride, padding)`` stages, ``"global"``, or ``None`` for
"unchanged"), its other ops and their kind, and whether it is a pure view / data movement.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
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


def classify(step: Step, steps: Sequence[Step]) -> NodeRule:
    out = step.out
    tin = first_tensor_in(step, steps)
    t = step.target
    if step.kind == "module":
        m = t
        numel = out.numel if isinstance(out, TMeta) else 0
        if isinstance(m, Downsample):
            c, h, w = (tin.shape[1], tin.shape[2], tin.shape[3]) if tin is not None and tin.spatial else (0, 0, 0)
            n = tin.shape[0] if tin is not None else 1
            return NodeRule(_downsample_stages(m), n * m.other_ops(c, h, w), m.op_name)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            hw = tin.hw if tin is not None and tin.spatial else None
            return NodeRule(_conv_stages(m.kernel_size, m.stride, m.padding, m.dilation, hw))
        if isinstance(m, (nn.ConvTranspose2d,)):
            s = _pair(m.stride)
            return NodeRule(([(1.0, 1 / s[0], 0.0)], [(1.0, 1 / s[1], 0.0)]), note="transposed conv: RF approximate")
        if isinstance(m, nn.Linear):
            return NodeRule("global" if not (isinstance(out, TMeta) and out.spatial) else None)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(m.kernel_size)
            st: Any = m.stride if m.stride is not None else m.kernel_size
            d = getattr(m, "dilation", 1)
            per = k[0] * k[1] - 1 if isinstance(m, nn.MaxPool2d) else k[0] * k[1]
            note = "ceil_mode: the last window may hang over the edge" if m.ceil_mode else ""
            return NodeRule(
                _conv_stages(m.kernel_size, st, m.padding, d, None), numel * per,
                "max" if isinstance(m, nn.MaxPool2d) else "avg", note=note,
            )  # fmt: skip
        if isinstance(m, nn.LPPool2d):
            k = _pair(m.kernel_size)
            st2: Any = m.stride if m.stride is not None else m.kernel_size
            return NodeRule(_conv_stages(m.kernel_size, st2, 0, 1, None), numel * 2 * k[0] * k[1], "lp")
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and tin is not None and isinstance(out, TMeta):
            geo, win, note = _adaptive(tin.hw, out.hw)
            per = win if isinstance(m, nn.AdaptiveAvgPool2d) else win - 1
            return NodeRule(geo, numel * per, "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max", note=note)
        if isinstance(m, NORM_MODULES):
            return NodeRule(None, numel, "norm")
        if isinstance(m, ACT_MODULES):
            return NodeRule(None, numel, "act")
        if isinstance(m, PASS_MODULES):
            return NodeRule(None, view=isinstance(m, nn.Identity))
        if isinstance(m, nn.Flatten):
            return NodeRule("global" if not (isinstance(out, TMeta) and out.spatial) else None, view=True)
        if isinstance(m, nn.PixelUnshuffle):
            r = float(m.downscale_factor)
            return NodeRule(([(r, r, 0.0)], [(r, r, 0.0)]), view=True)
        if isinstance(m, nn.PixelShuffle):
            r = float(m.upscale_factor)
            return NodeRule(([(1.0, 1 / r, 0.0)], [(1.0, 1 / r, 0.0)]), view=True)
        if isinstance(m, PAD_MODULES):
            pad_attr: Any = getattr(m, "padding", 0)
            p = pad_attr if isinstance(pad_attr, tuple) else (pad_attr,) * 4
            return NodeRule(([(1.0, 1.0, float(p[2]))], [(1.0, 1.0, float(p[0]))]), view=True)
        if isinstance(m, nn.Upsample) and tin is not None and isinstance(out, TMeta):
            return NodeRule(_rescale(tin, out), note="upsampling: RF approximate")
        if isinstance(m, nn.Softmax):
            return NodeRule(None, numel * 3, "softmax")
        return NodeRule("guess", uncounted=True)
    if step.kind == "function":
        numel = out.numel if isinstance(out, TMeta) else 0
        if t in ACT_FUNCS:
            return NodeRule(None, numel, "act")
        if t in NORM_FUNCS:
            return NodeRule(None, numel, "norm")
        if t in ELEM_FUNCS:
            n_t = sum(1 for a in step.args if _meta(steps, a) is not None)
            return NodeRule(
                None, numel, "add" if t in (operator.add, operator.iadd, torch.add) else "mul", merge=n_t > 1
            )
        if t in MERGE_FUNCS:
            return NodeRule(None, view=True, merge=True)
        if t in POOL_FUNCS:
            is_max = t in (F.max_pool2d, torch.max_pool2d)
            k = _arg(step, 1, "kernel_size")
            s = _arg(step, 2, "stride") or k
            p = _arg(step, 3, "padding", 0)
            d = _arg(step, 4, "dilation", 1) if is_max else 1
            kk = _pair(k)
            per = kk[0] * kk[1] - 1 if is_max else kk[0] * kk[1]
            return NodeRule(_conv_stages(k, s, p, d, None), numel * per, "max" if is_max else "avg")
        if t in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d) and tin is not None and isinstance(out, TMeta):
            geo, win, note = _adaptive(tin.hw, out.hw)
            avg = t is F.adaptive_avg_pool2d
            return NodeRule(geo, numel * (win if avg else win - 1), "avg" if avg else "max", note=note)
        if t in (F.conv2d, torch.conv2d):
            wm = _meta(steps, _arg(step, 1, "weight"))
            hw = tin.hw if tin is not None and tin.spatial else None
            geo = _conv_stages(
                wm.shape[-2:] if wm is not None else 1, _arg(step, 3, "stride", 1), _arg(step, 4, "padding", 0),
                _arg(step, 5, "dilation", 1), hw,
            )  # fmt: skip
            macs = numel * (math.prod(wm.shape[1:]) if wm is not None else 0)
            wref = _arg(step, 1, "weight")
            return NodeRule(geo, matmul_macs=macs, matmul_weight_ref=wref if isinstance(wref, Ref) else None)
        if t in (F.linear, torch.matmul, operator.matmul, torch.mm, torch.bmm):
            wl = _meta(steps, _arg(step, 1, "weight"))
            inner = wl.shape[-1] if (wl is not None and t is F.linear) else (tin.shape[-1] if tin is not None else 0)
            wref = _arg(step, 1, "weight")
            return NodeRule(
                "global" if not (isinstance(out, TMeta) and out.spatial) else None, matmul_macs=numel * inner,
                matmul_weight_ref=wref if isinstance(wref, Ref) else None,
            )  # fmt: skip
        if t is F.pad or t is torch.constant_pad_nd:
            pad = _arg(step, 1, "pad", ())
            pl = float(pad[0]) if len(pad) >= 2 else 0.0
            pt = float(pad[2]) if len(pad) >= 4 else 0.0
            return NodeRule(([(1.0, 1.0, pt)], [(1.0, 1.0, pl)]), view=True)
        if t is operator.getitem:
            if tin is not None and tin.spatial and isinstance(out, TMeta) and out.spatial:
                g = _getitem_stages(_arg(step, 1, "idx"), 4)
                if g is not None:
                    return NodeRule(g, view=True)
            return NodeRule(None, view=True)
        if t in (F.interpolate,) and tin is not None and isinstance(out, TMeta) and out.spatial:
            return NodeRule(_rescale(tin, out), note="upsampling: RF approximate")
        if t in (F.pixel_unshuffle, torch.pixel_unshuffle):
            r = float(_arg(step, 1, "downscale_factor"))
            return NodeRule(([(r, r, 0.0)], [(r, r, 0.0)]), view=True)
        if t in REDUCE_FUNCS:
            return _reduce(step, tin, out)
        if t in (torch.flatten,) or t in VIEW_FUNCS:
            return NodeRule(None, view=True)
        if getattr(t, "__name__", "") == "match" and tin is not None and isinstance(out, TMeta):
            if tin.hw == out.hw:
                return NodeRule(None, view=True, first_only=True)
            geo, win, note = _adaptive(tin.hw, out.hw)
            return NodeRule(geo, out.numel * win, "avg", note=note or "shortcut resized", first_only=True)
        if t in (F.dropout, F.dropout2d):
            return NodeRule(None)
        if t in (F.softmax, torch.softmax, F.log_softmax):
            return NodeRule(None, numel * 3, "softmax")
        return NodeRule("guess", uncounted=isinstance(out, TMeta))
    if step.kind == "method":
        numel = out.numel if isinstance(out, TMeta) else 0
        if t in ACT_METHODS:
            return NodeRule(None, numel, "act")
        if t in ELEM_METHODS:
            n_t = sum(1 for a in step.args if _meta(steps, a) is not None)
            return NodeRule(None, numel, "add" if t.startswith("add") else "mul", merge=n_t > 1)
        if t in REDUCE_METHODS:
            return _reduce(step, tin, out)
        if t in VIEW_METHODS:
            return NodeRule(None, view=True)
        if t == "softmax":
            return NodeRule(None, numel * 3, "softmax")
        return NodeRule("guess", uncounted=isinstance(out, TMeta))
    return NodeRule(None, view=True)


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


__all__ = ["NodeRule", "classify", "first_tensor_in", "inner_macs"]
