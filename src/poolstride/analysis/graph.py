"""Capture the computation graph of a model with the shapes of every value.

Primary path: a ``torch.fx`` symbolic trace in which registered :class:`~poolstride.ops.Downsample` modules
(and the standard ``torch.nn`` layers) are leaves, followed by one forward pass on *meta* tensors (no
compute, no memory) that records each node's output shape. If the trace fails (data-dependent control flow
...), :func:`capture` falls back to a module-order walk: forward hooks on the leaf modules, chained in call
order, with a visible warning (functional ops between modules are then invisible).

Conv/linear modules *inside* a leaf are seen through global forward hooks, so a leaf operator's own convs
are counted while its non-conv work comes from its declared ``other_ops``. The tensors a registered operator
allocates besides its output (convpool's stride-1 conv map, blur's stride-1 max map and its padded copy) are
recorded too (``Step.temps``), through a torch-function mode active while the operator runs (in the
module-order walk, while any operator of the model runs).
"""

from __future__ import annotations

import contextlib
import inspect as _pyinspect
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.func import functional_call
from torch.nn.utils import stateless
from torch.overrides import TorchFunctionMode

from ..models.site import DownsampleSite
from ..ops.registry import Downsample
from .trace import is_leaf, symbolic_trace


@dataclass(frozen=True)
class TMeta:
    """What the analysis keeps of a tensor: its shape, dtype and element size."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    itemsize: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def spatial(self) -> bool:
        return len(self.shape) == 4

    @property
    def hw(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]


def summarize(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return TMeta(tuple(v.shape), v.dtype, v.element_size())
    if isinstance(v, (tuple, list)):
        return type(v)(summarize(x) for x in v)
    if isinstance(v, dict):
        return {k: summarize(x) for k, x in v.items()}
    if isinstance(v, torch.Size):
        return tuple(v)
    return v


@dataclass
class Inner:
    """A conv/linear module call seen inside a node (the node itself, or a conv inside a leaf operator)."""

    module: nn.Module
    inp: TMeta
    out: TMeta


@dataclass
class Step:
    """One node of the captured graph."""

    index: int
    name: str  # display name: module path, or owner path + function name
    kind: str  # "module" | "function" | "method" | "input" | "attr"
    target: Any  # module, function or method name
    args: tuple  # arguments with parent values replaced by Ref
    kwargs: dict
    parents: list[int]  # indices of steps whose values are used (in order of appearance)
    out: Any  # summary of the output (TMeta, tuple, int...)
    owner: str = ""  # innermost module path that issued this node
    site: str | None = None  # path of the enclosing DownsampleSite, if any
    inner: list[Inner] = field(default_factory=list)
    module_path: str = ""
    temps: list[TMeta] = field(default_factory=list)  # tensors allocated inside a leaf operator, besides its output
    inp: Any = None  # module-walk only: the summary of the input the module really received

    @property
    def target_name(self) -> str:
        t = self.target
        if isinstance(t, nn.Module):
            return type(t).__name__
        if isinstance(t, str):
            return t
        return getattr(t, "__name__", str(t))


@dataclass(frozen=True)
class Ref:
    """A reference to the value of step ``index`` inside a step's arguments."""

    index: int


@dataclass
class Captured:
    steps: list[Step]
    method: str  # "fx" or "module-walk"
    execution: str  # "meta" or "real"
    warnings: list[str]


_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


_SHAPE_KEEPING: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.ReLU, nn.ReLU6,
    nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.ELU, nn.Mish,
    nn.Identity, nn.Dropout, nn.Dropout2d,
)  # fmt: skip


@contextlib.contextmanager
def _capture_inner(sink: Callable[[Inner], None], model: nn.Module) -> Iterator[None]:
    mine = {id(m) for m in model.modules()}  # global hooks also see other threads' modules: keep ours

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        if id(mod) in mine and isinstance(mod, _CONV_TYPES) and inp and isinstance(inp[0], torch.Tensor):
            sink(Inner(mod, summarize(inp[0]), summarize(out)))

    h = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield
    finally:
        h.remove()


