"""Receptive-field tracking over the captured graph: what each node does to the field and to the layout.

Every value gets a :class:`State`: its field (:class:`~poolstride.analysis.rf.RF`) and, for a tensor that is
not global, its :class:`~poolstride.analysis.layout.Layout` (where the source map's H and W are). Nodes are
sorted into kinds: *spatial* ops (conv, pool, registered operators, pad, interpolation) apply their geometry to
an N x C x H x W map; *views* (reshape, permute, flatten, chunk, getitem) change the layout and keep the field;
*elementwise* ops and concatenations take the union of their inputs' fields (a global input, e.g. a
squeeze-and-excitation gate, sets ``context``: the theoretical field is then the whole input); *reductions*,
softmax, linear layers and matmuls mix along a dimension: over every spatial position that is global, over
none of them it is per position. Anything else - an op with no rule (``torch.roll``, ``flip``...), a spatial op
on a tensor whose axes are not H and W, a view that mixes H and W - makes the field **unknown** from there on;
the node is named in a warning and no plausible-looking value is reported.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.registry import Downsample
from .counting import (
    ACT_FUNCS,
    ACT_METHODS,
    ACT_MODULES,
    ELEM_FUNCS,
    ELEM_METHODS,
    NORM_FUNCS,
    NORM_MODULES,
    PAD_MODULES,
    PASS_MODULES,
    POOL_FUNCS,
    NodeRule,
    _arg,
    _getitem_stages,
    first_tensor_in,
)
from .graph import Ref, Step, TMeta
from .layout import Layout, to_map
from .rf import RF, merge


@dataclass(frozen=True)
class State:
    """What the analysis knows of one value's receptive field."""

    rf: RF | None = None  # None: no field (a constant, a parameter, not a tensor) or unknown
    layout: Any = None  # Layout of a non-global tensor; a tuple of them for a tuple of tensors; else None
    unknown: bool = False
    summary: bool = False  # a global value broadcast over space (expand_as of a gate): the same at every position


CONST = State()
UNKNOWN = State(unknown=True)


@dataclass
class Tracked:
    state: State
    problem: str | None = None  # misaligned branches at a merge
    reason: str = ""  # why the field became unknown *here* (empty when it was unknown already)
    note: str = ""


SPATIAL_MODULES: tuple[type, ...] = (
    nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.PixelUnshuffle, nn.PixelShuffle, nn.Upsample, *PAD_MODULES,
)  # fmt: skip
POINTWISE_FUNCS: set[Any] = {
    operator.neg, operator.pos, operator.abs, operator.invert, operator.pow, operator.floordiv, operator.mod,
    operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne, operator.and_, operator.or_,
    operator.xor, torch.abs, torch.neg, torch.exp, torch.log, torch.log2, torch.log1p, torch.expm1, torch.sqrt,
    torch.rsqrt, torch.square, torch.pow, torch.sign, torch.erf, torch.erfc, torch.reciprocal, torch.where,
    torch.sin, torch.cos, torch.floor, torch.ceil, torch.round, torch.clamp_min, torch.clamp_max, torch.nan_to_num,
    torch.lerp, torch.addcmul, torch.addcdiv, torch.true_divide, torch.floor_divide, torch.remainder, torch.fmod,
    torch.logical_and, torch.logical_or, torch.logical_not, torch.gt, torch.lt, torch.ge, torch.le, torch.eq,
    torch.ne, F.logsigmoid, F.softsign, F.tanhshrink, F.threshold, F.hardshrink, F.softshrink, F.celu, F.rrelu,
    F.prelu, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    torch.dropout, F.local_response_norm,
}  # fmt: skip
POINTWISE_METHODS = {
    "abs", "abs_", "neg", "neg_", "exp", "exp_", "log", "sqrt", "rsqrt", "square", "pow", "pow_", "sign",
    "reciprocal", "floor", "ceil", "round", "clamp_min", "clamp_max", "clamp_min_", "clamp_max_", "masked_fill",
    "masked_fill_", "where", "erf", "sin", "cos", "lerp", "addcmul", "nan_to_num", "gt", "lt", "ge", "le", "eq",
    "ne", "logical_not", "bool", "long", "int", "__and__", "__or__", "bernoulli_", "sigmoid_", "hardtanh",
}  # fmt: skip
# pass-through by name: stochastic depth / drop path scale whole samples (identity in eval)
POINTWISE_NAMES = {"drop_path", "stochastic_depth", "DropPath", "StochasticDepth"}
IDENTITY_METHODS = {
    "contiguous", "clone", "detach", "to", "float", "half", "double", "bfloat16", "type", "type_as", "cpu",
    "cuda", "requires_grad_",
}  # fmt: skip
REGROUP_FUNCS: set[Any] = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.unflatten}
REGROUP_METHODS = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
PERMUTE_FUNCS: set[Any] = {torch.permute, torch.transpose, torch.swapaxes, torch.swapdims, torch.movedim, torch.t}
PERMUTE_METHODS = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "t"}
SPLIT_FUNCS: set[Any] = {torch.chunk, torch.split, torch.tensor_split, torch.unbind}
SPLIT_METHODS = {"chunk", "split", "tensor_split", "unbind"}
EXPAND_METHODS = {"expand", "expand_as", "broadcast_to", "repeat", "tile"}
REDUCE_FUNCS: set[Any] = {
    torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min, torch.std, torch.var, torch.logsumexp,
    torch.prod, torch.argmax, torch.argmin, torch.norm,
}  # fmt: skip
REDUCE_METHODS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "prod", "argmax", "argmin",
                  "norm"}  # fmt: skip
