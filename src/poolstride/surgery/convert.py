"""Apply a policy to any model: a new model, the input model untouched.

Module sites are replaced by setting attributes on a deep copy (the model keeps its class and its
``forward``); functional sites (``F.max_pool2d`` calls) need the fx graph, so when the policy touches one
the result is a rewritten ``torch.fx.GraphModule``. ``conv->conv(s=1)+act+POOL`` (Zhang 2019's layout) runs
the conv at stride 1 and puts POOL after the activation that follows it (through its norm): the activation
module becomes ``Sequential(activation, POOL)``, or, when the activation is a function call or a module
called more than once, POOL is inserted after that call in the fx graph (a GraphModule again). Every
replacement is checked on the site's recorded input shape before it is installed (a replacement that cannot
give the site's output size raises :class:`~poolstride.errors.SiteError` naming the site), and a probe
forward pass of the converted model then checks that the output and every surviving module's output keep
their shapes.

Weights: untouched layers keep theirs. A strided conv that is run at stride 1 (``conv->conv(s=1)+...``),
a shortcut conv behind a pool (``shortcut->avg+1x1``) and the conv that takes a removed pool's stride keep
their weights too. New layers get the registered operator's init. With ``init="preserve"`` new convs start
as the function they replace where that is mathematically possible (a conv replacing an average pool
starts as the averaging kernel; a conv replacing a conv embeds the old kernel); every such claim is
verified numerically on the site's input and reported per site.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import __version__
from ..analysis.trace import try_trace
from ..errors import ModelError, PoolstrideError, SiteError
from ..models.shortcuts import PoolWiden
from ..models.site import DownsampleSite, make_site_op
from ..ops import Downsample
from ..ops import build as build_op
from .cost import site_cost
from .find import (
    POOL,
    Analysis,
    Site,
    _pair,
    _pool_call_args,
    analyze,
    eval_mode,
    first_tensor,
    probe_input,
    run_probe,
)
from .policy import AFTER_ACT, OP, REMOVE, SHORT, STRIDE1, Policy, Rule, parse_policy

#: the format tag of a converted model's recipe (and of the file :func:`~poolstride.surgery.save_converted` writes)
FORMAT = "poolstride-converted/1"


class SurgeryWarning(UserWarning):
    """A policy rule or selector that matches nothing, or a site left alone, with the reason."""


# ------------------------------------------------------------------------------------------- records
#: the short init labels of a changed site (:attr:`Change.init_kind`)
PRESERVED, APPROX, KEPT, NEW, NO_PARAMS = "preserved", "approx", "kept", "new", "-"
#: the outcome of one site (:attr:`SiteStatus.status`)
CHANGED, SKIPPED, UNTOUCHED = "changed", "skipped", "untouched"


@dataclass(frozen=True)
class SiteStatus:
    """How one site came out of a conversion, as data (what a table or JSON renders; nothing to parse back).

    ``status`` is ``"changed"``, ``"skipped"`` (a rule applied but the site was left alone; ``reason`` says
    why: the selectors, nothing to do there, or ``"unsupported: ..."`` under ``strict=False``) or
    ``"untouched"`` (no rule applies). For a changed site ``init_kind`` is one of ``"preserved"``, ``"approx"``,
    ``"kept"``, ``"new"``, ``"-"`` (see :attr:`Change.init_kind`) and ``change`` is its :class:`Change`;
    otherwise ``init_kind`` is ``""`` and ``change`` None."""

    site: Site
    status: str
    reason: str | None = None
    change: Change | None = None

    @property
    def init_kind(self) -> str:
        return self.change.init_kind if self.change is not None else ""

    @property
    def function_preserving(self) -> bool:
        return self.change is not None and self.change.function_preserving

    @property
    def label(self) -> str:
        """``"changed"``, ``"skipped: REASON"`` or ``"untouched"``."""
        return f"{SKIPPED}: {self.reason}" if self.status == SKIPPED else self.status


@dataclass
class Change:
    """What happened at one site."""

    site: Site
    rule: str
    after: str
    params_before: int
    params_after: int
    init: str
    fit: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None
    #: conv/linear MACs and other ops (pooling, blur, elementwise) at the site, filled by compute_costs()
    macs_before: int | None = None
    macs_after: int | None = None
    other_before: int | None = None
    other_after: int | None = None
    #: the init as data: "preserved" (same function as before, verified numerically), "approx" (a preserving init
    #: that differs at the borders), "kept" (old weights reused), "new" (fresh layer) or "-" (no parameters)
    init_kind: str = ""
    _cost_inputs: tuple[list[tuple[nn.Module, Any]], list[tuple[nn.Module, Any]]] | None = field(
        default=None, repr=False, compare=False
    )

    def compute_costs(self) -> Change:
        """Fill the MAC / other-ops fields (poolstride.analysis.cost_summary per module, or the flop counter)."""
        if self._cost_inputs is not None and self.macs_before is None:
            before: tuple[int, int | None] = (0, 0)
            after: tuple[int, int | None] = (0, 0)
            for m, shp in self._cost_inputs[0]:
                before = _add(before, _cost(m, shp))
            for m, shp in self._cost_inputs[1]:
                after = _add(after, _cost(m, shp))
            self.macs_before, self.other_before = before
            self.macs_after, self.other_after = after
        return self

    @property
    def other_delta(self) -> int | None:
        return None if self.other_before is None or self.other_after is None else self.other_after - self.other_before

    @property
    def function_preserving(self) -> bool:
        """The converted site computes the same function as before (checked numerically on its input)."""
        return self.init_kind == PRESERVED

    @property
    def params_delta(self) -> int:
        return self.params_after - self.params_before

    @property
    def macs_delta(self) -> int | None:
        return None if self.macs_before is None or self.macs_after is None else self.macs_after - self.macs_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.site.path,
            "kind": self.site.kind,
            "stage": self.site.stage,
            "channels": self.site.channels,
            "stride": self.site.stride,
            "in_size": self.site.in_size,
            "out_size": self.site.out_size,
            "before": self.site.op,
            "after": self.after,
            "rule": self.rule,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "other_ops_before": self.other_before,
            "other_ops_after": self.other_after,
            "init": self.init,
            "fit": self.fit,
        }


@dataclass
class Conversion:
    """The result of :func:`convert_detailed`: the new model and what was done."""

    model: nn.Module
    policy: Policy
    input_size: tuple[int, ...]
    sites: list[Site]
    changes: list[Change]
    skipped: list[tuple[Site, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    graph_rewritten: bool = False
    traced: bool = False
    max_abs_diff: float | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def site_status(self) -> list[SiteStatus]:
        """Every site of the model, in execution order, with what the conversion did there."""
        by_path = {c.site.path: c for c in self.changes}
        why = {s.path: r for s, r in self.skipped}
        out = []
        for s in self.sites:
            if s.path in by_path:
                out.append(SiteStatus(s, CHANGED, change=by_path[s.path]))
            elif s.path in why:
                out.append(SiteStatus(s, SKIPPED, why[s.path]))
            else:
                out.append(SiteStatus(s, UNTOUCHED))
        return out

    def compute_costs(self) -> Conversion:
        """Fill every change's MAC / other-ops fields (costs a few probe passes; the CLI does it)."""
        for c in self.changes:
            c.compute_costs()
        return self

    def recipe(self, model: str | None = None, model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """The recipe that rebuilds this conversion (JSON types only; see :mod:`poolstride.surgery.recipe`):
        the MODEL string and its keyword arguments, the input size, the policy, and what was changed."""
        return {
            "format": FORMAT,
            "poolstride_version": __version__,
            "torch_version": torch.__version__.split("+")[0],
            "model": model,
            "model_kwargs": dict(model_kwargs or {}),
            "input_size": list(self.input_size),
            **self.policy.to_dict(),
            "strict": not any(why.startswith("unsupported") for _, why in self.skipped),
            "graph_rewritten": self.graph_rewritten,
            "changed_sites": [c.site.path for c in self.changes],
        }


# ------------------------------------------------------------------------------------------- helpers
class Fit(nn.Module):
    """Pads (replicate or zeros) or crops the bottom/right edge so a replacement gives exactly the site's
    output size (the analogue of ``ceil_mode``); amounts are fixed for the converted input size."""

    def __init__(self, pad_h: int, pad_w: int, mode: str = "replicate") -> None:
        super().__init__()
        self.pad_h, self.pad_w, self.mode = int(pad_h), int(pad_w), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_h < 0:
            x = x[:, :, : self.pad_h, :]
        if self.pad_w < 0:
            x = x[:, :, :, : self.pad_w]
        ph, pw = max(self.pad_h, 0), max(self.pad_w, 0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode=self.mode) if self.mode != "zeros" else F.pad(x, (0, pw, 0, ph))
        return x

    def extra_repr(self) -> str:
        return f"pad_h={self.pad_h}, pad_w={self.pad_w}, mode={self.mode}"


class FunctionalPool(nn.Module):
    """A functional pooling call captured as a module (the original of an fx site)."""

    def __init__(self, typ: str, args: dict[str, Any]) -> None:
        super().__init__()
        self.typ = typ
        self.args = {k: v for k, v in args.items() if k != "type"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.args
        if self.typ == "max":
            return F.max_pool2d(x, a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"])
        return F.avg_pool2d(
            x, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"],
            a["divisor_override"],
        )  # fmt: skip


_ELEMENTWISE = (
    nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU,
    nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
    nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
)  # fmt: skip
_ELEMENTWISE_FUNCS = {
    F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.leaky_relu, F.hardswish, F.elu, torch.sigmoid, torch.tanh,
    F.dropout, F.dropout2d, torch.relu_, F.mish,
}  # fmt: skip
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_", "contiguous"}


def _device_of(m: nn.Module, fallback: nn.Module) -> tuple[torch.device | None, torch.dtype | None]:
    for mod in (m, fallback):
        for p in mod.parameters():
            return p.device, p.dtype
        for b in mod.buffers():
            if b.dtype.is_floating_point:
                return b.device, b.dtype
    return None, None


def _count(m: nn.Module | None) -> int:
    return 0 if m is None else sum(p.numel() for p in m.parameters())


def _cost(m: nn.Module | None, in_shape: tuple[int, ...] | None) -> tuple[int, int | None]:
    """(conv/linear MACs, other ops or None) of one module for one input of ``in_shape`` (batch 1)."""
    if m is None or in_shape is None:
        return 0, 0
    # inside a container, as in a model: a bare conv as the root is counted without its bias ops
    return site_cost(m if isinstance(m, nn.Sequential) else nn.Sequential(m), in_shape)


def _add(a: tuple[int, int | None], b: tuple[int, int | None]) -> tuple[int, int | None]:
    return a[0] + b[0], (None if a[1] is None or b[1] is None else a[1] + b[1])  # None: counter has no other ops


def _run(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(m), torch.no_grad():
        y = m(x)
    t = first_tensor(y)
    if t is None:  # pragma: no cover - every replacement returns a tensor
        raise SiteError("replacement returned no tensor")
    return t


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, new)
    if isinstance(parent, DownsampleSite) and name == "op":
        parent.spec = None
        parent.label = _describe(new)


def _describe(m: nn.Module) -> str:
    if isinstance(m, Downsample):
        return str(m.spec)
    if isinstance(m, nn.Conv2d):
        kh, kw = _pair(m.kernel_size)
        sh, _ = _pair(m.stride)
        return f"conv{kh}x{kw}/{sh}" + (f" g{m.groups}" if m.groups > 1 else "")
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        typ = "max" if isinstance(m, nn.MaxPool2d) else "avg"
        return f"{typ}pool{_pair(m.kernel_size)[0]}/{_pair(m.stride)[0]}"  # type: ignore[arg-type]
    if isinstance(m, Fit):
        return f"fit({m.pad_h:+d},{m.pad_w:+d})"
    if isinstance(m, PoolWiden):
        return f"maxpool{m.stride}/{m.stride}+{'concat' if m.mode == 'cat' else 'identity'}"
    if isinstance(m, nn.Identity):
        return "identity"
    if isinstance(m, nn.Sequential):
        return " + ".join(_describe(c) for c in m)
    return type(m).__name__


def _square(site: Site, stride: Any) -> int:
    sh, sw = _pair(stride)
    if sh != sw:
        raise SiteError(f"site {site.path}: non-square stride {sh}x{sw} is not supported by the surgery")
    return sh


# ----------------------------------------------------------------------------------- the original op
def _original(ana: Analysis, site: Site) -> nn.Module:
    """The module that computes the site now (a FunctionalPool for an fx site)."""
    if site.via == "fx":
        assert ana.gm is not None
        node = _node(ana.gm, site.path)
        a = _pool_call_args(node)
        if a.get("return_indices"):
            raise SiteError(f"site {site.path}: max_pool2d with return_indices=True cannot be replaced")
        return FunctionalPool(a["type"], a)
    return ana.model.get_submodule(site.path)


def _node(gm: fx.GraphModule, name: str) -> fx.Node:
    for n in gm.graph.nodes:
        if n.name == name:
            return n
    raise KeyError(name)  # pragma: no cover


def _pool_at_stride1(site: Site, orig: nn.Module) -> nn.Module:
    """The site's pool with stride 1 (same kernel, padding, dilation; ceil_mode off)."""
    if isinstance(orig, FunctionalPool):
        a = orig.args
        if orig.typ == "max":
            return nn.MaxPool2d(a["kernel_size"], 1, a["padding"], a["dilation"])
        return nn.AvgPool2d(a["kernel_size"], 1, a["padding"], False, a["count_include_pad"], a["divisor_override"])
    if isinstance(orig, nn.MaxPool2d):
        return nn.MaxPool2d(orig.kernel_size, 1, orig.padding, orig.dilation)
    if isinstance(orig, nn.AvgPool2d):
        return nn.AvgPool2d(orig.kernel_size, 1, orig.padding, False, orig.count_include_pad, orig.divisor_override)
    if isinstance(orig, nn.LPPool2d):
        return nn.LPPool2d(orig.norm_type, orig.kernel_size, 1)
    if isinstance(orig, Downsample) and orig.op_name in ("max", "avg"):
        k = int(orig.spec["k"])
        if orig.op_name == "max":
            return nn.MaxPool2d(k, 1, (k - 1) // 2)
        return nn.AvgPool2d(k, 1, (k - 1) // 2, count_include_pad=False)
    raise SiteError(f"site {site.path}: {site.op} cannot run at stride 1 (not a plain max/avg/lp pool)")


def _conv_of(site: Site, orig: nn.Module) -> nn.Conv2d:
    if isinstance(orig, nn.Conv2d):
        return orig
    if isinstance(orig, Downsample) and isinstance(getattr(orig, "conv", None), nn.Conv2d) and orig.op_name == "conv":
        return orig.conv  # type: ignore[return-value]
    raise SiteError(f"site {site.path}: {site.op} is not a strided convolution, so it cannot run at stride 1")


def _conv_at_stride1(site: Site, orig: nn.Module) -> nn.Conv2d:
    conv = _conv_of(site, orig)
    _square(site, conv.stride)
    c = copy.deepcopy(conv)
    c.stride = (1, 1)
    return c


# --------------------------------------------------------------------------------------- fitting
def _fit(
    site: Site, pre: list[nn.Module], down: nn.Module, in_shape: tuple[int, ...], want: tuple[int, int], mode: str
) -> tuple[nn.Module, tuple[int, int] | None]:
    """Assemble ``pre + [Fit] + down`` so that the output size equals ``want`` (H, W)."""
    x = torch.zeros(in_shape)
    dev, dt = _device_of(down, pre[0] if pre else down)
    if dev is not None:
        x = x.to(device=dev, dtype=dt)
    y = x
    for m in pre:
        y = _run(m, y)
    h, w = y.shape[-2:]
    s = max(site.stride, 2)

    def out_hw(dh: int, dw: int) -> tuple[int, int] | None:
        if h + dh < 1 or w + dw < 1:
            return None
        z = torch.zeros(*y.shape[:-2], h + dh, w + dw, device=y.device, dtype=y.dtype)
        try:
            return tuple(_run(down, z).shape[-2:])  # type: ignore[return-value]
        except (RuntimeError, PoolstrideError):
            return None

    got = out_hw(0, 0)
    if got == tuple(want):
        return (nn.Sequential(*pre, down) if pre else down), None
    cands = sorted(
        {(dh, dw) for dh in range(-s, s + 1) for dw in range(-s, s + 1)},
        key=lambda d: (abs(d[0]) + abs(d[1]), -d[0], -d[1]),
    )
    # axes are independent: search each with the other fixed at its best
    best_h = next((dh for dh, _ in cands if out_hw(dh, 0) is not None and out_hw(dh, 0)[0] == want[0]), None)  # type: ignore[index]
    best_w = next((dw for _, dw in cands if out_hw(0, dw) is not None and out_hw(0, dw)[1] == want[1]), None)  # type: ignore[index]
    if best_h is None or best_w is None or out_hw(best_h, best_w) != tuple(want):
        raise SiteError(
            f"site {site.path} ({site.kind}, {site.channels} channels, {site.in_size} -> {site.out_size}): "
            f"the replacement {_describe(nn.Sequential(*pre, down))} gives {got[0]}x{got[1]} instead of "
            f"{want[0]}x{want[1]} and no edge pad/crop of at most {s} pixels fixes it; it would break the shapes"
            if got is not None
            else f"site {site.path}: the replacement {_describe(down)} does not run on a {h}x{w} input"
        )
    fit = Fit(best_h, best_w, mode)
    return nn.Sequential(*pre, fit, down), (best_h, best_w)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _verify(orig: nn.Module, new: nn.Module, in_shape: tuple[int, ...], seed: int = 1) -> bool:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(in_shape, generator=g)
    dev, dt = _device_of(new, orig)
    if dev is not None:
        x = x.to(device=dev, dtype=dt)
    return _same(_run(orig, x), _run(new, x))


def _avg_kernel_init(conv: nn.Conv2d, k: int, pool_pad: int) -> bool:
    """Set ``conv`` to compute a k x k average per channel (identity across channels). False if the pool's
    window cannot be placed inside the conv's."""
    kc, pc = conv.kernel_size[0], _pair(conv.padding)[0] if not isinstance(conv.padding, str) else -1
    d = pc - pool_pad
    if conv.groups != 1 or conv.in_channels != conv.out_channels or d < 0 or d + k > kc or pc < 0:
        return False
    with torch.no_grad():
        conv.weight.zero_()
        for i in range(conv.out_channels):
            conv.weight[i, i, d : d + k, d : d + k] = 1.0 / (k * k)
        if conv.bias is not None:
            conv.bias.zero_()
    return True


def _embed_conv(dst: nn.Conv2d, src: nn.Conv2d) -> bool:
    """Copy ``src``'s kernel into the (larger or equal) ``dst`` kernel, aligned by their paddings."""
    if (
        dst.groups != src.groups
        or dst.in_channels != src.in_channels
        or dst.out_channels != src.out_channels
        or _pair(dst.stride) != _pair(src.stride)
        or _pair(src.dilation) != (1, 1)
        or isinstance(src.padding, str)
        or isinstance(dst.padding, str)
    ):
        return False
    ks, kd = src.kernel_size[0], dst.kernel_size[0]
    d = _pair(dst.padding)[0] - _pair(src.padding)[0]
    if d < 0 or d + ks > kd or src.kernel_size[0] != src.kernel_size[1]:
        return False
    with torch.no_grad():
        dst.weight.zero_()
        dst.weight[:, :, d : d + ks, d : d + ks] = src.weight
        if dst.bias is not None:
            dst.bias.copy_(src.bias if src.bias is not None else torch.zeros_like(dst.bias))
    return True


# ------------------------------------------------------------------------------------ replacements


@dataclass
class _Plan:
    site: Site
    rule: Rule
    module: nn.Module | None  # replacement for the site (None: the site is removed from the graph)
    init: str
    init_kind: str  # PRESERVED, APPROX, KEPT, NEW or NO_PARAMS
    fit: tuple[int, int] | None = None
    extra: dict[str, nn.Module] = field(default_factory=dict)  # other module paths to replace
    extra_before: dict[str, nn.Module] = field(default_factory=dict)
    #: ``conv->conv(s=1)+act+POOL``: fx node after which ``post`` is inserted (a functional or shared activation)
    insert_after: str | None = None
    post: nn.Module | None = None
    #: module paths whose output is now at the pre-downsampling resolution (the shape check skips them)
    resized: tuple[str, ...] = ()
    #: (module, input shape) lists for the cost records, when the default (site + extra modules) is not right
    cost_before: list[tuple[nn.Module, tuple[int, ...]]] | None = None
    cost_after: list[tuple[nn.Module, tuple[int, ...]]] | None = None
    after: str | None = None  # the Change's "after" text, when _describe(module) does not say it
    warning: str | None = None  # a per-site warning (e.g. a fallback)


@dataclass
class _At:
    """One site about to be planned: the rule that applies, the module computing it now, its probe shapes."""

    ana: Analysis
    site: Site
    rule: Rule
    orig: nn.Module
    in_shape: tuple[int, ...]
    want: tuple[int, int]
    touched: set[str]  # paths (and fx nodes) already changed by other sites
    device: torch.device | None
    dtype: torch.dtype | None

    def to_dev(self, m: nn.Module) -> nn.Module:
        """``m`` on the model's device and dtype, in the original's training mode."""
        m = m.to(device=self.device, dtype=self.dtype) if self.device is not None else m
        return m.train(self.orig.training)

    def fit(self, pre: list[nn.Module], down: nn.Module, mode: str) -> tuple[nn.Module, tuple[int, int] | None]:
        return _fit(self.site, pre, down, self.in_shape, self.want, mode)


def _plan_site(ana: Analysis, site: Site, rule: Rule, init: str, touched: set[str]) -> _Plan | str:
    """Build the replacement for one site. Returns a reason string when the site is left alone on
    purpose (nothing to do), raises SiteError when the rule cannot be applied there."""
    if site.in_size is None or site.out_size is None:
        return "not executed by the probe forward pass"
    orig = _original(ana, site)
    in_shape = ana.shapes[site.path][0] if site.via == "module" else ana.node_shapes[site.path][0]
    assert in_shape is not None
    at = _At(ana, site, rule, orig, in_shape, site.out_size, touched, *_device_of(orig, ana.model))
    if rule.action == SHORT:
        return _plan_shortcut(at)
    if rule.action == OP:
        return _plan_op(at, init)
    if rule.action == STRIDE1:
        return _plan_stride1(at)
    if rule.action == AFTER_ACT:
        return _plan_after_act(at)
    if rule.action == REMOVE:
        return _plan_remove(at)
    raise AssertionError(rule.action)  # pragma: no cover


def _plan_shortcut(at: _At) -> _Plan | str:
    """``shortcut->POOL+1x1`` (ResNet-D) or ``shortcut->pool+concat``/``+identity`` (the conv dropped)."""
    site, rule, s = at.site, at.rule, at.site.stride
    if site.type != "conv":
        return f"shortcut already downsamples with {site.op} (no strided conv to replace)"
    conv = _conv_of(site, at.orig)
    _square(site, conv.stride)
    if rule.form.endswith("+1x1"):
        pool_name = rule.form.split("+")[0]
        spec = {"avg": f"avg(k={s})", "max": f"max(k={s})", "blur": "blur(base=avg)"}[pool_name]
        pool = build_op(spec, site.in_channels, site.in_channels, s)
        module, fit = at.fit([], at.to_dev(pool), "replicate")
        seq = nn.Sequential(
            *(module if isinstance(module, nn.Sequential) else [module]), at.to_dev(_conv_at_stride1(site, conv))
        )
        return _Plan(site, rule, seq, "weights kept (conv now stride 1 after the pool)", KEPT, fit)
    mode = "cat" if rule.form.endswith("concat") else "zero"
    if site.out_channels < site.in_channels:
        raise SiteError(
            f"site {site.path}: {rule.text} needs out_channels >= in_channels, but the shortcut maps "
            f"{site.channels}; it would break the shapes"
        )
    widen = PoolWiden(site.in_channels, site.out_channels, s, mode)
    module, fit = at.fit([], at.to_dev(widen), "replicate")
    return _Plan(site, rule, module, "no parameters (conv dropped)", NO_PARAMS, fit)


def _plan_op(at: _At, init: str) -> _Plan:
    """``KIND->SPEC``: a fresh operator in the site's place (function-preserving init on request)."""
    site, rule = at.site, at.rule
    assert rule.spec is not None
    new: nn.Module
    if site.kind == POOL:
        new = at.to_dev(build_op(rule.spec, site.in_channels, site.in_channels, site.stride))
    else:
        if site.type == "conv":
            _square(site, _conv_of(site, at.orig).stride)
        new = at.to_dev(make_site_op(rule.spec, site.in_channels, site.out_channels, site.stride))
    module, fit = at.fit([], new, "zeros" if rule.spec.name in ("conv", "s2d") else "replicate")
    kind, note = (NEW, "new (registered init)") if _count(new) else (NO_PARAMS, "no parameters")
    if init == "preserve":
        kind, note = _preserve(site, at.orig, new, module, at.in_shape)
    return _Plan(site, rule, module, note, kind, fit)


def _plan_stride1(at: _At) -> _Plan:
    """``KIND->KIND(s=1)+POOL``: the site's own op at stride 1 (same weights), then POOL downsamples."""
    site, rule = at.site, at.rule
    assert rule.spec is not None
    if site.kind == POOL:
        pre = at.to_dev(_pool_at_stride1(site, at.orig))
        c = site.in_channels
    else:
        pre = at.to_dev(_conv_at_stride1(site, at.orig))
        c = site.out_channels
    down = at.to_dev(build_op(rule.spec, c, c, site.stride))
    module, fit = at.fit([pre], down, "replicate")
    kept = "weights kept, " if _count(pre) else ""
    if _verify(at.orig, module, at.in_shape):
        return _Plan(site, rule, module, kept + "function-preserving (verified)", PRESERVED, fit)
    return _Plan(site, rule, module, kept + "stride moved to the pool", KEPT if kept else NO_PARAMS, fit)


def _preserve(
    site: Site, orig: nn.Module, new: nn.Module, module: nn.Module, in_shape: tuple[int, ...]
) -> tuple[str, str]:
    """(init kind, init note) of a function-preserving init of ``new`` (inside ``module``) where it is possible."""
    conv = getattr(new, "conv", None)
    if not isinstance(conv, nn.Conv2d):
        return NEW, f"new (registered init); function-preserving init not possible for {_describe(new)}"
    ok = False
    if site.type == "avg":
        if isinstance(orig, FunctionalPool):
            k, p = _pair(orig.args["kernel_size"])[0], _pair(orig.args["padding"])[0]
        elif isinstance(orig, nn.AvgPool2d):
            k, p = _pair(orig.kernel_size)[0], _pair(orig.padding)[0]  # type: ignore[arg-type]
        elif isinstance(orig, Downsample):
            k = int(orig.spec["k"])
            p = (k - 1) // 2
        else:  # pragma: no cover
            return NEW, "new (registered init)"
        ok = _avg_kernel_init(conv, k, p)
    elif site.type == "conv":
        try:
            ok = _embed_conv(conv, _conv_of(site, orig))
        except SiteError:
            ok = False
    else:
        return NEW, f"new (registered init); function-preserving init not possible ({site.type} pooling is not linear)"
    if not ok:
        return NEW, "new (registered init); the old window does not fit in the new kernel, no function-preserving init"
    if _verify(orig, module, in_shape):
        return PRESERVED, "function-preserving (verified)"
    return APPROX, "preserving init (approximate: differs at the borders or in the padding rule)"


def _plan_remove(at: _At) -> _Plan:
    """``pool->remove+stride-prev``: find the conv that feeds the pool through elementwise layers only."""
    ana, site, want = at.ana, at.site, at.want
    _, conv_path = _prev_conv(ana, site)
    if conv_path in at.touched:
        raise SiteError(f"site {site.path}: the conv before it ({conv_path}) is already changed by another site")
    conv = ana.model.get_submodule(conv_path)
    s = _square(site, (site.stride, site.stride))
    new_conv: Any = copy.deepcopy(conv)
    if isinstance(conv, Downsample):  # a registered strided conv (built-in models)
        cs = conv.stride
        new_conv.stride = cs * s
        new_conv.conv.stride = (cs * s, cs * s)
    else:
        assert isinstance(conv, nn.Conv2d)
        cs = _square(site, conv.stride)
        new_conv.stride = (cs * s, cs * s)
    cin_shape = ana.shapes[conv_path][0]
    assert cin_shape is not None
    w = next(conv.parameters())
    got = _run(new_conv, torch.zeros(cin_shape, device=w.device, dtype=w.dtype)).shape[-2:]
    fit = None
    module: nn.Module = nn.Identity()
    if tuple(got) != tuple(want):
        dh, dw = want[0] - got[0], want[1] - got[1]
        if max(abs(dh), abs(dw)) > 1:
            raise SiteError(
                f"site {site.path}: removing it and striding {conv_path} by {cs * s} gives {got[0]}x{got[1]} "
                f"instead of {want[0]}x{want[1]}; it would break the shapes"
            )
        fit = (dh, dw)
        module = Fit(dh, dw, "replicate")
    note = f"removed; {conv_path} now stride {cs * s} (weights kept)"
    return _Plan(site, at.rule, module, note, KEPT, fit, extra={conv_path: new_conv}, extra_before={conv_path: conv})


def _prev_conv(ana: Analysis, site: Site) -> tuple[list[str], str]:
    if ana.gm is not None:
        gm = ana.gm
        mods = dict(gm.named_modules())
        node = _node(gm, site.path) if site.via == "fx" else next(
            n for n in gm.graph.nodes if n.op == "call_module" and str(n.target) == site.path
        )  # fmt: skip
        chain: list[str] = []
        cur = node.all_input_nodes[0] if node.all_input_nodes else None
        for _ in range(16):
            if cur is None or cur.op == "placeholder":
                break
            if len(cur.users) != 1:
                raise SiteError(
                    f"site {site.path}: the output of {cur.target if cur.op == 'call_module' else cur.name} "
                    f"feeds other layers too; striding the conv before the pool would change their shapes"
                )
            if cur.op == "call_module":
                m = mods[str(cur.target)]
                if isinstance(m, nn.Conv2d) or (isinstance(m, Downsample) and m.op_name == "conv"):
                    return chain, str(cur.target)
                if isinstance(m, _ELEMENTWISE):
                    chain.append(str(cur.target))
                    cur = cur.all_input_nodes[0]
                    continue
                what = f"{cur.target} ({type(m).__name__})"
            elif (cur.op == "call_function" and cur.target in _ELEMENTWISE_FUNCS) or (
                cur.op == "call_method" and cur.target in _ELEMENTWISE_METHODS
            ):
                cur = cur.all_input_nodes[0]
                continue
            else:
                what = f"{cur.name} ({getattr(cur.target, '__name__', cur.target)})"
            raise SiteError(
                f"site {site.path}: the layer before it is {what}, not a convolution (through elementwise "
                "layers), so remove+stride-prev cannot apply there"
            )
        raise SiteError(f"site {site.path}: no convolution before it, so remove+stride-prev cannot apply there")
    # no graph: only a pool inside an nn.Sequential, after a conv and elementwise siblings
    parent_path, _, name = site.path.rpartition(".")
    parent = ana.model.get_submodule(parent_path) if parent_path else ana.model
    if not isinstance(parent, nn.Sequential):
        raise SiteError(
            f"site {site.path}: without an fx graph remove+stride-prev only works for a pool inside an "
            f"nn.Sequential (the model does not trace: {ana.trace_error})"
        )
    keys = list(parent._modules)
    i = keys.index(name)
    chain = []
    for k in reversed(keys[:i]):
        m = parent._modules[k]
        p = f"{parent_path}.{k}" if parent_path else k
        if isinstance(m, nn.Conv2d):
            return chain, p
        if not isinstance(m, _ELEMENTWISE):
            raise SiteError(f"site {site.path}: the layer before it is {p} ({type(m).__name__}), not a convolution")
        chain.append(p)
    raise SiteError(f"site {site.path}: no convolution before it in {parent_path or 'the model'}")


# -------------------------------------------------------------------- Zhang's layout (conv->conv(s=1)+act+POOL)
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm,
)  # fmt: skip
_ACT_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
)  # fmt: skip
_ACT_FUNCS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardtanh, F.softplus, torch.sigmoid, torch.tanh,
}  # fmt: skip
_ACT_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
#: layers that may sit between the conv, its norm and its activation (timm's drop_block, a Dropout)
_PASS_TYPES: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)


class _NoChain(Exception):
    """Zhang's layout does not apply at a site; the message says why."""


class _NodeCall(nn.Module):
    """A functional activation of the fx graph (``F.relu(x)``, ``x.relu()``) as a module, replayed on one tensor
    for the full-resolution check and the cost records (never installed in a model)."""

    def __init__(self, node: fx.Node) -> None:
        super().__init__()
        self.kind, self.target = node.op, node.target
        self.rest, self.kw = tuple(node.args[1:]), dict(node.kwargs)

    def forward(self, x: torch.Tensor) -> Any:
        if self.kind == "call_method":
            return getattr(x, str(self.target))(*self.rest, **self.kw)
        return self.target(x, *self.rest, **self.kw)  # type: ignore[operator]

    def extra_repr(self) -> str:
        return str(getattr(self.target, "__name__", self.target))


@dataclass
class _ActChain:
    """What follows a strided conv: the layers between it and its activation (at most one norm, plus
    pass-through layers such as Identity or Dropout), then the activation after which the downsampler goes."""

    mids: list[tuple[str, nn.Module]]  # module paths and modules between the conv and the activation, in order
    act: str  # module path of the activation, or its fx node name when it is a function call
    act_mod: nn.Module  # the activation (a _NodeCall for a function call)
    act_is_module: bool
    node: str | None = None  # insert the downsampler after this fx node; None: swap the activation module
    why_graph: str = ""


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, _NORM_TYPES) or type(m).__name__ == "FrozenBatchNorm2d"


