"""Shift-invariant subsampling by polyphase selection: APS (Chaman & Dokmanić 2021) and its learnable form LPS
(Rojas-Gomez et al. 2022).

Stride-``s`` subsampling keeps one of the ``s^2`` *polyphase components* of a map, ``x[..., i::s, j::s]``, always
the same one (``i = j = 0``). A circular shift of the input by one pixel makes it keep another component, so the
output changes. Both operators here choose the component from the data instead, per sample and over all channels:

* ``aps`` keeps the component of largest norm (l2 by default). A circular shift of the input permutes the
  components (and shifts them circularly by at most one output pixel), so the same one wins: the output is the
  same up to a circular shift of whole output pixels, and a network with circular padding and a global pool at
  the end gives *exactly* the same logits for every circularly shifted input (ties between two components of
  equal norm aside).
* ``lps`` scores every component with a small learned network shared by all components and invariant to
  circular shifts (a 1x1 conv, ReLU, a 1x1 conv to one channel, global mean: one logit per component), so the
  choice is again the same for every shifted input; in training the components are mixed with Gumbel-softmax
  weights, in evaluation the arg-max is kept.

Like ``blur``, each can follow a stride-1 pool (``base=max``: MaxPool(k, s=1), the default, replacing a max pool;
``base=avg``: AvgPool(k, s=1), replacing an average pool; ``base=none``: the selection alone, replacing plain
subsampling or following a stride-1 conv of the model), and an optional binomial low-pass (``size``; APS's
"APS + LPF"). The stride-1 pool and the low-pass are **circularly padded** (the map keeps its size ``n``) so that
they commute with circular shifts, as in the APS code; ``base=avg`` is an average pool, not "the blur alone" as
in ``blur(base=avg)``.

Shapes follow the floor rule of ``max(k=2)``: ``floor(n/s)`` per axis. An axis whose length is not a multiple of
``s`` loses its last ``n mod s`` rows (columns) before the selection, so that all ``s^2`` components have the same
size; exact invariance then holds only for circular shifts of maps whose sides are multiples of ``s``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Param
from .blur import binomial_filter
from .registry import Downsample, Geometry, register

BASE = Param(
    "base",
    str,
    "max",
    "what comes before the selection: a stride-1 circular max or average pool, or nothing",
    choices=("max", "avg", "none"),
)
K = Param("k", int, 2, "window of the stride-1 pool (base=max/avg; ignored for base=none)", min=1, max=7)
SIZE = Param("size", int, 1, "binomial low-pass taps before the selection (1 = none; 3 = APS's LPF)", min=1, max=7)
_RULE = (
    "floor(n/s): the stride-1 pool and the low-pass are circularly padded (n kept), then one of the s^2 polyphase "
    "components of the first s*floor(n/s) rows and columns is kept"
)


def circular_pad(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Pad the last two axes of ``x`` circularly: ``lo`` wrapped pixels before, ``hi`` after (each <= the size).

    Written with slices and ``cat`` (ONNX ``Slice``/``Concat``), not ``F.pad(mode="circular")``.
    """
    for dim in (-2, -1):
        n = int(x.shape[dim])
        parts = []
        if lo:
            parts.append(x.narrow(dim, n - lo, lo))
        parts.append(x)
        if hi:
            parts.append(x.narrow(dim, 0, hi))
        if len(parts) > 1:
            x = torch.cat(parts, dim)
    return x


def polyphase_components(x: torch.Tensor, s: int) -> torch.Tensor:
    """The ``s^2`` polyphase components of an (N, C, H, W) map as (N, s^2, C, H//s, W//s).

    Component ``i*s + j`` is ``x[..., i::s, j::s]`` (of the first ``s*(H//s)`` rows and ``s*(W//s)`` columns).
    """
    c, h, w = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    mh, mw = h // s, w // s
    x = x[..., : mh * s, : mw * s]
    x = x.reshape(-1, c, mh, s, mw, s).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(-1, s * s, c, mh, mw)


def component_norms(comps: torch.Tensor, norm: str) -> torch.Tensor:
    """(N, s^2) norms of each component over all its channels and pixels (l1, l2 or linf; l2 is squared)."""
    if norm == "l1":
        return comps.abs().sum((2, 3, 4))
    if norm == "linf":
        return comps.abs().amax((2, 3, 4))
    return comps.square().sum((2, 3, 4))  # the squared l2 norm: same arg-max, no square root


