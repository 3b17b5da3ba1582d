"""Static cost (MACs, other ops, params, activations, training step), measured cost, gradient flow, ERF,
the worked examples and MODEL resolution."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import poolstride
from poolstride import ModelError, models, ops
from poolstride.analysis import cost_summary, erf, explain_ops, explain_stem, explain_vgg, gradflow, inspect, profile
from poolstride.resolve import parse_options, resolve


def flop_counter_macs(model: nn.Module, size: tuple[int, int, int]) -> int:
    model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, *size))
    return fc.get_total_flops() // 2


class _Functional(nn.Module):
    """conv/linear/matmul called functionally on parameters (get_attr nodes)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.fc = nn.Parameter(torch.randn(5, 8))
        self.proj = nn.Linear(5, 5)

    def forward(self, x):
        y = F.relu(F.conv2d(x, self.w, None, 2, 1))
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        y = F.linear(y, self.fc)
        return self.proj(y) @ torch.ones(5, 3)


@pytest.mark.parametrize(
    "name,size,kw",
    [
        ("tiny", (3, 32, 32), {}),
        ("allcnn-c:all-cnn", (3, 32, 32), {}),
        ("resnet20", (3, 32, 32), {}),
        ("resnet18", (3, 32, 32), {}),
        ("resnet50", (3, 32, 32), {"shortcut": "D", "stem": "s2d"}),
        ("tiny", (3, 32, 32), {"downsample": "s2d"}),
        ("tiny", (3, 32, 32), {"downsample": "conv(k=3)"}),
    ],
)
def test_macs_match_flop_counter(name, size, kw):
    m = models.build(name, **kw)
    assert inspect(m, size).totals["macs"] == flop_counter_macs(m, size)


def test_functional_macs_match_flop_counter():
    m = _Functional()
    rep = inspect(m, (3, 16, 16))
    assert rep.totals["macs"] == flop_counter_macs(m, (3, 16, 16)) == 8 * 8 * 8 * 27 + 8 * 5 + 25 + 15


def test_resnet50_builtin_macs_and_params():
    t = cost_summary(models.build("resnet50"), (3, 224, 224))
    assert t["macs"] == 4_089_184_256 and t["params"] == 25_557_032  # torchvision's figures
    assert abs(t["macs"] / 4.09e9 - 1) < 0.01