def _label(n: fx.Node, mods: dict[str, nn.Module]) -> str:
    if n.op == "call_module":
        return f"{n.target} ({type(mods[str(n.target)]).__name__})"
    if n.op == "output":
        return "the model output"
    return f"{n.name} ({getattr(n.target, '__name__', n.target)})"


def _act_chain(ana: Analysis, site: Site) -> _ActChain:
    """Find conv -> [norm] -> activation after the site (pass-through layers allowed in between): in the fx
    graph, or without one among the following siblings in an ``nn.Sequential``. Raises _NoChain with the
    reason when the chain is not there."""
    if ana.gm is None:
        return _act_chain_sequential(ana, site)
    gm = ana.gm
    mods = dict(gm.named_modules())
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and str(n.target) == site.path]
    if len(calls) != 1:
        raise _NoChain(f"{site.path} is called {len(calls)} times in the fx graph, not once")

    prev, mids, norms = calls[0], [], 0
    for _ in range(8):
        users = list(prev.users)
        if len(users) != 1:
            raise _NoChain(f"the output of {_label(prev, mods)} feeds {len(users)} layers, not one norm or activation")
        nxt = users[0]
        if not nxt.args or nxt.args[0] is not prev:
            raise _NoChain(f"{_label(nxt, mods)} follows {_label(prev, mods)} but does not take it as its first input")
        m = mods.get(str(nxt.target)) if nxt.op == "call_module" else None
        if m is not None and ((_is_norm(m) and not norms) or isinstance(m, _PASS_TYPES)):
            norms += _is_norm(m)
            mids.append((str(nxt.target), m))
            prev = nxt
            continue
        break
    what = "an activation" if norms else "a norm or an activation"
    if m is not None:
        if not isinstance(m, _ACT_TYPES):
            raise _NoChain(f"{_label(nxt, mods)} follows {_label(prev, mods)}, not {what}")
        n_calls = sum(n.op == "call_module" and mods.get(str(n.target)) is m for n in gm.graph.nodes)
        if n_calls == 1:
            return _ActChain(mids, str(nxt.target), m, True)
        return _ActChain(mids, str(nxt.target), m, True, nxt.name, f"{nxt.target} is called {n_calls} times")
    if (nxt.op == "call_function" and nxt.target in _ACT_FUNCS) or (
        nxt.op == "call_method" and nxt.target in _ACT_METHODS
    ):
        found: list[fx.Node] = []
        fx.node.map_arg((nxt.args[1:], nxt.kwargs), found.append)
        if found:
            raise _NoChain(f"the activation {_label(nxt, mods)} takes other tensors as arguments")
        fn = getattr(nxt.target, "__name__", nxt.target)
        return _ActChain(mids, nxt.name, _NodeCall(nxt), False, nxt.name, f"{nxt.name} is a call of {fn}")
    raise _NoChain(f"{_label(nxt, mods)} follows {_label(prev, mods)}, not {what}")


