"""The training engine: one run = (model, downsample operator, dataset, recipe, seed).

``train_run`` builds the model, measures its static cost, trains it with the whole dataset resident on the
device, evaluates accuracy, loss and shift-consistency, and returns a ``poolstride.run/1`` result dict. With a
``run_dir`` it writes the run directory of docs/study-format.md (config, per-epoch metrics, a checkpoint each
epoch, an atomic result.json) and resumes from the checkpoint if one is there.

Determinism: on CPU a run is a pure function of its seed (model init, batch order, augmentation and dropout
draw from generators seeded by (seed, epoch)), so an interrupted run resumed from its last checkpoint ends
with exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import __version__
from ..analysis import inspect
from ..errors import PoolstrideError
from ..ops import Downsample
from ..results import schema
from ..results.io import ResultFileError, clean_json, read_json, save_torch, utc_now, write_json, write_text
from ..results.study import read_result, write_result
from ..surgery.find import eval_mode
from ..variants import Built, Variant, build, init_hash, parse_entry
from . import dist as dist_mod
from .data import DeviceData
from .evaluate import amp_dtype, autocast_ctx, evaluate, precision_name, shift_consistency
from .recipe import Recipe, get_recipe

Callback = Callable[..., None]

CHECK_EVERY = 25  # steps between NaN/divergence checks inside an epoch


class RunError(PoolstrideError):
    """A run directory that cannot be used (different config, corrupted checkpoint, unwritable...)."""


@dataclass(frozen=True)
class RunSpec:
    """What is trained: a variant (:class:`poolstride.variants.Variant`, any model and transformation) and a
    seed. ``RunSpec.of("tiny", "blur", seed=1)`` parses a variant entry as ``--variants`` does."""

    variant: Variant
    seed: int = 0

    @classmethod
    def of(cls, model: str = "tiny", entry: str = "default", seed: int = 0, **model_kwargs: Any) -> RunSpec:
        return cls(parse_entry(entry, model, model_kwargs), seed)

    @property
    def name(self) -> str:
        return self.variant.name


def resolve_device(device: str | torch.device | None = "auto", info: dist_mod.DistInfo | None = None) -> torch.device:
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise PoolstrideError(f"bad --device {device!r}; expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PoolstrideError("--device cuda requested but CUDA is not available")
        if info is not None and info.enabled:
            dev = torch.device("cuda", info.local_rank)
    return dev


def auto_threads() -> int:
    """The default torch CPU thread count for a run: 1.

    CPU results are bitwise deterministic for a given seed *and* thread count, so the default must not depend
    on the machine (core count, load): the same command gives the same numbers everywhere, and a resumed study
    continues with the threads it started with. One thread is also the fastest setting for the small default
    nets on a busy shared CPU (a multi-threaded conv waits for descheduled threads at every barrier: measured
    4x slower than 1 thread at load 12 on 2 cores). Pass ``threads=N`` (``--threads N``) for large models on
    an idle machine (All-CNN-C: 109 img/s with 2 threads vs about 60 with 1, measured here)."""
    return 1


def set_threads(threads: int | None) -> int:
    """Apply ``threads`` (None = :func:`auto_threads`) and return the count in use."""
    torch.set_num_threads(max(1, int(threads)) if threads is not None else auto_threads())
    return torch.get_num_threads()


_COST_CACHE: dict[str, dict[str, Any]] = {}


def static_cost(model: nn.Module, input_size: tuple[int, ...], key: str | None = None) -> dict[str, Any]:
    """params / MACs / other ops / activation bytes / receptive field / training-step MACs, and the per-site
    costs, from one :func:`poolstride.analysis.inspect` pass at batch 1 (the numbers ``poolstride cost`` prints);
    parameters only if the analysis fails (``cost_source`` says so, and a warning says why)."""
    if key is not None and key in _COST_CACHE:
        return dict(_COST_CACHE[key])
    out: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "macs": None,
        "other_ops": None,
        "activation_bytes": None,
        "rf": None,
        "jump": None,
        "train_step_macs": None,
        "cost_source": "params-only",
    }
    try:
        with eval_mode(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = inspect(model, tuple(input_size), batch=1)
        t = rep.totals
        out.update({k: t.get(k) for k in ("params", "trainable_params", "macs", "other_ops", "activation_bytes")})
        out.update(rf=t.get("rf"), jump=t.get("jump"), train_step_macs=(t.get("train_step") or {}).get("macs"))
        out["cost_source"] = "poolstride.analysis"
        out["sites"] = _site_costs(rep)
    except Exception as e:  # noqa: BLE001 - analysis must never kill a training run; say so instead
        out["cost_source"] = f"params-only (analysis failed: {type(e).__name__}: {e})"
        warnings.warn(
            f"static cost: parameters only, the analysis failed ({type(e).__name__}: {e})", RuntimeWarning, stacklevel=2
        )
    if key is not None:
        _COST_CACHE[key] = dict(out)
    return out


def _site_costs(rep: Any) -> list[dict[str, Any]] | None:
    """Per-site cost (docs/study-format.md, optional ``sites``): the layers inside each downsampling site of an
    :func:`poolstride.analysis.inspect` report summed, in model order. None when there are none."""
    sites: dict[str, dict[str, Any]] = {}
    for layer in rep.layers:
        site = getattr(layer, "site", None)
        if not site:
            continue
        row = sites.setdefault(
            site["path"], {"path": site["path"], "kind": site.get("kind"), "op": site.get("op"),
                           "macs": 0, "other_ops": 0, "params": 0},
        )  # fmt: skip
        row["macs"] += int(layer.macs)
        row["other_ops"] += int(layer.other_ops)
        row["params"] += int(layer.params)
    return list(sites.values()) or None


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (Linux/macOS; None elsewhere)."""
    try:
        import resource
        import sys

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(r / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except (ImportError, OSError):  # pragma: no cover - Windows
        return None


def lr_factor(recipe: Recipe, step: int, total: int, steps_per_epoch: int) -> float:
    """Multiplier of ``recipe.lr`` at global step ``step`` (0-based) of ``total``."""
    t = step / max(total, 1)
    if recipe.schedule == "constant":
        return 1.0
    if recipe.schedule == "step":
        epoch = step // max(steps_per_epoch, 1)
        return float(recipe.gamma ** sum(1 for m in recipe.milestones if epoch >= m))
    if recipe.schedule == "cosine":
        warm = recipe.warmup_epochs * steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(total - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * t))
    # onecycle: linear rise from 1/25 to 1 over pct_start, then cosine down to ~0
    p = recipe.pct_start
    if t < p:
        return 0.04 + 0.96 * t / p
    return 0.5 * (1 + math.cos(math.pi * (t - p) / (1 - p))) * (1 - 1e-4) + 1e-4


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, nn.Embedding)


