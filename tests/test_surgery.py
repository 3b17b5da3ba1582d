"""Model surgery on models that need no torchvision: site finding, policies, selectors, shape checks,
function-preserving init, recipes."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import poolstride
from poolstride import models
from poolstride.errors import ModelError, SiteError, SpecError
from poolstride.surgery import (
    SurgeryWarning,
    analyze,
    convert,
    convert_detailed,
    load_converted,
    parse_policy,
    save_converted,
    sites,
)
from poolstride.surgery.coverage import MAIN_POLICIES
from poolstride.surgery.find import probe_input, run_probe

pytestmark = pytest.mark.filterwarnings("ignore::poolstride.surgery.SurgeryWarning")


# ------------------------------------------------------------------------------------ test models
class Block(nn.Module):
    """torchvision-style BasicBlock; the shortcut is called ``side`` so only the graph can tell."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.side = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride > 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.side is None else self.side(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += idt
        return F.relu(out)


class MiniResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.layer3 = Block(16, 32, 2)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class FuncNet(nn.Module):
    """Downsampling by functional calls only (found via fx)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.c2 = nn.Conv2d(8, 16, 3, 1, 1)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.avg_pool2d(F.relu(self.c2(x)), kernel_size=2, stride=2)
        return self.head(x.mean((2, 3)))


class Untraceable(nn.Module):
    """Data-dependent control flow (fx cannot trace) but module-level sites."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(), nn.AvgPool2d(2)
        )
        self.downsample = nn.Conv2d(3, 8, 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        if y.sum() > 0:
            y = y + self.downsample(x)
        return y


class Hopeless(nn.Module):
    """Neither traceable nor any module-level site."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = x * 2
        return F.max_pool2d(x, 2)


class CatNet(nn.Module):
    """A pool fed by a concatenation and a shortcut that narrows channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, 1, 1)
        self.b = nn.Conv2d(3, 4, 3, 1, 1)
        self.pool = nn.MaxPool2d(2)
        self.main1 = nn.Conv2d(8, 4, 3, 2, 1)
        self.main2 = nn.Conv2d(4, 4, 3, 1, 1)
        self.proj = nn.Conv2d(8, 4, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.cat([self.a(x), self.b(x)], 1))
        return self.main2(F.relu(self.main1(x))) + self.proj(x)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _out(m: nn.Module, size=(3, 32, 32), seed=3) -> torch.Tensor:
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(seed))
    m.eval()
    with torch.no_grad():
        return m(x)


# --------------------------------------------------------------------------------------- finding
def test_sites_of_a_torchvision_style_resnet():
    s = {x.path: x for x in sites(MiniResNet(), (3, 32, 32))}
    assert list(s) == [
        "conv1",
        "maxpool",
        "layer2.side.0",
        "layer2.conv1",
        "layer3.side.0",
        "layer3.conv1",
    ]  # fmt: skip  (execution order: the block computes its shortcut first)
    assert s["conv1"].kind == "stem" and s["maxpool"].kind == "pool"
    assert s["layer2.conv1"].kind == "conv" and s["layer2.side.0"].kind == "shortcut"  # graph, not the name
    c = s["layer3.side.0"]
    assert (c.in_channels, c.out_channels, c.stride, c.in_size, c.out_size) == (16, 32, 2, (4, 4), (2, 2))
    assert [x.stage for x in s.values()] == [0, 1, 2, 2, 3, 3]
    assert s["maxpool"].type == "max" and s["maxpool"].kernel == 3


def test_functional_pools_found_via_fx():
    ss = sites(FuncNet(), (3, 16, 16))
    assert [(x.path, x.type, x.via, x.in_channels, x.in_size, x.out_size) for x in ss] == [
        ("max_pool2d", "max", "fx", 8, (16, 16), (8, 8)),
        ("avg_pool2d", "avg", "fx", 16, (8, 8), (4, 4)),
    ]


def test_untraceable_model_falls_back_to_the_module_walk():
    ana = analyze(Untraceable(), (3, 16, 16))
    assert not ana.traced and "TraceError" in (ana.trace_error or "")
    kinds = {s.path: s.kind for s in ana.sites}
    assert kinds == {"features.2": "pool", "features.5": "pool", "downsample": "shortcut"}  # name heuristic


def test_hopeless_model_is_a_clear_error():
    with pytest.raises(ModelError, match="cannot be traced"):
        sites(Hopeless(), (3, 8, 8))


