"""ImageNet ResNet-18/50 (He et al. 2016) in torchvision's layout (v1.5: the bottleneck strides at its
3x3 conv), so torchvision state dicts load and MACs match torchvision's figures, with stem options:

* ``original`` - 7x7/2 conv, then 3x3/2 max-pool (He et al. 2016, Table 1);
* ``deep`` - three 3x3 convs (32, 32, 64; the first stride 2), then the max-pool (ResNet-C, Bag of Tricks);
* ``s1pool`` - 7x7 conv at stride 1, then a 2x2 max-pool (the question's "stride 1 + pooling"), then the
  3x3/2 max-pool: same output size as ``original``, about 4x the stem MACs;
* ``s2d`` - space-to-depth by 4 then a 3x3 conv 48 -> 64, no max-pool (TResNet, Ridnik et al. 2021).

Sites: the stem conv (``stem``), the stem pool (``pool``), the first strided conv of stages 2-4 (``conv``)
and the downsampling shortcuts (option B = 1x1/2 projection, D = avg-pool + 1x1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .shortcuts import make_shortcut, match
from .site import CONV, POOL, SHORTCUT, STEM, DownsampleSite

STEMS = ("original", "deep", "s1pool", "s2d")


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, shortcut: str) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1: nn.Module = (
            DownsampleSite(CONV, cin, width, stride, "conv(k=3,bias=false)")
            if stride > 1
            else nn.Conv2d(cin, width, 3, 1, 1, bias=False)
        )
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(shortcut, cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(out + match(idt, out))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, shortcut: str) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2: nn.Module = (
            DownsampleSite(CONV, width, width, stride, "conv(k=3,bias=false)")
            if stride > 1
            else nn.Conv2d(width, width, 3, 1, 1, bias=False)
        )
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = _shortcut(shortcut, cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(out + match(idt, out))


def _shortcut(option: str, cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return DownsampleSite(SHORTCUT, cin, cout, stride, make_shortcut(option, cin, cout, stride), label=option)


class ImageNetResNet(nn.Module):
    def __init__(
        self,
        depth: int = 50,
        stem: str = "original",
        shortcut: str = "B",
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        cfg: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
            18: (BasicBlock, (2, 2, 2, 2)),
            34: (BasicBlock, (3, 4, 6, 3)),
            50: (Bottleneck, (3, 4, 6, 3)),
            101: (Bottleneck, (3, 4, 23, 3)),
        }
        if depth not in cfg:
            raise ModelError(f"ImageNet ResNet depth must be one of {sorted(cfg)}, got {depth}")
        if stem not in STEMS:
            raise ModelError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        if shortcut not in ("A", "B", "D", "fish", "fish-id"):
            raise ModelError(f"unknown shortcut {shortcut!r}; valid: A, B, D, fish, fish-id")
        block, layers = cfg[depth]
        self.depth, self.stem_type, self.shortcut = depth, stem, shortcut
        # torchvision names (conv1, bn1, maxpool, layerN, fc) so its state dicts map 1:1 (load_torchvision)
        self.maxpool: nn.Module = DownsampleSite(POOL, 64, 64, 2, "max(k=3)")
        self.stem_extra: nn.Module = nn.Identity()
        c1 = 64
        if stem == "original":
            self.conv1: nn.Module = DownsampleSite(STEM, in_channels, 64, 2, "conv(k=7,bias=false)", adapter_k=7)
        elif stem == "deep":
            c1 = 32
            self.conv1 = DownsampleSite(STEM, in_channels, 32, 2, "conv(k=3,bias=false)")
            self.stem_extra = nn.Sequential(
                nn.Conv2d(32, 32, 3, 1, 1, bias=False), *_bn_relu(32),
                nn.Conv2d(32, 64, 3, 1, 1, bias=False), *_bn_relu(64),
            )  # fmt: skip
        elif stem == "s1pool":
            spec = "convpool(k=7,pool=max,pk=2,bias=false)"
            self.conv1 = DownsampleSite(STEM, in_channels, 64, 2, spec, adapter_k=7)
        else:  # s2d
            s2d = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(in_channels * 16, 64, 3, 1, 1, bias=False))
            self.conv1 = DownsampleSite(STEM, in_channels, 64, 4, s2d, label="s2d(4)+conv3x3")
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        stages, c = [], 64
        for i, (w, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(c, w, 2 if (i > 0 and j == 0) else 1, shortcut))
                c = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem_extra(self.relu(self.bn1(self.conv1(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_torchvision(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Load a torchvision ResNet state dict into a built-in ResNet whose sites hold the default operators.

    Site wrappers add ``.op`` (and ``.op.conv`` for strided convs) to torchvision's key names; this maps them.
    Raises KeyError naming the first missing or unexpected key.
    """
    ours = model.state_dict()
    norm = {k.replace(".op.conv.", ".").replace(".op.", "."): k for k in ours}
    mapped = {}
    for k, v in state_dict.items():
        if k not in norm:
            raise KeyError(f"torchvision key {k!r} has no counterpart in this model")
        mapped[norm[k]] = v
    missing = [k for k in ours if k not in mapped]
    if missing:
        raise KeyError(f"model key {missing[0]!r} is not in the torchvision state dict")
    model.load_state_dict(mapped)
    return model
