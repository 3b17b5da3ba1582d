"""Anti-aliased downsampling: BlurPool (Zhang 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SiteError
from ..spec import OpSpec, Param
from .registry import Downsample, Geometry, conv_out, register

#: the kernel ``k=0`` stands for: MaxBlurPool's 2x2 max pool (Zhang 2019), the 3x3 of the strided conv replaced
DEFAULT_K = {"max": 2, "conv": 3, "avg": 1}


def binomial_filter(size: int) -> torch.Tensor:
    """The normalised 2-D binomial filter of ``size`` taps: outer product of row ``C(size-1, i)``.

    size 1 = [1] (plain subsampling), 2 = [1,1] (Rect-2), 3 = [1,2,1] (Tri-3), 5 = [1,4,6,4,1] (Bin-5).
    """
    row = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=torch.float64)
    f2 = torch.outer(row, row)
    return (f2 / f2.sum()).float()


def blur_downsample(x: torch.Tensor, filt: torch.Tensor, stride: int) -> torch.Tensor:
    """Pad (reflect, replicate when the map is smaller than the pad), blur depthwise, subsample."""
    k = filt.shape[-1]
    if k == 1:
        return x[..., ::stride, ::stride]
    lo, hi = (k - 1) // 2, k // 2  # floor((k-1)/2) before, ceil((k-1)/2) after
    h, w = x.shape[-2:]
    # reflect needs pad < size (antialiased-cnns #47 crashed on CIFAR's 2x2 maps): fall back to replicate
    mode = "reflect" if max(lo, hi) < min(h, w) else "replicate"
    x = F.pad(x, (lo, hi, lo, hi), mode=mode)
    autocast = torch.is_autocast_enabled("cpu")
    if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16, torch.float32 if autocast else None):
        # oneDNN's bf16 depthwise conv is 5-10x slower than fp32 on CPU (measured, forward + backward); the blur
        # is cheap and linear, so run it in fp32 and hand back the dtype a conv would (autocast's, else the input's)
        out = torch.get_autocast_dtype("cpu") if autocast else x.dtype
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x.float(), filt.float(), stride=stride, groups=x.shape[1]).to(out)
    return F.conv2d(x, filt.to(x.dtype), stride=stride, groups=x.shape[1])


@register(
    "blur",
    params=[
        Param("base", str, "max", "what comes before the blur", choices=("max", "avg", "conv")),
        Param("size", int, 4, "binomial filter taps (1 = no blur)", min=1, max=7),
        Param(
            "k",
            int,
            0,
            "kernel of the stride-1 max pool (base=max) or conv (base=conv); 0 = the base's own: 2 for max "
            "(MaxBlurPool), 3 for conv (the 3x3 strided conv it replaces)",
            min=0,
            max=7,
        ),
        Param("bias", bool, True, "conv bias (base=conv; set false when a norm layer follows, as in ResNets)"),
    ],
    summary="BlurPool: (max pool s=1 | conv s=1 | nothing) then binomial blur + subsample",
    source="Zhang 2019, 'Making Convolutional Networks Shift-Invariant Again' (ICML, arXiv:1904.11486)",
    learnable=True,  # with base=conv (the blur filter itself is fixed); like mixed: "can have trained params"
    changes_channels=True,
    params_formula="0 (base=max/avg); k^2*Cin*Cout + Cout (base=conv: k=3 by default, no Cout with bias=false)",
    shape_rule="ceil(m/s), m = n (avg), n-k+1 (max: unpadded k x k s=1 pool, k=2), n+2*((k-1)//2)-k+1 (conv, k=3)",
)
class BlurPool(Downsample):
    """BlurPool (Zhang 2019): low-pass with a fixed binomial filter before subsampling.

    * ``base=avg`` - BlurPool alone (replaces an average pool);
    * ``base=max`` - MaxPool(k, s=1) then BlurPool ("MaxBlurPool", replaces a max pool);
    * ``base=conv`` - Conv(k, s=1) then BlurPool ("ConvBlurPool", replaces a strided conv; may change
      channels). Zhang places the ReLU between the conv and the blur; as a site operator the activation
      belongs to the model, so here the blur follows the conv directly.

    ``k`` defaults (``k=0``) to the base's own kernel. An operator is built from its spec, channels and stride
    only, so it cannot see the kernel of the layer it replaces: ``base=max`` takes the 2x2 max pool of
    MaxBlurPool (Zhang 2019), ``base=conv`` the centred 3x3 of the strided convs of ResNet and VGG (a 2x2 conv
    would drop parameters and shift the map by half a pixel against a ResNet shortcut). Write ``k=`` for
    another kernel (``blur(base=conv,k=5)`` for a 5x5 site) and ``bias=false`` when a norm layer follows
    (``blur(base=conv,bias=false)`` has exactly the parameters of ResNet-20's ``conv(k=3,bias=false)`` sites).
    An even ``size`` (the default 4) has no centre tap: the blur itself shifts its output by half an input
    pixel, whatever the base; odd sizes (3, 5) are centred.

    The filter is a fixed buffer of shape (C, 1, size, size), not trained; reflect padding falls back to
    replicate when the map is smaller than the pad.
    """

    filt: torch.Tensor

    @classmethod
    def can_change_channels(cls, spec: OpSpec) -> bool:
        return spec["base"] == "conv"

    def __init__(self, spec, in_channels, out_channels, stride=2):
        super().__init__(spec, in_channels, out_channels, stride)
        self.base = str(spec["base"])
        self.k = int(spec["k"]) or DEFAULT_K[self.base]
        self.size = int(spec["size"])
        self.conv: nn.Conv2d | None = None
        if self.base == "conv":
            self.conv = nn.Conv2d(in_channels, out_channels, self.k, 1, (self.k - 1) // 2, bias=bool(spec["bias"]))
        elif in_channels != out_channels:  # pragma: no cover - build() checks first
            raise SiteError(f"{spec}: base={self.base} keeps channels")
        filt = binomial_filter(self.size)[None, None].repeat(out_channels, 1, 1, 1)
        self.register_buffer("filt", filt, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.base == "max":
            x = F.max_pool2d(x, self.k, 1)
        elif self.conv is not None:
            x = self.conv(x)
        return blur_downsample(x, self.filt, self.stride)

    def _pre(self, n: int) -> int:
        if self.base == "max":
            return n - self.k + 1
        if self.base == "conv":
            return conv_out(n, self.k, 1, (self.k - 1) // 2)
        return n

    def out_size(self, n: int) -> int:
        return conv_out(self._pre(n), 1, self.stride, 0)  # = ceil(m / s)

    def geometry(self) -> list[Geometry]:
        blur = Geometry(self.size, self.stride, (self.size - 1) // 2)
        if self.base == "max":
            return [Geometry(self.k, 1, 0), blur]
        if self.base == "conv":
            return [Geometry(self.k, 1, (self.k - 1) // 2), blur]
        return [blur]

    def other_ops(self, c: int, h: int, w: int) -> int:
        co = self.out_channels
        ops = co * self.out_size(h) * self.out_size(w) * self.size * self.size  # depthwise blur MACs
        if self.base == "max":
            ops += c * self._pre(h) * self._pre(w) * (self.k * self.k - 1)
        return ops

    def min_input(self) -> int:
        if self.base == "max":
            return self.k
        return max(1, self.k - 2 * ((self.k - 1) // 2)) if self.base == "conv" else 1
