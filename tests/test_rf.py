"""Receptive field on the real graph, checked against values computed independently here.

Every expected value below comes from the closed form of papers.md section 9 evaluated by hand in this
file (``hand``): r = 1 + sum_l (k_l - 1) * prod_{i<l} s_i, jump = prod s_l,
centre c_l = c_{l-1} + ((k_l - 1)/2 - p_l) * j_{l-1}; never from the implementation.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poolstride import models, ops
from poolstride.analysis import inspect


def hand(layers: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """(rf, jump, centre) of a chain of (kernel, stride, padding) layers."""
    r, j, c = 1.0, 1.0, 0.0
    for k, s, p in layers:
        r += (k - 1) * j
        c += ((k - 1) / 2 - p) * j
        j *= s
    return r, j, c


def last_spatial(rep):
    t = rep.totals
    return t["rf"], t["jump"], t["center"][0]


def test_three_3x3_equal_one_7x7():
    c = 8
    three = nn.Sequential(*[m for _ in range(3) for m in (nn.Conv2d(c, c, 3, 1, 1), nn.ReLU())])
    one = nn.Sequential(nn.Conv2d(c, c, 7, 1, 3))
    r3 = inspect(three, (c, 16, 16)).totals
    r1 = inspect(one, (c, 16, 16)).totals
    assert r3["rf"] == r1["rf"] == hand([(3, 1, 1)] * 3)[0] == 7
    assert [layer.rf[0] for layer in inspect(three, (c, 16, 16)).layers if layer.op == "Conv2d"] == [3, 5, 7]


def test_resnet_stem_rf_11_jump_4():
    stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    r, j, c = last_spatial(inspect(stem, (3, 64, 64)))
    assert (r, j) == (11, 4)
    assert (r, j, c) == hand([(7, 2, 3), (3, 2, 1)])


def test_builtin_resnet50_stem_rows():
    rep = inspect(models.build("resnet50"), (3, 224, 224))
    pool = [layer for layer in rep.layers if layer.site and layer.site["kind"] == "pool"][0]
    assert pool.rf == [11, 11] and pool.jump == [4, 4]


@pytest.mark.parametrize("variant", ["base", "all-cnn", "strided", "convpool"])
def test_allcnn_c_final_rf(variant):
    # stage 1: 3x3, 3x3, then the site (3x3/2 pool or conv); stage 2 the same; head: 3x3 unpadded, 1x1, 1x1
    # convpool adds one 3x3 conv before each pool; strided drops the pool and strides the last 3x3 conv
    site = [(3, 2, 1)]
    if variant == "strided":
        stage = [(3, 1, 1), (3, 2, 1)]
    elif variant == "convpool":
        stage = [(3, 1, 1), (3, 1, 1), (3, 1, 1), *site]
    else:
        stage = [(3, 1, 1), (3, 1, 1), *site]
    head = [(3, 1, 0), (1, 1, 0), (1, 1, 0)]
    expected = hand(stage + stage + head)
    rep = inspect(models.build(f"allcnn-c:{variant}"), (3, 32, 32))
    assert last_spatial(rep) == expected
    if variant in ("base", "all-cnn"):
        assert expected[0] == 27 and expected[1] == 4  # papers.md 1.4: 27 px at the 6x6 head
    final = rep.layers[-1]
    assert final.rf_global and final.rf == [32, 32]  # the global average sees the whole input


def _resnet_hand(blocks: tuple[int, ...], bottleneck: bool) -> tuple[float, float, float]:
    """Main path of a torchvision-layout ResNet (v1.5: bottlenecks stride at their 3x3)."""
    layers: list[tuple[float, float, float]] = [(7, 2, 3), (3, 2, 1)]
    for stage, n in enumerate(blocks):
        for b in range(n):
            s = 2 if stage > 0 and b == 0 else 1
            if bottleneck:
                layers += [(1, 1, 0), (3, s, 1), (1, 1, 0)]
            else:
                layers += [(3, s, 1), (3, 1, 1)]
    return hand(layers)


def test_builtin_resnets_final_rf():
    r18 = _resnet_hand((2, 2, 2, 2), False)
    r50 = _resnet_hand((3, 4, 6, 3), True)
    assert r18[:2] == (435, 32) and r50[:2] == (427, 32)
    assert last_spatial(inspect(models.build("resnet18"), (3, 224, 224))) == r18
    assert last_spatial(inspect(models.build("resnet50"), (3, 224, 224))) == r50


def test_blur_widens_rf_and_s2d_has_its_own():
    # tiny: conv3 -> site -> conv3 -> site -> conv3 -> site
    def net(site):
        return [(3, 1, 1), *site(1), (3, 1, 1), *site(2), (3, 1, 1), *site(3)]

    def max2(_):
        return [(2, 2, 0)]

    def blur3(_):  # blur(base=max, k=2, size=3): max 2x2 stride 1, then binomial 3 taps, stride 2, pad 1
        return [(2, 1, 0), (3, 2, 1)]

    r_max = inspect(models.build("tiny"), (3, 32, 32)).totals
    r_blur = inspect(models.build("tiny", downsample="blur(base=max,size=3)"), (3, 32, 32)).totals
    r_s2d = inspect(models.build("tiny", downsample="s2d"), (3, 32, 32)).totals
    assert (r_max["rf"], r_max["jump"]) == hand(net(max2))[:2] == (22, 8)
    assert (r_blur["rf"], r_blur["jump"]) == hand(net(blur3))[:2] == (36, 8)
    assert r_blur["rf"] > r_max["rf"]
    assert (r_s2d["rf"], r_s2d["jump"]) == hand(net(max2))[:2]  # s2d: 2x2 blocks, stride 2


@pytest.mark.parametrize("name", ops.names())
def test_every_operator_uses_its_declared_geometry(name):
    op = ops.build(name, 4, 4, stride=2)
    rep = inspect(nn.Sequential(op), (4, 16, 16))
    row = rep.layers[-1]
    geo = op.geometry()
    if any(g.kernel is None for g in geo):
        assert row.rf_global
        return
    r, j, c = hand([(g.kernel, g.stride, g.padding) for g in geo])
    assert row.rf[0] == pytest.approx(r) and row.jump[0] == pytest.approx(j) and row.center[0] == pytest.approx(c)
    assert row.site is None and row.downsample == (row.shape[-1] < 16)


def test_diffstride_uses_current_stride():
    if "diffstride" not in ops.names():
        pytest.skip("diffstride not registered")
    op = ops.build("diffstride", 4, 4, stride=2)
    geo = op.geometry()
    rep = inspect(nn.Sequential(op), (4, 16, 16))
    if any(g.kernel is None for g in geo):
        assert rep.layers[-1].rf_global
    else:
        assert rep.layers[-1].jump[0] == pytest.approx(hand([(g.kernel, g.stride, g.padding) for g in geo])[1])


def test_centre_offsets_half_pixel():
    # two 2x2/2 max pools: centre 0.5 then 0.5 + 0.5*2 = 1.5
    net = nn.Sequential(nn.MaxPool2d(2, 2), nn.MaxPool2d(2, 2))
    rep = inspect(net, (1, 8, 8))
    assert [layer.center[0] for layer in rep.layers] == [0.5, 1.5]
    assert hand([(2, 2, 0), (2, 2, 0)])[2] == 1.5


class _Branches(nn.Module):
    """A 3x3 branch and a 2x2 (even kernel, half-pixel shift) branch added, then concatenated with a
    functional path: F.max_pool2d, x[:, :, ::2, ::2] and F.pad."""

    def __init__(self, aligned: bool) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, 2, 1)
        self.b = nn.Conv2d(2, 2, 1, 2, 0) if aligned else nn.Conv2d(2, 2, 2, 2, 0)

    def forward(self, x):
        y = F.relu(self.a(x) + self.b(x))
        z = F.max_pool2d(x, 3, 2, 1)
        s = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0))
        return torch.flatten(torch.cat([y, z, s], 1), 1)


def test_merge_alignment_and_functional_ops():
    rep = inspect(_Branches(aligned=True), (2, 8, 8))
    assert not rep.totals["misaligned"]
    rep = inspect(_Branches(aligned=False), (2, 8, 8))
    mis = rep.totals["misaligned"]
    assert len(mis) == 1 and "add" in mis[0]["layer"]
    add = [layer for layer in rep.layers if layer.op == "add"][0]
    # union of [c - (r-1)/2, c + (r-1)/2]: 3x3/2 p1 -> [-1, 1]; 2x2/2 p0 -> [0, 1] => size 3, centre 0
    assert add.rf == [3, 3] and add.center == [0, 0]
    pool = [layer for layer in rep.layers if layer.op == "max_pool2d"][0]
    assert pool.rf == [3, 3] and pool.jump == [2, 2] and pool.other_ops == 2 * 4 * 4 * 8  # k^2-1 per output
    sub = [layer for layer in rep.layers if layer.op == "getitem"][0]
    assert sub.rf == [1, 1] and sub.jump == [2, 2] and sub.activation_bytes == 0
    cat = [layer for layer in rep.layers if layer.op == "cat"][0]
    assert cat.rf == [3, 3] and cat.jump == [2, 2]


def test_resnet_shortcut_alignment():
    # option B (1x1/2 projection) keeps centres; option D (2x2 avg pool, then 1x1) shifts them by half a pixel
    b = inspect(models.build("resnet20", shortcut="B"), (3, 32, 32)).totals["misaligned"]
    d = inspect(models.build("resnet20", shortcut="D"), (3, 32, 32)).totals["misaligned"]
    assert b == [] and len(d) == 2


class _Dynamic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, 1, 1)
        self.p = nn.MaxPool2d(2, 2)
        self.c2 = nn.Conv2d(4, 4, 3, 1, 1)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: torch.fx cannot trace this
            x = -x
        return self.c2(self.p(self.c1(x)))


def test_fallback_module_walk_warns():
    with pytest.warns(RuntimeWarning, match="module-order walk"):
        rep = inspect(_Dynamic(), (3, 16, 16))
    assert rep.method == "module-walk" and rep.warnings
    assert last_spatial(rep) == hand([(3, 1, 1), (2, 2, 0), (3, 1, 1)])
    assert rep.totals["macs"] == 16 * 16 * 4 * 27 + 8 * 8 * 4 * 36


def test_global_operator_makes_the_final_rf_the_input():
    rep = inspect(models.build("tiny", downsample="spectral"), (3, 32, 32))
    assert rep.totals["rf_global"] and rep.totals["rf"] == 32 and rep.totals["rf_layer"] == "features.11.op"
    assert not inspect(models.build("tiny"), (3, 32, 32)).totals["rf_global"]


def test_global_ops_report_input_size():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = inspect(net, (3, 20, 24))
    gap = rep.layers[1]
    assert gap.rf_global and gap.rf == [20, 24]
    assert rep.totals["rf"] == 3 and rep.totals["rf_layer"] == rep.layers[0].name


class _ViewS2D(nn.Module):
    """timm-style space-to-depth written with view/permute (the 4-D map leaves 4-D and comes back)."""

    def __init__(self, bs: int = 4) -> None:
        super().__init__()
        self.bs = bs
        self.conv = nn.Conv2d(3 * bs * bs, 8, 3, 1, 1)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        n, c, h, w = x.shape
        bs = self.bs
        x = x.view(n, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4).contiguous()
        x = self.conv(x.view(n, c * bs * bs, h // bs, w // bs))
        y = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # channels-last norm, ConvNeXt style
        return F.adaptive_avg_pool2d(y, 1).permute(0, 2, 3, 1)  # a 1x1 head map, permuted


def test_space_to_depth_by_views_and_permuted_maps():
    rep = inspect(_ViewS2D(), (3, 32, 32))
    conv = rep.layer("conv")
    assert conv.rf == [4 + 2 * 4, 4 + 2 * 4] and conv.jump == [4, 4]  # s2d 4x4 blocks, then a 3x3 conv
    assert rep.totals["rf"] == 12 and rep.totals["jump"] == 4 and not rep.totals["rf_global"]