def test_builtin_models_expose_their_sites():
    s = sites(models.build("resnet18"), (3, 64, 64))
    assert [(x.path, x.kind) for x in s][:4] == [
        ("conv1.op", "stem"), ("maxpool.op", "pool"), ("layer2.0.conv1.op", "conv"),
        ("layer2.0.downsample.op.0", "shortcut"),
    ]  # fmt: skip
    assert poolstride.sites is sites


def test_probe_failure_is_a_model_error():
    with pytest.raises(ModelError, match="probe forward pass"):
        sites(MiniResNet(), (5, 32, 32))


# -------------------------------------------------------------------------------------- policies
def test_policy_parsing():
    p = parse_policy("pool->conv(k=3); shortcut->avg+1x1", skip="stem", stages=[1, 2], min_channels=8)
    assert [r.action for r in p.rules] == ["op", "shortcut"]
    assert p.select.skip == ("stem",) and p.select.stages == (1, 2)
    r = parse_policy("conv->conv(s=1)+blur(size=4)").rules[0]
    assert (r.action, str(r.spec)) == ("stride1+", "blur(base=avg)")
    assert parse_policy("max->max(s=1)+blur").rules[0].spec["base"] == "avg"
    assert parse_policy("pool->remove+stride-prev").rules[0].action == "remove+stride-prev"
    p2 = parse_policy(p.text, **{k: v for k, v in p.select.to_dict().items() if k != "stages"}, stages=[1, 2])
    assert p2 == p


@pytest.mark.parametrize(
    "bad",
    ["", "pool", "foo->conv", "pool->nope", "conv->remove+stride-prev", "conv->max(s=1)+blur",
     "shortcut->conv", "max->max(s=1)+conv(k=3)", "pool->conv(k=99)"],
)  # fmt: skip
def test_bad_policies_list_the_valid_forms(bad):
    with pytest.raises(SpecError) as e:
        parse_policy(bad)
    msg = str(e.value)
    assert "valid" in msg or "expected" in msg


# ------------------------------------------------------------------------------------ conversion
MAIN = [*MAIN_POLICIES, "shortcut->pool+identity"]  # the main policies, plus pool + identity


@pytest.mark.parametrize("policy", MAIN)
def test_main_policies_keep_shapes_and_do_not_mutate(policy):
    torch.manual_seed(0)
    m = MiniResNet()
    ref = copy.deepcopy(m)
    conv = convert_detailed(m, policy, (3, 32, 32))
    assert conv.changes, policy
    assert _same_state(m, ref) and str(m) == str(ref)  # input untouched
    assert _out(conv.model).shape == _out(m).shape
    _, shapes, _ = run_probe(conv.model, probe_input(conv.model, (3, 32, 32)))
    for c in conv.changes:  # every converted site still has its output size
        assert shapes[c.site.path][1][-2:] == c.site.out_size


def test_training_flags_of_the_input_are_untouched():
    m = MiniResNet().eval()
    m.layer2.bn1.train()  # a mixed-mode model
    flags = [mod.training for mod in m.modules()]
    c = convert_detailed(m, "pool->conv(k=3); shortcut->avg+1x1", (3, 32, 32)).compute_costs()
    assert [mod.training for mod in m.modules()] == flags
    assert not c.model.training and c.model.layer2.bn1.training  # the copy keeps the modes too
    assert not c.model.maxpool.training  # the new layer follows the one it replaces


def test_untouched_weights_are_kept():
    torch.manual_seed(0)
    m = MiniResNet()
    new = convert(m, "shortcut->avg+1x1", (3, 32, 32))
    old_sd, new_sd = m.state_dict(), new.state_dict()
    for k, v in old_sd.items():
        if ".side.0." in k:  # the 1x1 moved behind the pool: same weights, new key
            assert torch.equal(new_sd[k.replace("side.0.", "side.0.1.")], v)
        else:
            assert torch.equal(new_sd[k], v), k
    assert isinstance(new.layer2.side[0][0], poolstride.ops.Downsample)  # a registered op: analysis sees it
    assert new.layer2.side[0][1].stride == (1, 1)


def test_resnet_d_and_fishnet_shortcuts_on_builtin():
    m = models.build("resnet18")
    n0 = sum(p.numel() for p in m.parameters())
    fish = convert(m, "shortcut->pool+concat", (3, 64, 64))
    assert sum(p.numel() for p in fish.parameters()) < n0  # the 1x1 projections are gone
    ident = convert_detailed(m, "shortcut->pool+identity", (3, 64, 64))
    assert len(ident.changes) == 3 and all(c.params_delta < 0 for c in ident.changes)


