"""DiffStride: learnable strides through a smooth Fourier-domain crop (Riad et al. 2022)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from ..spec import OpSpec, Param
from .registry import Downsample, Geometry, register
from .spectral import apply_separable, basis_constants


@functools.lru_cache(maxsize=256)
def _full_basis_np(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, |f|) over the *whole* spectrum of an ``n``-sample axis (``|f| <= n/2``), evaluated on the
    ``m`` output points ``t * n/m``: ``A = [cos(2 pi f t/m), sin(2 pi f t/m)]`` (m x 2F) and
    ``B = c_f [cos(2 pi f j/n), sin(2 pi f j/n)] / n`` (n x 2F), ``c_f = 1/2`` for the input's Nyquist
    pair ``+-n/2`` (even ``n``), else 1. For per-frequency weights ``w``, ``M = (A * [w, w]) @ B.T`` is
    ``M[t, j] = 1/n sum_f c_f w_f cos(2 pi f (t/m - j/n))``: the band-limited interpolant of the
    filtered signal, sampled at ``t * n/m``. With ``w = 1`` on ``|f| <= m/2`` and 0 above it is exactly
    ``spectral``'s matrix; with ``w = 1`` everywhere and ``m = n``, the identity."""
    f = np.arange(-(n // 2), n // 2 + 1, dtype=np.float64)
    c = np.ones_like(f)
    if n % 2 == 0:
        c[0] = c[-1] = 0.5
    at = 2 * math.pi * np.outer(np.arange(m), f) / m
    bj = 2 * math.pi * np.outer(np.arange(n), f) / n
    a = np.concatenate([np.cos(at), np.sin(at)], axis=1)
    b = np.concatenate([np.cos(bj) * c, np.sin(bj) * c], axis=1) / n
    return a, b, np.abs(f)


def _full_basis(n: int, m: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return basis_constants("diffstride", n, m, _full_basis_np(n, m), like)


@register(
    "diffstride",
    params=[
        Param("init", float, 2.0, "initial stride (the stride is then learned)", min=1.0, max=8.0),
        Param("r", float, 4.0, "smoothness R: width of the mask's ramp, in frequency bins", min=0.5, max=64.0),
        Param("shared", bool, True, "one stride for both axes (false: one per axis)"),
    ],
    summary="DiffStride: learnable (fractional) stride via a smoothly masked Fourier crop",
    source="Riad, Teboul, Grangier & Zeghidour 2022, 'Learning Strides in Convolutional Neural Networks' "
    "(ICLR, arXiv:2202.01653)",
    learnable=True,
    params_formula="1 (shared=true) or 2 (one stride per axis)",
    shape_rule="max(2, floor(n/S)) with S the current learned stride (n itself for n < 2)",
    onnx=True,
    onnx_note="TorchScript exporter (dynamo=False): the crop size is read from the current stride at export "
    "time and frozen into the graph; torch.export (dynamo=True) rejects it (shape depends on a parameter value)",
)
class DiffStride(Downsample):
    """DiffStride (Riad, Teboul, Grangier & Zeghidour 2022, ICLR, arXiv:2202.01653): spectral pooling
    whose crop size is set by a learnable, fractional stride ``S >= 1``.

    **The mask is the paper's.** Per axis of length ``n``, with ``T = n/(2S)``, every input frequency
    ``f`` is multiplied by ``mask(|f|) = clip((T + R - |f|) / R, 0, 1)`` (``compute_adaptive_span_mask``
    of the official ``LearnableSpectralPooling``): the band ``|f| <= T`` passes unattenuated and the
    ramp lies *outside* it, falling linearly from 1 at ``T`` to 0 at ``T + R``. Since the ramp moves with
    ``S``, ``d out / d S`` is non-zero and ``S`` is trained by gradient descent with the network. The
    2-D mask is separable, ``mask_h(f_h) * mask_w(f_w)``.

    **The output keeps the drop-in size.** The official layer keeps every bin where the mask is
    non-zero, so its output is about ``n/S + 2R`` samples (24 instead of 16 for n=32, S=2, R=4), which
    would not fit a stride-``S`` site (residual shortcuts, the next layers). Here the output has
    ``m = max(2, floor(n/S))`` samples (computed from ``S`` with a stop-gradient): the masked,
    band-limited signal is sampled at the ``m`` points ``t * n/m``. Every frequency of the output's
    band ``|f| <= m/2`` (``m/2 <= T``) therefore passes with gain exactly 1, as in ``spectral`` (at
    S=2 the two agree on every such frequency, the ``+-m/2`` pair folded alike), and the ramp's
    frequencies ``m/2 < |f| < T + R``, which an ``m``-sample grid cannot hold, land on their aliases
    ``f - m`` with the ramp's weight (0.75 / 0.5 / 0.25 for f = 9 / 10 / 11 at n=32, S=2, R=4). This
    folded ramp is the price of the drop-in size: without it the output would not depend on ``S``
    between integer crop sizes (no gradient), and putting the ramp inside the band (an earlier
    version) low-passed the band itself. Use a small ``r`` for less aliasing (and a steeper ramp).

    **The mean is kept exactly.** Frequency ``m`` is the first that would alias onto DC, so the ramp is
    shortened to end there on small maps: ``R_eff = min(R, m - T)`` (this bites only when ``n/S`` is
    below about ``2R``). A constant map keeps its value and every output's mean is the input's. On a
    4x4 map at S=2 (``m = 2``) no bin is left on the ramp: the output is ``spectral``'s (for
    ``arange(1..16)``: ``[[3.5, 5.5], [11.5, 13.5]]``), and ``d out / d S`` is 0 there (2x2 outputs only).

    Other differences from the official code (google-research/diffstride):

    * The resampling is that of ``spectral``: real matrices, normalised so that a constant map keeps its
      value (the official irfft2d rescales by the size ratio).
    * **Stride limits.** ``S`` is kept in ``[1, n/2]`` in the forward pass with a straight-through clamp
      (value clamped, gradient passed), so a stride pushed out of range by an update can come back;
      the official code assigns ``max(S, n/(n-R))`` to the variable before each call and clips it with a
      Keras constraint after each update. Exclude the stride from weight decay (it pulls S toward 1).
      At ``S = 1`` the operator is the identity.

    The stride is the parameter ``strides`` (shape (1,) if ``shared`` else (2,) for (H, W)), initialised
    to ``init``. The integer ``stride`` given to :func:`~poolstride.ops.build` (the site's stride) is
    recorded in ``self.stride`` but **ignored**: ``init`` always sets the starting stride, so a spec means
    the same thing at every site; write ``diffstride(init=4)`` for a stride-4 site. The output size is
    data-independent but parameter-dependent: every forward reads ``S`` on the host (one device sync),
    and ``out_size``/``geometry`` report the *current* stride. ``out_size`` uses the height stride when
    strides are not shared; ``out_shape`` is per axis. Maps smaller than 2 pass through unchanged.
    """

    def __init__(self, spec: OpSpec, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__(spec, in_channels, out_channels, stride)
        self.shared = bool(spec["shared"])
        self.smoothness = float(spec["r"])
        init = float(spec["init"])
        self.strides = nn.Parameter(torch.full((1 if self.shared else 2,), init))

    # -- the current stride ----------------------------------------------------------------------
    def current_strides(self) -> tuple[float, float]:
        """The current (height, width) strides as Python floats, clamped to >= 1."""
        s = [max(1.0, float(v)) for v in self.strides.detach().cpu().tolist()]
        return (s[0], s[0]) if self.shared else (s[0], s[1])

    @staticmethod
    def _size(n: int, s: float) -> int:
        if n < 2:
            return n
        return min(n, max(2, math.floor(n / s)))

    def out_size(self, n: int) -> int:
        return self._size(n, self.current_strides()[0])

    def out_shape(self, h: int, w: int) -> tuple[int, int]:
        sh, sw = self.current_strides()
        return self._size(h, sh), self._size(w, sw)

    def geometry(self) -> list[Geometry]:
        return [Geometry(None, self.current_strides()[0], 0)]

    # -- forward -------------------------------------------------------------------------------
    def _axis_matrix(self, s: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
        """The masked ``m x n`` resampling matrix of one axis, differentiable w.r.t. the stride ``s``."""
        s_max = max(1.0, n / 2)
        # straight-through clamp to [1, n/2]: clamped value, identity gradient
        s = s + (s.detach().clamp(1.0, s_max) - s.detach())
        m = self._size(n, float(s.detach()))
        a, b, absf = _full_basis(n, m, like)
        half = n / (2 * s.to(like.dtype))  # T = n / (2S): the mask is 1 up to T, then the ramp
        ramp = torch.minimum(torch.full_like(half, self.smoothness), m - half)  # R_eff: ends by f = m
        mask = ((half + ramp - absf) / ramp).clamp(0.0, 1.0)
        return (a * torch.cat([mask, mask])) @ b.transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        sh = self.strides[0]
        sw = sh if self.shared else self.strides[1]
        if h < 2 and w < 2:
            return x
        mh = self._axis_matrix(sh, h, x) if h >= 2 else x.new_ones(1, 1)
        mw = self._axis_matrix(sw, w, x) if w >= 2 else x.new_ones(1, 1)
        return apply_separable(x, mh, mw)

    def other_ops(self, c: int, h: int, w: int) -> int:
        oh, ow = self.out_shape(h, w)
        return c * (oh * h * w + oh * w * ow)

    def extra_repr(self) -> str:
        sh, sw = self.current_strides()
        cur = f"{sh:.3f}" if self.shared else f"({sh:.3f}, {sw:.3f})"
        return f"{super().extra_repr()}, current_stride={cur}"
