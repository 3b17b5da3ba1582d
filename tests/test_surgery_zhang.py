"""``conv->conv(s=1)+act+blur``: Zhang 2019's anti-aliased strided conv (conv at stride 1 -> norm -> activation ->
BlurPool), against hand-built references of that layout; the fallback where no norm/activation follows the conv;
the per-site cost records against the model totals."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from poolstride import models
from poolstride.errors import SpecError
from poolstride.models.shortcuts import match
from poolstride.models.site import DownsampleSite
from poolstride.ops import Downsample
from poolstride.surgery import (
    VALID_FORMS,
    SurgeryWarning,
    convert_detailed,
    load_converted,
    parse_policy,
    save_converted,
)
from poolstride.surgery.cost import model_cost, site_cost
from poolstride.surgery.find import probe_input, run_probe

pytestmark = pytest.mark.filterwarnings("ignore::poolstride.surgery.SurgeryWarning")

ZHANG = "conv->conv(s=1)+act+blur(size=4)"
FOLDED = "conv->conv(s=1)+blur(size=4)"  # the blur folded in before the norm: not Zhang's layout


# ------------------------------------------------------------------------------------- references
def blur_ref(x: torch.Tensor, size: int = 4, stride: int = 2) -> torch.Tensor:
    """Zhang's BlurPool written out: reflect pad, depthwise binomial filter, subsample."""
    row = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=x.dtype)
    f = torch.outer(row, row)
    f = (f / f.sum()).expand(x.shape[1], 1, size, size)
    lo, hi = (size - 1) // 2, size // 2
    return F.conv2d(F.pad(x, (lo, hi, lo, hi), mode="reflect"), f, stride=stride, groups=x.shape[1])