def select(comps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_p weights[:, p] * comps[:, p]``: (N, s^2, C, h, w) and (N, s^2) -> (N, C, h, w)."""
    return (comps * weights[:, :, None, None, None].to(comps.dtype)).sum(1)


def one_hot_argmax(scores: torch.Tensor) -> torch.Tensor:
    """(N, P) -> (N, P) one-hot of the first arg-max of each row (exports as ArgMax + Equal)."""
    idx = scores.argmax(1, keepdim=True)
    ar = torch.arange(int(scores.shape[1]), device=scores.device)
    return (ar[None, :] == idx).to(scores.dtype)


class _Polyphase(Downsample):
    """Shared by ``aps`` and ``lps``: the circular stride-1 pool, the optional low-pass, the components."""

    #: the operator commutes with circular shifts of the input (see :mod:`poolstride.analysis.alias`)
    circular = True
    filt: torch.Tensor | None

    def __init__(self, spec, in_channels, out_channels, stride=2):
        super().__init__(spec, in_channels, out_channels, stride)
        self.base = str(spec["base"])
        self.k = int(spec["k"])
        self.size = int(spec["size"])
        if self.size > 1:
            filt = binomial_filter(self.size)[None, None].repeat(in_channels, 1, 1, 1)
            self.register_buffer("filt", filt, persistent=False)
        else:
            self.filt = None

    def prefilter(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-1 pool (base) and the low-pass, circularly padded: the map keeps its size."""
        if self.base != "none" and self.k > 1:
            xp = circular_pad(x, (self.k - 1) // 2, self.k // 2)
            x = F.max_pool2d(xp, self.k, 1) if self.base == "max" else F.avg_pool2d(xp, self.k, 1)
        if self.filt is not None:
            xp = circular_pad(x, (self.size - 1) // 2, self.size // 2)
            x = F.conv2d(xp, self.filt.to(x.dtype), groups=int(x.shape[1]))
        return x

    def out_size(self, n: int) -> int:
        return n // self.stride

    def geometry(self) -> list[Geometry]:
        geo = []
        if self.base != "none":
            geo.append(Geometry(self.k, 1, (self.k - 1) // 2))
        if self.size > 1:
            geo.append(Geometry(self.size, 1, (self.size - 1) // 2))
        # the kept phase is data-dependent: an output pixel comes from one of the s pixels of its block
        geo.append(Geometry(self.stride, self.stride, 0))
        return geo

    def min_input(self) -> int:
        pads = [self.size // 2]
        if self.base != "none":
            pads.append(self.k // 2)
        return max(self.stride, *pads)

    def _pre_ops(self, c: int, h: int, w: int) -> int:
        ops = 0
        if self.base == "max":
            ops += c * h * w * (self.k * self.k - 1)
        elif self.base == "avg":
            ops += c * h * w * self.k * self.k
        if self.size > 1:
            ops += c * h * w * self.size * self.size
        return ops

    def _select_ops(self, c: int, h: int, w: int) -> int:
        # the weighted sum of the s^2 components (one multiply-add each per output element)
        return c * self.out_size(h) * self.out_size(w) * self.stride * self.stride


@register(
    "aps",
    params=[
        BASE,
        K,
        SIZE,
        Param("norm", str, "l2", "the norm that picks the component", choices=("l2", "l1", "linf")),
    ],
    summary="adaptive polyphase sampling: keep the polyphase component of largest norm (circular-shift invariant)",
    source="Chaman & Dokmanić 2021, 'Truly shift-invariant convolutional neural networks' (CVPR, arXiv:2011.14214)",
    learnable=False,
    shape_rule=_RULE,
    onnx=True,
    onnx_note="the selection exports as ReduceSum + ArgMax + Equal and a weighted sum of the components",
)
class APS(_Polyphase):
    """Adaptive polyphase sampling (Chaman & Dokmanić 2021, CVPR, arXiv:2011.14214, Sec. 3).

    After the optional circular stride-1 pool and low-pass, the map (N, C, H, W) is split into its ``s^2``
    polyphase components ``x[..., i::s, j::s]``; per sample, the component with the largest norm over all its
    channels and pixels (``norm``: l2 by default, as in the paper; l1, linf) is the output. Ties go to the first
    component in the order ``i*s + j``. No parameters; the gradient flows to the kept component only.

    Avoid ``base=avg`` with ``norm=l1`` on non-negative (post-ReLU) maps: the circular k x k averages at the
    positions of one component tile the map (for k = s), so every component has the same l1 norm and rounding
    decides; the l2 norm does not tie.

    Cost (other ops per sample): the stride-1 pool and the low-pass as for ``blur``, 2 per element of the map for
    the norms, and ``s^2`` per output element for the selection (implemented as a one-hot weighted sum).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        comps = polyphase_components(self.prefilter(x), self.stride)
        return select(comps, one_hot_argmax(component_norms(comps, str(self.spec["norm"]))))

    def other_ops(self, c: int, h: int, w: int) -> int:
        s = self.stride
        return self._pre_ops(c, h, w) + 2 * c * (h // s * s) * (w // s * s) + self._select_ops(c, h, w)


@register(
    "lps",
    params=[
        BASE,
        K,
        SIZE,
        Param("hidden", int, 8, "channels of the scoring network's hidden 1x1 conv", min=1, max=1024),
        Param("tau", float, 1.0, "Gumbel-softmax temperature in training", min=0.01, max=100.0),
        Param("hard", bool, False, "straight-through Gumbel-softmax in training (a one-hot forward)"),
    ],
    summary="learnable polyphase sampling: a learned score picks the polyphase component (Gumbel-softmax in "
    "training, arg-max in evaluation; circular-shift invariant)",
    source="Rojas-Gomez, Lim, Schwing, Do & Yeh 2022, 'Learnable Polyphase Sampling for Shift Invariant and "
    "Equivariant Convolutional Networks' (NeurIPS, arXiv:2210.08001)",
    learnable=True,
    params_formula="h*Cin + 2h + 1 (scorer: 1x1 conv Cin->h with bias, ReLU, 1x1 conv h->1 with bias; h = hidden)",
    shape_rule=_RULE,
    onnx=True,
    onnx_note="exports the evaluation rule (arg-max of the scores); training-mode Gumbel-softmax is not exported",
)
class LPS(_Polyphase):
    """Learnable polyphase sampling (Rojas-Gomez et al. 2022, NeurIPS, arXiv:2210.08001, Sec. 3).

    The components (as for ``aps``) are scored by one small network shared by all of them: ``1x1 conv (Cin ->
    hidden) -> ReLU -> 1x1 conv (hidden -> 1) -> mean over the pixels``, one logit per component per sample.
    It sees all channels, and it is invariant to circular shifts of a component and equivariant to their
    order, so the choice is the same for every circularly shifted input. (The paper's scorer uses small conv
    layers; 1x1 convs keep it cheap and exactly shift invariant for any padding.)

    * training (``module.train()``): the output is ``sum_p w_p x_p`` with ``w = gumbel_softmax(logits, tau)``
      (``hard=true``: the straight-through one-hot form), so the scorer is trained by backpropagation; the
      noise comes from torch's global RNG. The temperature is fixed (no annealing schedule).
    * evaluation (``module.eval()``): the component of largest logit (ties: the first).

    The scorer's 1x1 convs are ``nn.Conv2d`` modules (their MACs are counted as MACs); other ops per sample
    add the ReLU and the mean over the score maps and the selection.
    """

    def __init__(self, spec, in_channels, out_channels, stride=2):
        super().__init__(spec, in_channels, out_channels, stride)
        h = int(spec["hidden"])
        self.scorer = nn.Sequential(nn.Conv2d(in_channels, h, 1), nn.ReLU(), nn.Conv2d(h, 1, 1))
        self.tau = float(spec["tau"])
        self.hard = bool(spec["hard"])

    def logits(self, comps: torch.Tensor) -> torch.Tensor:
        """(N, s^2, C, h, w) components -> (N, s^2) logits."""
        p, c, mh, mw = (int(v) for v in comps.shape[1:])
        score = self.scorer(comps.reshape(-1, c, mh, mw))  # (N * s^2, 1, h, w)
        return score.mean((1, 2, 3)).reshape(-1, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        comps = polyphase_components(self.prefilter(x), self.stride)
        logits = self.logits(comps)
        w = F.gumbel_softmax(logits, tau=self.tau, hard=self.hard, dim=1) if self.training else one_hot_argmax(logits)
        return select(comps, w)

    def other_ops(self, c: int, h: int, w: int) -> int:
        s = self.stride
        area = (h // s * s) * (w // s * s)  # the pixels of all components together
        hidden = int(self.spec["hidden"])
        return self._pre_ops(c, h, w) + hidden * area + area + self._select_ops(c, h, w)
