"""Mixed max-average pooling: the learned mix of Lee, Gallagher & Tu 2016."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Param
from .pool import _RULE, K
from .registry import Window, register


@register(
    "mixed",
    params=[
        Param("alpha", float, 0.5, "weight of max (1 = max pool, 0 = avg pool)", min=0.0, max=1.0),
        Param("learnable", bool, False, "learn alpha (one scalar, through a sigmoid)"),
        K,
    ],
    summary="mixed max-average pooling (Lee et al. 2016): alpha*max + (1-alpha)*avg, alpha fixed or learned",
    source="Lee, Gallagher & Tu 2016, 'Generalizing Pooling Functions in Convolutional Neural Networks: "
    "Mixed, Gated, and Tree' (AISTATS, arXiv:1509.08985)",
    learnable=True,
    params_formula="0 (fixed alpha); 1 (learnable alpha)",
    shape_rule=_RULE,
)
class MixedPool(Window):
    """Mixed max-average pooling (Lee, Gallagher & Tu 2016, AISTATS, arXiv:1509.08985):
    ``alpha * max + (1 - alpha) * avg`` over each k x k window.

    With ``learnable=true`` alpha is the paper's learned mixing proportion, one scalar per layer (finer
    grained proportions, and the paper's gated and tree pooling, are not implemented), kept in [0, 1]
    as ``sigmoid(a)`` with ``a`` initialised at ``logit(alpha)``. With ``learnable=false`` alpha is a
    fixed constant. The same mix is applied in training and evaluation. The stochastic "mixed pooling"
    of Yu, Wang, Chen & Wei 2014 (max or average chosen at random per region during training) is a
    different operator and is not implemented. Window placement and output size are those of
    ``max(k)``; the average excludes padding.
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