SOFTMAX_FUNCS: set[Any] = {F.softmax, torch.softmax, F.log_softmax, torch.log_softmax}
CONSTANT_FUNCS: set[Any] = {
    torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like, torch.randn_like,
}  # fmt: skip
CONSTANT_METHODS = {"new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "zero_", "fill_"}
NONTENSOR_METHODS = {"size", "dim", "numel", "stride", "element_size", "is_contiguous", "ndimension"}
MATMUL_FUNCS: set[Any] = {torch.matmul, operator.matmul, torch.mm, torch.bmm}
SPATIAL_FUNCS: set[Any] = {
    *POOL_FUNCS, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.conv2d, torch.conv2d, F.pad,
    torch.constant_pad_nd, F.interpolate, F.pixel_unshuffle, torch.pixel_unshuffle, F.pixel_shuffle,
    torch.pixel_shuffle,
}  # fmt: skip
CHANNEL_SHUFFLE: set[Any] = {F.channel_shuffle, torch.channel_shuffle, torch.native_channel_shuffle}
SCRAMBLE_FUNCS: set[Any] = {torch.roll, torch.flip, torch.fliplr, torch.flipud, torch.rot90}
SCRAMBLE_METHODS = {"roll", "flip", "fliplr", "flipud", "rot90"}


#: the tracking kind of each function and method, first match wins (module kinds: :data:`_MODULE_KINDS`)
_FUNCTION_KINDS: dict[Any, str] = {}
_METHOD_KINDS: dict[str, str] = {}
for _keys, _kind in (
    (ACT_FUNCS | NORM_FUNCS | ELEM_FUNCS | POINTWISE_FUNCS, "elementwise"),
    ((torch.cat, torch.concat), "cat"),
    ((torch.stack,), "stack"),
    (SPATIAL_FUNCS, "spatial"),
    ((F.linear,), "lastdim"),
    (MATMUL_FUNCS, "matmul"),
    ((F.scaled_dot_product_attention,), "attention"),
    ((operator.getitem,), "getitem"),
    ((torch.narrow,), "narrow"),
    (SPLIT_FUNCS, "split"),
    (REDUCE_FUNCS, "reduce"),
    (REGROUP_FUNCS, "regroup"),
    (PERMUTE_FUNCS, "permute"),
    (SOFTMAX_FUNCS, "softmax"),
    (CHANNEL_SHUFFLE, "channels"),
    (SCRAMBLE_FUNCS, "scramble"),
    ((torch.einsum,), "einsum"),
    (CONSTANT_FUNCS, "constant"),
):
    for _k in _keys:
        _FUNCTION_KINDS.setdefault(_k, _kind)
for _names, _kind in (
    (ACT_METHODS | ELEM_METHODS | POINTWISE_METHODS, "elementwise"),
    (IDENTITY_METHODS, "identity"),
    (REGROUP_METHODS, "regroup"),
    (PERMUTE_METHODS, "permute"),
    (EXPAND_METHODS, "expand"),
    (SPLIT_METHODS, "split"),
    (("narrow",), "narrow"),
    (REDUCE_METHODS, "reduce"),
    (("softmax", "log_softmax"), "softmax"),
    (SCRAMBLE_METHODS, "scramble"),
    (CONSTANT_METHODS | NONTENSOR_METHODS, "constant"),
):
    for _k in _names:
        _METHOD_KINDS.setdefault(_k, _kind)
_MODULE_KINDS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((Downsample, *SPATIAL_MODULES), "spatial"),
    ((*ACT_MODULES, *NORM_MODULES, *PASS_MODULES, nn.Softmax2d), "elementwise"),
    ((nn.Softmax,), "softmax"),
    ((nn.Flatten, nn.Unflatten), "regroup"),
    ((nn.Linear,), "lastdim"),
    ((nn.ChannelShuffle,), "channels"),
    ((nn.MultiheadAttention,), "attention"),
)


def kind_of(step: Step) -> str:
    """The tracking kind of a node (see the module docstring)."""
    t = step.target
    name = step.target_name
    if name in POINTWISE_NAMES or getattr(t, "__name__", "") in POINTWISE_NAMES:
        return "elementwise"
    if step.kind == "module":
        return next((kind for types, kind in _MODULE_KINDS if isinstance(t, types)), "unknown")
    if step.kind == "function":
        if getattr(t, "__name__", "") == "match":  # models.shortcuts.match: resize a shortcut to the main path
            return "spatial"
        return _FUNCTION_KINDS.get(t, "unknown")
    if step.kind == "method":
        return _METHOD_KINDS.get(t, "unknown")
    return "constant"