def test_other_ops_by_hand():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1, bias=True), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.AvgPool2d(2, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip
    rep = inspect(net, (3, 16, 16))
    e = 8 * 16 * 16
    want = [
        e,  # conv bias: 1 add per output element
        e,  # BN at inference: 1 op per element
        e,  # ReLU
        8 * 8 * 8 * 8,  # 3x3 max: k^2-1 = 8 comparisons per output
        8 * 4 * 4 * 4,  # 2x2 avg: k^2 = 4 per output
        8 * 16,  # global average over 4x4: 16 per output
        0,
        4,  # linear bias
    ]
    assert [layer.other_ops for layer in rep.layers] == want
    assert rep.totals["macs"] == e * 27 + 32
    assert rep.totals["params"] == 8 * 27 + 8 + 16 + 36
    assert rep.totals["other_ops_by_kind"]["max"] == 8 * 8 * 8 * 8
    # activation bytes: every non-view output in float32
    assert rep.totals["activation_bytes"] == 4 * (3 * e + 8 * 64 + 8 * 16 + 8 + 4)


def test_registered_operators_use_their_other_ops():
    m = models.build("tiny", downsample="blur(base=max,size=3)")
    rep = inspect(m, (3, 32, 32))
    rows = [layer for layer in rep.layers if layer.site]
    sites = models.sites(m, (3, 32, 32))
    assert len(rows) == 3
    for row, s in zip(rows, sites, strict=True):
        op = m.get_submodule(s.path).op
        assert row.other_ops == op.other_ops(s.in_channels, *s.in_size)
        assert row.site == {"path": s.path, "kind": "pool", "op": "blur(size=3)"}
        assert row.macs == 0  # the blur taps are other ops, not MACs


def test_training_step_first_layer_needs_no_grad_input():
    a, b = nn.Conv2d(3, 4, 3, 1, 1), nn.Conv2d(4, 4, 3, 1, 1)
    rep = inspect(nn.Sequential(a, nn.ReLU(), b), (3, 8, 8))
    ma, mb = 64 * 4 * 27, 64 * 4 * 36
    assert [layer.macs for layer in rep.layers] == [ma, 0, mb]
    assert rep.totals["train_step"]["backward_macs"] == ma + 2 * mb
    assert rep.totals["train_step"]["macs"] == 2 * ma + 3 * mb
    # freeze the first layer: it needs neither grad; the second still needs grad weight, not grad input
    a.requires_grad_(False)
    rep = inspect(nn.Sequential(a, nn.ReLU(), b), (3, 8, 8))
    assert rep.totals["train_step"]["backward_macs"] == mb
    assert rep.totals["frozen_params"] == 4 * 27 + 4 and rep.layers[0].trainable_params == 0


def test_batch_scales_counts():
    m = models.build("resnet20")
    one, four = inspect(m, (3, 32, 32)).totals, inspect(m, (3, 32, 32), batch=4).totals
    assert four["macs"] == 4 * one["macs"] and four["other_ops"] == 4 * one["other_ops"]
    assert four["activation_bytes"] == 4 * one["activation_bytes"] and four["rf"] == one["rf"]


def test_cost_summary_keys_and_speed():
    keys = {"params", "trainable_params", "macs", "other_ops", "activation_bytes", "rf", "jump"}
    s = cost_summary(models.build("tiny"), (3, 32, 32))
    assert set(s) == keys and s["rf"] == 22 and s["jump"] == 8
    cost_summary(models.build("resnet50"), (3, 224, 224))  # warm-up (meta kernels load once per process)
    times = []
    for spec in ("conv(k=3)", "blur(base=max,size=3)"):
        m = models.build("resnet50", downsample=spec)
        t0 = time.perf_counter()
        s = cost_summary(m, (3, 224, 224))
        times.append(time.perf_counter() - t0)
        assert s["jump"] == 32
    assert min(times) < 2.0  # ~0.2 s each on an idle core; generous for shared CI machines


def test_sites_marked_with_operator():
    rep = inspect(models.build("resnet20", shortcut="B"), (3, 32, 32))
    kinds = {(layer.site["kind"], layer.site["path"]) for layer in rep.sites}
    assert ("conv", "layer2.0.conv1") in kinds and ("shortcut", "layer2.0.shortcut") in kinds
    assert {s["path"] for s in rep.totals["sites"]} == {p for _, p in kinds}
    assert all(layer.downsample for layer in rep.layers if layer.site and layer.op == "StridedConv")


def test_lazy_top_level_exports():
    assert poolstride.inspect is inspect and poolstride.profile is profile and poolstride.gradflow is gradflow
    with pytest.raises(AttributeError):
        _ = poolstride.no_such_thing


def test_profile_cpu():
    p = profile(models.build("tiny"), (3, 16, 16), "cpu", batch_sizes=(1, 2), warmup=1, repeats=2)
    assert p.device == "cpu" and p.memory_method == "cpu-profiler"
    assert [b.batch for b in p.batches] == [1, 2]
    for b in p.batches:
        assert b.forward.median_ms > 0 and b.forward.iqr_ms >= 0 and b.train_step.median_ms > 0
        assert b.peak_memory_bytes > b.forward_peak_memory_bytes > 0
    # the forward peak holds at least the largest activation: 16 x 16 x 16 floats after the first conv
    assert p.batches[1].forward_peak_memory_bytes >= 2 * 16 * 16 * 16 * 4
    d = p.to_dict()
    assert set(d["batches"][0]) == {"batch", "forward", "train_step", "peak_memory_bytes", "forward_peak_memory_bytes"}


def test_gradflow_and_checkpoint(tmp_path):
    torch.manual_seed(0)
    m = models.build("resnet20", shortcut="B")
    x = torch.randn(2, 3, 16, 16)
    g = gradflow(m, x)
    assert len(g.layers) == 19 + 2 + 1  # 19 convs + 2 projection shortcuts + fc
    assert g.layers[0].name == "conv1" and g.layers[-1].name == "fc"
    assert math.isfinite(g.ratio) and g.ratio > 0 and math.isfinite(g.activation_ratio)
    path = tmp_path / "ck.pt"
    torch.save({"model": m.state_dict()}, path)
    g2 = gradflow(models.build("resnet20", shortcut="B"), (x, torch.zeros(2, dtype=torch.long)), checkpoint=path)
    assert len(g2.layers) == len(g.layers)
    fish = gradflow(models.build("resnet20", shortcut="fish"), x)  # pooling shortcuts: no shortcut convs
    assert len(fish.layers) == 20 and math.isfinite(fish.ratio)
    with pytest.raises(poolstride.PoolstrideError):
        gradflow(models.build("tiny"), x, checkpoint=path)


def test_erf_within_theoretical_rf(tmp_path):
    e = erf(models.build("tiny"), (3, 32, 32), samples=2)
    # last 4x4 map, centre unit (1, 1): centre 3.5 + 1 * 8 = 11.5, RF 22 -> input rows/cols 1..22
    assert e.feature_size == (4, 4) and e.unit == (1, 1)
    top, bottom, left, right = e.support()
    assert top >= 1 and bottom <= 22 and left >= 1 and right <= 22
    assert e.array.shape == (32, 32) and e.array.max() == pytest.approx(1.0)
    assert 1 <= e.extent(0.95) <= 23  # odd side around the centre of mass of a 22-px field
    img = e.image()
    assert img.dtype == np.uint8 and img.shape == (32, 32)
    assert e.save(tmp_path / "erf.png").stat().st_size > 0


def test_explain_ops_question_example():
    d = explain_ops()
    by = {r["spec"]: r for r in d["operators"]}
    assert d["input"][0] == [1, 2, 3, 4]
    assert by["max"]["output"] == [[6, 8], [14, 16]] and by["max"]["other_ops"] == 4 * 3
    assert by["avg"]["output"] == [[3.5, 5.5], [11.5, 13.5]] and by["avg"]["other_ops"] == 4 * 4
    conv = by["conv(k=2)"]
    assert conv["params"] == 4 + 1 and conv["params_c64"] == 4 * 64 * 64 + 64 and conv["macs"] == 4 * 4
    assert conv["output"] == by["avg"]["output"]  # averaging init
    assert by["max"]["params"] == 0 and by["max"]["rf"] == 2 and by["max"]["center"] == 0.5
    assert {r["name"] for r in d["operators"]} >= set(ops.names())


def test_explain_stem_claim():
    s = explain_stem()
    assert s["original"]["stem_macs"] == 112 * 112 * 64 * 3 * 49
    assert s["s1pool"]["stem_macs"] == 224 * 224 * 64 * 3 * 49
    assert s["stem_mac_ratio"] >= 4 and s["extra_pool_ops"] == 64 * 112 * 112 * 3 and s["holds"]


def test_explain_vgg_claim():
    v = explain_vgg(channels=16, size=8)
    assert v["holds"] and v["one_7x7"]["params"] == 49 * 256 and v["three_3x3"]["params"] == 27 * 256


def test_resolve():
    r = resolve("allcnn-c:all-cnn")
    assert r.builtin and r.input_size == (3, 32, 32)
    r = resolve("resnet50", {"stem": "s1pool"})
    assert r.model.get_submodule("conv1").label.startswith("convpool")
    r = resolve("poolstride.models.demo:TinyNet", {"num_classes": 3})
    assert r.source == "callable" and r.model.head[-1].out_features == 3
    with pytest.raises(ModelError, match="unknown model"):
        resolve("nonesuch")
    with pytest.raises(ModelError):
        resolve("poolstride.models.demo:Nope")
    assert parse_options(["stem=s1pool", "num_classes=10", "x=1.5", "b=true"]) == {
        "stem": "s1pool", "num_classes": 10, "x": 1.5, "b": True,
    }  # fmt: skip


def test_resolve_missing_packages():
    for pkg, name in (("torchvision", "torchvision:resnet18"), ("timm", "timm:resnet18")):
        try:
            __import__(pkg)
        except ImportError:
            with pytest.raises(ModelError, match="not installed"):
                resolve(name)


def test_bare_operator_uses_declared_cost():
    op = ops.build("blur(base=max,size=3)", 8)
    rep = inspect(op, (8, 16, 16))
    assert rep.totals["macs"] == 0 and rep.totals["other_ops"] == op.other_ops(8, 16, 16)
    assert rep.layers[0].name == "blur" and rep.totals["rf"] == 2 + 2


def test_gradflow_leaves_the_model_unchanged():
    m = models.build("tiny")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    gradflow(m, torch.randn(2, 3, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.grad is None for p in m.parameters()) and m.training
