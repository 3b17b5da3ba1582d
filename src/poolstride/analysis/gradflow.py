"""Gradient flow and the effective receptive field.

* :func:`gradflow` - one forward/backward pass on a batch: per layer (every module with a weight, in
  forward order) the gradient norm of the weights, the weight norm, and the gradient norm of the layer's
  output activation; plus the ratio between the first and the last layer. A ratio far below 1 means the
  gradient fades on its way to the input (the FishNet argument against "isolated" 1x1 convs on shortcuts,
  Sun et al. 2018, can be tested by comparing ``shortcut="B"`` with ``shortcut="fish"`` on a deep CIFAR
  ResNet).
* :func:`erf` - the effective receptive field of Luo, Li, Urtasun & Zemel (NeurIPS 2016): the gradient of
  the centre unit of a feature map with respect to the input, summed over channels and averaged over random
  inputs, as an array (normalised to max 1) and an image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PoolstrideError


@dataclass
class LayerGrad:
    name: str
    type: str
    weight_norm: float
    weight_grad_norm: float
    activation_grad_norm: float | None

    @property
    def relative(self) -> float:
        return self.weight_grad_norm / self.weight_norm if self.weight_norm else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relative": self.relative}


@dataclass
class GradFlow:
    loss: float
    layers: list[LayerGrad] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Weight-gradient norm of the first layer / that of the last layer."""
        if not self.layers or not self.layers[-1].weight_grad_norm:
            return float("nan")
        return self.layers[0].weight_grad_norm / self.layers[-1].weight_grad_norm

    @property
    def activation_ratio(self) -> float:
        """Activation-gradient norm at the first layer's output / at the last layer's output."""
        a = [layer.activation_grad_norm for layer in self.layers if layer.activation_grad_norm is not None]
        if len(a) < 2 or not a[-1]:
            return float("nan")
        return a[0] / a[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "ratio_first_last": self.ratio,
            "activation_ratio_first_last": self.activation_ratio,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def _load(model: nn.Module, checkpoint: str | Path | Mapping[str, Any] | None) -> None:
    if checkpoint is None:
        return
    state: Any = checkpoint
    if isinstance(checkpoint, (str, Path)):
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as e:
            raise PoolstrideError(f"cannot load checkpoint {checkpoint}: {e}") from None
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)  # type: ignore[arg-type]
    except RuntimeError as e:
        raise PoolstrideError(f"checkpoint does not fit the model: {str(e).splitlines()[0]}") from None


def _weight(m: nn.Module) -> Any:
    return m.weight


def gradflow(
    model: nn.Module,
    batch: torch.Tensor | Sequence[torch.Tensor],
    checkpoint: str | Path | Mapping[str, Any] | None = None,
    train_mode: bool = True,
    seed: int = 0,
) -> GradFlow:
    """Per-layer gradient norms for one batch.

    ``batch`` is ``x`` or ``(x, y)``; without labels, labels are drawn at random (seeded) from the model's
    output classes. The loss is cross-entropy for 2-D outputs, otherwise the mean of the output. The model
    is in train mode (batch-norm statistics of the batch) unless ``train_mode=False``; its mode and buffers
    (batch-norm running statistics) are restored after, and its gradients cleared.
    ``checkpoint``: a state dict or a path to one (``{"model": ...}`` and ``{"state_dict": ...}`` accepted).
    """
    _load(model, checkpoint)
    if isinstance(batch, torch.Tensor):
        x, y = batch, None
    else:
        x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = x.to(dev)
    layers: list[tuple[str, nn.Module]] = []
    acts: dict[str, torch.Tensor] = {}
    names = {id(m): n for n, m in model.named_modules()}
    seen: set[int] = set()

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        if id(mod) in seen or not isinstance(out, torch.Tensor) or not out.requires_grad:
            return
        seen.add(id(mod))
        name = names[id(mod)]
        layers.append((name, mod))
        out.retain_grad()
        acts[name] = out

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(getattr(m, "weight", None), nn.Parameter) and _weight(m).dim() >= 2
    ]
    was = model.training
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}  # train mode updates BN statistics
    model.train(train_mode)
    try:
        model.zero_grad(set_to_none=True)
        out = model(x)
        if out.dim() == 2:
            if y is None:
                g = torch.Generator().manual_seed(seed)
                y = torch.randint(out.shape[1], (out.shape[0],), generator=g)
            loss = F.cross_entropy(out, y.to(out.device))
        else:
            loss = out.float().mean()
        loss.backward()
        res = GradFlow(float(loss.detach()))
        for name, mod in layers:
            w = _weight(mod)
            a = acts[name].grad
            res.layers.append(
                LayerGrad(
                    name,
                    type(mod).__name__,
                    float(w.detach().norm()),
                    float(w.grad.norm()) if w.grad is not None else 0.0,
                    float(a.norm()) if a is not None else None,
                )
            )
        model.zero_grad(set_to_none=True)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k in buffers:
                    b.copy_(buffers[k])
    return res


