"""DiffStride: learnable strides through a smooth Fourier-domain crop (Riad et al. 2022)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..spec import OpSpec, Param
from .registry import Downsample, Geometry, register
from .spectral import apply_separable, fourier_basis


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

    Per axis of length ``n``: the output has ``m = max(2, floor(n/S))`` samples (the integer crop size,
    computed from ``S`` with a stop-gradient); the kept frequencies ``|f| <= m/2`` are multiplied by
    the ramp ``mask(|f|) = clip((n/(2S) - |f|) / R, 0, 1)``, 1 at low frequencies and falling linearly
    to 0 over ``R`` bins at ``n/(2S) >= m/2``, i.e. at the crop border. Since the ramp moves with ``S``,
    ``d out / d S`` is non-zero and ``S`` is trained by gradient descent together with the network.
    The Fourier resampling itself is that of ``spectral`` (DC-preserving, same real matrices), with
    the separable mask ``mask_h(f_h) * mask_w(f_w)``.

    Differences from the official code (google-research/diffstride, ``LearnableSpectralPooling``):

    * **Drop-in size.** The official mask is ``clip((R + T - |f|)/R, 0, 1)`` with ``T = n/(2S)``: the
      ramp lies *outside* ``T`` and the crop keeps every bin where the mask is non-zero, so its output
      is about ``n/S + 2R`` (e.g. 24 instead of 16 for n=32, S=2, R=4). Here the ramp ends at the crop
      border so the output is ``floor(n/S)``, the size a stride-``S`` layer would give.
    * **DC is preserved.** The ramp width is capped at ``n/(2S)`` (``R_eff = min(R, n/(2S))``), so on
      small maps the mean is never attenuated, and the resampling is normalised so that a constant map
      keeps its value (the official irfft2d rescales by the size ratio).
    * **Stride limits.** ``S`` is kept in ``[1, n/2]`` in the forward pass with a straight-through clamp
      (value clamped, gradient passed), so a stride pushed out of range by an update can come back;
      the official code assigns ``max(S, n/(n-R))`` to the variable before each call and clips it with a
      Keras constraint after each update. Exclude the stride from weight decay (it pulls S toward 1).

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
        a, b, absf = fourier_basis(n, m, like)
        half = n / (2 * s.to(like.dtype))  # T = n / (2S), where the ramp reaches 0
        ramp = torch.minimum(half, torch.full_like(half, self.smoothness))
        mask = ((half - absf) / ramp).clamp(0.0, 1.0)
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
