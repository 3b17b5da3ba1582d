"""All-CNN families A, B, C and their variants (Springenberg et al. 2015, arXiv:1412.6806, Tables 1-2).

Conventions (the paper leaves them open; see papers.md section 1):

* stages use 'same' padding (32 -> 16 -> 8); the 3x3/2 max-pools use padding 1; the head's first 3x3 conv
  is **unpadded** (8 -> 6), so the global average runs over 6x6 as the paper states;
* every conv is followed by ReLU, including the final 1x1 class conv (as in the paper); no batch norm;
* dropout (switchable): 20% on the input, 50% after each downsampling site;
* ``bn=True`` (not in the paper) adds batch norm after every conv and site except the class conv, and
  ``final_relu=False`` drops the paper's ReLU on the class scores. The paper's nets (no BN) need its long
  schedule: on a short CPU budget they sit at chance for the first epochs, so the quick reproduction uses
  ``bn=True, dropout=False`` for every variant alike (a fair comparison, stated in its report; dropout in
  front of BN shifts the variance BN sees between train and eval, Li et al. 2019);
* parameter counts include biases: Model C = 954,730, All-CNN-C = 1,369,738 (10 classes).

Variants: ``base`` (3x3/2 max-pool sites), ``strided`` (pool removed, the conv before it strided),
``convpool`` (an extra dense 3x3 conv before each pool) and ``all-cnn`` (each pool replaced by a 3x3/2
conv). ``downsample=`` swaps the operator at every site of the chosen variant.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from ..spec import OpSpec
from .site import CONV, POOL, DownsampleSite

VARIANTS = ("base", "strided", "convpool", "all-cnn")
# per family: the convs of one stage, as (kernel, is_extra_1x1) -> list of kernel sizes
_STAGE_KERNELS = {"a": [5], "b": [5, 1], "c": [3, 3]}
_SITE_SPEC = {"base": "max(k=3)", "convpool": "convpool(k=3,pool=max,pk=3)", "all-cnn": "conv(k=3)"}


class AllCNN(nn.Module):
    def __init__(
        self,
        family: str = "c",
        variant: str = "base",
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: bool = True,
        widths: tuple[int, int] = (96, 192),
        bn: bool = False,
        final_relu: bool = True,
    ) -> None:
        super().__init__()
        family = family.lower()
        if family not in _STAGE_KERNELS:
            raise ModelError(f"unknown All-CNN family {family!r}; valid: a, b, c")
        if variant not in VARIANTS:
            raise ModelError(f"unknown All-CNN variant {variant!r}; valid: {', '.join(VARIANTS)}")
        self.family, self.variant = family, variant

        def act(c: int) -> list[nn.Module]:  # what follows every conv (and every site)
            return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)] if bn else [nn.ReLU(inplace=True)]

        layers: list[nn.Module] = [nn.Dropout(0.2 if dropout else 0.0)]
        c_in = in_channels
        for width in widths:
            kernels = list(_STAGE_KERNELS[family])
            if variant == "strided":
                last = kernels.pop()
            for k in kernels:
                layers += [nn.Conv2d(c_in, width, k, 1, (k - 1) // 2), *act(width)]
                c_in = width
            if variant == "strided":
                site = DownsampleSite(CONV, c_in, width, 2, f"conv(k={last})", adapter_k=last)
            else:
                site = DownsampleSite(POOL, c_in, width, 2, _SITE_SPEC[variant])
            layers += [site, *act(width), nn.Dropout(0.5 if dropout else 0.0)]
            c_in = width
        w = widths[-1]
        layers += [
            nn.Conv2d(c_in, w, 3, 1, 0), *act(w),  # unpadded: 8x8 -> 6x6
            nn.Conv2d(w, w, 1), *act(w),
            nn.Conv2d(w, num_classes, 1), nn.ReLU(inplace=True) if final_relu else nn.Identity(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ]  # fmt: skip
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def allcnn(family: str, variant: str = "base", downsample: str | OpSpec | None = None, **kw) -> AllCNN:
    return AllCNN(family, variant, **kw)
