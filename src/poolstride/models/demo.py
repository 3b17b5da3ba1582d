"""A tiny demo CNN with three downsampling sites that trains in seconds on a CPU.

conv3x3(16)-BN-ReLU -> site -> conv3x3(32)-BN-ReLU -> site -> conv3x3(64)-BN-ReLU -> site -> GAP -> FC.
Every site is a ``pool`` site (channels kept), 2x2 max-pool by default, so every operator applies.
``padding``: the convs' padding mode, ``"zeros"`` (default) or ``"circular"`` (with a circular operator such as
``aps``, the whole net then commutes with circular shifts: circular shift-consistency 100 %).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..errors import ModelError
from .site import POOL, DownsampleSite

PADDINGS = ("zeros", "circular")


class TinyNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: tuple[int, ...] = (16, 32, 64),
        padding: Literal["zeros", "circular"] = "zeros",
    ):
        super().__init__()
        if padding not in PADDINGS:
            raise ModelError(f"tiny: padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, 3, 1, 1, bias=False, padding_mode=padding), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                DownsampleSite(POOL, w, w, 2, "max"),
            ]  # fmt: skip
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