def _act_chain_sequential(ana: Analysis, site: Site) -> _ActChain:
    parent_path, _, name = site.path.rpartition(".")
    parent = ana.model.get_submodule(parent_path) if parent_path else ana.model
    if not isinstance(parent, nn.Sequential):
        raise _NoChain(
            f"the model does not trace ({ana.trace_error}) and {site.path} is not inside an nn.Sequential, so "
            "the layers that consume it are unknown"
        )
    keys = list(parent._modules)
    prev, mids, norms = site.path, [], 0
    for k in keys[keys.index(name) + 1 :]:
        m = parent._modules[k]
        assert m is not None
        path = f"{parent_path}.{k}" if parent_path else k
        if (_is_norm(m) and not norms) or isinstance(m, _PASS_TYPES):
            norms += _is_norm(m)
            mids.append((path, m))
            prev = path
            continue
        if not isinstance(m, _ACT_TYPES):
            what = "an activation" if norms else "a norm or an activation"
            raise _NoChain(f"{path} ({type(m).__name__}) follows {prev}, not {what}")
        return _ActChain(mids, path, m, True)
    raise _NoChain(f"nothing follows {prev} in {parent_path or 'the model'}")


def _plan_after_act(at: _At) -> _Plan:
    """``conv->conv(s=1)+act+POOL`` (Zhang 2019): the conv at stride 1 (same weights), its norm and activation at
    full resolution, then POOL after the activation. Falls back to POOL right after the conv (the
    ``conv->conv(s=1)+POOL`` placement) with a warning when no conv -> [norm] -> activation chain follows.
    The activation module becomes ``Sequential(activation, POOL)`` when it is called once; a function call or
    a module called several times (torchvision's shared ``relu``) gets POOL inserted after it in the fx graph."""
    site, rule = at.site, at.rule
    assert rule.spec is not None
    conv1 = at.to_dev(_conv_at_stride1(site, at.orig))
    c = site.out_channels
    down = at.to_dev(build_op(rule.spec, c, c, site.stride))
    try:
        ch = _act_chain(at.ana, site)
        if ch.act in at.touched or (ch.node is not None and ch.node in at.touched):
            raise _NoChain(f"{ch.act} is already changed by another site")
        full = _full_resolution(at.in_shape, conv1, ch)
    except _NoChain as e:
        module, fit = at.fit([conv1], down, "replicate")
        return _Plan(
            site, rule, module, f"weights kept; fallback: {rule.spec} right after the conv, before its norm ({e})",
            KEPT, fit,
            warning=f"site {site.path}: Zhang's layout (downsampling after the activation) does not apply: {e}; "
            f"falling back to {rule.spec} right after the conv, before the norm (the conv->conv(s=1)+{rule.spec} "
            "placement) at this site",
        )  # fmt: skip
    seq, fit = at.fit([conv1], down, "replicate")
    tail = list(seq.children())[1:]  # [Fit,] down
    post = tail[0] if len(tail) == 1 else nn.Sequential(*tail)
    strided = at.ana.shapes[site.path][1]
    assert strided is not None
    cost_before = [(at.orig, at.in_shape), *((m, strided) for _, m in ch.mids), (ch.act_mod, strided)]
    cost_after = [(conv1, at.in_shape), *((m, full) for _, m in ch.mids), (ch.act_mod, full), (post, full)]
    mids = [p for p, m in ch.mids if not isinstance(m, nn.Identity)]
    names = ", ".join(mids[:-1] + [f"{mids[-1]} and {ch.act}"]) if mids else ch.act
    after = f"{_describe(conv1)}; {_describe(post)} after {ch.act}"
    note = f"weights kept; Zhang's layout: {names} now at full resolution, then {_describe(post)}"
    anc = {a for p in [site.path, *(p for p, _ in ch.mids)] for a in _ancestors(p)}
    if ch.act_is_module:
        anc -= set(_ancestors(ch.act))
    resized = {site.path, *anc, *(p for p, _ in ch.mids)}
    if ch.node is None:  # the activation module is called once: it becomes Sequential(activation, post)
        wrap = nn.Sequential(copy.deepcopy(ch.act_mod), post)
        wrap.training = ch.act_mod.training
        return _Plan(
            site, rule, conv1, note, KEPT, fit, extra={ch.act: wrap}, extra_before={ch.act: ch.act_mod},
            resized=tuple(sorted(resized)), cost_before=cost_before, cost_after=cost_after, after=after,
        )  # fmt: skip
    if ch.act_is_module:
        resized.add(ch.act)
    note += f" ({ch.why_graph}: {_describe(post)} is inserted after this call in the fx graph)"
    return _Plan(
        site, rule, conv1, note, KEPT, fit, insert_after=ch.node, post=post, resized=tuple(sorted(resized)),
        cost_before=cost_before, cost_after=cost_after, after=after,
    )  # fmt: skip


