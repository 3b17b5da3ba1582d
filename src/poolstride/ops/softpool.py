"""SoftPool: softmax-weighted pooling (Stergiou, Poppe & Kalliatakis 2021)."""

from __future__ import annotations

import torch

from .pool import _RULE, K, windows
from .registry import Window, register


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
class SoftPool(Window):
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
        # per output, by the rules of docs/conventions.md: a softmax over the k^2 taps (3 per softmax
        # output element: 3 k^2), the weighting (1 per element: k^2) and the window sum (a reduction
        # counts 1 per input element: k^2) = 5 k^2, what the graph counter gives for the same ops
        return c * self.out_size(h) * self.out_size(w) * 5 * self.k * self.k
