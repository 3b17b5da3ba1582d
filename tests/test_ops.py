"""Operators: shapes, odd-size rules, gradients, parameter counts, reference equalities, geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poolstride import SiteError, ops, parse
from poolstride.ops import Geometry

# Variants tested on top of each operator's bare name (every registered operator is covered).
VARIANTS = {
    "max": ["max(k=3)"],
    "avg": ["avg(k=3)"],
    "lp": ["lp(k=3,p=3)"],
    "conv": ["conv(k=1)", "conv(k=2)"],
    "convpool": ["convpool(pool=avg,pk=3)"],
    "blur": ["blur(base=avg)", "blur(base=conv,k=3)", "blur(size=1)", "blur(base=avg,size=7)"],
    "mixed": ["mixed(learnable=true)"],
    "softpool": ["softpool(k=3)"],
    "stochastic": ["stochastic(k=3)"],
    "diffstride": ["diffstride(init=1.5,shared=false)", "diffstride(init=3)"],
    "aps": ["aps(base=avg,size=3)", "aps(base=none)"],
    "lps": ["lps(base=none,hidden=4)"],
}


ALL_SPECS = [s for name in ops.names() for s in [name, *VARIANTS.get(name, [])]]
SIZES = (32, 31, 7, 2, 1)


def build(spec: str, cin: int = 3, cout: int | None = None, stride: int = 2, seed: int = 0) -> ops.Downsample:
    torch.manual_seed(seed)
    return ops.build(spec, cin, cout, stride)


def distinct(*shape: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """Positive, pairwise distinct values (well separated: no max ties, no ReLU/abs kinks)."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    return ((torch.randperm(n, generator=g) + 1.0) / n).to(dtype).reshape(shape)


def test_variants_cover_every_registered_operator():
    assert set(VARIANTS) <= set(ops.names())
    assert {parse(s).name for s in ALL_SPECS} == set(ops.names())


# -- shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_output_shape_matches_out_size(spec, stride):
    op = build(spec, stride=stride).eval()
    m = op.min_input()
    assert m >= 1
    for n in SIZES:
        x = torch.randn(2, 3, n, n)
        if n < m:
            # min_input is honest: below it the forward raises and check_input says why
            with pytest.raises((RuntimeError, ValueError)):
                op(x)
            with pytest.raises(SiteError, match="too small"):
                ops.check_input(op, n, n)
            continue
        ops.check_input(op, n, n)
        y = op(x)
        assert tuple(y.shape) == (2, op.out_channels, op.out_size(n), op.out_size(n)), (spec, n)
        assert op.out_shape(n, n) == (op.out_size(n), op.out_size(n))
    # rectangular maps: each axis follows its own rule
    h, w = max(m, 9), max(m, 16)
    y = op(torch.randn(1, 3, h, w))
    assert tuple(y.shape[-2:]) == op.out_shape(h, w)


def test_min_input_is_tight():
    """One below min_input fails with a SiteError naming the size; min_input itself works."""
    for spec in ALL_SPECS:
        op = build(spec).eval()
        m = op.min_input()
        op(torch.randn(1, 3, m, m))
        if m > 1:
            with pytest.raises(SiteError, match="too small"):
                op(torch.randn(1, 3, m - 1, m - 1))