def _tensors(v: Any) -> Iterator[torch.Tensor]:
    if isinstance(v, torch.Tensor):
        yield v
    elif isinstance(v, (tuple, list)):
        for x in v:
            yield from _tensors(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _tensors(x)


class _Allocations(TorchFunctionMode):
    """Records the tensors that torch functions return while a registered operator runs (``depth > 0``),
    unless they are views, parameters or one of the call's own arguments (in-place ops, no-op ``.to()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.found: list[torch.Tensor] = []  # kept alive until read, so that ids stay unique

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.depth > 0 and getattr(func, "__name__", "") != "__get__":
            given = {id(t) for t in _tensors((args, kwargs))}
            for t in _tensors(out):
                if id(t) in given or isinstance(t, nn.Parameter) or t._is_view() or any(t is f for f in self.found):
                    continue
                self.found.append(t)
        return out


@contextlib.contextmanager
def _operator_allocations(model: nn.Module, sink: Callable[[nn.Module, list[TMeta]], None]) -> Iterator[_Allocations]:
    """Calls ``sink(operator, temps)`` when a registered operator of ``model`` (the outermost one, if nested)
    returns: ``temps`` are the tensors it allocated besides its output (see :class:`_Allocations`)."""
    mine = {id(m) for m in model.modules() if isinstance(m, Downsample)}
    mode = _Allocations()

    def pre(mod: nn.Module, inp: Any) -> None:
        if id(mod) in mine:
            mode.depth += 1

    def post(mod: nn.Module, inp: Any, out: Any) -> None:
        if id(mod) not in mine or mode.depth == 0:
            return
        mode.depth -= 1
        if mode.depth == 0:
            result = {id(t) for t in _tensors(out)}
            temps = [summarize(t) for t in mode.found if id(t) not in result]
            mode.found.clear()
            sink(mod, temps)

    h1 = nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = nn.modules.module.register_module_forward_hook(post)
    try:
        with mode:
            yield mode
    finally:
        h1.remove()
        h2.remove()


def _meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        out[n] = torch.empty_like(p, device="meta")
    for n, b in model.named_buffers(remove_duplicate=False):
        out[n] = torch.empty_like(b, device="meta")
    return out


def _device(model: nn.Module) -> torch.device:
    p: torch.Tensor | None = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.values: dict[fx.Node, Any] = {}
        self.inner: dict[fx.Node, list[Inner]] = {}
        self.temps: dict[fx.Node, list[TMeta]] = {}
        self._cur: list[Inner] | None = None
        self._temps: list[TMeta] | None = None

    def sink(self, i: Inner) -> None:
        if self._cur is not None:
            self._cur.append(i)

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        # shape-preserving layers need not run: their output has the shape of their input (and batch norm on
        # meta tensors goes through slow Python decompositions)
        mod = self.fetch_attr(target)
        if not kwargs and len(args) == 1 and isinstance(args[0], torch.Tensor) and isinstance(mod, _SHAPE_KEEPING):
            return args[0]
        if isinstance(mod, Downsample):  # a registered operator: record what it allocates besides its output
            with _Allocations() as mode:
                mode.depth = 1
                result = super().call_module(target, args, kwargs)
            if self._temps is not None:
                done = {id(t) for t in _tensors(result)}
                self._temps.extend(summarize(t) for t in mode.found if id(t) not in done)
            return result
        return super().call_module(target, args, kwargs)

    def run_node(self, n: fx.Node) -> Any:
        self._cur = []
        self._temps = []
        result = super().run_node(n)
        if self._cur:
            self.inner[n] = self._cur
        if self._temps:
            self.temps[n] = self._temps
        self._cur = None
        self._temps = None
        self.values[n] = summarize(result)
        return result


def _site_paths(model: nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, DownsampleSite)}


def _innermost_site(paths: list[str], sites: set[str]) -> str | None:
    best = None
    for p in paths:
        for s in sites:
            if (p == s or p.startswith(s + ".")) and (best is None or len(s) > len(best)):
                best = s
    return best


def capture(model: nn.Module, input_shape: tuple[int, ...]) -> Captured:
    """Trace ``model`` and record the shape of every value for an input of shape ``input_shape`` (N, C, H, W)."""
    notes: list[str] = []
    was = model.training
    model.eval()
    try:
        try:
            gm = symbolic_trace(model)
        except Exception as e:  # noqa: BLE001 - any trace failure means: fall back
            msg = (
                f"torch.fx could not trace {type(model).__name__} "
                f"({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                "falling back to a module-order walk: receptive fields assume a chain of modules and "
                "functional ops between modules (adds, functional pools) are not counted"
            )
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            notes.append(msg)
            steps, execution = _walk(model, input_shape)
            return Captured(steps, "module-walk", execution, notes)
        rec = _Recorder(gm)
        execution = "meta"
        try:
            state = _meta_state(model)
            with torch.no_grad(), _capture_inner(rec.sink, model), _swap_state(gm, state):
                rec.run(torch.empty(input_shape, device="meta"))
        except Exception:  # noqa: BLE001 - some ops have no meta kernel or need real data
            execution = "real"
            rec = _Recorder(gm)
            with torch.no_grad(), _capture_inner(rec.sink, model):
                rec.run(torch.zeros(input_shape, device=_device(model)))
        steps = _steps_from_graph(gm, rec, _site_paths(model))
        return Captured(steps, "fx", execution, notes)
    finally:
        model.train(was)


@contextlib.contextmanager
def _swap_state(module: nn.Module, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily replace parameters and buffers by the tensors in ``state`` (like functional_call)."""
    with stateless._reparametrize_module(module, state, tie_weights=True, strict=False):
        yield


def _steps_from_graph(gm: fx.GraphModule, rec: _Recorder, sites: set[str]) -> list[Step]:
    steps: list[Step] = []
    index: dict[fx.Node, int] = {}
    for n in gm.graph.nodes:
        if n.op == "output":
            continue
        parents: list[int] = []

        def ref(a: fx.Node) -> Any:
            parents.append(index[a])  # noqa: B023 - used immediately, inside this iteration
            return Ref(index[a])

        args = fx.node.map_arg(n.args, ref)
        kwargs = fx.node.map_arg(n.kwargs, ref)
        stack = n.meta.get("nn_module_stack") or {}
        paths = [v[0] if isinstance(v, tuple) else str(v) for v in stack.values()]
        owner = paths[-1] if paths else ""
        if n.op == "call_module":
            target: Any = gm.get_submodule(n.target)
            name, kind, mpath = str(n.target), "module", str(n.target)
            if not paths or paths[-1] != mpath:
                paths.append(mpath)
        elif n.op == "call_function":
            target, kind, mpath = n.target, "function", ""
            name = f"{owner}.{n.name}" if owner else n.name
        elif n.op == "call_method":
            target, kind, mpath = n.target, "method", ""
            name = f"{owner}.{n.name}" if owner else n.name
        elif n.op == "placeholder":
            target, kind, name, mpath = n.target, "input", str(n.target), ""
        else:  # get_attr
            target, kind, name, mpath = n.target, "attr", str(n.target), str(n.target)
        if n.op == "get_attr" or n.op == "call_module":
            paths = paths + [mpath]
        step = Step(
            index=len(steps),
            name=name,
            kind=kind,
            target=target,
            args=tuple(args),
            kwargs=dict(kwargs),
            parents=list(dict.fromkeys(parents)),
            out=rec.values.get(n),
            owner=owner,
            site=_innermost_site(paths, sites),
            inner=rec.inner.get(n, []),
            module_path=mpath,
            temps=rec.temps.get(n, []),
        )
        index[n] = step.index
        steps.append(step)
    return steps


def _is_walk_leaf(m: nn.Module) -> bool:
    return is_leaf(m) or not any(True for _ in m.children())


def _walk(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[Step], str]:
    """Fallback: leaf modules in call order, chained."""
    names = {id(m): n for n, m in model.named_modules()}
    sites = _site_paths(model)
    calls: list[tuple[nn.Module, Any, Any, list[Inner], list[TMeta]]] = []
    depth = [0]
    inner_stack: list[list[Inner]] = []
    temps: dict[int, list[TMeta]] = {}

    def sink_temps(op: nn.Module, found: list[TMeta]) -> None:
        temps[id(op)] = found

    def pre(mod: nn.Module, inp: Any) -> None:
        if id(mod) not in names:
            return
        if depth[0] == 0 and _is_walk_leaf(mod):
            inner_stack.append([])
        if depth[0] > 0 or _is_walk_leaf(mod):
            depth[0] += 1

    def post(mod: nn.Module, inp: Any, out: Any) -> None:
        if id(mod) not in names:
            return
        if depth[0] > 0:
            if isinstance(mod, _CONV_TYPES) and inp and isinstance(inp[0], torch.Tensor):
                inner_stack[-1].append(Inner(mod, summarize(inp[0]), summarize(out)))
            depth[0] -= 1
            if depth[0] == 0:
                calls.append(
                    (mod, summarize(inp[0]) if inp else None, summarize(out), inner_stack.pop(), temps.pop(id(mod), []))
                )

    execution = "meta"
    # the allocation hooks are registered first, so they run before ``post`` when an operator returns
    with _operator_allocations(model, sink_temps) as mode:
        h1 = nn.modules.module.register_module_forward_pre_hook(pre)
        h2 = nn.modules.module.register_module_forward_hook(post)
        try:
            try:
                state = _meta_state(model)
                with torch.no_grad():
                    functional_call(model, state, (torch.empty(input_shape, device="meta"),), strict=False)
            except Exception:  # noqa: BLE001
                calls.clear()
                depth[0] = 0
                inner_stack.clear()
                temps.clear()
                mode.depth = 0
                mode.found.clear()
                execution = "real"
                with torch.no_grad():
                    model(torch.zeros(input_shape, device=_device(model)))
        finally:
            h1.remove()
            h2.remove()
    steps = [Step(0, "input", "input", "x", (), {}, [], TMeta(tuple(input_shape), torch.float32, 4))]
    for mod, inp, out, inner, found in calls:
        path = names.get(id(mod), type(mod).__name__)
        prev = steps[-1].index
        steps.append(
            Step(
                index=len(steps),
                name=path,
                kind="module",
                target=mod,
                args=(Ref(prev),),
                kwargs={},
                parents=[prev],
                out=out,
                owner=path,
                site=_innermost_site([path], sites),
                inner=inner,
                module_path=path,
                temps=found,
                inp=inp,
            )
        )
    return steps, execution


def bind(fn: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Bind a functional call's arguments to parameter names (best effort)."""
    try:
        sig = _pyinspect.signature(fn)
        b = sig.bind(*args, **kwargs)
        b.apply_defaults()
        return dict(b.arguments)
    except (TypeError, ValueError):
        return {**{str(i): a for i, a in enumerate(args)}, **kwargs}


__all__ = ["Captured", "Inner", "Ref", "Step", "TMeta", "bind", "capture"]
