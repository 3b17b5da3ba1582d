"""Residual shortcuts for blocks that change resolution or width.

* ``A`` - identity with stride-2 subsampling ``x[:, :, ::2, ::2]`` and zero-padded extra channels
  (He et al. 2016, CIFAR nets); no parameters.
* ``B`` - 1x1 stride-2 projection + BN (He et al. 2016; torchvision); only where the shape changes.
* ``D`` - 2x2 average pool (stride 2, ceil_mode, padding excluded) then 1x1 stride-1 projection + BN
  (ResNet-D, He et al. 2019 'Bag of Tricks', arXiv:1812.01187).
* ``fish`` - FishNet-style parameter-free shortcut (Sun et al. 2018, arXiv:1901.03495): 2x2 max pool,
  then the channels are widened by concatenating copies of the pooled map (pool + concat), so no
  "isolated convolution" sits on the shortcut.
* ``fish-id`` - 2x2 max pool then zero-padded channels (pool + identity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError

SHORTCUTS = ("A", "B", "D", "fish", "fish-id")


class SubsamplePad(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` then zero channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class PoolWiden(nn.Module):
    """FishNet-style: max pool (2x2, stride s), then widen by concatenating copies (``cat``) or zeros."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, mode: str = "cat") -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride, self.mode = in_channels, out_channels, stride, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.max_pool2d(x, self.stride, self.stride, ceil_mode=True)
        extra = self.out_channels - self.in_channels
        if extra <= 0:
            return x
        if self.mode == "cat":
            reps = -(-self.out_channels // self.in_channels)
            return torch.cat([x] * reps, dim=1)[:, : self.out_channels]
        return F.pad(x, (0, 0, 0, 0, 0, extra))


def make_shortcut(option: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if option == "A":
        return SubsamplePad(in_channels, out_channels, stride)
    if option == "B":
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))
    if option == "D":
        pool: nn.Module = (
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        )
        return nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, 1, 1, bias=False), nn.BatchNorm2d(out_channels))
    if option in ("fish", "fish-id"):
        return PoolWiden(in_channels, out_channels, stride, "cat" if option == "fish" else "zero")
    raise ModelError(f"unknown shortcut option {option!r}; valid: {', '.join(SHORTCUTS)}")


def match(identity: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Resize the shortcut to the main path when a learnable-stride operator (diffstride) made their
    spatial sizes differ; a no-op otherwise."""
    if identity.shape[-2:] != out.shape[-2:]:
        identity = F.adaptive_avg_pool2d(identity, (int(out.shape[-2]), int(out.shape[-1])))
    return identity
