"""Static analysis: :func:`inspect` (per-layer records + totals) and :func:`cost_summary` (totals only)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..ops.registry import Downsample
from .counting import NodeRule, classify, first_tensor_in, inner_macs
from .graph import Ref, Step, TMeta, capture
from .layout import Layout, to_map
from .rf import RF
from .track import State, Tracked, Tracker, has_tensor, kind_of

SCHEMA_VERSION = 1

CONVENTIONS = (
    "MACs: conv/linear/matmul multiply-accumulates (FLOPs = 2 x MACs); other ops: pooling by its kernel "
    "(max k^2-1, avg k^2 per output), operator other_ops, BN/norm, activation, add/mul, bias: 1 per element; "
    "views, concat and padding are free; training step = forward + backward, backward = grad-weight MACs "
    "(trainable layers) + grad-input MACs (layers whose input needs a gradient; not the first layer), "
    "backward other ops = forward other ops; activation bytes = sum of all non-view outputs, plus the tensors a "
    "registered operator allocates inside (e.g. convpool's stride-1 conv map, blur's stride-1 max map and its "
    "padded copy; upper bound on what autograd keeps, int64 max-pool indices not counted); receptive field: "
    "None where it cannot be followed (a warning names the node), rf_global also for maps gated by a global "
    "input (squeeze-and-excitation), whose rf is the conv path"
)


@dataclass
class Layer:
    """One row of :func:`inspect`: a module call or a functional op of the traced graph."""

    name: str
    op: str
    kind: str  # module | function | method
    shape: list[int] | None
    params: int = 0
    trainable_params: int = 0
    macs: int = 0
    backward_macs: int = 0
    other_ops: int = 0
    other_kind: str = ""
    activation_bytes: int = 0
    rf: list[float] | None = None  # [h, w]
    jump: list[float] | None = None
    center: list[float] | None = None
    rf_global: bool = False
    downsample: bool = False
    site: dict[str, Any] | None = None
    view: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Inspection:
    """The result of :func:`inspect` (per-layer rows and totals of one model at one input size)."""

    model: str
    input_size: tuple[int, int, int]
    batch: int
    method: str  # fx | module-walk
    execution: str  # meta | real
    layers: list[Layer]
    totals: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, all_layers: bool = True) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "model": self.model,
            "input_size": list(self.input_size),
            "batch": self.batch,
            "method": self.method,
            "execution": self.execution,
            "conventions": CONVENTIONS,
            "totals": self.totals,
            "layers": [layer.to_dict() for layer in self.layers if all_layers or not layer.view],
            "warnings": list(self.warnings),
        }

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def sites(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.site is not None]


def _param_counts(m: nn.Module) -> tuple[int, int]:
    tot = tr = 0
    for p in m.parameters():
        tot += p.numel()
        if p.requires_grad:
            tr += p.numel()
    return tot, tr


def _site_info(model: nn.Module, path: str | None, cache: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if path is None:
        return None
    if path not in cache:
        m = model.get_submodule(path)
        cache[path] = {
            "path": path,
            "kind": getattr(m, "kind", "?"),
            "op": getattr(m, "label", type(getattr(m, "op", m)).__name__),
        }
    return cache[path]


def _fmt_pair(p: tuple[float, float]) -> list[float]:
    return [float(p[0]), float(p[1])]


def inspect(
    model: nn.Module,
    input_size: Sequence[int] = (3, 224, 224),
    batch: int = 1,
    name: str | None = None,
) -> Inspection:
    """Analyse ``model`` for one input of size ``input_size`` = (C, H, W) at batch ``batch`` (an
    (N, C, H, W) size sets the batch too).

    Returns an :class:`Inspection` whose ``layers`` hold, per node of the graph: output shape, params
    (trainable / frozen), conv/linear MACs, other ops, activation bytes, receptive field size, jump and
    centre offset, and the downsampling site (path, kind, operator) the node belongs to; ``totals`` holds
    the forward pass and the training step (conventions in ``docs/conventions.md``).

    Nothing is computed on real data: the graph is traced with ``torch.fx`` and run once on meta tensors.
    """
    if len(input_size) == 4:  # (N, C, H, W)
        batch, input_size = int(input_size[0]), input_size[1:]
    c, h, w = (int(v) for v in input_size)
    if isinstance(model, Downsample):  # a bare operator: make it a leaf call so its declared cost is used
        rep = inspect(nn.Sequential(model), (c, h, w), batch, name or model.op_name)
        for layer in rep.layers:
            layer.name = model.op_name if layer.name == "0" else layer.name
        return rep
    cap = capture(model, (batch, c, h, w))
    walk = _Walk(model, cap.steps, Tracker(cap.steps, (h, w), cap.method == "module-walk"))
    for step in cap.steps:
        walk.visit(step)
    notes = list(cap.warnings)
    for mis in walk.misaligned:
        notes.append(f"misaligned branches at {mis['layer']}: {mis['problem']}")
    for msg in walk.unknown_from:
        notes.append(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    if walk.uncounted:
        notes.append(
            "ops with no counting rule (0 ops): " + ", ".join(f"{k} x{v}" for k, v in sorted(walk.uncounted.items()))
        )
    totals = _totals(model, walk.layers, walk.global_ops, walk.maps, walk.misaligned, batch, c, h, w)
    return Inspection(
        name or type(model).__name__, (c, h, w), batch, cap.method, cap.execution, walk.layers, totals, notes
    )


@dataclass
class _Walk:
    """The state of one pass over the captured steps: one :class:`Layer` per step, and what the totals and the
    notes need (misaligned merges, unknown fields, uncounted ops, global maps, feature maps)."""

    model: nn.Module
    steps: list[Step]
    tracker: Tracker
    grads: dict[int, bool] = field(default_factory=dict)  # step index -> its value needs a gradient
    layers: list[Layer] = field(default_factory=list)
    misaligned: list[dict[str, Any]] = field(default_factory=list)
    uncounted: dict[str, int] = field(default_factory=dict)
    unknown_from: list[str] = field(default_factory=list)
    site_cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    global_ops: list[int] = field(default_factory=list)  # global feature maps (spectral operators, convs on them)
    maps: list[tuple[int, State]] = field(default_factory=list)  # N x C x H x W rows (or unknown): the model's RF

    def visit(self, step: Step) -> None:
        if step.kind == "input":
            self.tracker.input(step)
            self.grads[step.index] = False
            return
        if step.kind == "attr":
            self.tracker.constant(step)
            self.grads[step.index] = any(p.requires_grad for p in _attr_params(self.model, str(step.target)))
            return
        rule = classify(step, self.steps)
        tr = self._receptive_field(step, rule)
        self.layers.append(self._layer(step, rule, tr))

    def _receptive_field(self, step: Step, rule: NodeRule) -> Tracked:
        out = step.out
        parents = [p for p in step.parents if has_tensor(self.steps[p].out)]
        if rule.first_only:
            parents = parents[:1]
        tr = self.tracker.step(step, rule, parents)
        state = tr.state
        if tr.problem:
            self.misaligned.append({"layer": step.name, "problem": tr.problem})
        if tr.reason:
            self.unknown_from.append(
                f"receptive field unknown from {step.name} ({step.target_name}): {tr.reason}; it and every value "
                "computed from it report no receptive field (None)"
            )
        if isinstance(out, TMeta) and out.spatial and (state.unknown or _is_map(state)):
            self.maps.append((len(self.layers), state))
        if (
            isinstance(out, TMeta) and out.spatial and out.hw != (1, 1) and state.rf is not None and state.rf.glob
            and kind_of(step) == "spatial" and not rule.view
        ):  # fmt: skip
            self.global_ops.append(len(self.layers))  # a global feature map: a spectral operator, a conv on it...
        return tr

    def _backward_macs(self, step: Step, rule: NodeRule, macs: int, trainable: int) -> int:
        """Grad-weight MACs (trainable weights) + grad-input MACs (an input that needs a gradient); records
        whether this step's value needs a gradient."""
        in_grad = any(self.grads.get(p, False) for p in step.parents)
        self.grads[step.index] = in_grad or trainable > 0
        if not macs:
            return 0
        if step.kind == "module":
            w_train = trainable > 0
        else:
            wref = rule.matmul_weight_ref
            w_train = isinstance(wref, Ref) and self.grads.get(wref.index, False)
        return macs * (int(w_train) + int(in_grad))

    def _layer(self, step: Step, rule: NodeRule, tr: Tracked) -> Layer:
        out = step.out
        tin = first_tensor_in(step, self.steps)
        rf = _shown(tr.state, out)
        macs, bias = inner_macs(step.inner)
        macs += rule.matmul_macs
        if rule.uncounted and isinstance(out, TMeta):
            self.uncounted[step.target_name] = self.uncounted.get(step.target_name, 0) + 1
        params, trainable = _param_counts(step.target) if step.kind == "module" else (0, 0)
        bwd = self._backward_macs(step, rule, macs, trainable)
        down = bool(
            isinstance(out, TMeta) and out.spatial and tin is not None and tin.spatial
            and (out.hw[0] < tin.hw[0] or out.hw[1] < tin.hw[1])
        )  # fmt: skip
        # activations: the output, and what a registered operator allocates inside (its stride-1 maps)
        act = out.nbytes if isinstance(out, TMeta) and not rule.view else 0
        act += sum(t.nbytes for t in step.temps)
        notes = (rule.note, tr.note, tr.problem or "", f"RF unknown: {tr.reason}" if tr.reason else "")
        return Layer(
            name=step.name,
            op=step.target_name,
            kind=step.kind,
            shape=list(out.shape) if isinstance(out, TMeta) else None,
            params=params,
            trainable_params=trainable,
            macs=macs,
            backward_macs=bwd,
            other_ops=rule.other_ops + bias,
            other_kind=rule.other_kind if rule.other_ops else ("bias" if bias else ""),
            activation_bytes=act,
            rf=_fmt_pair(rf.size) if rf is not None else None,
            jump=_fmt_pair(rf.jump) if rf is not None else None,
            center=_fmt_pair(rf.center) if rf is not None else None,
            rf_global=bool(rf is not None and (rf.glob or rf.context)),
            downsample=down,
            site=_site_info(self.model, step.site, self.site_cache),
            view=rule.view or not isinstance(out, TMeta),
            note="; ".join(x for x in notes if x),
        )