def _full_resolution(in_shape: tuple[int, ...], conv1: nn.Module, ch: _ActChain) -> tuple[int, ...]:
    """The shape of the stride-1 conv's output; its norm and activation must run on it and keep it (else
    _NoChain says why)."""
    x = torch.zeros(in_shape)
    w = next(conv1.parameters())
    y = _run(conv1, x.to(device=w.device, dtype=w.dtype))
    z = y
    for path, m in [*ch.mids, (ch.act, ch.act_mod)]:
        try:
            z = _run(m, z)
        except Exception as e:  # noqa: BLE001 - e.g. a LayerNorm over (C, H, W) tied to the strided size
            raise _NoChain(
                f"{path} does not run at the full resolution {tuple(y.shape)} ({type(e).__name__})"
            ) from None
        if z.shape != y.shape:
            raise _NoChain(f"{path} changes the full-resolution shape {tuple(y.shape)} to {tuple(z.shape)}")
    return tuple(y.shape)


# ------------------------------------------------------------------------------------------- public
def _select(ana: Analysis, policy: Policy) -> tuple[list[tuple[Site, Rule]], list[tuple[Site, str]], list[str]]:
    chosen, skipped, warns = [], [], []
    warns += policy.select.unmatched(ana.sites)
    for r in policy.rules:
        if not any(r.matches(s) for s in ana.sites):
            kinds = sorted({f"{s.kind}/{s.type}" for s in ana.sites})
            warns.append(f"policy rule {r.text} matches no site (sites here: {', '.join(kinds) or 'none'})")
    hit_rules: set[str] = set()
    for s in ana.sites:
        rule = policy.rule_for(s)
        if rule is None:
            continue
        why = policy.select.reasons(s)
        if why:
            skipped.append((s, "; ".join(why)))
            continue
        hit_rules.add(rule.text)
        chosen.append((s, rule))
    for r in policy.rules:
        if any(r.matches(s) for s in ana.sites) and r.text not in hit_rules:
            warns.append(f"policy rule {r.text}: the selectors exclude every site it matches")
    return chosen, skipped, warns