def test_functional_sites_rewrite_the_graph():
    torch.manual_seed(0)
    m = FuncNet()
    conv = convert_detailed(m, "avg->conv(k=3)", (3, 16, 16), init="preserve")
    assert conv.graph_rewritten and isinstance(conv.model, fx.GraphModule)
    assert [c.init for c in conv.changes] == ["function-preserving (verified)"]
    assert torch.allclose(_out(conv.model, (3, 16, 16)), _out(m, (3, 16, 16)), atol=1e-5)
    blur = convert(m, "max->max(s=1)+blur(size=3)", (3, 16, 16))
    assert _out(blur, (3, 16, 16)).shape == (2, 4)
    assert any("blur" in str(getattr(mod, "spec", "")) for mod in blur.modules())


def test_function_preserving_inits():
    torch.manual_seed(0)
    # a conv replacing a 2x2 average pool starts as the averaging kernel
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 6, 3, padding=1))
    c = convert_detailed(net, "pool->conv(k=3)", (3, 16, 16), init="preserve")
    assert c.changes[0].init == "function-preserving (verified)"
    assert torch.allclose(_out(c.model, (3, 16, 16)), _out(net, (3, 16, 16)), atol=1e-5)
    # without preserve it is a fresh conv
    c2 = convert_detailed(net, "pool->conv(k=3)", (3, 16, 16))
    assert not torch.allclose(_out(c2.model, (3, 16, 16)), _out(net, (3, 16, 16)), atol=1e-3)
    # a max pool cannot be replaced by a linear map: said so, not faked
    m = convert_detailed(MiniResNet(), "pool->conv(k=3)", (3, 32, 32), init="preserve")
    assert "not possible" in m.changes[0].init
    # a 5x5 conv replacing a 3x3 strided conv embeds the old kernel
    r = models.build("resnet18").eval()
    c3 = convert_detailed(r, "conv->conv(k=5,bias=false)", (3, 64, 64), skip="stem", init="preserve")
    assert {ch.init for ch in c3.changes} == {"function-preserving (verified)"}
    assert torch.allclose(_out(c3.model, (3, 64, 64)), _out(r, (3, 64, 64)), atol=1e-4)
    # stride 1 + plain subsampling (blur size 1) computes exactly the strided conv
    c4 = convert_detailed(r, "conv->conv(s=1)+blur(size=1)", (3, 64, 64))
    assert all("function-preserving" in ch.init for ch in c4.changes)
    assert c4.max_abs_diff is not None and c4.max_abs_diff < 1e-4


def test_strided_cnn_moves_the_stride_to_the_previous_conv():
    m = models.build("allcnn-c")
    c = convert_detailed(m, "pool->remove+stride-prev", (3, 32, 32))
    assert [ch.after for ch in c.changes] == ["removed (stride -> net.3)", "removed (stride -> net.10)"]
    assert c.model.net[3].stride == (2, 2) and c.model.net[10].stride == (2, 2)
    assert all(ch.macs_delta is None for ch in c.changes)  # costs are computed on request
    c.compute_costs()
    assert all(ch.macs_delta < 0 and ch.params_delta == 0 for ch in c.changes)  # fewer MACs, same weights
    assert all(ch.other_delta is not None and ch.other_delta < 0 for ch in c.changes)  # no pool any more
    # the same without an fx graph, on nn.Sequential models
    u = convert_detailed(Untraceable(), "pool->remove+stride-prev", (3, 16, 16))
    assert not u.traced and len(u.changes) == 2


def test_shape_breaking_policies_name_the_site():
    with pytest.raises(SiteError, match=r"site pool: the layer before it is cat"):
        convert(CatNet(), "pool->remove+stride-prev", (3, 16, 16))
    with pytest.raises(SiteError, match=r"site proj: .*out_channels >= in_channels"):
        convert(CatNet(), "shortcut->pool+concat", (3, 16, 16))
    # lenient: the site is left alone, with a warning
    with pytest.warns(SurgeryWarning, match="site pool left unchanged"):
        c = convert_detailed(CatNet(), "pool->remove+stride-prev", (3, 16, 16), strict=False)
    assert not c.changes and c.skipped[0][1].startswith("unsupported")


