"""Find the downsampling sites of any ``nn.Module``.

Two sources, merged:

* a **module walk**: pooling layers (``nn.MaxPool2d``, ``nn.AvgPool2d``, ``nn.LPPool2d``) with stride > 1,
  convolutions with stride > 1 and poolstride's own registered operators (:class:`~poolstride.ops.Downsample`);
* a **torch.fx trace** (when the model traces): functional ``F.max_pool2d`` / ``F.avg_pool2d`` calls, and
  the graph positions that tell a residual **shortcut** from the main path: a strided conv (or pool) whose
  single-user chain ends in an ``add`` with fewer convolutions than the other operand's path back to the
  same fork is on the shortcut.

One probe forward pass (eval mode, no grad, one seeded random image) records every module's input and
output shape and the execution order. The **stem** is the first executed site when it is a convolution
that sees the full input resolution. The **stage** of a site is the index of its input height among the
distinct input heights of all sites, largest first (0 = full resolution).

Without a trace, shortcuts are recognised by name (a path segment ``downsample``, ``shortcut``, ``skip``,
``proj`` or ``residual``) and functional calls are invisible; ``Analysis.traced`` says which applied.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..analysis.trace import try_trace
from ..errors import ModelError
from ..models.shortcuts import match as _shortcut_match
from ..models.site import DownsampleSite
from ..ops import Downsample

#: site kinds
STEM, POOL, CONV, SHORTCUT = "stem", "pool", "conv", "shortcut"
KINDS = (STEM, POOL, CONV, SHORTCUT)

_POOL_MODULES: dict[type[nn.Module], str] = {nn.MaxPool2d: "max", nn.AvgPool2d: "avg", nn.LPPool2d: "lp"}
#: functional pooling calls found via fx, with their positional signature after the input
_POOL_FUNCS: dict[Any, tuple[str, tuple[str, ...]]] = {
    F.max_pool2d: ("max", ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    torch.max_pool2d: ("max", ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    F.avg_pool2d: (
        "avg",
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    ),
    torch._C._nn.avg_pool2d: (
        "avg",
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    ),
}
_SHORTCUT_NAMES = ("downsample", "shortcut", "skip", "proj", "residual")
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) else (1, 1)
    return int(v), int(v)


@dataclass(frozen=True)
class Site:
    """One downsampling place in a model.

    ``path`` is the module path (``layer2.0.downsample.0``) or, for a functional call found by fx, the fx
    node name (``max_pool2d_1``, ``via="fx"``). ``kind`` is ``stem``, ``pool``, ``conv`` or ``shortcut``;
    ``type`` the operator family there now (``conv``, ``max``, ``avg``, ``lp`` or a poolstride operator
    name). ``op`` is a short description of the operator. Sizes are (H, W) from the probe forward pass.
    """

    path: str
    kind: str
    type: str
    op: str
    in_channels: int
    out_channels: int
    stride: int
    kernel: int
    in_size: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None
    stage: int | None = None
    via: str = "module"
    params: int = 0
    order: int = -1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def channels(self) -> str:
        return f"{self.in_channels}->{self.out_channels}"


@dataclass
class Analysis:
    """Everything the surgery needs to know about a model at one input size."""

    model: nn.Module
    input_size: tuple[int, ...]
    sites: list[Site]
    shapes: dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]]  # path -> (in, out) shapes
    output: torch.Tensor | None
    order: list[str]  # module paths in execution order (first call)
    gm: fx.GraphModule | None = None
    trace_error: str | None = None
    node_shapes: dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = field(default_factory=dict)

    @property
    def traced(self) -> bool:
        return self.gm is not None

    def site(self, path: str) -> Site:
        for s in self.sites:
            if s.path == path:
                return s
        raise KeyError(path)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration; every submodule's own training flag is restored afterwards (a plain
    ``model.train(was)`` would overwrite, e.g., a frozen BN inside a training model)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, f in flags:
            m.training = f


def _model_device_dtype(model: nn.Module) -> tuple[torch.device | None, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype if p.dtype.is_floating_point else torch.float32
    for b in model.buffers():
        if b.dtype.is_floating_point:
            return b.device, b.dtype
    return None, torch.float32


def probe_input(model: nn.Module, input_size: Iterable[int], seed: int = 0) -> torch.Tensor:
    """The probe batch: one image of ``input_size`` (C, H, W) from a seeded generator."""
    device, dtype = _model_device_dtype(model)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, *tuple(input_size), generator=g, dtype=torch.float32)
    return x.to(device=device, dtype=dtype)


def first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = first_tensor(o)
            if t is not None:
                return t
    return None


def run_probe(
    model: nn.Module, x: torch.Tensor
) -> tuple[Any, dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]], list[str]]:
    """Run ``model(x)`` in eval mode without grad; record every module's (input, output) shape and the
    order of first calls. The model's training flag is restored."""
    shapes: dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = {}
    order: list[str] = []
    hooks = []
    for name, m in model.named_modules():
        if not name:
            continue

        def hook(mod: nn.Module, inp: Any, out: Any, name: str = name) -> None:
            if name in shapes:
                return
            ti, to = first_tensor(inp), first_tensor(out)
            shapes[name] = (
                tuple(ti.shape) if ti is not None else None,
                tuple(to.shape) if to is not None else None,
            )
            order.append(name)

        hooks.append(m.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, shapes, order


# --------------------------------------------------------------------------------------------- modules
def _describe_module(m: nn.Module) -> tuple[str, str, int, int, int, int, int] | None:
    """(type, op, in_channels, out_channels, stride, kernel, params) for a downsampling module, or None."""
    params = sum(p.numel() for p in m.parameters())
    if isinstance(m, Downsample):
        if m.stride <= 1:
            return None
        name = m.op_name
        typ = name
        if name == "blur":
            typ = "max" if m.spec["base"] == "max" else "avg" if m.spec["base"] == "avg" else "blur"
        elif name in ("conv",):
            typ = "conv"
        k = int(m.spec.get("k", 0) or 0)
        return typ, str(m.spec), m.in_channels, m.out_channels, m.stride, k, params
    if isinstance(m, nn.Conv2d):
        sh, sw = _pair(m.stride)
        if max(sh, sw) <= 1:
            return None
        kh, kw = _pair(m.kernel_size)
        desc = f"conv{kh}x{kw}/{sh}" + (f" g{m.groups}" if m.groups > 1 else "")
        return "conv", desc, m.in_channels, m.out_channels, max(sh, sw), kh, params
    for cls, typ in _POOL_MODULES.items():
        if type(m) is cls or isinstance(m, cls):
            k = _pair(m.kernel_size)[0]  # type: ignore[arg-type]
            s = _pair(m.stride if m.stride is not None else m.kernel_size)[0]  # type: ignore[arg-type]
            if s <= 1:
                return None
            pad = _pair(getattr(m, "padding", 0))[0]
            ceil = " ceil" if getattr(m, "ceil_mode", False) else ""
            return typ, f"{typ}pool{k}/{s}" + (f" p{pad}" if pad else "") + ceil, -1, -1, s, k, params
    return None


def _pool_call_args(node: fx.Node) -> dict[str, Any]:
    """Keyword view of a functional pool call (input excluded), with torch's defaults filled in."""
    typ, names = _POOL_FUNCS[node.target]
    out: dict[str, Any] = {"stride": None, "padding": 0, "ceil_mode": False, "dilation": 1}
    if typ == "avg":
        out.update(count_include_pad=True, divisor_override=None)
    for n, v in zip(names, node.args[1:], strict=False):
        out[n] = v
    out.update({k: v for k, v in node.kwargs.items() if k != "input"})
    if out.get("stride") in (None, [], ()):
        out["stride"] = out["kernel_size"]
    out["type"] = typ
    return out


# ------------------------------------------------------------------------------------------------ graph
def is_add(n: fx.Node) -> bool:
    return (n.op == "call_function" and n.target in _ADD_FUNCS) or (
        n.op == "call_method" and n.target in ("add", "add_")
    )


def is_conv_node(n: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if n.op == "call_module":
        m = modules.get(str(n.target))
        return isinstance(m, (nn.Conv2d, nn.Linear)) or (isinstance(m, Downsample) and m.learnable)
    return n.op == "call_function" and n.target in (F.conv2d, torch.conv2d, F.linear)


def node_inputs(n: fx.Node) -> list[fx.Node]:
    return list(n.all_input_nodes)


def shortcut_nodes(gm: fx.GraphModule) -> set[str]:
    """Names of the nodes that lie on a residual shortcut: the short branch between a fork and an ``add``.

    From every fork (a node with several users) each single-user chain of single-input nodes that ends
    in an ``add`` is a branch; the branch is a shortcut when it holds fewer convolutions than the add's
    other operand has between it and the fork.
    """
    modules = dict(gm.named_modules())
    out: set[str] = set()
    for fork in gm.graph.nodes:
        if len(fork.users) < 2:
            continue
        for first in fork.users:
            chain: list[fx.Node] = []
            cur, merge = first, None
            for _ in range(12):
                if is_add(cur):
                    merge = cur
                    break
                if cur.op == "call_function" and cur.target is _shortcut_match and chain and cur.args[0] is chain[-1]:
                    chain.append(cur)  # the built-in models' shape matcher passes the shortcut through
                    if len(cur.users) != 1:
                        break
                    cur = next(iter(cur.users))
                    continue
                if len(node_inputs(cur)) != 1 or len(cur.users) != 1:
                    break
                chain.append(cur)
                cur = next(iter(cur.users))
            if merge is None or not chain:
                continue
            others = [a for a in node_inputs(merge) if a is not chain[-1]]
            if len(others) != 1:
                continue
            mine = sum(is_conv_node(c, modules) for c in chain)
            theirs = _convs_back_to(others[0], fork, modules)
            if theirs is not None and mine < theirs:
                out.update(c.name for c in chain)
    return out


def _convs_back_to(start: fx.Node, fork: fx.Node, modules: dict[str, nn.Module], limit: int = 400) -> int | None:
    """Convolutions on the nodes between ``start`` and ``fork`` (backwards), or None if ``fork`` is not an
    ancestor within ``limit`` nodes."""
    seen: set[fx.Node] = set()
    stack, found, convs = [start], False, 0
    while stack and len(seen) < limit:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n is fork:
            found = True
            continue
        convs += is_conv_node(n, modules)
        stack.extend(node_inputs(n))
    return convs if found else None


# ------------------------------------------------------------------------------------------------- main
def _site_kind_of_wrapper(model: nn.Module) -> dict[str, str]:
    """Paths of registered operators held by a built-in model's DownsampleSite -> that site's kind."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, DownsampleSite) and (isinstance(m.op, Downsample) or m.kind == SHORTCUT):
            out[f"{name}.op" if name else "op"] = m.kind
    return out


def _hint(path: str, kinds: dict[str, str]) -> str | None:
    for prefix, kind in kinds.items():
        if path == prefix or path.startswith(prefix + "."):
            return kind
    return None


_Shapes = dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]]


def analyze(model: nn.Module, input_size: Iterable[int] = (3, 224, 224), *, use_fx: bool = True) -> Analysis:
    """Find the sites of ``model`` at ``input_size`` (C, H, W) and record the probe's shapes."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) < 2 or min(input_size) < 1:
        raise ModelError(f"bad input size {input_size}; expected (C, H, W) such as (3, 224, 224)")
    x = probe_input(model, input_size)
    try:
        output, shapes, order = run_probe(model, x)
    except Exception as e:  # noqa: BLE001 - the user's model failed on the probe: say so, with the cause
        raise ModelError(
            f"the probe forward pass of {type(model).__name__} on a 1x{'x'.join(map(str, input_size))} input "
            f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        ) from e
    gm, trace_error = try_trace(model) if use_fx else (None, "fx disabled")
    node_shapes: _Shapes = {}
    if gm is not None:
        try:
            node_shapes = _node_shapes(gm, x)
        except Exception as e:  # noqa: BLE001 - a graph that traces but does not run: use the module walk
            gm, trace_error = None, f"traced graph does not run: {type(e).__name__}: {str(e)[:160]}"
    raw = _module_rows(model, shapes, order)
    if gm is not None:
        raw += _functional_rows(gm, node_shapes)
        short_paths = _order_by_graph(gm, raw)
    else:
        raw.sort(key=lambda r: r["order"])
        short_paths = set()
    if not raw and gm is None:
        raise ModelError(
            f"{type(model).__name__} has no module-level downsampling sites (strided convs or pooling layers) "
            f"and cannot be traced by torch.fx ({trace_error}); poolstride cannot find its sites"
        )
    sites = _sites_of(raw, input_size, short_paths if gm is not None else None)
    out_t = first_tensor(output)
    return Analysis(model, input_size, sites, shapes, out_t, order, gm, trace_error, node_shapes)


def _module_rows(model: nn.Module, shapes: _Shapes, order: list[str]) -> list[dict[str, Any]]:
    """One row per downsampling module (the module walk; nothing below a registered operator)."""
    wrapper_kinds = _site_kind_of_wrapper(model)
    raw: list[dict[str, Any]] = []
    skip_under: list[str] = []
    for name, m in model.named_modules():
        if not name or any(name.startswith(p + ".") for p in skip_under):
            continue
        if isinstance(m, Downsample):
            skip_under.append(name)
        d = _describe_module(m)
        if d is None:
            continue
        typ, op, cin, cout, stride, k, params = d
        raw.append(
            dict(path=name, type=typ, op=op, cin=cin, cout=cout, stride=stride, kernel=k, params=params,
                 shape=shapes.get(name), via="module", order=order.index(name) if name in order else 10**9,
                 hint=_hint(name, wrapper_kinds))
        )  # fmt: skip
    return raw


def _functional_rows(gm: fx.GraphModule, node_shapes: _Shapes) -> list[dict[str, Any]]:
    """One row per strided functional pooling call of the fx graph."""
    order_by_node = {n.name: i for i, n in enumerate(gm.graph.nodes)}
    raw: list[dict[str, Any]] = []
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target in _POOL_FUNCS:
            a = _pool_call_args(n)
            s, k = _pair(a["stride"])[0], _pair(a["kernel_size"])[0]
            if s <= 1:
                continue
            pad = _pair(a["padding"])[0]
            desc = f"F.{a['type']}_pool2d({k}/{s}" + (f" p{pad}" if pad else "") + (
                " ceil" if a["ceil_mode"] else "") + ")"  # fmt: skip
            raw.append(
                dict(path=n.name, type=a["type"], op=desc, cin=-1, cout=-1, stride=s, kernel=k, params=0,
                     shape=node_shapes.get(n.name), via="fx", order=None, node_pos=order_by_node[n.name],
                     hint=None)
            )  # fmt: skip
    return raw


def _order_by_graph(gm: fx.GraphModule, raw: list[dict[str, Any]]) -> set[str]:
    """Sort ``raw`` by graph position (so functional sites interleave correctly); the paths on a shortcut."""
    module_pos = {str(n.target): i for i, n in enumerate(gm.graph.nodes) if n.op == "call_module"}
    for r in raw:
        if r["via"] == "module":
            r["node_pos"] = module_pos.get(r["path"], _ancestor_pos(r["path"], module_pos))
    raw.sort(key=lambda r: (r["node_pos"] if r["node_pos"] is not None else 10**9, r["path"]))
    short = shortcut_nodes(gm)
    return {str(n.target) if n.op == "call_module" else n.name for n in gm.graph.nodes if n.name in short}


def _sites_of(raw: list[dict[str, Any]], input_size: tuple[int, ...], short_paths: set[str] | None) -> list[Site]:
    """The sites of the ordered rows: kinds (``short_paths`` None: shortcuts by name), stem, sizes, stages."""
    executed = [r for r in raw if r["shape"] is not None and r["shape"][0] is not None]
    heights = sorted({r["shape"][0][-2] for r in executed}, reverse=True)
    sites: list[Site] = []
    stem_done = False
    for i, r in enumerate(raw):
        shp = r["shape"]
        in_shape = shp[0] if shp else None
        out_shape = shp[1] if shp else None
        cin = r["cin"] if r["cin"] > 0 else (in_shape[1] if in_shape and len(in_shape) == 4 else -1)
        cout = r["cout"] if r["cout"] > 0 else (out_shape[1] if out_shape and len(out_shape) == 4 else cin)
        kind = r["hint"]
        if kind is None:
            on_short = r["path"] in short_paths if short_paths is not None else _name_says_shortcut(r["path"])
            if on_short:
                kind = SHORTCUT
            elif r["type"] in ("max", "avg", "lp") or (r["type"] not in ("conv",) and cin == cout and r["params"] == 0):
                kind = POOL
            else:
                kind = CONV
        if not stem_done and in_shape is not None:
            stem_done = True
            if (
                r["hint"] is None
                and kind == CONV
                and tuple(in_shape[-2:]) == tuple(input_size[-2:])
                and (len(input_size) < 3 or cin == input_size[0])
            ):
                kind = STEM
        sites.append(
            Site(
                path=r["path"], kind=kind, type=r["type"], op=r["op"], in_channels=cin, out_channels=cout,
                stride=r["stride"], kernel=r["kernel"],
                in_size=tuple(in_shape[-2:]) if in_shape else None,  # type: ignore[arg-type]
                out_size=tuple(out_shape[-2:]) if out_shape else None,  # type: ignore[arg-type]
                stage=heights.index(in_shape[-2]) if in_shape else None,
                via=r["via"], params=r["params"], order=i,
            )
        )  # fmt: skip
    return sites


def _ancestor_pos(path: str, module_pos: dict[str, int]) -> int | None:
    """Graph position of a module that is not a leaf in the trace (e.g. inside a traced-through parent):
    the first call of any module under it."""
    hits = [p for k, p in module_pos.items() if k == path or k.startswith(path + ".")]
    return min(hits) if hits else None


def _name_says_shortcut(path: str) -> bool:
    parts = path.lower().split(".")
    return any(any(key in p for key in _SHORTCUT_NAMES) for p in parts)


def _node_shapes(
    gm: fx.GraphModule, x: torch.Tensor
) -> dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]]:
    """(first tensor input shape, output shape) per fx node, from one interpreted run."""
    outs: dict[str, tuple[int, ...] | None] = {}
    out: dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = {}

    class _Interp(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            res = super().run_node(n)
            to = first_tensor(res)
            outs[n.name] = tuple(to.shape) if to is not None else None
            ins = [outs.get(a.name) for a in n.all_input_nodes]
            out[n.name] = (next((i for i in ins if i is not None), None), outs[n.name])
            return res

    with eval_mode(gm), torch.no_grad():
        _Interp(gm).run(x)
    return out


def sites(model: nn.Module, input_size: Iterable[int] = (3, 224, 224)) -> list[Site]:
    """Every downsampling site of ``model`` at ``input_size`` (C, H, W), in execution order.

    >>> from poolstride import models
    >>> [(s.path, s.kind) for s in sites(models.build("tiny"), (3, 32, 32))][:1]
    [('features.3.op', 'pool')]
    """
    return analyze(model, input_size).sites


__all__ = ["CONV", "KINDS", "POOL", "SHORTCUT", "STEM", "Analysis", "Site", "analyze", "sites"]
