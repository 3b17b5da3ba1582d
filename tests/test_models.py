"""Model families: parameter counts against the paper tables, sites, downsample swaps and overrides."""

from __future__ import annotations

import pytest
import torch

from poolstride import models
from poolstride.errors import ModelError, SiteError, SpecError


def nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# papers.md section 1.4, [C] column: conv weights + biases, 10 classes. ConvPool and All-CNN share counts.
ALLCNN_PARAMS = {
    ("a", "base"): 839_242,
    ("a", "strided"): 839_242,
    ("a", "convpool"): 1_254_250,
    ("a", "all-cnn"): 1_254_250,
    ("b", "base"): 885_610,
    ("b", "strided"): 885_610,
    ("b", "convpool"): 1_300_618,
    ("b", "all-cnn"): 1_300_618,
    ("c", "base"): 954_730,
    ("c", "strided"): 954_730,
    ("c", "convpool"): 1_369_738,
    ("c", "all-cnn"): 1_369_738,
}


@pytest.mark.parametrize(("family", "variant"), list(ALLCNN_PARAMS))
def test_allcnn_param_counts_match_paper(family, variant):
    m = models.build(f"allcnn-{family}", variant=variant)
    assert nparams(m) == ALLCNN_PARAMS[(family, variant)]
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_allcnn_c_layout_head_is_6x6():
    m = models.build("allcnn-c:all-cnn")
    shapes = []
    for layer in m.net:
        if isinstance(layer, torch.nn.AdaptiveAvgPool2d):
            layer.register_forward_hook(lambda mod, i, o: shapes.append(tuple(i[0].shape[-2:])))
    m(torch.zeros(1, 3, 32, 32))
    assert shapes == [(6, 6)]  # the paper's global average over 6x6
    sizes = [(s.in_size, s.out_size) for s in models.sites(m, (3, 32, 32))]
    assert sizes == [((32, 32), (16, 16)), ((16, 16), (8, 8))]


def test_allcnn_dropout_switch_and_train_eval():
    m = models.build("allcnn-c", dropout=False)
    assert all(d.p == 0 for d in m.modules() if isinstance(d, torch.nn.Dropout))
    m = models.build("allcnn-c")
    ps = sorted(d.p for d in m.modules() if isinstance(d, torch.nn.Dropout))
    assert ps == [0.2, 0.5, 0.5]
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    assert torch.equal(m(x), m(x))


def test_allcnn_variants_sites():
    ops = {v: [s.op for s in models.sites(models.build(f"allcnn-c:{v}"))] for v in ("base", "strided", "all-cnn")}
    assert ops["base"] == ["max(k=3)", "max(k=3)"]
    assert ops["all-cnn"] == ["conv", "conv"]
    kinds = [s.kind for s in models.sites(models.build("allcnn-b:strided"))]
    assert kinds == ["conv", "conv"]
    assert [s.op for s in models.sites(models.build("allcnn-b:strided"))] == ["conv(k=1)", "conv(k=1)"]


# He et al. 2016 Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M (option A).
@pytest.mark.parametrize(("depth", "paper_m"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_cifar_resnet_param_counts(depth, paper_m):
    m = models.build(f"resnet{depth}")
    assert round(nparams(m) / 1e6, 2 if depth < 110 else 1) == paper_m


def test_resnet20_exact_and_shortcut_options():
    assert nparams(models.build("resnet20")) == 269_722  # option A: no shortcut params
    # B and D: two 1x1 projections (16->32, 32->64) + their BN
    proj = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert nparams(models.build("resnet20", shortcut="B")) == 269_722 + proj
    assert nparams(models.build("resnet20", shortcut="D")) == 269_722 + proj
    assert nparams(models.build("resnet20", shortcut="fish")) == 269_722
    x = torch.randn(2, 3, 32, 32)
    for sc in ("A", "B", "D", "fish", "fish-id"):
        assert models.build("resnet20", shortcut=sc)(x).shape == (2, 10)


def test_fish_shortcut_is_pool_plus_concat():
    from poolstride.models.shortcuts import PoolWiden

    x = torch.randn(1, 4, 6, 6)
    y = PoolWiden(4, 8, 2, "cat")(x)
    ref = torch.nn.functional.max_pool2d(x, 2)
    assert torch.equal(y[:, :4], ref) and torch.equal(y[:, 4:], ref)
    z = PoolWiden(4, 8, 2, "zero")(x)
    assert torch.equal(z[:, :4], ref) and not z[:, 4:].any()


def test_imagenet_resnets_match_torchvision_param_counts():
    # torchvision's resnet18 / resnet50 parameter counts
    assert nparams(models.build("resnet18")) == 11_689_512
    assert nparams(models.build("resnet50")) == 25_557_032


@pytest.mark.parametrize("stem", ["original", "deep", "s1pool", "s2d"])
def test_imagenet_stems_keep_stride_4(stem):
    m = models.build("resnet18", stem=stem, num_classes=7)
    feats = []
    m.layer1.register_forward_hook(lambda mod, i, o: feats.append(o.shape))
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 7)
    assert feats[0][-2:] == (16, 16)


def test_torchvision_state_dict_loads_when_installed():
    tv = pytest.importorskip("torchvision")
    from poolstride.models.resnet_imagenet import load_torchvision

    for name in ("resnet18", "resnet50"):
        ref = getattr(tv.models, name)(weights=None).eval()
        ours = load_torchvision(models.build(name), ref.state_dict()).eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_downsample_applies_to_every_main_site_and_overrides():
    m = models.build("allcnn-c", downsample="blur(base=max,size=3)")
    assert [s.op for s in models.sites(m)] == ["blur(size=3)", "blur(size=3)"]
    m = models.build("tiny", downsample="avg", overrides={"features.7": "conv(k=3)"})
    assert [s.op for s in models.sites(m)] == ["avg", "conv", "avg"]
    m = models.build("resnet20", downsample="max")
    info = models.sites(m, (3, 32, 32))
    assert [(s.kind, s.op) for s in info] == [("conv", "max"), ("shortcut", "A")] * 2
    assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_every_operator_fits_every_builtin_cifar_model():
    from poolstride import ops

    x = torch.randn(2, 3, 32, 32)
    for name in ops.names():
        for model in ("tiny", "allcnn-c", "resnet20"):
            m = models.build(model, downsample=name)
            m.eval()
            assert m(x).shape == (2, 10), (model, name)


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(ModelError, match="valid models"):
        models.build("resnet9000")
    with pytest.raises(ModelError, match="valid"):
        models.build("resnet20", shortcut="Z")
    with pytest.raises(ModelError, match="variant"):
        models.build("allcnn-c:bogus")
    with pytest.raises(SpecError):
        models.build("tiny", downsample="blur(size=99)")
    with pytest.raises(SiteError, match="matches no site"):
        models.build("tiny", overrides={"nope.*": "max"})
    with pytest.raises(SiteError, match="shortcut"):
        models.build("resnet20", overrides={"layer2.0.shortcut": "max"})


def test_map_too_small_for_the_operator_is_a_site_error():
    m = models.build("tiny", downsample="blur(base=max,k=7)").eval()
    with pytest.raises(SiteError, match="too small"):
        m(torch.zeros(1, 3, 8, 8))


def test_allcnn_bn_and_final_relu_options_from_text():
    bns = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert bns(models.build("allcnn-c", bn="false")) == 0
    m = models.build("allcnn-c:all-cnn", bn="true", final_relu="false")
    assert bns(m) == 8  # 6 stage convs/sites + 2 head convs; none on the class conv
    assert not isinstance(m.net[-3], torch.nn.ReLU)
