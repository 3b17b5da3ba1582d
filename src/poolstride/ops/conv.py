"""Learnable downsampling: strided convolution, convolution + pooling, space-to-depth."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Param
from .registry import Downsample, Geometry, Window, conv_out, register

BIAS = Param("bias", bool, True, "add a bias (set false when a norm layer follows)")


@register(
    "conv",
    params=[Param("k", int, 3, "kernel size", min=1, max=15), BIAS],
    summary="strided k x k convolution (may change channels)",
    source="Springenberg et al. 2015, 'Striving for Simplicity: The All Convolutional Net' (arXiv:1412.6806)",
    learnable=True,
    changes_channels=True,
    params_formula="k^2*Cin*Cout + Cout (bias)",
    shape_rule="floor((n + 2*((k-1)//2) - k) / s) + 1: ceil(n/2) for odd k, floor(n/2) for k=2",
)
class StridedConv(Window):
    """A learnable strided convolution, the All-CNN replacement of pooling (Springenberg et al. 2015)."""

    def __init__(self, spec, in_channels, out_channels, stride=2):
        super().__init__(spec, in_channels, out_channels, stride)
        self.conv = nn.Conv2d(in_channels, out_channels, self.k, stride, self.pad, bias=bool(spec["bias"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register(
    "convpool",
    params=[
        Param("k", int, 3, "kernel size of the stride-1 conv", min=1, max=15),
        Param("pool", str, "max", "the pool that downsamples", choices=("max", "avg")),
        Param("pk", int, 2, "pool window", min=1, max=15),
        BIAS,
    ],
    summary="stride-1 k x k conv, then a pool (the 'stride 1 + pooling' layout)",
    source="Springenberg et al. 2015 (ConvPool-CNN control); Simonyan & Zisserman 2015 (VGG)",
    learnable=True,
    changes_channels=True,
    params_formula="k^2*Cin*Cout + Cout (bias)",
    shape_rule="conv keeps n; pool: floor((n + 2*((pk-1)//2) - pk) / s) + 1",
)
class ConvPool(Downsample):
    """A stride-1 convolution followed by a pool: the full-resolution compute of 'stride 1 + pooling'
    (the ConvPool-CNN control of Springenberg et al. 2015)."""

    def __init__(self, spec, in_channels, out_channels, stride=2):
        super().__init__(spec, in_channels, out_channels, stride)
        k = int(spec["k"])
        self.conv = nn.Conv2d(in_channels, out_channels, k, 1, (k - 1) // 2, bias=bool(spec["bias"]))
        self.pk = int(spec["pk"])
        self.ppad = (self.pk - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.spec["pool"] == "max":
            return F.max_pool2d(y, self.pk, self.stride, self.ppad)
        return F.avg_pool2d(y, self.pk, self.stride, self.ppad, count_include_pad=False)

    def _conv_out(self, n: int) -> int:
        k = self.conv.kernel_size[0]
        return conv_out(n, k, 1, (k - 1) // 2)

    def out_size(self, n: int) -> int:
        return conv_out(self._conv_out(n), self.pk, self.stride, self.ppad)

    def geometry(self) -> list[Geometry]:
        k = self.conv.kernel_size[0]
        return [Geometry(k, 1, (k - 1) // 2), Geometry(self.pk, self.stride, self.ppad)]

    def other_ops(self, c: int, h: int, w: int) -> int:
        per = self.pk * self.pk - 1 if self.spec["pool"] == "max" else self.pk * self.pk
        return self.out_channels * self.out_size(h) * self.out_size(w) * per

    def min_input(self) -> int:
        return max(1, self.pk - 2 * self.ppad)


@register(
    "s2d",
    params=[BIAS],
    summary="space-to-depth (pixel unshuffle) then a 1x1 conv",
    source="Ridnik et al. 2021, TResNet (arXiv:2003.13630); Shi et al. 2016 (sub-pixel conv, inverse)",
    learnable=True,
    changes_channels=True,
    params_formula="s^2*Cin*Cout + Cout (bias)",
    shape_rule="ceil(n/s): odd maps are zero-padded at the bottom/right to a multiple of s",
)
class SpaceToDepth(Downsample):
    """Space-to-depth: every s x s block becomes s^2 channels (``nn.PixelUnshuffle``), then a 1x1 conv
    mixes them to ``out_channels`` (TResNet, Ridnik et al. 2021). No information is discarded before the
    1x1 conv, unlike a strided 1x1 conv which skips 3/4 of the pixels."""

    def __init__(self, spec, in_channels, out_channels, stride=2):
        super().__init__(spec, in_channels, out_channels, stride)
        self.unshuffle = nn.PixelUnshuffle(stride)
        self.proj = nn.Conv2d(in_channels * stride * stride, out_channels, 1, bias=bool(spec["bias"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        ph, pw = (-x.shape[-2]) % s, (-x.shape[-1]) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.proj(self.unshuffle(x))

    def out_size(self, n: int) -> int:
        return -(-n // self.stride)

    def geometry(self) -> list[Geometry]:
        return [Geometry(self.stride, self.stride, 0)]