def _is_map(state: State) -> bool:
    """A non-global value whose dimensions 2 and 3 are the source map's spatial axes."""
    rf, lay = state.rf, state.layout
    return rf is not None and not rf.glob and isinstance(lay, Layout) and to_map(lay, rf) is not None


def _shown(state: State, out: Any) -> RF | None:
    """The field reported for a row: as a map when the value is one (H and W where a map has them; a
    transposed or space-to-depth view is read as such), else the field of each element (a view keeps every
    element's field); ``None`` for constants, unknown fields and positions regrouped beyond tracking."""
    rf, lay = state.rf, state.layout
    if rf is None or rf.glob:
        return rf
    if isinstance(lay, Layout):
        if lay.mixed:
            return None
        if isinstance(out, TMeta) and out.spatial:
            return to_map(lay, rf) or rf
    return rf


def _attr_params(model: nn.Module, target: str) -> list[torch.Tensor]:
    try:
        v = model.get_parameter(target)
        return [v]
    except (AttributeError, KeyError):
        return []


def _totals(
    model: nn.Module,
    layers: list[Layer],
    global_ops: list[int],
    maps: list[tuple[int, State]],
    misaligned: list[dict[str, Any]],
    batch: int,
    c: int,
    h: int,
    w: int,
) -> dict[str, Any]:
    params, trainable = _param_counts(model)
    macs = sum(layer.macs for layer in layers)
    bwd = sum(layer.backward_macs for layer in layers)
    other = sum(layer.other_ops for layer in layers)
    act = sum(layer.activation_bytes for layer in layers)
    by_kind: dict[str, int] = {}
    for layer in layers:
        if layer.other_ops:
            by_kind[layer.other_kind or "other"] = by_kind.get(layer.other_kind or "other", 0) + layer.other_ops
    # the final receptive field: that of the last N x C x H x W feature map that is not global (the one that feeds
    # the head); if a global feature map comes after it (a spectral operator's output, a conv on it), the whole
    # input, at the last such map. A map gated by a global input (squeeze-and-excitation) keeps its conv-path
    # field with rf_global set; an unknown field stays unknown (None).
    last, state = maps[-1] if maps else (None, None)
    final = layers[last] if last is not None else None
    after_global = last is None or any(g > last for g in global_ops)
    rf_global = after_global or bool(state is not None and state.rf is not None and state.rf.context)
    rf: list[float] | None
    jump: list[float] | None
    center: list[float] | None
    if final is not None and not after_global:
        rf, jump, center = final.rf, final.jump, final.center
    else:
        g = layers[global_ops[-1]] if global_ops else None
        final = g or final
        rf = [float(h), float(w)]
        jump = g.jump if g is not None and g.jump else [1.0, 1.0]
        center = [(h - 1) / 2, (w - 1) / 2]
    sites = sorted({(layer.site["path"], layer.site["kind"], layer.site["op"]) for layer in layers if layer.site})
    return {
        "params": params,
        "trainable_params": trainable,
        "frozen_params": params - trainable,
        "macs": macs,
        "flops": 2 * macs,
        "other_ops": other,
        "other_ops_by_kind": dict(sorted(by_kind.items())),
        "activation_bytes": act,
        "input_bytes": batch * c * h * w * 4,
        "train_step": {
            "macs": macs + bwd,
            "backward_macs": bwd,
            "flops": 2 * (macs + bwd),
            "other_ops": 2 * other,
        },
        "rf": max(rf) if rf is not None else None,
        "rf_hw": rf,
        "jump": max(jump) if jump is not None else None,
        "jump_hw": jump,
        "center": center,
        "rf_layer": final.name if final is not None else None,
        "rf_global": rf_global,
        "misaligned": misaligned,
        "sites": [{"path": p, "kind": k, "op": o} for p, k, o in sites],
    }


def cost_summary(model: nn.Module, input_size: Sequence[int]) -> dict[str, Any]:
    """Forward-pass totals at batch 1: ``params, trainable_params, macs, other_ops, activation_bytes, rf,
    jump`` (``rf``/``jump``: receptive field and effective stride of the last spatial feature map, the
    larger of the two axes). A stable, cheap helper for other modules; see :func:`inspect` for details."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = inspect(model, input_size, batch=1).totals
    return {k: t[k] for k in ("params", "trainable_params", "macs", "other_ops", "activation_bytes", "rf", "jump")}


__all__ = ["CONVENTIONS", "Inspection", "Layer", "cost_summary", "inspect"]
