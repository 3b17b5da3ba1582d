"""Mixed max/average pooling (Yu et al. 2014)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Param
from .pool import _RULE, K, _Pool
from .registry import register


@register(
    "mixed",
    params=[
        Param("alpha", float, 0.5, "weight of max (1 = max pool, 0 = avg pool)", min=0.0, max=1.0),
        Param("learnable", bool, False, "learn alpha (one scalar, through a sigmoid)"),
        K,
    ],
    summary="alpha*max + (1-alpha)*avg, alpha fixed or learnable",
    source="Yu, Wang, Chen & Wei 2014, 'Mixed pooling for CNNs' (RSKT, LNCS 8818); Lee et al. 2016",
    learnable=True,
    params_formula="0 (fixed alpha); 1 (learnable alpha)",
    shape_rule=_RULE,
)
class MixedPool(_Pool):
    """Mixed pooling ``alpha * max + (1 - alpha) * avg``.

    Yu et al. (2014) draw alpha in {0, 1} at random during training; this deterministic mix (the
    'mixed max-average pooling' of Lee, Gallagher & Tu 2016) is the common reproducible form. With
    ``learnable=true`` alpha is ``sigmoid(a)``, one trained scalar initialised at the given alpha.
    """

    def __init__(self, spec, in_channels, out_channels, stride=2):
        super().__init__(spec, in_channels, out_channels, stride)
        a = min(max(float(spec["alpha"]), 1e-4), 1 - 1e-4)
        logit = torch.tensor(math.log(a / (1 - a)))
        if spec["learnable"]:
            self.logit = nn.Parameter(logit)
        else:
            self.register_buffer("logit", logit, persistent=False)
            self.fixed = float(spec["alpha"])

    @property
    def alpha(self) -> torch.Tensor:
        if not self.spec["learnable"]:
            return torch.tensor(self.fixed)
        return torch.sigmoid(self.logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mx = F.max_pool2d(x, self.k, self.stride, self.pad)
        av = F.avg_pool2d(x, self.k, self.stride, self.pad, count_include_pad=False)
        a = torch.sigmoid(self.logit) if self.spec["learnable"] else self.fixed
        return a * mx + (1 - a) * av

    def other_ops(self, c: int, h: int, w: int) -> int:
        # max (k^2-1) + avg (k^2) + mix (3) per output element
        return c * self.out_size(h) * self.out_size(w) * (2 * self.k * self.k + 2)