def convert_detailed(
    model: nn.Module,
    policy: str | Policy,
    input_size: Iterable[int] = (3, 224, 224),
    *,
    strict: bool = True,
    use_fx: bool = True,
    analysis: Analysis | None = None,
    **select: Any,
) -> Conversion:
    """Apply ``policy`` to a copy of ``model`` and say what was done (see :func:`convert`).

    ``select`` holds the selectors and the init mode of :func:`~poolstride.surgery.parse_policy` (``skip``,
    ``stages``, ``paths``, ``exclude``, ``min_channels``, ``init``). ``analysis`` (from
    :func:`~poolstride.surgery.analyze` of this very model at this input size) saves the probe when one model
    is converted under several policies."""
    pol = parse_policy(policy, **select)
    size = tuple(int(v) for v in input_size)
    if analysis is not None and analysis.model is model and tuple(analysis.input_size) == size:
        ana = analysis
    else:
        ana = analyze(model, size, use_fx=use_fx)
    chosen, skipped, warns = _select(ana, pol)
    plans = _plan_all(ana, chosen, pol.init, strict, skipped, warns)
    needs_graph = any(p.site.via == "fx" or p.insert_after is not None for p in plans)
    if needs_graph:
        new_model: nn.Module = _rewrite_graph(model, ana, plans)
        warns.append(_graph_warning(model, plans))
    else:
        new_model = copy.deepcopy(model)
        for p in plans:
            for path, m in p.extra.items():
                _set_module(new_model, path, m)
            _set_module(new_model, p.site.path, p.module if p.module is not None else nn.Identity())
    diff = _check_shapes(ana, new_model, plans)
    changes = []
    for p in plans:
        changes.append(_change(ana, p))
        if p.warning:
            warns.append(p.warning)
        if p.fit is not None:
            warns.append(
                f"site {p.site.path}: output size matched by an edge {'crop' if min(p.fit) < 0 else 'pad'} "
                f"{p.fit} at input {'x'.join(map(str, ana.input_size))}; other input sizes may need a different fit"
            )
    for w in warns:
        warnings.warn(w, SurgeryWarning, stacklevel=2)
    return Conversion(new_model, pol, ana.input_size, ana.sites, changes, skipped, warns, needs_graph, ana.traced, diff)


