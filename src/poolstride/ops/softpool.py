"""SoftPool: softmax-weighted pooling (Stergiou, Poppe & Kalliatakis 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .pool import _RULE, K, _Pool
from .registry import register


def windows(x: torch.Tensor, k: int, s: int, pad: int, value: float = 0.0) -> torch.Tensor:
    """The k x k windows of an (N, C, H, W) map as an (N, C, OH, OW, k*k) tensor.

    Same window placement as ``F.max_pool2d(x, k, s, pad)``: ``pad`` pixels of ``value`` on every side,
    ``OH = floor((H + 2 pad - k) / s) + 1``. Built from k*k strided slices (one per tap, vectorised over
    all pixels), which export to ONNX as Slice nodes (``Tensor.unfold`` does not export once the input
    is padded and the batch is dynamic).
    """
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), value=value)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h < k or w < k:
        raise RuntimeError(f"input {h - 2 * pad}x{w - 2 * pad} is smaller than the {k}x{k} window")
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    taps = [x[..., i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s] for i in range(k) for j in range(k)]
    return torch.stack(taps, dim=-1)


def valid_mask(h: int, w: int, k: int, s: int, pad: int, device: torch.device) -> torch.Tensor:
    """(OH, OW, k*k) bool: which window taps fall on the map (not on padding)."""
    ones = torch.ones(1, 1, h, w, dtype=torch.bool, device=device)
    return windows(ones, k, s, pad, value=False)[0, 0]


@register(
    "softpool",
    params=[K],
    summary="SoftPool: sum softmax(x)_i * x_i over each k x k window",
    source="Stergiou, Poppe & Kalliatakis 2021, 'Refining activation downsampling with SoftPool' "
    "(ICCV, arXiv:2101.00440)",
    learnable=False,
    shape_rule=_RULE + "; padded pixels get zero weight",
)
class SoftPool(_Pool):
    """SoftPool (Stergiou et al. 2021, arXiv:2101.00440, Eq. 1-2): each k x k window (per channel,
    *not* across channels) outputs ``sum_i softmax(x)_i * x_i``, a smooth maximum that lies between
    the window's mean (constant window) and its max (very peaked window).

    Numerically stable: the softmax subtracts the per-window maximum (the official CUDA kernel computes
    ``exp(x)`` directly and overflows for x > ~88 in float32), so inputs of 1e4 give finite outputs and
    gradients. Padding ((k-1)//2 per side, as for ``max``) gets zero weight. Window placement and output
    size are those of ``max(k)``. Memory: the k*k window taps are materialised once (softmax weights).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.k, self.stride, self.pad
        win = windows(x, k, s, p)
        logits = win
        if p:
            valid = valid_mask(x.shape[-2], x.shape[-1], k, s, p, x.device)
            logits = win.masked_fill(~valid, float("-inf"))
        wts = torch.softmax(logits, dim=-1)
        return (wts * win).sum(-1)

    def other_ops(self, c: int, h: int, w: int) -> int:
        # per output: k^2 exp + k^2 compare/subtract (max) + k^2 adds + 1 divide + k^2 multiply-adds
        return c * self.out_size(h) * self.out_size(w) * (4 * self.k * self.k + 1)