class BlurRef(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur_ref(x)


def conv_s1(conv: Any, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias, 1, conv.padding, conv.dilation, conv.groups)


def randomize_bn(m: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            assert bn.running_mean is not None and bn.running_var is not None
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                bn.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return m.eval()


def run(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    with torch.no_grad():
        return m(x)


def batch(size: tuple[int, ...], seed: int = 3) -> torch.Tensor:
    return torch.randn(2, *size, generator=torch.Generator().manual_seed(seed))


def check_costs(m: nn.Module, conv, size: tuple[int, ...]) -> None:
    """The per-site deltas add up to the model totals (params, MACs and other ops)."""
    conv.compute_costs()
    before, after = model_cost(m, size), model_cost(conv.model, size)
    assert before["other_ops"] is not None and after["other_ops"] is not None
    assert sum(c.other_delta for c in conv.changes) == after["other_ops"] - before["other_ops"]
    assert sum(c.macs_delta for c in conv.changes) == after["macs"] - before["macs"]
    assert sum(c.params_delta for c in conv.changes) == after["params"] - before["params"]


# ----------------------------------------------------------------------------------- test models
class ZBlock(nn.Module):
    """conv3x3/2 -> BN -> ReLU -> conv3x3 -> BN, + a strided 1x1 shortcut, then add and ReLU. ``shared``: one ReLU
    module called twice (torchvision's BasicBlock)."""

    def __init__(self, cin: int = 8, cout: int = 16, shared: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = nn.Conv2d(cin, cout, 1, 2, bias=False)
        self.relu2 = None if shared else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        act = self.relu1 if self.relu2 is None else self.relu2
        return act(out + self.proj(x))


class ZNet(nn.Module):
    def __init__(self, shared: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block = ZBlock(shared=shared)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


def znet_ref(m: Any, x: torch.Tensor) -> torch.Tensor:
    """Zhang's layout of ZNet, written out with ZNet's own weights."""
    b = m.block
    with torch.no_grad():
        x = m.stem(x)
        out = blur_ref(F.relu(b.bn1(conv_s1(b.conv1, x))))  # conv s=1 -> BN -> ReLU -> blur
        out = b.bn2(b.conv2(out))
        return m.fc(F.relu(out + b.proj(x)).mean((2, 3)))


def resnet20_ref(m: Any, x: torch.Tensor) -> torch.Tensor:
    """Zhang's layout of the built-in CIFAR ResNet-20 (its blocks' strided conv1), with its own weights."""
    with torch.no_grad():
        x = F.relu(m.bn1(m.conv1(x)))
        for layer in (m.layer1, m.layer2, m.layer3):
            for b in layer:
                if isinstance(b.conv1, DownsampleSite):
                    conv = b.conv1.op.conv
                    out = blur_ref(F.relu(b.bn1(conv_s1(conv, x))))
                else:
                    out = F.relu(b.bn1(b.conv1(x)))
                out = b.bn2(b.conv2(out))
                x = F.relu(out + match(b.shortcut(x), out))
        return m.fc(torch.flatten(m.pool(x), 1))


class AddNet(nn.Module):
    """Site ``a``: a strided conv that feeds an add directly (no norm, no activation: the fallback); site ``b.0``:
    conv -> BN -> Dropout (passed through) -> ReLU inside an nn.Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.a = nn.Conv2d(8, 8, 3, 2, 1)
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.Dropout(0.1), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.a(x) + F.avg_pool2d(x, 2)
        return self.head(self.b(y).mean((2, 3)))


class SeqNet(nn.Module):
    """Does not trace (data-dependent branch): the chain is read from nn.Sequential siblings."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, 2, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        if y.sum() > 0:
            y = y * 2
        return y.mean((2, 3))


def leaf_order(m: nn.Module, x: torch.Tensor) -> list[str]:
    _, _, order = run_probe(m, x)
    names = dict(m.named_modules())
    return [p for p in order if not list(names[p].children())]


def inserted_after(gm: fx.GraphModule, site_path: str) -> tuple[fx.Node, fx.Node, fx.Node]:
    """(norm node, activation node, inserted node) after the conv node of ``site_path``; asserts the chain."""
    conv = next(n for n in gm.graph.nodes if n.op == "call_module" and str(n.target) == site_path)
    (norm,) = conv.users
    (act,) = norm.users
    (blur,) = act.users
    assert blur.op == "call_module" and isinstance(gm.get_submodule(str(blur.target)), Downsample)
    assert blur.args[0] is act
    return norm, act, blur


# -------------------------------------------------------------------------------------- policies
def test_policy_spelling():
    r = parse_policy(ZHANG).rules[0]
    assert (r.action, r.text, str(r.spec)) == ("stride1+act+", "conv->conv(s=1)+act+blur(base=avg)", "blur(base=avg)")
    assert parse_policy(r.text).rules[0] == r  # the canonical text round-trips (recipes)
    assert parse_policy("stem->conv(s=1)+act+max").rules[0].action == "stride1+act+"
    assert parse_policy(FOLDED).rules[0].action == "stride1+"  # the folded form stays as it was
    zhang = [f for f in VALID_FORMS if "+act+" in f]
    folded = [f for f in VALID_FORMS if f.startswith("conv->conv(s=1)+POOL")]
    assert len(zhang) == 1 and "Zhang" in zhang[0]
    assert len(folded) == 1 and "not Zhang's layout" in folded[0]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("max->max(s=1)+act+blur", "strided convs"),
        ("conv->conv(s=1)+bn+blur", "must be 'act'"),
        ("conv->conv(s=2)+act+blur", "conv at stride 1"),
        ("conv->conv(s=1)+act+conv(k=3)", "must keep channels"),
        ("conv->conv(s=1)+act+blur+max", "too many"),
    ],
)
def test_bad_zhang_policies(bad, match):
    with pytest.raises(SpecError, match=match) as e:
        parse_policy(bad)
    assert "valid policy forms" in str(e.value)


# ------------------------------------------------------------------------------------ conversion
def test_resnet_block_module_swap_matches_reference():
    torch.manual_seed(0)
    m = randomize_bn(ZNet())
    ref_model = copy.deepcopy(m)
    c = convert_detailed(m, ZHANG, (3, 16, 16))
    assert [ch.site.path for ch in c.changes] == ["block.conv1"]  # the 1x1 shortcut is a shortcut site
    assert not c.graph_rewritten and type(c.model) is ZNet  # a module swap keeps the class and its forward
    new = c.model.block
    assert new.conv1.stride == (1, 1) and torch.equal(new.conv1.weight, m.block.conv1.weight)
    assert isinstance(new.relu1, nn.Sequential) and isinstance(new.relu1[1], Downsample)
    assert c.changes[0].after == "conv3x3/1; blur(base=avg) after block.relu1"
    assert "Zhang's layout" in c.changes[0].init and "block.bn1 and block.relu1" in c.changes[0].init
    x = batch((3, 16, 16))
    out = run(c.model, x)
    assert out.shape == run(m, x).shape
    assert torch.allclose(out, znet_ref(m, x), atol=1e-5, rtol=1e-5)
    assert (out - run(m, x)).abs().max() > 1e-3  # not the original function
    # the blur runs after the activation, which runs after the norm, which runs after the stride-1 conv
    order = leaf_order(c.model, probe_input(c.model, (3, 16, 16)))
    seq = ["block.conv1", "block.bn1", "block.relu1.0", "block.relu1.1", "block.conv2"]
    assert [order.index(p) for p in seq] == sorted(order.index(p) for p in seq)
    # the input model is untouched
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref_model.state_dict().values(), strict=True))
    assert str(m) == str(ref_model)
    check_costs(m, c, (3, 16, 16))


def test_shared_relu_is_rewritten_in_the_graph():
    torch.manual_seed(0)
    m = randomize_bn(ZNet(shared=True))
    with pytest.warns(SurgeryWarning, match=r"inserted after a functional or shared activation \(block.conv1\)"):
        c = convert_detailed(m, ZHANG, (3, 16, 16))
    assert c.graph_rewritten and isinstance(c.model, fx.GraphModule)
    assert "block.relu1 is called 2 times" in c.changes[0].init
    norm, act, blur = inserted_after(c.model, "block.conv1")
    assert str(norm.target) == "block.bn1" and str(act.target) == "block.relu1"
    assert str(next(iter(blur.users)).target) == "block.conv2"
    # the second call of the shared ReLU (after the add) has no blur after it
    second = [n for n in c.model.graph.nodes if n.op == "call_module" and str(n.target) == "block.relu1"][1]
    assert [u.op for u in second.users] == ["call_method"]  # .mean
    x = batch((3, 16, 16))
    assert torch.allclose(run(c.model, x), znet_ref(m, x), atol=1e-5, rtol=1e-5)
    check_costs(m, c, (3, 16, 16))


def test_resnet20_matches_reference():
    torch.manual_seed(0)
    m = randomize_bn(models.build("resnet20"))
    c = convert_detailed(m, ZHANG, (3, 32, 32))
    assert [ch.site.path for ch in c.changes] == ["layer2.0.conv1.op", "layer3.0.conv1.op"]
    assert c.graph_rewritten  # F.relu in the block's forward: the blur goes into the graph
    for ch in c.changes:
        norm, act, _ = inserted_after(c.model, ch.site.path)
        assert str(norm.target) == ch.site.path.replace("conv1.op", "bn1") and act.target is F.relu
        assert ch.params_delta == 0 and ch.site.out_size == (ch.site.in_size[0] // 2,) * 2
    x = batch((3, 32, 32))
    out = run(c.model, x)
    assert out.shape == (2, 10)
    assert torch.allclose(out, resnet20_ref(m, x), atol=1e-5, rtol=1e-5)
    _, shapes, _ = run_probe(c.model, probe_input(c.model, (3, 32, 32)))
    assert shapes["layer2.0.conv1.op"][1] == (1, 32, 32, 32)  # the conv and its BN/ReLU now at full resolution
    assert shapes["layer2.0.conv2"][0] == (1, 32, 16, 16)  # the blur hands the block its old size
    check_costs(m, c, (3, 32, 32))


def test_resnet20_blur_size_1_is_the_original_function():
    # subsampling commutes with BN (eval) and ReLU: with a 1-tap blur the layout computes the strided model exactly
    m = randomize_bn(models.build("resnet20"))
    c = convert_detailed(m, "conv->conv(s=1)+act+blur(size=1)", (3, 32, 32))
    assert c.max_abs_diff is not None and c.max_abs_diff < 1e-5
    x = batch((3, 32, 32))
    assert torch.allclose(run(c.model, x), run(m, x), atol=1e-5)


def test_full_resolution_norm_and_activation_are_counted():
    m = randomize_bn(models.build("resnet20"))
    zh = convert_detailed(m, ZHANG, (3, 32, 32)).compute_costs()
    fo = convert_detailed(m, FOLDED, (3, 32, 32)).compute_costs()
    for a, b in zip(zh.changes, fo.changes, strict=True):
        assert a.macs_delta == b.macs_delta  # same conv at stride 1, same blur
        strided = (1, a.site.out_channels, *a.site.out_size)
        bn = m.get_submodule(a.site.path.replace("conv1.op", "bn1"))
        bn_relu = site_cost(nn.Sequential(bn, nn.ReLU()), strided)[1]
        assert bn_relu
        # BN and ReLU now see 4x the elements: 3x their strided cost more than the folded placement
        assert a.other_delta - b.other_delta == 3 * bn_relu
        assert a.other_before == b.other_before + bn_relu


def test_fallback_warns_and_keeps_todays_placement():
    torch.manual_seed(0)
    m = randomize_bn(AddNet())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        c = convert_detailed(m, ZHANG, (3, 16, 16))
    msgs = [str(w.message) for w in rec if issubclass(w.category, SurgeryWarning)]
    fallback = [w for w in msgs if "does not apply" in w]
    assert len(fallback) == 1 and fallback[0].startswith("site a: Zhang's layout")
    assert "add (add) follows a (Conv2d), not a norm or an activation" in fallback[0]
    assert "falling back to blur(base=avg) right after the conv" in fallback[0]
    ch = {x.site.path: x for x in c.changes}
    assert set(ch) == {"a", "b.0"}
    assert "fallback" in ch["a"].init and ch["a"].after == "conv3x3/1 + blur(base=avg)"
    assert "Zhang's layout: b.1, b.2 and b.3 now at full resolution" in ch["b.0"].init
    assert isinstance(c.model.b[3], nn.Sequential) and isinstance(c.model.b[3][1], Downsample)
    assert type(c.model) is AddNet
    x = batch((3, 16, 16))
    with torch.no_grad():
        s = m.stem(x)
        y = blur_ref(conv_s1(m.a, s)) + F.avg_pool2d(s, 2)  # site a: today's placement
        z = blur_ref(m.b[3](m.b[1](conv_s1(m.b[0], y))))  # site b.0: Zhang's (Dropout: identity in eval)
        ref = m.head(z.mean((2, 3)))
    assert torch.allclose(run(c.model, x), ref, atol=1e-5, rtol=1e-5)
    check_costs(m, c, (3, 16, 16))


def test_untraceable_model_uses_sequential_siblings():
    torch.manual_seed(0)
    m = randomize_bn(SeqNet())
    with pytest.warns(SurgeryWarning, match=r"site features.5: .*nothing follows features.5 in features"):
        c = convert_detailed(m, ZHANG, (3, 16, 16))
    assert not c.traced and not c.graph_rewritten
    ch = {x.site.path: x for x in c.changes}
    assert "Zhang's layout" in ch["features.2"].init and "fallback" in ch["features.5"].init
    assert isinstance(c.model.features[4], nn.Sequential)  # ReLU, then the blur
    x = batch((3, 16, 16))
    with torch.no_grad():
        f = m.features
        y = blur_ref(f[4](f[3](conv_s1(f[2], f[1](f[0](x))))))
        y = blur_ref(conv_s1(f[5], y))
        ref = (y * 2 if y.sum() > 0 else y).mean((2, 3))
    assert torch.allclose(run(c.model, x), ref, atol=1e-5, rtol=1e-5)
    check_costs(m, c, (3, 16, 16))


def test_recipe_round_trip(tmp_path):
    torch.manual_seed(0)
    m = models.build("resnet20")
    c = convert_detailed(m, ZHANG, (3, 32, 32))
    save_converted(c, tmp_path / "r20.pt", model="resnet20")
    loaded = load_converted(tmp_path / "r20.pt")
    x = batch((3, 32, 32))
    assert torch.equal(run(loaded, x), run(c.model, x))


def test_torchvision_resnet18():
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    m = randomize_bn(tvm.resnet18(weights=None))
    c = convert_detailed(m, ZHANG, (3, 64, 64), skip="stem")
    paths = ["layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"]
    assert [ch.site.path for ch in c.changes] == paths
    assert isinstance(c.model, fx.GraphModule)  # torchvision's BasicBlock calls its one ReLU twice
    for ch in c.changes:
        assert "relu is called 2 times" in ch.init
        norm, act, _ = inserted_after(c.model, ch.site.path)
        assert str(norm.target).endswith("bn1") and str(act.target).endswith("relu")
    # reference: ReLU(blur(ReLU(z))) = blur(ReLU(z)) (the blur averages non-negative values), so putting
    # ReLU -> blur inside bn1 and keeping the block's own ReLU after it is Zhang's layout, built by hand
    ref = copy.deepcopy(m)
    for p in paths:
        blk = ref.get_submodule(p.rpartition(".")[0])
        blk.conv1.stride = (1, 1)
        blk.bn1 = nn.Sequential(blk.bn1, nn.ReLU(), BlurRef())
    x = batch((3, 64, 64))
    out = run(c.model, x)
    assert out.shape == run(m, x).shape
    assert torch.allclose(out, run(ref, x), atol=1e-5, rtol=1e-5)
    check_costs(m, c, (3, 64, 64))
