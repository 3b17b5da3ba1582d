"""Classic pooling: max, average and LP pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..spec import Param
from .registry import Downsample, Geometry, conv_out, register

K = Param("k", int, 2, "window size", min=1, max=15)
_RULE = "floor((n + 2*((k-1)//2) - k) / s) + 1: floor(n/2) for k=2, ceil(n/2) for k=3"


class _Pool(Downsample):
    """Shared window logic: kernel ``k``, stride ``s``, padding ``(k-1)//2``."""

    @property
    def k(self) -> int:
        return int(self.spec["k"])

    @property
    def pad(self) -> int:
        return (self.k - 1) // 2

    def out_size(self, n: int) -> int:
        return conv_out(n, self.k, self.stride, self.pad)

    def geometry(self) -> list[Geometry]:
        return [Geometry(self.k, self.stride, self.pad)]

    def min_input(self) -> int:
        return max(1, self.k - 2 * self.pad)


@register(
    "max",
    params=[K],
    summary="max pooling",
    source="Riesenhuber & Poggio 1999; Ranzato et al. 2007 (torch.nn.MaxPool2d)",
    learnable=False,
    shape_rule=_RULE,
)
class MaxPool(_Pool):
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
class AvgPool(_Pool):
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
class LPPool(_Pool):
    """LP pooling (Sermanet et al. 2012): ``(sum_window |x|^p)^(1/p)``.

    Equals :func:`torch.nn.functional.lp_pool2d` for non-negative inputs; unlike it, this version
    uses ``|x|`` so it is defined for negative inputs, and adds a tiny epsilon inside the root so
    its gradient is finite when a whole window is zero.
    """

    eps = 1e-12

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = float(self.spec["p"])
        k = self.k
        s = F.avg_pool2d(x.abs().pow(p), k, self.stride, self.pad, count_include_pad=True) * (k * k)
        return (s + self.eps).pow(1.0 / p)

    def other_ops(self, c: int, h: int, w: int) -> int:
        # k^2 powers + (k^2 - 1) adds + 1 root per output element
        return c * self.out_size(h) * self.out_size(w) * 2 * self.k * self.k