def _plan_all(
    ana: Analysis,
    chosen: list[tuple[Site, Rule]],
    init: str,
    strict: bool,
    skipped: list[tuple[Site, str]],
    warns: list[str],
) -> list[_Plan]:
    """The plans of the chosen sites, in order; a site left alone is added to ``skipped`` and ``warns``
    (a rule that cannot apply raises SiteError when ``strict``)."""
    plans: list[_Plan] = []
    touched: set[str] = set()
    for site, rule in chosen:
        try:
            p = _plan_site(ana, site, rule, init, touched)
        except SiteError as e:
            if strict:
                raise
            skipped.append((site, f"unsupported: {e}"))
            warns.append(f"site {site.path} left unchanged: {e}")
            continue
        if isinstance(p, str):
            skipped.append((site, p))
            warns.append(f"site {site.path} left unchanged: {p}")
            continue
        touched.add(site.path)
        touched.update(p.extra)
        if p.insert_after is not None:
            touched.add(p.insert_after)
        plans.append(p)
    return plans


def _graph_warning(model: nn.Module, plans: list[_Plan]) -> str:
    """Why the result is a GraphModule, and the training mode its Python branches were traced in."""
    why = ["functional sites changed"] if any(p.site.via == "fx" for p in plans) else []
    inserted = [p.site.path for p in plans if p.insert_after is not None]
    if inserted:
        why.append(f"downsampling inserted after a functional or shared activation ({', '.join(inserted)})")
    return (
        f"{'; '.join(why)}: the result is a torch.fx GraphModule traced in "
        f"{'training' if model.training else 'eval'} mode (Python branches on self.training are fixed to it)"
    )