def _operator_params(model: nn.Module) -> set[int]:
    """ids of the parameters that downsampling operators learn themselves: those of a poolstride
    :class:`~poolstride.ops.Downsample` (or of a helper module inside it) that do not belong to a conv/linear
    layer of the operator, e.g. DiffStride's ``strides`` and the mixed pool's gate ``logit``."""
    out: set[int] = set()
    for op in model.modules():
        if isinstance(op, Downsample):
            for m in op.modules():
                if not isinstance(m, _WEIGHTED):
                    out.update(id(p) for p in m.parameters(recurse=False))
    return out


def param_groups(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """Split the trainable parameters into ``(decay, no_decay)`` lists of ``(name, parameter)``, in model order.

    **Not decayed:** (1) the parameters a downsampling operator learns itself (those of a poolstride
    ``Downsample`` not held by a conv/linear layer inside it: DiffStride's stride, which decay pulls toward 0,
    the mixed pool's gate, which it pulls toward an even max/avg mix); (2) norm-layer weights and biases;
    (3) every bias; (4) any other 0-D or 1-D parameter (per-channel gains and scalar gates, as in timm);
    (5) any name a module lists in its ``no_weight_decay()`` (timm's convention; names relative to that module).
    **Decayed:** everything else, i.e. the weights of convolutions and linear layers (operators' too: the conv
    of ``blur(base=conv)``, ``conv``, ``s2d``...). Weight decay is the recipe's ``weight_decay`` on the first
    group and 0 on the second.
    """
    ops_ids = _operator_params(model)
    declared: set[str] = set()
    norm_ids: set[int] = set()
    for prefix, m in model.named_modules():
        if isinstance(m, _NORMS):
            norm_ids.update(id(p) for p in m.parameters(recurse=False))
        nwd = getattr(m, "no_weight_decay", None)
        if callable(nwd):
            declared.update(f"{prefix}.{n}" if prefix else str(n) for n in nwd())
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = (
            id(p) in ops_ids
            or id(p) in norm_ids
            or p.ndim <= 1
            or name.rsplit(".", 1)[-1] == "bias"
            or name in declared
        )
        (no_decay if skip else decay).append((name, p))
    return decay, no_decay


def describe_groups(model: nn.Module, shown: int = 8) -> dict[str, Any]:
    """The optimizer grouping of :func:`param_groups` as a JSON record (run config and result):
    tensor and element counts per group, the first ``shown`` not-decayed names and every learned
    downsampling-operator parameter (``operator``)."""
    decay, no_decay = param_groups(model)
    ops_ids = _operator_params(model)
    return {
        "decay": {"tensors": len(decay), "params": sum(p.numel() for _, p in decay)},
        "no_decay": {
            "tensors": len(no_decay),
            "params": sum(p.numel() for _, p in no_decay),
            "names": [n for n, _ in no_decay[:shown]],
        },
        "operator": [n for n, p in no_decay if id(p) in ops_ids],
    }


def make_optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    """The recipe's optimizer over two parameter groups (:func:`param_groups`): conv/linear weights with the
    recipe's weight decay, and biases, norm-layer and learned downsampling-operator parameters without it.
    Tries the fused, then the foreach implementation, then the default one."""
    decay, no_decay = param_groups(model)
    groups: list[dict[str, Any]] = [
        {"params": [p for _, p in g], "weight_decay": wd}
        for g, wd in ((decay, recipe.weight_decay), (no_decay, 0.0))
        if g
    ]
    impl: dict[str, Any] = {"fused": True}
    attempts: list[dict[str, Any]] = [{"fused": True}, {"foreach": True}, {}]
    for attempt in attempts:
        impl = attempt
        try:
            if recipe.optimizer == "adamw":
                return torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay, **impl)
            return torch.optim.SGD(
                groups,
                lr=recipe.lr,
                momentum=recipe.momentum,
                nesterov=recipe.optimizer == "nesterov",
                weight_decay=recipe.weight_decay,
                **impl,
            )
        except (RuntimeError, TypeError, ValueError):
            continue
    raise RuntimeError("no optimizer implementation available")  # pragma: no cover


