"""Audit findings on the operators (issue 13): LP pooling's stability, DiffStride's spectral mask,
mixed pooling's citation, stochastic pooling's ReLU and low-precision sampling, SoftPool's op count."""

from __future__ import annotations

import inspect as pyinspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poolstride import ops
from poolstride.analysis import cost_summary


def build(spec: str, cin: int = 1, stride: int = 2, seed: int = 0) -> ops.Downsample:
    torch.manual_seed(seed)
    return ops.build(spec, cin, None, stride)


# -- 1. LP pooling --------------------------------------------------------------------------------
def _lp_reference(x: torch.Tensor, p: float, k: int, s: int = 2) -> torch.Tensor:
    """(sum |x|^p)^(1/p) over each window, in float64, written independently (zero padding (k-1)//2)."""
    pad = (k - 1) // 2
    xp = F.pad(x.double().abs(), (pad,) * 4)
    win = xp.unfold(2, k, s).unfold(3, k, s).flatten(-2)
    return win.pow(p).sum(-1).pow(1.0 / p)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 16.0, 64.0])
@pytest.mark.parametrize("k", [2, 3])
def test_lp_all_zero_window_gives_exactly_zero(p, k):
    op = build(f"lp(p={p},k={k})")
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:, 4:] = torch.rand(4, 4) + 0.5  # one corner non-zero, the others all zero
    x.requires_grad_()
    y = op(x)
    ref = _lp_reference(x.detach(), p, k)
    zero = ref == 0
    assert zero.any()
    assert (y.detach()[zero] == 0).all(), y.detach()[zero].max().item()  # before: 0.18 at p=16, 0.65 at p=64
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("p", [1.0, 2.0, 3.5, 16.0, 64.0])
@pytest.mark.parametrize("k, n", [(2, 8), (2, 9), (3, 9), (3, 10)])
def test_lp_matches_the_float64_reference_on_random_inputs(p, k, n):
    torch.manual_seed(1)
    x = torch.randn(2, 3, n, n) * 3  # both signs, |x| up to ~10: |x|^64 overflows float32
    ref = _lp_reference(x, p, k)
    op = build(f"lp(p={p},k={k})", 3)
    torch.testing.assert_close(op(x).double(), ref, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(op.double()(x.double()), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [5.0, 50.0, 1e4])
def test_lp_p64_is_finite_with_finite_gradients_for_large_inputs(scale):
    op = build("lp(p=64,k=3)", 2)
    torch.manual_seed(2)
    x = (torch.randn(2, 2, 9, 9) * scale).requires_grad_()
    y = op(x)
    y.square().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    # the 64-norm lies between the window max and 9^(1/64) times it
    mx = F.max_pool2d(x.detach().abs(), 3, 2, 1)
    assert (y.detach() >= mx * (1 - 1e-6)).all() and (y.detach() <= mx * 9 ** (1 / 64) * (1 + 1e-6)).all()


@pytest.mark.parametrize("p", [1.5, 3.0, 16.0, 64.0])
@pytest.mark.parametrize("k", [2, 3])
def test_lp_gradcheck_float64(p, k):
    op = build(f"lp(p={p},k={k})", 2).double()
    torch.manual_seed(3)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    x = (x.sign() * (x.abs() + 0.1)).requires_grad_()  # away from the kink of |x| at 0
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-5)


def test_lp_large_p_gradcheck_for_large_inputs():
    op = build("lp(p=64)", 1).double()
    torch.manual_seed(4)
    x = (torch.randn(1, 1, 4, 4, dtype=torch.float64) * 40).requires_grad_()  # |x|^64 ~ 1e100
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-5)


# -- 2. DiffStride's spectral mask ------------------------------------------------------------------
def _sinusoid(n: int, fh: int, fw: int, phase: float, t_h=None, t_w=None) -> torch.Tensor:
    """cos(2 pi (fh t_h + fw t_w) / n + phase) on the given (possibly fractional) pixel positions."""
    th = torch.arange(n, dtype=torch.float64) if t_h is None else t_h
    tw = torch.arange(n, dtype=torch.float64) if t_w is None else t_w
    return torch.cos(2 * math.pi * (fh * th[:, None] + fw * tw[None, :]) / n + phase)[None, None]