def _change(ana: Analysis, p: _Plan) -> Change:
    """The record of one applied plan (parameter counts now, costs on demand)."""
    old = _original(ana, p.site)
    before_p = _count(old) + sum(_count(m) for m in p.extra_before.values())
    after_p = _count(p.module) + sum(_count(m) for m in p.extra.values()) + _count(p.post)
    in_shape = ana.shapes[p.site.path][0] if p.site.via == "module" else ana.node_shapes[p.site.path][0]
    cost_in: tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]] = (
        [(old, in_shape), *((m, ana.shapes[k][0]) for k, m in p.extra_before.items())],
        [(p.module, in_shape), *((m, ana.shapes[k][0]) for k, m in p.extra.items())],
    )
    if p.cost_before is not None and p.cost_after is not None:
        cost_in = (p.cost_before, p.cost_after)
    after = p.after or (_describe(p.module) if p.module is not None else "removed")
    if p.rule.action == REMOVE:
        after = "removed (stride -> " + ", ".join(p.extra) + ")"
    return Change(
        p.site, p.rule.text, after, before_p, after_p, p.init, p.fit, p.site.out_size,
        init_kind=p.init_kind, _cost_inputs=cost_in,  # type: ignore[arg-type]
    )  # fmt: skip


def convert(
    model: nn.Module,
    policy: str | Policy,
    input_size: Iterable[int] = (3, 224, 224),
    **options: Any,
) -> nn.Module:
    """Apply a downsampling ``policy`` to ``model`` and return a new model (the input is not mutated).

    ``input_size`` (C, H, W) is the size at which sites are found and shapes are checked. Options:
    ``skip`` (kinds such as ``"stem"`` or path globs), ``stages``, ``paths``, ``exclude``,
    ``min_channels``, ``init`` (``"default"`` or ``"preserve"``), ``strict`` (default True: a site the rule
    cannot apply to raises :class:`~poolstride.errors.SiteError`; False: it is left alone with a warning).

    >>> from poolstride import models
    >>> m = convert(models.build("tiny"), "pool->conv(k=3)", (3, 32, 32))
    >>> type(m.features[3].op).__name__
    'StridedConv'
    """
    return convert_detailed(model, policy, input_size, **options).model