def _grad_norms(model: nn.Module) -> tuple[float, dict[str, float]]:
    per: dict[str, float] = {}
    sq = 0.0
    for n, p in model.named_parameters():
        if p.grad is None:
            continue
        v = float(p.grad.detach().float().norm())
        sq += v * v
        if p.dim() > 1:
            per[n.removeprefix("module.").removeprefix("_orig_mod.")] = v
    return math.sqrt(sq), per


def _latency_ms(model: nn.Module, input_size: tuple[int, ...], device: torch.device, channels_last: bool) -> float:
    model.eval()
    x = torch.zeros(1, *input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.no_grad():
        for i in range(13):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= 3:
                times.append(time.perf_counter() - t)
    model.train()
    times.sort()
    return 1000.0 * times[len(times) // 2]


def run_config(
    spec: RunSpec, recipe: Recipe, dataset_name: str, device: torch.device | str, built: Built | None = None
) -> dict[str, Any]:
    """The run's record (``config.json``): everything it is rebuilt from, and the hash of the weights it
    starts from, so that a resume in another process can prove it rebuilt the same model."""
    v = spec.variant
    cfg: dict[str, Any] = {
        "schema": schema.RUNCONFIG,
        "variant": v.name,
        "model": v.model,
        "downsample": v.downsample,
        "model_kwargs": dict(v.model_kwargs),
        "seed": spec.seed,
        "dataset": dataset_name,
        "epochs": recipe.epochs,
        "recipe": recipe.to_dict(),
        "device": str(device),
    }
    if v.policy is not None or v.weights is not None or v.site is not None:
        cfg["variant_record"] = v.to_dict()
    if built is not None:
        cfg["adaptations"] = list(built.adaptations)
        cfg["init_sha256"] = init_hash(built.model)
        cfg["optimizer_groups"] = describe_groups(built.model)
    return cfg


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a run config that must match for a run directory to be resumed (device may change)."""
    out = {k: v for k, v in cfg.items() if k not in ("device", "adaptations")}
    if isinstance(out.get("recipe"), dict):
        out["recipe"] = {k: v for k, v in out["recipe"].items() if k != "notes"}
    return out


def _check_or_write_config(rdir: Path, cfg: dict[str, Any]) -> None:
    cpath = rdir / "config.json"
    if not cpath.exists():
        write_json(cpath, cfg)
        return
    try:
        old = read_json(cpath, "run config")
    except ResultFileError as e:
        raise RunError(f"{cpath} is corrupted ({e.detail}); move the run directory away to restart it") from None
    new = json.loads(json.dumps(cfg, default=str))
    a, b = _comparable(old), _comparable(new)
    if a == b:
        return
    derived = ("init_sha256", "optimizer_groups")  # both follow from the model as rebuilt
    a_defn, b_defn = ({k: v for k, v in c.items() if k not in derived} for c in (a, b))
    if a_defn == b_defn and a.get("init_sha256") != b.get("init_sha256"):
        if "init_sha256" not in a:  # a run directory from before the hash was recorded: adopt it
            write_json(cpath, {**old, "init_sha256": new["init_sha256"], "adaptations": new.get("adaptations")})
            return
        raise RunError(
            f"{rdir}: the model rebuilt for this run is not the one it started from (initial weights "
            f"{a.get('init_sha256')} recorded, {b.get('init_sha256')} now): its code, options or weights file "
            "changed; restore them, or use another --out"
        )
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    raise RunError(
        f"{rdir} holds a run with a different config ({', '.join(diff) or 'schema'} differ); "
        "use another output directory"
    )


def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(clean_json(h)) + "\n" for h in history))
    cols = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "time"]
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for h in history:
        w.writerow(["" if h.get(c) is None else h.get(c) for c in cols])
    write_text(run_dir / "summary.csv", buf.getvalue())


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ck, dict) or "model" not in ck or "epoch" not in ck:
            raise ValueError("not a poolstride checkpoint")
        return ck
    except Exception as e:
        raise RunError(
            f"{path} is corrupted or unreadable ({type(e).__name__}: {str(e)[:120]}); "
            "delete it to restart this run from scratch"
        ) from None


def build_model(spec: RunSpec, num_classes: int, input_size: tuple[int, ...]) -> Built:
    """The run's model, seeded: ``torch.manual_seed(seed)`` then :func:`poolstride.variants.build`."""
    torch.manual_seed(spec.seed)
    return build(spec.variant, num_classes, input_size)


@dataclass
class _Training:
    """One run being trained: what :func:`train_run`'s phases share."""

    spec: RunSpec
    recipe: Recipe
    dev: torch.device
    info: dist_mod.DistInfo
    data: DeviceData
    rdir: Path | None
    cb: Callback
    model: nn.Module
    cfg: dict[str, Any]
    cost: dict[str, Any]
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    fwd: nn.Module | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    train_time: float = 0.0
    images: int = 0
    grad_norm: float = float("nan")
    per_layer: dict[str, float] = field(default_factory=dict)

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory (the only process, or rank 0 under DDP)."""
        return self.rdir is not None and self.info.is_main

    @property
    def ckpt_path(self) -> Path | None:
        return self.rdir / "checkpoint.pt" if self.rdir is not None else None


def train_run(
    spec: RunSpec,
    dataset: Any,
    recipe: Recipe | str = "fast",
    device: str | torch.device = "auto",
    run_dir: str | Path | None = None,
    callback: Callback | None = None,
    dist_info: dist_mod.DistInfo | None = None,
    data: DeviceData | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run; see the module doc. ``callback(event, **info)`` receives ``start``
    (epochs, start_epoch, steps_per_epoch), ``step`` (epoch, step), ``epoch`` (the metrics row) and ``end``
    (the result). Returns the result dict (status ``ok`` or ``failed`` with a ``reason``)."""
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    info = dist_info or dist_mod.DistInfo()
    dev = resolve_device(device, info)
    if data is None or data.device != dev or data.channels_last != recipe.channels_last:
        data = DeviceData(dataset, dev, recipe.train_subset, recipe.test_subset, recipe.channels_last)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ds_name = str(getattr(dataset, "name", "dataset"))
    tr = _setup(spec, recipe, dev, info, data, _prepare_run_dir(run_dir, info), ds_name, callback)
    reason = _train_epochs(tr)
    dist_mod.barrier(info)
    result = _result(tr, reason, ds_name)
    if tr.main and tr.rdir is not None:
        write_result(tr.rdir, result)
    tr.cb("end", result=result)
    return result


def _prepare_run_dir(run_dir: str | Path | None, info: dist_mod.DistInfo) -> Path | None:
    rdir = Path(run_dir) if run_dir is not None else None
    if rdir is not None and info.is_main:
        try:
            rdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create run directory {rdir}: {e.strerror or e}") from None
        if (rdir / "study.json").exists():
            raise RunError(f"{rdir} is a study directory (poolstride compare), not a run; use another --out")
    return rdir


def _setup(
    spec: RunSpec,
    recipe: Recipe,
    dev: torch.device,
    info: dist_mod.DistInfo,
    data: DeviceData,
    rdir: Path | None,
    ds_name: str,
    callback: Callback | None,
) -> _Training:
    """Build the model (seeded), write or check the run config, measure the static cost, place the model, make the
    optimizer, resume from the checkpoint if there is one, and wrap the model for compile and DDP."""
    built = build_model(spec, data.num_classes, data.input_size)
    model = built.model
    cfg = run_config(spec, recipe, ds_name, dev, built)
    if rdir is not None and info.is_main:
        _check_or_write_config(rdir, cfg)
    dist_mod.barrier(info)
    obj_id = id(spec.variant.obj) if spec.variant.obj is not None else None  # two instances, one class name
    cost_key = json.dumps([spec.variant.to_dict(), obj_id, data.input_size, data.num_classes], sort_keys=True)
    cost = static_cost(model, data.input_size, cost_key)
    if info.enabled:
        model = dist_mod.convert_sync_bn(model, dev)
    model = model.to(dev)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = make_optimizer(model, recipe, dev)
    # fp16 autocast (older GPUs, or amp="fp16") needs loss scaling; bf16 and fp32 do not (disabled: a no-op)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype(dev, recipe.amp) == torch.float16)
    tr = _Training(spec, recipe, dev, info, data, rdir, callback or _ignore, model, cfg, cost, opt, scaler)
    if tr.ckpt_path is not None and tr.ckpt_path.exists():
        _resume(tr, tr.ckpt_path)
    fwd: nn.Module = model
    if recipe.compile:
        fwd = torch.compile(model)  # type: ignore[assignment]
    if info.enabled:
        fwd = DDP(fwd, device_ids=[dev.index] if dev.type == "cuda" else None)
    tr.fwd = fwd
    return tr


def _ignore(event: str, **kw: Any) -> None:
    """The callback of a run nobody watches."""


def _resume(tr: _Training, ckpt_path: Path) -> None:
    """Load model, optimizer, scaler and progress from the run's checkpoint."""
    ck = _load_checkpoint(ckpt_path)
    try:
        tr.model.load_state_dict(ck["model"])
        tr.opt.load_state_dict(ck["optimizer"])
        if tr.scaler.is_enabled() and ck.get("scaler"):
            tr.scaler.load_state_dict(ck["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise RunError(f"{ckpt_path} does not fit this run ({str(e)[:120]}); delete it to restart") from None
    tr.start_epoch = int(ck["epoch"])
    tr.history = list(ck.get("history", []))
    tr.train_time = float(ck.get("train_time", 0.0))
    tr.images = int(ck.get("images", 0))
    if tr.main and tr.rdir is not None:
        _write_metrics(tr.rdir, tr.history)  # drop anything written after the checkpoint


def _train_epochs(tr: _Training) -> str | None:
    """The epoch loop: train, evaluate when due, checkpoint; the reason the run failed, or None."""
    recipe, data, info = tr.recipe, tr.data, tr.info
    gb = min(recipe.batch_size, data.n_train)
    if gb % info.world:
        raise PoolstrideError(f"batch size {gb} is not divisible by the number of processes {info.world}")
    spe = data.steps_per_epoch(gb)
    tr.cb("start", epochs=recipe.epochs, start_epoch=tr.start_epoch, steps_per_epoch=spe, spec=tr.spec)
    reason: str | None = None
    tr.model.train()
    for epoch in range(tr.start_epoch, recipe.epochs):
        row, reason = _train_epoch(tr, epoch, gb, spe)
        if reason is None and ((epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs):
            ev = evaluate(tr.model, data, recipe.eval_batch_size, recipe.amp)
            row["test_loss"], row["test_acc"] = ev["loss"], ev["acc"]
            if not math.isfinite(ev["loss"]):
                reason = f"test loss became NaN at epoch {epoch + 1}"
        tr.history.append(clean_json(row))
        if reason is not None:
            if tr.main and tr.rdir is not None:
                _write_metrics(tr.rdir, tr.history)
            break
        if tr.main and tr.rdir is not None:
            _save_checkpoint(tr, epoch)
            _write_metrics(tr.rdir, tr.history)
        tr.cb("epoch", **row)
    return reason


def _train_epoch(tr: _Training, epoch: int, gb: int, spe: int) -> tuple[dict[str, Any], str | None]:
    """One epoch of training steps; its metrics row (no test numbers yet) and the reason it diverged, or None."""
    recipe, dev, info, opt, scaler = tr.recipe, tr.dev, tr.info, tr.opt, tr.scaler
    assert tr.fwd is not None
    reason: str | None = None
    seed_e = tr.spec.seed * 1_000_003 + epoch * 7919 + 17
    torch.manual_seed(seed_e + 2)  # dropout & co.
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    lr = recipe.lr
    batches = tr.data.train_batches(seed_e, gb, recipe.augment, recipe.crop_padding, recipe.flip, info.rank, info.world)
    for s, (xb, yb) in enumerate(batches):
        lr = recipe.lr * lr_factor(recipe, epoch * spe + s, spe * recipe.epochs, spe)
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast_ctx(dev, recipe.amp):
            out = tr.fwd(xb)
            loss = F.cross_entropy(out.float(), yb, label_smoothing=recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if scaler.is_enabled():
            scaler.unscale_(opt)  # true gradients for the norms (and any clipping)
        if s == spe - 1:
            tr.grad_norm, tr.per_layer = _grad_norms(tr.model)
        scaler.step(opt)
        scaler.update()
        ld = loss.detach()
        loss_sum += ld.double() * len(yb)
        correct += (out.detach().argmax(1) == yb).sum()
        seen += len(yb)
        if (s + 1) % CHECK_EVERY == 0:
            v = float(ld)
            if dist_mod.any_flag(not math.isfinite(v) or v > recipe.divergence_loss, info):
                reason = _diverged(v, recipe, epoch, s)
                break
        tr.cb("step", epoch=epoch, step=s + 1, steps_per_epoch=spe)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t0
    tr.train_time += dt
    tot = dist_mod.all_sum(
        torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), device=dev).double()]), info
    )
    tr.images += int(tot[2])
    tr_loss = float(tot[0] / tot[2].clamp_min(1))
    tr_acc = 100.0 * float(tot[1] / tot[2].clamp_min(1))
    if reason is None and (not math.isfinite(tr_loss) or tr_loss > recipe.divergence_loss):
        reason = _diverged(tr_loss, recipe, epoch, None)
    row = {"epoch": epoch + 1, "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": None, "test_acc": None,
           "lr": lr, "time": round(dt, 4), "grad_norm": tr.grad_norm}  # fmt: skip
    return row, reason


def _save_checkpoint(tr: _Training, epoch: int) -> None:
    assert tr.ckpt_path is not None
    save_torch(
        tr.ckpt_path,
        {
            "epoch": epoch + 1,
            "model": tr.model.state_dict(),
            "optimizer": tr.opt.state_dict(),
            "scaler": tr.scaler.state_dict() if tr.scaler.is_enabled() else None,
            "history": tr.history,
            "train_time": tr.train_time,
            "images": tr.images,
            "rng": {"torch": torch.get_rng_state()},
            "config": tr.cfg,
        },
    )


def _result(tr: _Training, reason: str | None, ds_name: str) -> dict[str, Any]:
    """The run's ``result.json`` record; for a run that did not fail, its final accuracy, loss,
    shift-consistencies, latency and gradient flow."""
    spec, recipe, cfg, cost, data, dev = tr.spec, tr.recipe, tr.cfg, tr.cost, tr.data, tr.dev
    train_time, images = tr.train_time, tr.images
    result: dict[str, Any] = {
        "schema": schema.RUN, "variant": spec.name, "seed": spec.seed,
        "status": "ok" if reason is None else "failed", "reason": reason,
        "model": spec.variant.model, "downsample": cfg["downsample"], "policy": spec.variant.policy,
        "site": spec.variant.site, "init_sha256": cfg["init_sha256"], "adaptations": cfg["adaptations"],
        "optimizer_groups": cfg["optimizer_groups"], "dataset": ds_name, "epochs": recipe.epochs,
        "recipe": recipe.name, "acc": None, "loss": None, "shift_consistency": None,
        "shift_consistency_circular": None,
        "shift": {"max_shift": recipe.shift_max, "padding": recipe.shift_padding, "pairs": recipe.shift_pairs,
                  "images": min(recipe.shift_images or len(data.x_test), len(data.x_test))},
        **cost,
        "latency_ms": None,
        "train_time_s": round(train_time, 3),
        "images_per_s": round(images / train_time, 1) if train_time > 0 else None,
        # achieved arithmetic rate: training-step MACs per image x 2 FLOPs x images/s (how close it ran to the chip)
        "achieved_gflops": (
            round(2 * cost["train_step_macs"] * images / train_time / 1e9, 2)
            if train_time > 0 and cost.get("train_step_macs")
            else None
        ),
        "peak_rss_mb": peak_rss_mb(), "device": str(dev), "world_size": tr.info.world,
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "precision": precision_name(dev, recipe.amp), "gradflow": None, "history": tr.history,
        "finished": None, "poolstride": __version__,
    }  # fmt: skip
    if reason is None:
        _final_evaluation(tr, result)
    result["finished"] = utc_now()
    return dict(clean_json(result))


def _final_evaluation(tr: _Training, result: dict[str, Any]) -> None:
    """Accuracy and loss (of the last epoch, or evaluated again after a resume past it), shift-consistencies,
    latency and the gradient flow of the last step, into ``result``."""
    model, data, recipe = tr.model, tr.data, tr.recipe
    last = tr.history[-1] if tr.history else {}
    if last.get("test_acc") is None:  # resumed after the last epoch: evaluate again
        ev = evaluate(model, data, recipe.eval_batch_size, recipe.amp)
        last = {"test_acc": ev["acc"], "test_loss": ev["loss"]}
    result["acc"], result["loss"] = last["test_acc"], last["test_loss"]
    for key, pad in (("shift_consistency", recipe.shift_padding), ("shift_consistency_circular", "circular")):
        result[key] = shift_consistency(
            model, data, recipe.shift_max, pad, recipe.shift_pairs, recipe.shift_images,
            recipe.eval_batch_size, recipe.amp,
        )  # fmt: skip
    result["latency_ms"] = round(_latency_ms(model, data.input_size, tr.dev, recipe.channels_last), 4)
    if tr.per_layer:
        result["gradflow"] = {"layers": list(tr.per_layer), "grad_norm": list(tr.per_layer.values()),
                              "when": "last step of the last epoch trained in this process"}  # fmt: skip


def _diverged(v: float, recipe: Recipe, epoch: int, step: int | None) -> str:
    where = f"epoch {epoch + 1}" + (f" (step {step + 1})" if step is not None else "")
    if not math.isfinite(v):
        return f"loss became {'NaN' if v != v else 'infinite'} at {where}"
    return f"loss diverged ({v:.3g} > {recipe.divergence_loss:g}) at {where}"


__all__ = [
    "RunError",
    "RunSpec",
    "auto_threads",
    "lr_factor",
    "read_result",
    "resolve_device",
    "set_threads",
    "static_cost",
    "train_run",
]