@pytest.mark.parametrize("n", [32, 20])
def test_diffstride_at_stride_2_passes_the_spectral_band_unattenuated(n):
    """At S=2 every frequency kept by ``spectral`` comes out of diffstride exactly as out of spectral."""
    ds = build("diffstride(init=2)").double()
    sp = build("spectral").double()
    half = n // 4  # the output's Nyquist frequency (m = n/2)
    for fh in range(-half + 1, half):
        for fw in range(0, half):
            x = _sinusoid(n, fh, fw, 0.3 + 0.1 * fh)
            y_sp = sp(x)
            torch.testing.assert_close(ds(x), y_sp, atol=1e-10, rtol=0)
            torch.testing.assert_close(y_sp, x[..., ::2, ::2], atol=1e-10, rtol=0)
    # the output's Nyquist bin too (a cosine at n/4, folded as spectral folds it)
    x = _sinusoid(n, half, 0, 0.0) + _sinusoid(n, 0, half, 0.0)
    torch.testing.assert_close(ds(x), sp(x), atol=1e-10, rtol=0)
    # before the fix: frequencies 5..8 of a 32-px map came out scaled by 0.75 / 0.5 / 0.25 / 0


@pytest.mark.parametrize("n", [31, 21])
def test_diffstride_keeps_in_band_sinusoids_on_odd_maps(n):
    """Odd maps (m = floor(n/2) samples at spacing n/m): a sinusoid with |f| < m/2 is reproduced exactly
    at the output positions."""
    ds = build("diffstride(init=2)").double()
    m = n // 2
    pos = torch.arange(m, dtype=torch.float64) * n / m
    for f in range(0, (m + 1) // 2):
        x = _sinusoid(n, f, f // 2, 0.7)
        torch.testing.assert_close(ds(x), _sinusoid(n, f, f // 2, 0.7, pos, pos), atol=1e-10, rtol=0)


def test_diffstride_ramp_lies_outside_the_kept_band_as_in_the_official_mask():
    """Above the band, frequency f is scaled by the official mask clip((n/(2S) + R - |f|) / R, 0, 1) and,
    since the output keeps the drop-in size n/S, lands on its alias f - m."""
    ds = build("diffstride(init=2,r=4)").double()
    n, m = 32, 16
    for f, gain in [(9, 0.75), (10, 0.5), (11, 0.25), (12, 0.0), (14, 0.0)]:
        x = _sinusoid(n, f, 0, 0.2)
        torch.testing.assert_close(ds(x), gain * x[..., ::2, ::2], atol=1e-10, rtol=0)
        assert f > m // 2


def test_diffstride_4x4_arange_does_not_collapse_to_a_constant():
    ds = build("diffstride")
    x = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    y = ds(x).detach()
    assert y.shape[-2:] == (2, 2)
    assert y.max() - y.min() > 1.0, y  # before: 8.5 everywhere
    torch.testing.assert_close(y.mean(), x.mean())  # the mean is kept
    torch.testing.assert_close(y, build("spectral")(x))  # on a 4x4 map the ramp has no bin to act on


@pytest.mark.parametrize("n", [32, 16, 12, 9])
def test_diffstride_stride_gradient_is_finite_and_non_zero(n):
    ds = build("diffstride(init=2)", 3)
    torch.manual_seed(5)
    x = torch.randn(2, 3, n, n)
    w = torch.randn_like(ds(x))
    (ds(x) * w).sum().backward()
    g = ds.strides.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().item() > 1e-4


# -- 3. mixed pooling: Lee et al. 2016's learned mix ----------------------------------------------------
def test_mixed_cites_lee_et_al_learned_mix_not_yu_random_switching():
    info = ops.get_info("mixed")
    mod = pyinspect.getmodule(info.cls)
    assert info.source.startswith("Lee, Gallagher & Tu 2016")
    assert "Yu" not in info.source  # Yu et al. 2014's random max/avg switching is not implemented
    assert "Lee" in info.summary and "alpha*max + (1-alpha)*avg" in info.summary
    assert mod is not None and "Lee" in (mod.__doc__ or "")
    doc = info.cls.__doc__ or ""
    assert "Lee, Gallagher & Tu" in doc and "not implemented" in doc


# -- 4. stochastic pooling --------------------------------------------------------------------------
def test_stochastic_declares_its_relu():
    info = ops.get_info("stochastic")
    assert "relu" in info.summary.lower() and "negative" in info.summary.lower()
    assert "ReLU" in (info.cls.__doc__ or "")


def test_stochastic_samples_in_fp32_under_bf16_autocast():
    """A window [256, 0.5, 0, 0]: in bf16 the cumulative sum 256.5 rounds to 256, so 0.5 (p = 1/513)
    is never drawn; computed in fp32 it is drawn about 1/513 of the time."""
    op = build("stochastic").train()
    win = torch.tensor([[256.0, 0.5], [0.0, -3.0]])
    x = win.repeat(200, 200)[None, None]  # 40000 windows
    for xin in (x, x.bfloat16()):
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = op(xin)
            ref = F.max_pool2d(xin, 2)
        assert y.dtype == ref.dtype == xin.dtype  # a pool keeps its input's dtype under CPU autocast
        assert not torch.isnan(y).any()
        assert set(y.float().unique().tolist()) <= {256.0, 0.5}
        picks = (y == 0.5).sum().item()
        assert 30 <= picks <= 150, picks  # expected 40000 / 513 = 78; 0 when sampled in bf16


def test_stochastic_eval_under_bf16_autocast_is_fp32_accurate():
    op = build("stochastic").eval()
    torch.manual_seed(6)
    x = torch.rand(1, 1, 16, 16) * 100
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = op(x.bfloat16())
    assert y.dtype == torch.bfloat16
    ref = op(x.bfloat16().float())
    torch.testing.assert_close(y.float(), ref.bfloat16().float(), rtol=0, atol=0)


# -- 5. SoftPool's declared op count follows the softmax rule --------------------------------------------
class _SoftPoolByHand(nn.Module):
    """SoftPool written with the plain ops the counting rules know: zero-padded k x k windows (free),
    softmax over each window (3 per element), the weighting (1 per element), the window sum (a
    reduction: 1 per input element)."""

    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.k, self.pad = k, (k - 1) // 2
        self.o = (n + 2 * self.pad - k) // 2 + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        win = self._windows(F.pad(x, (self.pad,) * 4))
        logits = self._windows(F.pad(x, (self.pad,) * 4, value=-math.inf))  # padding gets zero weight
        return (torch.softmax(logits, dim=-1) * win).sum(-1)

    def _windows(self, xp: torch.Tensor) -> torch.Tensor:
        k, o = self.k, self.o
        return torch.stack(
            [xp[:, :, i : i + 2 * o - 1 : 2, j : j + 2 * o - 1 : 2] for i in range(k) for j in range(k)], -1
        )


@pytest.mark.parametrize("k, n", [(2, 8), (2, 9), (3, 9), (3, 16)])
def test_softpool_other_ops_follow_the_softmax_rule(k, n):
    c = 3
    op = build(f"softpool(k={k})", c)
    o = op.out_size(n)
    ref = _SoftPoolByHand(k, n)
    x = torch.randn(1, c, n, n)
    torch.testing.assert_close(ref(x), op(x))  # same computation
    counted = cost_summary(ref, (c, n, n))["other_ops"]
    assert counted == c * o * o * 5 * k * k  # softmax 3k^2 + k^2 multiplies + k^2 for the window sum
    assert op.other_ops(c, n, n) == counted  # before: 4k^2 + 1 per output
    assert cost_summary(nn.Sequential(op), (c, n, n))["other_ops"] == counted