@pytest.mark.parametrize(
    "spec, rule",
    [
        ("max", lambda n: n // 2),  # k=2, no padding: floor
        ("avg", lambda n: n // 2),
        ("max(k=3)", lambda n: -(-n // 2)),  # k=3, padding 1: ceil
        ("conv", lambda n: -(-n // 2)),  # conv k=3, padding 1: ceil
        ("conv(k=2)", lambda n: n // 2),
        ("conv(k=1)", lambda n: -(-n // 2)),  # a strided 1x1 conv keeps the first of each pair: ceil
        ("blur(base=avg)", lambda n: -(-n // 2)),  # blur alone: ceil
        ("blur(base=max)", lambda n: -(-(n - 1) // 2)),  # MaxPool(2, s=1) first: ceil((n-1)/2) = floor
        ("s2d", lambda n: -(-n // 2)),  # odd maps are zero-padded: ceil
        ("spectral", lambda n: -(-n // 2)),  # ceil
        ("softpool", lambda n: n // 2),  # same windows as max(k=2)
        ("stochastic", lambda n: n // 2),
        ("diffstride", lambda n: max(2, n // 2)),  # floor(n/S), at least 2
    ],
)
def test_odd_size_rules(spec, rule):
    op = build(spec).eval()
    for n in (31, 15, 7, 3, 32, 16):
        assert op.out_size(n) == rule(n), (spec, n)
        assert op(torch.randn(1, 3, n, n)).shape[-1] == rule(n)


def test_blur_max_has_the_shape_of_the_max_pool_it_replaces():
    blur, mx = build("blur"), build("max")
    assert all(blur.out_size(n) == mx.out_size(n) for n in range(2, 70))


@pytest.mark.parametrize("spec", ["blur(base=avg)", "blur(base=avg,size=5)"])
def test_blur_under_bf16_autocast_keeps_dtype_and_value(spec):
    # the depthwise blur runs in fp32 under CPU autocast (bf16 depthwise conv is 5-10x slower); same result
    op = build(spec, cin=8)
    x = torch.randn(2, 8, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_bf = op(x.bfloat16())
        y_fp = op(x)
    assert y_bf.dtype == y_fp.dtype == torch.bfloat16  # what a conv under autocast hands on
    assert op(x.bfloat16()).dtype == torch.bfloat16  # and a bf16 input outside autocast stays bf16
    ref = op(x.bfloat16().float())
    assert torch.allclose(y_bf.float(), ref, atol=2e-2) and torch.allclose(y_fp.float(), op(x), atol=2e-2)


# -- gradients ------------------------------------------------------------------------------------
GRAD_SPECS = [
    "aps",
    "lps",
    "max",
    "max(k=3)",
    "avg",
    "lp",
    "lp(k=3,p=3)",
    "conv",
    "convpool",
    "convpool(pool=avg)",
    "blur",
    "blur(base=avg,size=3)",
    "blur(base=conv,k=3)",
    "s2d",
    "spectral",
    "softpool",
    "softpool(k=3)",
    "mixed",
    "mixed(learnable=true)",
    "diffstride",
    "diffstride(init=1.5,shared=false)",
    "stochastic",  # eval mode: the probability-weighted average
    "stochastic(k=3)",
]


def test_grad_specs_cover_every_operator():
    assert {parse(s).name for s in GRAD_SPECS} == set(ops.names())


@pytest.mark.parametrize("spec", GRAD_SPECS)
def test_gradcheck_wrt_input(spec):
    op = build(spec, 2).double().eval()
    x = distinct(1, 2, 5, 6).requires_grad_()  # one odd and one even axis
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("spec", ["conv", "s2d", "blur(base=conv)", "convpool", "mixed(learnable=true)"])
def test_parameters_receive_gradients(spec):
    op = build(spec, 3, 4 if ops.get_info(parse(spec).name).changes_channels else 3)
    op(torch.randn(2, 3, 8, 8)).square().sum().backward()
    for name, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- parameter counts and the learnable flag ----------------------------------------------------
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("conv(k=3)", 9 * 16 * 32 + 32),
        ("conv(k=3,bias=false)", 9 * 16 * 32),
        ("conv(k=1)", 16 * 32 + 32),
        ("convpool(k=3)", 9 * 16 * 32 + 32),
        ("s2d", 4 * 16 * 32 + 32),
        ("s2d(bias=false)", 4 * 16 * 32),
        ("blur(base=conv,k=3)", 9 * 16 * 32 + 32),
        ("blur(base=conv)", 9 * 16 * 32 + 32),
    ],
)
def test_param_count_matches_formula(spec, expected):
    op = build(spec, 16, 32)
    assert op.param_count() == expected == sum(p.numel() for p in op.parameters())


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("max", 0),
        ("blur", 0),
        ("blur(base=avg)", 0),
        ("spectral", 0),
        ("softpool", 0),
        ("stochastic", 0),
        ("mixed", 0),
        ("mixed(learnable=true)", 1),
        ("diffstride", 1),
        ("diffstride(shared=false)", 2),
    ],
)
def test_param_count_of_channel_keeping_ops(spec, expected):
    assert build(spec, 16).param_count() == expected


def test_s2d_param_count_scales_with_stride_squared():
    assert build("s2d", 16, 32, stride=3).param_count() == 9 * 16 * 32 + 32


def test_learnable_flag_matches_trainable_parameters():
    """OpInfo.learnable: some arguments of the operator give trainable parameters (params_formula says
    which); never for the others. Downsample.learnable: this instance has trainable parameters."""
    for info in ops.infos():
        specs = [s for s in ALL_SPECS if parse(s).name == info.name]
        trainable = []
        for spec in specs:
            cout = 4 if ops.build(spec, 3).can_change_channels(parse(spec)) else 3
            op = build(spec, 3, cout)
            has = any(p.requires_grad for p in op.parameters())
            assert op.learnable == has, spec
            trainable.append(has)
        assert info.learnable == any(trainable), info.name


# -- reference equalities ------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("n", [8, 9])
def test_max_avg_lp_equal_torch_pools(k, n):
    x = torch.randn(2, 3, n, n)
    pad = (k - 1) // 2
    assert torch.equal(build(f"max(k={k})")(x), nn.MaxPool2d(k, 2, pad)(x))
    ref = nn.AvgPool2d(k, 2, pad, count_include_pad=False)(x)
    torch.testing.assert_close(build(f"avg(k={k})")(x), ref)
    xp = x.abs()  # F.lp_pool2d is only defined for non-negative inputs and has no padding
    for p in (1.0, 2.0, 3.0):
        ref = F.lp_pool2d(F.pad(xp, (pad,) * 4), p, k, 2)
        torch.testing.assert_close(build(f"lp(k={k},p={p})")(xp), ref, rtol=1e-5, atol=1e-5)


def test_avg_k2_equals_default_avgpool():
    x = torch.randn(1, 2, 7, 7)
    torch.testing.assert_close(build("avg")(x), nn.AvgPool2d(2)(x))


def _binomial_blur_reference(x: np.ndarray, size: int, stride: int = 2) -> np.ndarray:
    """Zhang 2019 BlurPool written independently: reflect pad floor((k-1)/2) before and
    ceil((k-1)/2) after, depthwise correlation with the normalised binomial kernel, subsample."""
    row = np.array([math.comb(size - 1, i) for i in range(size)], dtype=np.float64)
    kern = np.outer(row, row) / row.sum() ** 2
    lo, hi = (size - 1) // 2, size // 2
    xp = np.pad(x, ((0, 0), (0, 0), (lo, hi), (lo, hi)), mode="reflect")
    h, w = x.shape[-2:]
    out = np.zeros_like(x)
    for i in range(size):
        for j in range(size):
            out += kern[i, j] * xp[..., i : i + h, j : j + w]
    return out[..., ::stride, ::stride]


@pytest.mark.parametrize("size", [2, 3, 4, 5, 7])
@pytest.mark.parametrize("n", [16, 15])
def test_blur_avg_equals_reference_binomial_conv(size, n):
    x = torch.randn(2, 3, n, n, dtype=torch.float64)
    op = build(f"blur(base=avg,size={size})").double()
    np.testing.assert_allclose(op(x).numpy(), _binomial_blur_reference(x.numpy(), size), atol=1e-6)


def test_blur_max_is_maxpool_s1_then_blur():
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    ref = _binomial_blur_reference(F.max_pool2d(x, 2, 1).numpy(), 4)
    np.testing.assert_allclose(build("blur").double()(x).numpy(), ref, atol=1e-6)


def test_blur_size1_is_plain_subsampling():
    x = torch.randn(2, 3, 9, 9)
    assert torch.equal(build("blur(base=avg,size=1)")(x), x[..., ::2, ::2])
    assert torch.equal(build("blur(size=1)")(x), F.max_pool2d(x, 2, 1)[..., ::2, ::2])


@pytest.mark.parametrize("spec", ["blur(base=avg,size=4)", "blur(base=avg,size=7)", "blur(base=avg,size=3)"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_blur_reflect_padding_falls_back_on_tiny_maps(spec, n):
    op = build(spec)
    x = torch.randn(1, 3, n, n)
    y = op(x)
    assert y.shape[-1] == op.out_size(n) and torch.isfinite(y).all()
    const = torch.full((1, 3, n, n), 2.5)
    torch.testing.assert_close(op(const), torch.full_like(y, 2.5))  # a normalised filter keeps constants


def test_s2d_is_pixel_unshuffle_then_1x1_conv():
    op = build("s2d", 3, 5)
    x = torch.randn(2, 3, 6, 6)
    # the space-to-depth permutation, written out: channel c*4 + 2*i + j holds x[c, i::2, j::2]
    blocks = torch.stack([x[:, c, i::2, j::2] for c in range(3) for i in range(2) for j in range(2)], 1)
    assert torch.equal(F.pixel_unshuffle(x, 2), blocks)
    torch.testing.assert_close(op(x), F.conv2d(blocks, op.proj.weight, op.proj.bias))
    # odd maps: zero padding at the bottom/right
    xo = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(op(xo), op(F.pad(xo, (0, 1, 0, 1))))


def test_conv_and_convpool_match_their_definition():
    op = build("conv", 3, 4)
    x = torch.randn(1, 3, 9, 9)
    torch.testing.assert_close(op(x), F.conv2d(x, op.conv.weight, op.conv.bias, stride=2, padding=1))
    cp = build("convpool", 3, 4)
    ref = F.max_pool2d(F.conv2d(x, cp.conv.weight, cp.conv.bias, padding=1), 2, 2)
    torch.testing.assert_close(cp(x), ref)


def test_mixed_interpolates_max_and_avg():
    x = torch.randn(1, 2, 8, 8)
    mx, av = F.max_pool2d(x, 2), F.avg_pool2d(x, 2)
    torch.testing.assert_close(build("mixed(alpha=1)")(x), mx)
    torch.testing.assert_close(build("mixed(alpha=0)")(x), av)
    torch.testing.assert_close(build("mixed(alpha=0.25)")(x), 0.25 * mx + 0.75 * av)
    torch.testing.assert_close(build("mixed(alpha=0.25,learnable=true)")(x), 0.25 * mx + 0.75 * av)


# -- spectral -----------------------------------------------------------------------------------
def _cosines(n: int, freqs: list[tuple[int, int]]) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    x = torch.zeros(n, n, dtype=torch.float64)
    for a, (fh, fw) in enumerate(freqs):
        x += (1 + 0.3 * a) * torch.cos(2 * math.pi * (fh * i[:, None] + fw * i[None, :]) / n + 0.4 * a)
    return x[None, None]


def test_spectral_is_ideal_downsampling_for_band_limited_maps():
    op = build("spectral", 1).double()
    # all |f| < 8 = (n/2)/2: these frequencies survive the crop to 16 x 16
    x = 0.7 + _cosines(32, [(1, 0), (0, 3), (2, 5), (7, -6), (-5, 4)])
    torch.testing.assert_close(op(x), x[..., ::2, ::2], atol=1e-10, rtol=0)
    # the output Nyquist frequency (8) is reproduced too (its +-8 coefficients are folded)
    c = torch.cos(2 * math.pi * 8 * torch.arange(32, dtype=torch.float64) / 32)
    x = c[:, None] * torch.ones(32, dtype=torch.float64)[None, :]
    torch.testing.assert_close(op(x[None, None]), x[None, None, ::2, ::2], atol=1e-10, rtol=0)


def test_spectral_removes_high_frequencies_and_keeps_the_mean():
    op = build("spectral", 1).double()
    hi = _cosines(32, [(12, 0), (0, 15), (9, 11)])
    torch.testing.assert_close(op(hi + 1.5), torch.full((1, 1, 16, 16), 1.5, dtype=torch.float64))
    for n in (31, 7, 2, 1):
        x = torch.randn(1, 2, n, n, dtype=torch.float64)
        torch.testing.assert_close(op(x).mean((-1, -2)), x.mean((-1, -2)))


@pytest.mark.parametrize("n, stride", [(32, 2), (31, 2), (7, 2), (15, 3), (12, 4)])
def test_spectral_equals_scipy_resample(n, stride):
    signal = pytest.importorskip("scipy.signal")
    op = build("spectral", 2, stride=stride).double()
    x = torch.randn(1, 2, n, n + 1, dtype=torch.float64)
    oh, ow = op.out_shape(n, n + 1)
    ref = signal.resample(signal.resample(x.numpy(), oh, axis=-2), ow, axis=-1)
    np.testing.assert_allclose(op(x).numpy(), ref, atol=1e-10)


def test_spectral_stride1_is_identity_and_matrix_is_cached_safely():
    x = torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(build("spectral", 2, stride=1)(x), x)
    op = build("spectral", 2)
    with torch.inference_mode():
        y0 = op(x)
    # a matrix first made under inference_mode must still be usable for backward later
    xg = x.clone().requires_grad_()
    y = op(xg)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), y0)
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


# -- softpool -------------------------------------------------------------------------------------
def test_softpool_matches_the_paper_formula():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    e = x.exp()  # the official (unstabilised) form is fine for small inputs
    ref = F.avg_pool2d(x * e, 2) / F.avg_pool2d(e, 2)
    torch.testing.assert_close(build("softpool").double()(x), ref)


@pytest.mark.parametrize("k", [2, 3])
def test_softpool_limits_max_and_avg(k):
    op = build(f"softpool(k={k})").double()
    x = (distinct(1, 3, 9, 9) - 0.5) * 1000 * 81  # distinct values >= 1000 apart, both signs
    torch.testing.assert_close(op(x), F.max_pool2d(x, k, 2, (k - 1) // 2), rtol=1e-9, atol=1e-6)
    # constant windows (k=2: each 2x2 block is one value) give the average = that value
    blocks = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    x2 = blocks.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(build("softpool").double()(x2), F.avg_pool2d(x2, 2))
    torch.testing.assert_close(build("softpool").double()(x2), blocks)


@pytest.mark.parametrize("k", [2, 3])
def test_softpool_is_stable_for_large_inputs(k):
    op = build(f"softpool(k={k})")
    x = (torch.randn(1, 3, 7, 7) * 1e4).requires_grad_()
    y = op(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert (y <= F.max_pool2d(x, k, 2, (k - 1) // 2) + 1e-3).all()
    # padding must never win the softmax: an all-negative map stays negative
    assert (op(-torch.rand(1, 3, 7, 7) - 1) < 0).all()


# -- stochastic -----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3])
def test_stochastic_train_samples_window_values(k):
    op = build(f"stochastic(k={k})").train()
    x = torch.randn(4, 3, 9, 9)
    y = op(x)
    pad = (k - 1) // 2
    win = F.pad(x.relu(), (pad,) * 4).unfold(2, k, 2).unfold(3, k, 2).flatten(-2)
    assert (y[..., None] == win).any(-1).all()  # every output is one of its window's values
    # a sampled value is never a zero-probability tap, unless the whole window is zero
    assert ((y > 0) | (win.amax(-1) == 0)).all()


def test_stochastic_sampling_follows_p_proportional_to_a():
    op = build("stochastic", 1).train()
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2).expand(20000, 1, 2, 2)
    torch.manual_seed(0)
    y = op(x).flatten()
    freq = torch.stack([(y == v).float().mean() for v in (1.0, 2.0, 3.0, 4.0)])
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.02, rtol=0)
    zeros = torch.tensor([[-1.0, 0.0], [-3.0, 0.0]]).reshape(1, 1, 2, 2)
    assert op(zeros).item() == 0.0  # nothing positive: output 0


def test_stochastic_is_reproducible_with_the_global_seed():
    op = build("stochastic").train()
    x = torch.rand(2, 3, 16, 16)
    torch.manual_seed(123)
    a = op(x)
    torch.manual_seed(123)
    b = op(x)
    assert torch.equal(a, b)
    assert not torch.equal(op(x), op(x))  # without reseeding, another draw


def test_stochastic_eval_is_the_probability_weighted_average():
    op = build("stochastic(k=3)").eval()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    a = F.pad(x.relu(), (1,) * 4).unfold(2, 3, 2).unfold(3, 3, 2).flatten(-2)
    s = a.sum(-1)
    ref = torch.where(s > 0, (a * a).sum(-1) / s.clamp_min(1e-300), torch.zeros_like(s))
    y = op.double()(x)
    torch.testing.assert_close(y, ref)
    assert torch.equal(y, op(x))  # deterministic
    # the average of the samples converges to the eval output
    op.train()
    torch.manual_seed(1)
    mean = torch.stack([op(x) for _ in range(400)]).mean(0)
    torch.testing.assert_close(mean, y, atol=0.15, rtol=0.1)


def test_stochastic_train_gradient_goes_to_the_sampled_element():
    op = build("stochastic").train()
    x = distinct(1, 1, 4, 4, dtype=torch.float32).requires_grad_()
    y = op(x)
    y.sum().backward()
    assert x.grad.sum().item() == 4.0 and ((x.grad == 0) | (x.grad == 1)).all()
    assert torch.equal(x.detach()[x.grad == 1].sort().values, y.detach().flatten().sort().values)


# -- diffstride -----------------------------------------------------------------------------------
def test_diffstride_stride_gets_gradient_and_learns():
    op = build("diffstride", 3)
    x = torch.randn(2, 3, 16, 16)
    op(x).square().mean().backward()
    assert op.strides.grad is not None and op.strides.grad.abs().item() > 0
    start = op.strides.detach().clone()
    opt = torch.optim.Adam(op.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        op(x).square().mean().backward()
        opt.step()
    assert (op.strides.detach() - start).abs().item() > 0.1


def test_diffstride_stride_gradient_matches_finite_differences():
    op = build("diffstride(shared=false)", 1).double()
    x = torch.randn(1, 1, 20, 12, dtype=torch.float64)
    s = torch.tensor([2.1, 2.3], dtype=torch.float64, requires_grad=True)  # away from integer n/S

    def f(strides):
        return torch.func.functional_call(op, {"strides": strides}, (x,))

    assert torch.autograd.gradcheck(f, (s,), eps=1e-6, atol=1e-6, fast_mode=True)


def test_diffstride_output_size_follows_the_current_stride():
    op = build("diffstride", 1)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        op.strides.fill_(1.9)
    assert op.out_size(32) == 16 and op(x).shape[-1] == 16
    assert op.geometry()[0].stride == pytest.approx(1.9)
    with torch.no_grad():
        op.strides.fill_(2.1)
    assert op.out_size(32) == 15 and op(x).shape[-1] == 15
    assert op.geometry()[0].stride == pytest.approx(2.1)
    with torch.no_grad():
        op.strides.fill_(0.3)  # below 1: clamped to 1 (a full-size crop, mask still smooth)
    assert op.out_size(32) == 32 and op(x).shape[-1] == 32
    with torch.no_grad():
        op.strides.fill_(100.0)  # too large: the map keeps 2 samples
    assert op.out_size(32) == 2 and op(x).shape[-1] == 2


def test_diffstride_init_and_site_stride():
    assert build("diffstride(init=4)", 2).out_size(32) == 8
    # the site's integer stride is ignored: init sets the starting stride
    assert build("diffstride", 2, stride=4).out_size(32) == 16
    op = build("diffstride(init=2,shared=false)", 1)
    with torch.no_grad():
        op.strides.copy_(torch.tensor([2.0, 4.0]))
    assert op.out_shape(32, 32) == (16, 8) and op(torch.randn(1, 1, 32, 32)).shape[-2:] == (16, 8)


def test_diffstride_preserves_the_mean_and_low_frequencies():
    op = build("diffstride", 1).double()
    const = torch.full((1, 1, 32, 32), -1.25, dtype=torch.float64)
    torch.testing.assert_close(op(const), torch.full((1, 1, 16, 16), -1.25, dtype=torch.float64))
    low = _cosines(32, [(1, 0), (0, 2), (2, -3)])  # |f| <= n/(2S) - R = 4: mask = 1
    torch.testing.assert_close(op(low), low[..., ::2, ::2], atol=1e-10, rtol=0)
    tiny = torch.randn(1, 1, 3, 3, dtype=torch.float64)  # R capped at n/(2S): DC still kept
    torch.testing.assert_close(op(tiny).mean(), tiny.mean())


# -- geometry and cost hooks ---------------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_geometry_and_other_ops(spec):
    op = build(spec)
    geo = op.geometry()
    assert isinstance(geo, list) and geo and all(isinstance(g, Geometry) for g in geo)
    total = math.prod(g.stride for g in geo)
    if op.op_name == "diffstride":
        assert total == pytest.approx(float(parse(spec)["init"]))
    else:
        assert total == 2
    for g in geo:
        assert g.kernel is None or g.kernel >= 1
        assert g.padding >= 0
    assert isinstance(op.other_ops(3, 32, 32), int) and op.other_ops(3, 32, 32) >= 0
    assert isinstance(op.info, ops.OpInfo) and op.info.name == op.op_name


def test_global_operators_have_no_kernel():
    for spec in ("spectral", "diffstride"):
        assert build(spec).geometry() == [Geometry(None, 2, 0)]
