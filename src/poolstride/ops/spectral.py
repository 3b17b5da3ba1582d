"""Spectral pooling (Rippel, Snoek & Adams 2015) and the Fourier-resampling matrices it shares with
DiffStride (:mod:`poolstride.ops.diffstride`).

Cropping the spectrum is a *linear* map, and separable: with the kept frequencies chosen symmetric
(see :func:`kept_freqs`) the per-axis operator "DFT -> keep low frequencies -> inverse DFT -> real part"
is a real ``m x n`` matrix ``M``, and the 2-D operator is ``y = M_h @ x @ M_w^T``. Computing it this way
gives exactly the same numbers as an FFT implementation, but it is two small matmuls (fast for the
32..224-pixel maps of CNNs, no complex tensors) and it exports to ONNX as plain ``MatMul`` nodes.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .registry import Downsample, Geometry, register

_CACHE: dict[tuple[object, ...], torch.Tensor] = {}
_CACHE_MAX = 512


def kept_freqs(n: int, m: int) -> np.ndarray:
    """The signed integer frequencies kept when an ``n``-sample axis is resampled to ``m`` samples.

    ``|f| <= m/2``. When ``m`` is even and smaller than ``n`` both ``+m/2`` and ``-m/2`` are kept: in an
    ``m``-sample signal they are one frequency (the output's Nyquist bin), so the two input
    coefficients are *folded* into it, which keeps the operator real and reproduces a band-limited
    cosine at that frequency exactly (the convention of :func:`scipy.signal.resample`). When ``m == n``
    the kept set is the full spectrum and the operator is the identity.
    """
    if not 1 <= m <= n:
        raise ValueError(f"need 1 <= m <= n, got n={n}, m={m}")
    hi = m // 2 if (m < n or m % 2) else m // 2 - 1
    return np.arange(-(m // 2), hi + 1, dtype=np.float64)


@functools.lru_cache(maxsize=256)
def _basis_np(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, |f|) with ``A = [cos(2 pi f t/m), sin(2 pi f t/m)]`` (m x 2F) and
    ``B = [cos(2 pi f j/n), sin(2 pi f j/n)] / n`` (n x 2F), so that for per-frequency weights ``w``
    ``M = (A * [w, w]) @ B.T`` is ``M[t, j] = 1/n sum_f w_f cos(2 pi f (t/m - j/n))``."""
    f = kept_freqs(n, m)
    at = 2 * math.pi * np.outer(np.arange(m), f) / m
    bj = 2 * math.pi * np.outer(np.arange(n), f) / n
    a = np.concatenate([np.cos(at), np.sin(at)], axis=1)
    b = np.concatenate([np.cos(bj), np.sin(bj)], axis=1) / n
    return a, b, np.abs(f)


@functools.lru_cache(maxsize=256)
def _matrix_np(n: int, m: int) -> np.ndarray:
    a, b, _ = _basis_np(n, m)
    mat = a @ b.T
    if m == n:  # exactly the identity; avoid rounding noise
        mat = np.eye(n)
    return mat


def _tracing(like: torch.Tensor) -> bool:
    """True under torch.compile / torch.export / jit tracing (do not cache tensors made there)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return True
    try:
        from torch._subclasses.fake_tensor import is_fake
    except ImportError:  # pragma: no cover - very old torch
        return False
    return bool(is_fake(like))


def constant(key: tuple[object, ...], make: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``make`` as a tensor of ``like``'s dtype and device, cached per (key, dtype, device) so that a
    GPU forward does not copy it from the host every call. The cached tensor is a normal tensor even
    when first made under ``torch.inference_mode`` (so it can be saved for backward later)."""
    if _tracing(like):
        return torch.as_tensor(make, dtype=like.dtype, device=like.device)
    k = (*key, like.dtype, like.device)
    t = _CACHE.get(k)
    if t is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        with torch.inference_mode(False):
            t = torch.as_tensor(make, dtype=like.dtype, device=like.device)
        _CACHE[k] = t
    return t


def resample_matrix(n: int, m: int, like: torch.Tensor) -> torch.Tensor:
    """The real ``m x n`` spectral-pooling matrix for one axis (DC gain 1)."""
    return constant(("spectral", n, m), _matrix_np(n, m), like)


def basis_constants(
    prefix: str, n: int, m: int, arrays: tuple[np.ndarray, np.ndarray, np.ndarray], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cached tensors (``like``'s dtype and device) of a basis ``(A, B, |f|)``, keyed ``prefix_a/b/f, n, m``."""
    a, b, f = arrays
    return (
        constant((f"{prefix}_a", n, m), a, like),
        constant((f"{prefix}_b", n, m), b, like),
        constant((f"{prefix}_f", n, m), f, like),
    )


def apply_separable(x: torch.Tensor, mh: torch.Tensor, mw: torch.Tensor) -> torch.Tensor:
    """``mh @ x @ mw^T`` over the last two axes of an (N, C, H, W) map."""
    return torch.matmul(torch.matmul(mh, x), mw.transpose(0, 1))


@register(
    "spectral",
    params=[],
    summary="spectral pooling: keep the centred low-frequency block of the DFT (any size, no aliasing)",
    source="Rippel, Snoek & Adams 2015, 'Spectral Representations for CNNs' (NeurIPS, arXiv:1506.03767)",
    learnable=False,
    params_formula="0",
    shape_rule="ceil(n/s) (ideal low-pass resampling; the output grid has spacing n/ceil(n/s))",
    onnx=True,
    onnx_note="exported as two MatMul nodes with constant resampling matrices (no FFT op needed)",
)
class SpectralPool(Downsample):
    """Spectral pooling (Rippel, Snoek & Adams 2015, arXiv:1506.03767, Sec. 3).

    DFT the map, keep the centred low-frequency ``ceil(H/s) x ceil(W/s)`` block, inverse DFT, real part.
    The result is normalised so that the DC term (the map's mean) is preserved: a constant map stays
    the same constant. It is ideal (sinc) resampling: a band-limited map whose frequencies survive the
    crop is reproduced exactly on the coarser grid (for even ``n``: ``x[..., ::s, ::s]``).

    Implementation: the operator is linear and separable, so it is applied as ``M_h @ x @ M_w^T`` with
    real ``m x n`` matrices built once per size (see the module docstring); for an even output size the
    ``+-m/2`` input coefficients are folded into the output's Nyquist bin (as :func:`scipy.signal.resample`
    does per axis), which is exactly what keeps the matrices real. Rippel et al.'s "spectral dropout"
    (random extra truncation in training) is not included. Not learnable; no parameters.
    """

    def out_size(self, n: int) -> int:
        return -(-n // self.stride)

    def geometry(self) -> list[Geometry]:
        return [Geometry(None, self.stride, 0)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])  # plain ints (sizes are tensors under jit tracing)
        mh = resample_matrix(h, self.out_size(h), x)
        mw = resample_matrix(w, self.out_size(w), x)
        return apply_separable(x, mh, mw)

    def other_ops(self, c: int, h: int, w: int) -> int:
        # the two matmuls, MACs per channel: (oh x h) @ (h x w), then (oh x w) @ (w x ow)
        oh, ow = self.out_size(h), self.out_size(w)
        return c * (oh * h * w + oh * w * ow)