@dataclass
class ERF:
    """Effective receptive field: ``array`` (H x W, max 1) for the centre unit of ``layer``."""

    array: np.ndarray
    layer: str
    unit: tuple[int, int]
    feature_size: tuple[int, int]
    samples: int

    def extent(self, mass: float = 0.95) -> int:
        """Side (odd) of the smallest square, centred on the ERF's centre of mass, that holds ``mass`` of the
        total gradient."""
        a = self.array
        tot = float(a.sum())
        if tot <= 0:
            return 0
        ys, xs = np.indices(a.shape)
        cy, cx = round(float((a * ys).sum() / tot)), round(float((a * xs).sum() / tot))
        for r in range(max(a.shape)):
            y0, y1, x0, x1 = max(cy - r, 0), cy + r + 1, max(cx - r, 0), cx + r + 1
            if a[y0:y1, x0:x1].sum() >= mass * tot:
                return 2 * r + 1
        return max(a.shape)

    def support(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the nonzero gradient, inclusive."""
        ys, xs = np.nonzero(self.array > 0)
        if len(ys) == 0:
            return (0, -1, 0, -1)
        return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())

    def image(self) -> np.ndarray:
        """The ERF as an 8-bit grey image (sqrt-scaled for visibility)."""
        return (np.sqrt(np.clip(self.array, 0, 1)) * 255).round().astype(np.uint8)

    def save(self, path: str | Path) -> Path:
        """Write the ERF as a PNG (viridis colour map, sqrt-scaled)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        p = Path(path)
        plt.imsave(p, np.sqrt(np.clip(self.array, 0, 1)), cmap="viridis", vmin=0, vmax=1)
        return p

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "unit": list(self.unit),
            "feature_size": list(self.feature_size),
            "samples": self.samples,
            "extent95": self.extent(0.95),
            "support": list(self.support()),
        }


def erf(
    model: nn.Module,
    input_size: Sequence[int],
    layer: str | None = None,
    samples: int = 4,
    seed: int = 0,
) -> ERF:
    """Effective receptive field (Luo et al. 2016) of the centre unit of ``layer``'s output.

    ``layer`` is a module path; by default the last module (in forward order) whose output is a 4-D map
    larger than 1x1. Inputs are standard-normal images (seeded); the model is in eval mode.
    """
    c, h, w = (int(v) for v in input_size)
    names = {id(m): n for n, m in model.named_modules()}
    found: dict[str, Any] = {}

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            return
        n = names.get(id(mod), "")
        if layer is not None:
            if n == layer:
                found["name"], found["out"] = n, out
        elif out.shape[-1] * out.shape[-2] > 1:
            found["name"], found["out"] = n, out

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    if layer is not None and layer not in dict(model.named_modules()):
        for hd in handles:
            hd.remove()
        raise PoolstrideError(f"no module {layer!r} in the model")
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    was = model.training
    model.eval()
    try:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(samples, c, h, w, generator=g).to(dev).requires_grad_(True)
        model(x)
        if "out" not in found:
            raise PoolstrideError("no 4-D feature map found to take the centre unit of; pass layer=")
        y = found["out"]
        fh, fw = y.shape[-2:]
        uy, ux = (fh - 1) // 2, (fw - 1) // 2
        y[:, :, uy, ux].sum().backward()
        assert x.grad is not None
        grad = x.grad.detach().abs().sum(dim=(0, 1)).cpu().double().numpy()
    finally:
        for hd in handles:
            hd.remove()
        model.train(was)
        model.zero_grad(set_to_none=True)
    peak = grad.max()
    arr = grad / peak if peak > 0 and math.isfinite(peak) else grad
    return ERF(arr, found["name"], (int(uy), int(ux)), (int(fh), int(fw)), samples)


__all__ = ["ERF", "GradFlow", "LayerGrad", "erf", "gradflow"]