def test_ceil_mode_pools_are_fitted_and_reported():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, 2, ceil_mode=True), nn.Conv2d(4, 4, 3))
    with pytest.warns(SurgeryWarning, match="edge crop"):
        c = convert_detailed(net, "pool->conv(k=3)", (3, 33, 33))
    assert c.changes[0].fit == (-1, -1)
    assert _out(c.model, (3, 33, 33)).shape == _out(net, (3, 33, 33)).shape


def test_selectors():
    m = models.build("resnet18")
    pol = "conv->conv(s=1)+blur"
    assert [c.site.path for c in convert_detailed(m, pol, (3, 64, 64), skip="stem").changes] == [
        "layer2.0.conv1.op", "layer3.0.conv1.op", "layer4.0.conv1.op",
    ]  # fmt: skip
    assert [c.site.stage for c in convert_detailed(m, pol, (3, 64, 64), stages=[3]).changes] == [3]
    assert [c.site.path for c in convert_detailed(m, pol, (3, 64, 64), paths="layer4.*").changes] == [
        "layer4.0.conv1.op"
    ]
    ex = convert_detailed(m, pol, (3, 64, 64), exclude=["layer2.*", "conv1*"])
    assert [c.site.path for c in ex.changes] == ["layer3.0.conv1.op", "layer4.0.conv1.op"]
    mc = convert_detailed(m, pol, (3, 64, 64), min_channels=128)
    assert [c.site.in_channels for c in mc.changes] == [128, 256]
    assert {s.path: why for s, why in mc.skipped}["conv1.op"] == "3 < min_channels=128"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"paths": "layer9.*"}, "path=layer9.* matches no site"),
        ({"stages": [7]}, "stage=7 matches no site"),
        ({"skip": "shortcut"}, None),  # matches sites: no selector warning
        ({"min_channels": 4096}, "min_channels=4096 excludes every site"),
    ],
)
def test_selectors_that_match_nothing_warn(kw, match):
    m = models.build("tiny")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        convert(m, "pool->avg", (3, 32, 32), **kw)
    msgs = [str(w.message) for w in rec if issubclass(w.category, SurgeryWarning)]
    if match is None:
        assert any("skip=shortcut" in x for x in msgs)  # tiny has no shortcut: that warns too
    else:
        assert any(match in x for x in msgs), msgs


def test_a_rule_that_matches_nothing_warns():
    with pytest.warns(SurgeryWarning, match=r"shortcut->avg\+1x1 matches no site"):
        c = convert_detailed(models.build("tiny"), "shortcut->avg+1x1", (3, 32, 32))
    assert not c.changes and c.max_abs_diff == 0.0


def test_converted_model_is_deterministic_and_trainable():
    m = models.build("tiny")
    torch.manual_seed(0)
    a = convert(m, "pool->conv(k=3)", (3, 32, 32))
    torch.manual_seed(0)
    b = convert(m, "pool->conv(k=3)", (3, 32, 32))
    assert _same_state(a, b)
    a.train()
    loss = a(torch.randn(4, 3, 32, 32)).square().mean()
    loss.backward()
    assert a.features[3].op.conv.weight.grad is not None


def test_recipe_round_trip(tmp_path):
    torch.manual_seed(0)
    m = models.build("resnet18")
    c = convert_detailed(m, "pool->conv(k=3); shortcut->avg+1x1", (3, 64, 64), skip="stem", init="preserve")
    path = tmp_path / "r18.pt"
    recipe = save_converted(c, path, model="resnet18")
    assert recipe["policy"] == c.policy.text and recipe["select"]["skip"] == ["stem"]
    blob = torch.load(path, weights_only=True)  # no pickled code
    assert blob["recipe"]["model"] == "resnet18" and (tmp_path / "r18.pt.json").exists()
    loaded = load_converted(path)
    assert torch.equal(_out(loaded, (3, 64, 64)), _out(c.model, (3, 64, 64)))


def test_recipe_round_trip_for_a_graph_module(tmp_path):
    torch.manual_seed(0)
    c = convert_detailed(FuncNet(), "pool->conv(k=3)", (3, 16, 16))
    save_converted(c, tmp_path / "f.pt")
    loaded = load_converted(tmp_path / "f.pt", builder=FuncNet)
    assert isinstance(loaded, fx.GraphModule)
    assert torch.equal(_out(loaded, (3, 16, 16)), _out(c.model, (3, 16, 16)))
