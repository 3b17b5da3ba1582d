"""Classic pooling: max, average and LP pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..spec import Param
from .registry import Window, register

K = Param("k", int, 2, "window size", min=1, max=15)
_RULE = "floor((n + 2*((k-1)//2) - k) / s) + 1: floor(n/2) for k=2, ceil(n/2) for k=3"


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


@register(
    "max",
    params=[K],
    summary="max pooling",
    source="Riesenhuber & Poggio 1999; Ranzato et al. 2007 (torch.nn.MaxPool2d)",
    learnable=False,
    shape_rule=_RULE,
)
class MaxPool(Window):
    """Max pooling over a k x k window with stride s (Riesenhuber & Poggio 1999)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.k, self.stride, self.pad)

    def other_ops(self, c: int, h: int, w: int) -> int:
        # k^2 - 1 comparisons per output element
        return c * self.out_size(h) * self.out_size(w) * (self.k * self.k - 1)


@register(
    "avg",
    params=[K],
    summary="average pooling",
    source="LeCun et al. 1989/1998 (subsampling layers); torch.nn.AvgPool2d",
    learnable=False,
    shape_rule=_RULE + "; padded pixels are excluded from the mean",
)
class AvgPool(Window):
    """Average pooling over a k x k window (LeCun et al. 1998). Padding is excluded from the mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.k, self.stride, self.pad, count_include_pad=False)

    def other_ops(self, c: int, h: int, w: int) -> int:
        # k^2 - 1 adds + 1 multiply = k^2 per output element
        return c * self.out_size(h) * self.out_size(w) * self.k * self.k


@register(
    "lp",
    params=[
        Param("p", float, 2.0, "the norm's exponent (1 = sum of |x|, large p -> max)", min=1.0, max=64.0),
        K,
    ],
    summary="LP pooling: (sum |x|^p)^(1/p) over the window",
    source="Sermanet, Chintala & LeCun 2012; Bruna, Szlam & LeCun 2014",
    learnable=False,
    shape_rule=_RULE,
)
class LPPool(Window):
    """LP pooling (Sermanet et al. 2012): ``(sum_window |x|^p)^(1/p)``.

    Equals :func:`torch.nn.functional.lp_pool2d` for non-negative inputs; unlike it, this version
    uses ``|x|`` so it is defined for negative inputs, and it is computed stably: with ``M`` the
    window's max ``|x|``, ``M * (sum_window (|x|/M)^p)^(1/p)``. The sum lies in ``[1, k^2]``, so no
    power overflows or underflows to a wrong result (at p=64, ``|x|^64`` overflows float32 from
    ``|x| ~ 4``; here the output overflows only where the norm itself exceeds the dtype's range), and
    an all-zero window gives exactly 0 (no epsilon). Gradients are finite everywhere: ``M`` is held
    constant in the backward pass (the result does not depend on it: the formula is homogeneous of
    degree 1), the gradient of an element is ``sign(x) (|x|/y)^(p-1)``, and an all-zero window sends
    0 back. Zero padding ((k-1)//2 per side) adds nothing to the sum. The k*k window taps are
    materialised (Slice nodes in ONNX), as for ``softpool``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = float(self.spec["p"])
        win = windows(x.abs(), self.k, self.stride, self.pad)  # (N, C, OH, OW, k*k), padding = 0
        mx = win.detach().amax(-1, keepdim=True)
        nonzero = mx > 0
        scale = torch.where(nonzero, mx, torch.ones_like(mx))
        total = (win / scale).pow(p).sum(-1, keepdim=True)  # in [1, k^2] where the window is not all 0
        total = torch.where(nonzero, total, torch.ones_like(total))
        return torch.where(nonzero, scale * total.pow(1.0 / p), torch.zeros_like(mx)).squeeze(-1)

    def other_ops(self, c: int, h: int, w: int) -> int:
        # k^2 powers + (k^2 - 1) adds + 1 root per output element (the "LP pooling" rule of
        # docs/conventions.md; the rescaling by the window max is numerical care, not counted)
        return c * self.out_size(h) * self.out_size(w) * 2 * self.k * self.k
