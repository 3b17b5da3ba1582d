"""CIFAR ResNets (He et al. 2016, arXiv:1512.03385, Sec. 4.2): ResNet-20/32/44/56/110.

3x3 conv (16) then three stages of n basic blocks on 32/16/8 maps with 16/32/64 filters; the first block
of stages 2 and 3 downsamples with a stride-2 3x3 conv (a ``conv`` site); global average pool + FC.
Parameter count with option A: ResNet-20 = 0.27 M (Table 6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .shortcuts import SHORTCUTS, make_shortcut, match
from .site import CONV, SHORTCUT, DownsampleSite

DEPTHS = (20, 32, 44, 56, 110)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        if stride > 1:
            self.conv1: nn.Module = DownsampleSite(CONV, in_channels, out_channels, stride, "conv(k=3,bias=false)")
        else:
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride > 1 or in_channels != out_channels:
            self.shortcut = DownsampleSite(
                SHORTCUT, in_channels, out_channels, stride,
                make_shortcut(shortcut, in_channels, out_channels, stride), label=shortcut,
            )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + match(self.shortcut(x), out))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, shortcut: str = "A", num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if depth not in DEPTHS and (depth - 2) % 6 != 0:
            raise ModelError(f"CIFAR ResNet depth must be 6n+2 (e.g. {', '.join(map(str, DEPTHS))}), got {depth}")
        if shortcut not in SHORTCUTS:
            raise ModelError(f"unknown shortcut option {shortcut!r}; valid: {', '.join(SHORTCUTS)}")
        n = (depth - 2) // 6
        self.depth, self.shortcut = depth, shortcut
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, c = [], 16
        for i, w in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c, w, stride, shortcut))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))