def has_tensor(v: Any) -> bool:
    if isinstance(v, TMeta):
        return True
    if isinstance(v, (tuple, list)):
        return any(has_tensor(x) for x in v)
    return False


def _shape(v: Any) -> tuple[int, ...] | None:
    return v.shape if isinstance(v, TMeta) else None


def _dims(v: Any, ndim: int) -> list[int] | None:
    """Dimension argument(s) as non-negative ints, or None when they are not constants."""
    if v is None:
        return list(range(ndim))
    if isinstance(v, int):
        v = [v]
    if not isinstance(v, (tuple, list)) or not all(isinstance(d, int) for d in v):
        return None
    return [d % ndim for d in v] if ndim else []


def _varargs(step: Step, start: int, name: str) -> Any:
    """``x.permute(0, 2, 1)`` and ``x.permute((0, 2, 1))`` / ``dims=...``."""
    if name in step.kwargs:
        return step.kwargs[name]
    rest = list(step.args[start:])
    if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
        return list(rest[0])
    return rest


class Tracker:
    """Propagates :class:`State` through the steps of a captured graph, in order."""

    def __init__(self, steps: Sequence[Step], in_hw: tuple[int, int], walk: bool) -> None:
        self.steps = steps
        self.in_hw = in_hw
        self.walk = walk
        self.states: dict[int, State] = {}

    # --- helpers -------------------------------------------------------------------------------------------------

    def _unknown(self, reason: str) -> Tracked:
        return Tracked(UNKNOWN, reason=reason)

    def _glob(self, rf: RF, scale: tuple[float, float] = (1.0, 1.0)) -> State:
        return State(rf if rf.glob else rf.make_global(self.in_hw, scale))

    def _out(self, i: int) -> Any:
        return self.steps[i].out

    def _mixed_reason(self, lay: Layout, what: str) -> str:
        if lay.mixed:
            return f"{what}: its input's spatial positions were regrouped beyond tracking by {lay.mixed_by}"
        return f"{what}: its input is not an N x C x H x W map (its spatial axes were moved by views)"

    # --- the walk --------------------------------------------------------------------------------------------------

    def input(self, step: Step) -> None:
        out = step.out
        self.states[step.index] = (
            State(RF(), Layout.canonical(out.shape)) if isinstance(out, TMeta) and out.spatial else State(RF())
        )

    def constant(self, step: Step) -> None:
        self.states[step.index] = CONST

    def step(self, step: Step, rule: NodeRule, parents: list[int]) -> Tracked:
        tr = self._step(step, rule, parents)
        self.states[step.index] = tr.state
        return tr

    def _step(self, step: Step, rule: NodeRule, parents: list[int]) -> Tracked:
        out = step.out
        if not has_tensor(out):
            return Tracked(CONST)
        kind = kind_of(step)
        if kind == "constant":
            return Tracked(CONST)
        ps = [(p, self.states.get(p, CONST)) for p in parents]
        multi = kind in ("elementwise", "cat", "stack", "matmul", "attention", "einsum")
        if not multi:
            ps = ps[:1]
        if any(s.unknown for _, s in ps):
            return Tracked(UNKNOWN)
        live = [(p, s) for p, s in ps if s.rf is not None]
        if not live:
            return Tracked(CONST)
        prev = self._out(live[0][0])
        if self.walk and isinstance(step.inp, TMeta) and isinstance(prev, TMeta) and step.inp.shape != prev.shape:
            return self._unknown(
                f"its input ({_fmt_shape(step.inp.shape)}) is not the previous module's output "
                f"({_fmt_shape(prev.shape)}): an op between modules that the module-order walk cannot see"
            )
        if kind == "unknown":
            return self._unknown(f"no receptive-field rule for {step.target_name}")
        if not multi:
            p0, s0 = live[0]
            rf0 = s0.rf
            assert rf0 is not None
            if rf0.glob:
                if kind == "spatial":
                    if rule.geometry == "global":
                        return Tracked(State(rf0.make_global(self.in_hw, self._scale(step))))
                    return Tracked(State(rf0))
                return Tracked(State(rf0, summary=s0.summary or kind == "expand"))
            return getattr(self, "_k_" + kind)(step, rule, p0, s0)  # type: ignore[no-any-return]
        return getattr(self, "_k_" + kind)(step, rule, live)  # type: ignore[no-any-return]

    def _scale(self, step: Step) -> tuple[float, float]:
        tin = first_tensor_in(step, self.steps)
        out = step.out
        if tin is not None and tin.spatial and isinstance(out, TMeta) and out.spatial and out.hw[0] and out.hw[1]:
            return tin.hw[0] / out.hw[0], tin.hw[1] / out.hw[1]
        return 1.0, 1.0

    # --- single-input kinds (the input is local: not global, not unknown) -----------------------------------------

    def _k_spatial(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        assert s.rf is not None
        out = step.out
        lay = s.layout
        if not isinstance(lay, Layout):
            return self._unknown("its input has no tracked layout")
        base = to_map(lay, s.rf)
        if base is None and rule.geometry == "global" and lay.ndim == 4 and lay.all_spatial_in([2, 3]):
            return Tracked(self._glob(s.rf))  # e.g. a global pool of a rolled map: still every position
        if base is None:
            return self._unknown(self._mixed_reason(lay, f"{step.target_name} needs an N x C x H x W input"))
        if not (isinstance(out, TMeta) and out.spatial):
            return self._unknown(f"{step.target_name} does not return an N x C x H x W map")
        geo = rule.geometry
        if geo == "global":
            return Tracked(self._glob(base, self._scale(step)))
        if geo == "guess":
            return self._unknown(f"no geometry for {step.target_name}")
        rf = base if geo is None else base.stages(*geo)  # type: ignore[misc]
        return Tracked(State(rf, Layout.canonical(out.shape)))

    def _k_identity(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        if _shape(step.out) != _shape(self._out(p)):
            return self._unknown(f"{step.target_name} changed the shape")
        return Tracked(s)

    def _k_regroup(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        shape = _shape(step.out)
        if not isinstance(s.layout, Layout) or shape is None:
            return self._unknown("a reshape of a value with no tracked layout")
        return Tracked(State(s.rf, s.layout.regroup(shape, step.name)))

    def _k_permute(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        lay = s.layout
        if not isinstance(lay, Layout):
            return self._unknown("a permutation of a value with no tracked layout")
        n = lay.ndim
        t = step.target_name
        perm: list[int] | None
        if t == "permute":
            dims = _dims(_varargs(step, 1, "dims"), n)
            perm = dims if dims is not None and sorted(dims) == list(range(n)) else None
        elif t in ("transpose", "swapaxes", "swapdims"):
            ab = _dims([_arg(step, 1, "dim0"), _arg(step, 2, "dim1")], n)
            perm = list(range(n)) if ab is not None else None
            if perm is not None and ab is not None:
                perm[ab[0]], perm[ab[1]] = perm[ab[1]], perm[ab[0]]
        elif t == "movedim":
            src, dst = _dims(_arg(step, 1, "source"), n), _dims(_arg(step, 2, "destination"), n)
            perm = None
            if src is not None and dst is not None and len(src) == len(dst):
                rest = [d for d in range(n) if d not in src]
                perm = [-1] * n
                for a, b in zip(src, dst, strict=True):
                    perm[b] = a
                it = iter(rest)
                perm = [d if d >= 0 else next(it) for d in perm]
        else:  # t: reverse the two dimensions of a matrix
            perm = list(range(n))[::-1] if n <= 2 else None
        if perm is None:
            return self._unknown(f"{t} with non-constant dimensions")
        return Tracked(State(s.rf, lay.permute(perm)))

    def _k_expand(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        lay, out, src = s.layout, _shape(step.out), _shape(self._out(p))
        if not isinstance(lay, Layout) or out is None or src is None or len(out) < len(src):
            return self._unknown(f"{step.target_name} of a value with no tracked layout")
        for _ in range(len(out) - len(src)):
            lay = lay.inserted(0)
        src = (1,) * (len(out) - len(src)) + tuple(src)
        grown = [d for d in range(len(out)) if out[d] != src[d]]
        if step.target_name in ("repeat", "tile") and lay.spatial_in(grown):
            return self._unknown(f"{step.target_name} repeats a spatial axis")
        new = lay.resized(out)
        if new is None:
            return self._unknown(f"{step.target_name} of a spatial axis")
        return Tracked(State(s.rf, new))

    def _k_channels(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        lay = s.layout
        if not isinstance(lay, Layout) or lay.ndim < 2 or lay.spatial_in([1]):
            return self._unknown("a channel shuffle of a dimension that holds spatial positions")
        return Tracked(s)

    def _k_scramble(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        """``roll``, ``flip``, ``rot90``: the positions along the given dimensions are reordered. The set of
        fields is unchanged, but which position holds which is no longer tracked: a later op that needs the map
        (a conv, a pool) reports its field as unknown; one that reduces over every position stays global."""
        lay = s.layout
        if not isinstance(lay, Layout):
            return self._unknown(f"{step.target_name} of a value with no tracked layout")
        name = step.target_name
        if name == "roll":
            dims = _arg(step, 2, "dims")
            ds = _dims(dims, lay.ndim) if dims is not None else list(range(lay.ndim))
        elif name == "rot90":
            ds = _dims(_arg(step, 2, "dims", [0, 1]), lay.ndim)
        elif name in ("fliplr", "flipud"):
            ds = [1 if name == "fliplr" else 0]
        else:
            ds = _dims(_varargs(step, 1, "dims"), lay.ndim)
        if ds is None:
            return self._unknown(f"{name} along non-constant dimensions")
        out = _shape(step.out)
        if name == "roll" and dims is None and out is not None:  # a roll of the flattened tensor mixes everything
            return Tracked(State(s.rf, lay.mixed_to(out, step.name)))
        return Tracked(State(s.rf, lay.scrambled(ds, step.name)))

    def _k_getitem(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        idx = _arg(step, 1, "idx")
        src = self._out(p)
        lay = s.layout
        if isinstance(src, (tuple, list)):  # an element of chunk()/split()/max(dim) ...
            if isinstance(lay, tuple) and isinstance(idx, int) and -len(lay) <= idx < len(lay):
                return Tracked(State(s.rf, lay[idx]))
            if isinstance(lay, tuple) and isinstance(idx, slice):
                return Tracked(State(s.rf, lay[idx]))
            return self._unknown("an element of a tuple with no tracked layout")
        out = step.out
        if not (isinstance(lay, Layout) and isinstance(src, TMeta) and isinstance(out, TMeta)):
            return self._unknown("indexing a value with no tracked layout")
        items = _index_items(idx, lay.ndim)
        if items is None:
            return self._unknown("indexing with a tensor or a non-constant index")
        touched = [d for d, it in items if d is not None and not (isinstance(it, slice) and it == slice(None))]
        if any(lay.spatial_in([d]) for d in touched):
            base = to_map(lay, s.rf) if s.rf is not None else None
            ok = base is not None and out.spatial and all(isinstance(it, slice) for _, it in items if it is not None)
            g = _getitem_stages(idx, 4, src.shape) if ok else None
            if base is None or g is None:
                return self._unknown("indexing that selects spatial positions it cannot follow")
            return Tracked(State(base.stages(*g), Layout.canonical(out.shape)))
        # only non-spatial dimensions are indexed: drop integer-indexed ones, insert None ones, resize the rest
        dims: list[Any] = []
        for d, it in items:
            if d is None:  # None inserts a dimension
                dims.append(())
            elif isinstance(it, int):
                continue
            else:
                dims.append(lay.dims[d])
        new = Layout(tuple(dims), lay.hw, lay.mixed_by).resized(out.shape)
        if new is None:
            return self._unknown("indexing that changes a spatial dimension")
        return Tracked(State(s.rf, new))

    def _k_narrow(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        lay, out = s.layout, step.out
        src = self._out(p)
        if not (isinstance(lay, Layout) and isinstance(out, TMeta) and isinstance(src, TMeta)):
            return self._unknown("narrow of a value with no tracked layout")
        d = _dims(_arg(step, 1, "dim"), lay.ndim)
        start = _arg(step, 2, "start")
        if d is None or not isinstance(start, int):
            return self._unknown("narrow with non-constant arguments")
        if not lay.spatial_in(d):
            new = lay.resized(out.shape)
            return Tracked(State(s.rf, new)) if new is not None else self._unknown("narrow of a spatial axis")
        base = to_map(lay, s.rf) if s.rf is not None else None
        if base is None or d[0] not in (2, 3):
            return self._unknown("narrow of a spatial axis it cannot follow")
        start = start % src.shape[d[0]]
        st = [(1.0, 1.0, float(-start))]
        rf = base.stages(st, []) if d[0] == 2 else base.stages([], st)
        return Tracked(State(rf, Layout.canonical(out.shape)))

    def _k_split(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        lay, out = s.layout, step.out
        if not isinstance(lay, Layout) or not isinstance(out, (tuple, list)):
            return self._unknown(f"{step.target_name} of a value with no tracked layout")
        at = 1 if step.target_name == "unbind" else 2  # unbind(input, dim=0); chunk/split(input, n, dim=0)
        d = _dims(_arg(step, at, "dim", 0), lay.ndim)
        if d is None:
            return self._unknown(f"{step.target_name} along a non-constant dimension")
        if lay.spatial_in(d):
            return self._unknown(f"{step.target_name} along a spatial axis")
        parts: list[Layout | None] = []
        for o in out:
            if not isinstance(o, TMeta):
                parts.append(None)
            elif len(o.shape) == lay.ndim - 1:  # unbind
                parts.append(lay.without(d))
            else:
                parts.append(lay.resized(o.shape))
        return Tracked(State(s.rf, tuple(parts)))

    def _k_reduce(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        lay, src = s.layout, self._out(p)
        assert s.rf is not None
        if not (isinstance(lay, Layout) and isinstance(src, TMeta)):
            return self._unknown(f"{step.target_name} of a value with no tracked layout")
        # norm(input, p, dim, ...); the others (input, dim, ...); std/var may get a bool (unbiased) first
        dim = _arg(step, 2 if step.target_name == "norm" else 1, "dim")
        if isinstance(dim, Ref):  # torch.max(a, b): elementwise
            return self._k_elementwise(step, rule, [(p, s), (dim.index, self.states.get(dim.index, CONST))])
        if isinstance(dim, bool):
            dim = step.kwargs.get("dim")
        out = step.out
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        keep = isinstance(first, TMeta) and len(first.shape) == len(src.shape)
        ds = _dims(dim, lay.ndim)
        if ds is None:
            return self._unknown(f"{step.target_name} over non-constant dimensions")
        if not lay.spatial_in(ds):
            new = lay.without(ds, keep)
            if isinstance(out, (tuple, list)):  # max(dim) / min(dim): (values, indices)
                return Tracked(State(s.rf, tuple(new for _ in out)))
            return Tracked(State(s.rf, new))
        if lay.all_spatial_in(ds):
            return Tracked(self._glob(s.rf))
        return self._unknown(f"{step.target_name} over part of the spatial positions")

    def _k_softmax(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        lay = s.layout
        assert s.rf is not None
        if not isinstance(lay, Layout):
            return self._unknown("softmax of a value with no tracked layout")
        dim = step.target.dim if isinstance(step.target, nn.Softmax) else _arg(step, 1, "dim")
        ds = _dims(dim, lay.ndim) if dim is not None else None
        if ds is None:
            return self._unknown("softmax over an implicit or non-constant dimension")
        if not lay.spatial_in(ds):
            return Tracked(s)
        if lay.all_spatial_in(ds):
            return Tracked(self._glob(s.rf))
        return self._unknown("softmax over part of the spatial positions")

    def _k_lastdim(self, step: Step, rule: NodeRule, p: int, s: State) -> Tracked:
        lay, out = s.layout, _shape(step.out)
        assert s.rf is not None
        if not isinstance(lay, Layout) or out is None:
            return self._unknown("a linear layer on a value with no tracked layout")
        last = [lay.ndim - 1]
        if not lay.spatial_in(last):
            new = lay.resized(out)
            return Tracked(State(s.rf, new)) if new is not None else self._unknown("a linear layer changed the shape")
        if lay.all_spatial_in(last):
            return Tracked(self._glob(s.rf))  # e.g. flatten + linear: every output sees every position
        return self._unknown("a linear layer over part of the spatial positions (e.g. over W only)")

    # --- multi-input kinds -------------------------------------------------------------------------------------------

    def _k_elementwise(self, step: Step, rule: NodeRule, live: list[tuple[int, State]]) -> Tracked:
        out = _shape(step.out)
        if out is None:
            return self._unknown(f"{step.target_name} does not return a tensor")
        local = [(p, s) for p, s in live if s.rf is not None and not s.rf.glob]
        rfs = _fields(s for _, s in live)
        if not local:
            return Tracked(State(merge(rfs)[0], summary=all(s.summary for _, s in live)))
        if any(s.rf.glob and not s.summary and _shape(self._out(p)) == out for p, s in live if s.rf is not None):
            return Tracked(State(merge(rfs)[0]))  # a global map of full size on a branch: every unit sees it all
        full = [(p, s) for p, s in local if _shape(self._out(p)) == out]
        lay0: Layout | None = None
        for _, s in full:
            if not isinstance(s.layout, Layout):
                return self._unknown("an elementwise op on a value with no tracked layout")
            if lay0 is None:
                lay0 = s.layout
            elif not lay0.same(s.layout):
                return self._unknown("an elementwise op on tensors whose spatial axes are laid out differently")
        spatial = _fields(s for _, s in full)
        summary = False  # a local 1x1 map broadcast over a map: a global summary (the documented SE convention)
        for p, s in local:
            if any(p == q for q, _ in full):
                continue
            src = _shape(self._out(p))
            lay = s.layout
            if src is None or not isinstance(lay, Layout) or len(src) > len(out):
                return self._unknown("an elementwise op with a broadcast it cannot follow")
            for _ in range(len(out) - len(src)):
                lay = lay.inserted(0)
            src = (1,) * (len(out) - len(src)) + tuple(src)
            grown = [d for d in range(len(out)) if src[d] != out[d]]
            if not lay.spatial_in(range(len(out))) and lay0 is not None and lay0.spatial_in(grown):
                summary = True  # no spatial positions left (a 1x1 map) broadcast over spatial ones
                continue
            new = lay.resized(out)
            if new is None or (lay0 is not None and not lay0.same(new)) or (lay0 is None and new.mixed):
                return self._unknown("an elementwise op that broadcasts a map along one of its spatial axes")
            lay0 = lay0 or new
            spatial.append(s.rf)  # type: ignore[arg-type]
        if lay0 is None:
            return self._unknown("an elementwise op with no map to follow")
        gates = [rf for rf in _fields(s for _, s in live) if rf.glob]
        rf, problem = merge(spatial + gates, [False] * len(spatial) + [True] * len(gates))
        if summary:
            rf = RF(rf.h, rf.w, rf.glob, True)
        return Tracked(State(rf, lay0), problem=problem if len(spatial) > 1 else None)

    def _k_cat(self, step: Step, rule: NodeRule, live: list[tuple[int, State]], stack: bool = False) -> Tracked:
        out = _shape(step.out)
        local = [(p, s) for p, s in live if s.rf is not None and not s.rf.glob]
        rfs = _fields(s for _, s in live)
        if not local or any(s.rf.glob and not s.summary for _, s in live if s.rf is not None):
            return Tracked(State(merge(rfs)[0]))  # a global part: the concatenation is global
        if out is None:
            return self._unknown("a concatenation that does not return a tensor")
        dim = _arg(step, 1, "dim", 0)
        lays: list[Any] = []
        for _, s in local:  # a whole tuple (e.g. torch.stack(x.unbind(1), 1)) counts as its elements
            lays.extend(s.layout if isinstance(s.layout, tuple) else [s.layout])
        if not lays or not all(isinstance(lay, Layout) for lay in lays):
            return self._unknown("a concatenation of values with no tracked layout")
        nd = lays[0].ndim
        ds = _dims(dim, nd + 1 if stack else nd)
        if ds is None:
            return self._unknown("a concatenation along a non-constant dimension")
        if stack:
            new = [lay.inserted(ds[0]).resized(out) for lay in lays]
        elif any(lay.spatial_in(ds) for lay in lays):
            # along a spatial axis (e.g. a class token in front of the patch tokens): the positions along that
            # dimension are no longer a grid ("?"); the other dimensions must agree
            new = []
            for lay in lays:
                mixed = lay.scrambled(ds, step.name)
                dims = list(mixed.dims)
                dims[ds[0]] = (("?", out[ds[0]], 0),)
                new.append(Layout(tuple(dims), lay.hw, mixed.mixed_by or step.name))
        else:
            new = [lay.resized(out) for lay in lays]
        if any(n is None for n in new) or not all(new[0].same(n) for n in new[1:]):  # type: ignore[union-attr]
            return self._unknown("a concatenation of tensors whose spatial axes are laid out differently")
        spatial = _fields(s for _, s in local)
        gates = [rf for rf in _fields(s for _, s in live) if rf.glob]
        rf, problem = merge(spatial + gates, [False] * len(spatial) + [True] * len(gates))
        return Tracked(State(rf, new[0]), problem=problem if len(spatial) > 1 else None)

    def _k_stack(self, step: Step, rule: NodeRule, live: list[tuple[int, State]]) -> Tracked:
        return self._k_cat(step, rule, live, stack=True)

    def _k_matmul(self, step: Step, rule: NodeRule, live: list[tuple[int, State]]) -> Tracked:
        a_ref, b_ref = _arg(step, 0, "input"), _arg(step, 1, "other")
        refs = [r.index if isinstance(r, Ref) else None for r in (a_ref, b_ref)]
        st = {p: s for p, s in live}
        sa, sb = (st.get(r) if r is not None else None for r in refs)
        la = sa if sa is not None and sa.rf is not None and not sa.rf.glob else None
        lb = sb if sb is not None and sb.rf is not None and not sb.rf.glob else None
        glob = [rf for rf in _fields(s for s in (sa, sb) if s is not None) if rf.glob]
        out = _shape(step.out)
        if out is None:
            return self._unknown("a matrix product that does not return a tensor")
        if la is None and lb is None:
            return Tracked(State(merge(glob)[0])) if glob else Tracked(CONST)
        for s in (la, lb):
            if s is not None and not isinstance(s.layout, Layout):
                return self._unknown("a matrix product of a value with no tracked layout")
        ka = [la.layout.ndim - 1] if la is not None else []
        kb = [max(lb.layout.ndim - 2, 0)] if lb is not None else []
        contracted = [(s, k) for s, k in ((la, ka), (lb, kb)) if s is not None]
        if any(s.layout.spatial_in(k) and s.layout.all_spatial_in(k) for s, k in contracted):
            rfs = _fields(s for s, _ in contracted) + glob
            return Tracked(self._glob(merge(rfs)[0]))  # contracts over every position: global
        if any(s.layout.spatial_in(k) for s, k in contracted):
            return self._unknown("a matrix product over part of the spatial positions")
        if la is not None and lb is not None:  # two maps, positions of both kept: e.g. attention scores q k^T
            return Tracked(
                self._glob(merge(_fields([la, lb]))[0]),
                note="product of two maps over their channels (attention scores): every pair of positions, "
                "reported as global",
            )
        s = la if la is not None else lb
        assert s is not None and s.rf is not None
        new = s.layout.resized(out)
        if new is None:
            return self._unknown("a matrix product that broadcasts a map")
        rf = s.rf if not glob else RF(s.rf.h, s.rf.w, False, True)
        return Tracked(State(rf, new))  # a per-position linear map (a 1x1 conv written as a matmul)

    def _k_einsum(self, step: Step, rule: NodeRule, live: list[tuple[int, State]]) -> Tracked:
        """``torch.einsum`` with an explicit ``->``: letters summed over act like a matmul's contraction."""
        eq = step.args[0] if step.args else None
        ops = list(step.args[1:])
        if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
            ops = list(ops[0])
        out = _shape(step.out)
        if not isinstance(eq, str) or "->" not in eq or "." in eq or out is None:
            return self._unknown("einsum without an explicit '->' (or with '...')")
        lhs, rhs = eq.replace(" ", "").split("->")
        terms = lhs.split(",")
        if len(terms) != len(ops):
            return self._unknown("einsum whose operands do not match its equation")
        st = dict(live)
        local: list[tuple[str, State]] = []
        glob: list[RF] = []
        for term, ref in zip(terms, ops, strict=True):
            s = st.get(ref.index) if isinstance(ref, Ref) else None
            if s is None or s.rf is None:
                continue
            if s.rf.glob:
                glob.append(s.rf)
            elif not isinstance(s.layout, Layout) or s.layout.ndim != len(term):
                return self._unknown("einsum of a value with no tracked layout")
            else:
                local.append((term, s))
        if not local:
            return Tracked(State(merge(glob)[0])) if glob else Tracked(CONST)
        rfs = _fields(s for _, s in local)
        summed = [[i for i, c in enumerate(term) if c not in rhs] for term, _ in local]
        if any(s.layout.spatial_in(k) and s.layout.all_spatial_in(k) for (_, s), k in zip(local, summed, strict=True)):
            return Tracked(self._glob(merge(rfs + glob)[0]))  # sums over every position: global
        if any(s.layout.spatial_in(k) for (_, s), k in zip(local, summed, strict=True)):
            return self._unknown("einsum over part of the spatial positions")
        dims: list[Any] = []
        for c in rhs:
            here = [s.layout.dims[term.index(c)] for term, s in local if c in term]
            spatial = [d for d in here if any(f[0] in ("H", "W", "?") for f in d)]
            if len(set(spatial)) > 1:
                return self._unknown("einsum that aligns different spatial positions")
            dims.append(spatial[0] if spatial else (("", out[len(dims)], 0),) if out[len(dims)] > 1 else ())
        kept = [f for d in dims for f in d if f[0] in ("H", "W", "?")]
        if len(kept) != len(set(kept)) or sum(1 for d in dims if any(f[0] == "?" for f in d)) > 1:
            # the positions of two maps kept side by side (attention scores q k^T)
            return Tracked(
                self._glob(merge(rfs)[0]),
                note="product of two maps over their channels (attention scores): reported as global",
            )
        lay0 = local[0][1].layout
        new = Layout(tuple(dims), lay0.hw, lay0.mixed_by)
        if new.resized(out) is None:
            return self._unknown("einsum that changes a spatial dimension")
        rf, problem = merge(rfs + glob, [False] * len(rfs) + [True] * len(glob))
        return Tracked(State(rf, new), problem=problem if len(rfs) > 1 else None)

    def _k_attention(self, step: Step, rule: NodeRule, live: list[tuple[int, State]]) -> Tracked:
        local = [s for _, s in live if s.rf is not None and not s.rf.glob]
        rfs = _fields(s for _, s in live)
        if not local:
            return Tracked(State(merge(rfs)[0]))
        mha = isinstance(step.target, nn.MultiheadAttention)
        seq = (1 if step.target.batch_first else 0) if mha else -2
        for s in local:
            lay = s.layout
            if not isinstance(lay, Layout):
                return self._unknown("attention over a value with no tracked layout")
            d = seq % lay.ndim
            if not (lay.spatial_in([d]) and lay.all_spatial_in([d])):
                return self._unknown("attention whose sequence is not the spatial positions")
        return Tracked(self._glob(merge(rfs)[0]), note="attention: every output sees every position")


def _fields(states: Iterable[State]) -> list[RF]:
    out: list[RF] = []
    for s in states:
        if s.rf is not None:
            out.append(s.rf)
    return out


def _index_items(idx: Any, ndim: int) -> list[tuple[int | None, Any]] | None:
    """Pair each item of an index with the input dimension it applies to (``None`` for a ``None`` item, which
    inserts a dimension); ``None`` when an item is a tensor or otherwise not a constant."""
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(not (it is None or it is Ellipsis or isinstance(it, (int, slice))) for it in items):
        return None
    if any(isinstance(it, slice) and any(isinstance(v, Ref) for v in (it.start, it.stop, it.step)) for it in items):
        return None
    used = sum(1 for it in items if it is not None and it is not Ellipsis)
    if Ellipsis in items:
        e = items.index(Ellipsis)
        items = items[:e] + [slice(None)] * (ndim - used) + items[e + 1 :]
    items += [slice(None)] * (ndim - sum(1 for it in items if it is not None))
    out: list[tuple[int | None, Any]] = []
    d = 0
    for it in items:
        if it is None:
            out.append((None, None))
        else:
            out.append((d, it))
            d += 1
    return out


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape)


__all__ = ["CONST", "UNKNOWN", "State", "Tracked", "Tracker", "has_tensor", "kind_of"]