def _rewrite_graph(model: nn.Module, ana: Analysis, plans: list[_Plan]) -> fx.GraphModule:
    gm, err = try_trace(copy.deepcopy(model))
    if gm is None:  # pragma: no cover - analyze() traced it already
        raise ModelError(f"cannot rewrite {type(model).__name__}: {err}")
    nodes = {n.name: n for n in gm.graph.nodes}
    for p in plans:
        for path, m in p.extra.items():
            _set_module(gm, path, m)
        if p.site.via == "module":
            _set_module(gm, p.site.path, p.module if p.module is not None else nn.Identity())
            if p.insert_after is not None and p.post is not None:
                _insert_after(gm, nodes[p.insert_after], p.post)
            continue
        node = nodes[p.site.path]
        name = f"ps_{node.name}"
        gm.add_submodule(name, p.module if p.module is not None else nn.Identity())
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    return gm


def _insert_after(gm: fx.GraphModule, node: fx.Node, module: nn.Module) -> None:
    """Insert ``module`` after ``node``; every other user of ``node`` reads the module's output instead."""
    name = f"ps_{node.name}"
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node,))
    node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)


def _check_shapes(ana: Analysis, new_model: nn.Module, plans: list[_Plan]) -> float | None:
    """Probe the converted model; every surviving module and the output must keep their shapes."""
    if not plans:
        return 0.0
    x = probe_input(ana.model, ana.input_size)
    try:
        out, shapes, order = run_probe(new_model, x)
    except Exception as e:  # noqa: BLE001 - report which sites were changed
        raise SiteError(
            f"the converted model fails on the probe input ({type(e).__name__}: {str(e)[:200]}); changed sites: "
            + ", ".join(p.site.path for p in plans)
        ) from e
    changed = {p.site.path for p in plans} | {k for p in plans for k in p.extra}
    inside: set[str] = set()
    for p in plans:
        if p.rule.action == REMOVE:
            moved = [*_safe_chain(ana, p), *p.extra]
            inside.update(moved)
            inside.update(a for m in moved for a in _ancestors(m))
            inside.difference_update(_ancestors(p.site.path))
    for p in plans:  # Zhang's layout: the conv's norm/activation (and wrappers ending there) run at full resolution
        inside.update(p.resized)

    def replaced(path: str) -> bool:
        return (
            any(path.startswith(c + ".") for c in changed)
            or path in inside
            or path in {k for p in plans for k in p.extra}
        )

    for path in order:
        if replaced(path) or path not in ana.shapes:
            continue
        before, after = ana.shapes[path][1], shapes[path][1]
        if before is not None and after is not None and before != after:
            culprit = _culprit(ana, plans, path)
            raise SiteError(
                f"after the conversion {path} outputs {tuple(after)} instead of {tuple(before)}; "
                f"the change at site {culprit} breaks the shapes"
            )
    t = first_tensor(out)
    if ana.output is not None and t is not None:
        if t.shape != ana.output.shape:
            raise SiteError(
                f"after the conversion the model outputs {tuple(t.shape)} instead of {tuple(ana.output.shape)}; "
                f"changed sites: {', '.join(p.site.path for p in plans)}"
            )
        return float((t.float() - ana.output.float()).abs().max()) if t.numel() else 0.0
    return None


def _ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _safe_chain(ana: Analysis, p: _Plan) -> list[str]:
    try:
        return _prev_conv(ana, p.site)[0]
    except SiteError:  # pragma: no cover
        return []


def _culprit(ana: Analysis, plans: list[_Plan], path: str) -> str:
    pos = ana.order.index(path) if path in ana.order else math.inf
    best = plans[0].site.path
    for p in plans:
        q = ana.order.index(p.site.path) if p.site.path in ana.order else -1
        if q <= pos:
            best = p.site.path
    return best


__all__ = [
    "FORMAT",
    "Change",
    "Conversion",
    "Fit",
    "FunctionalPool",
    "SiteStatus",
    "SurgeryWarning",
    "convert",
    "convert_detailed",
]
