"""Cross-checks on torchvision (and timm) models; skipped when they are not installed."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

tvm = pytest.importorskip("torchvision.models")

from poolstride.analysis import cost_summary, inspect  # noqa: E402
from poolstride.cli import main  # noqa: E402
from poolstride.resolve import resolve  # noqa: E402


def hand(layers):
    r, j = 1, 1
    for k, s in layers:
        r += (k - 1) * j
        j *= s
    return r, j


def resnet_main_path(blocks, bottleneck):
    """torchvision ResNet main path: 7x7/2, 3x3/2 max pool, then per block 3x3(s),3x3 (basic) or
    1x1, 3x3(s), 1x1 (bottleneck, v1.5), stride 2 in the first block of stages 2-4."""
    layers = [(7, 2), (3, 2)]
    for stage, n in enumerate(blocks):
        for b in range(n):
            s = 2 if stage > 0 and b == 0 else 1
            layers += [(1, 1), (3, s), (1, 1)] if bottleneck else [(3, s), (3, 1)]
    return hand(layers)


@pytest.mark.parametrize(
    "name,blocks,bottleneck,rf",
    [("resnet18", (2, 2, 2, 2), False, 435), ("resnet50", (3, 4, 6, 3), True, 427)],
)
def test_torchvision_resnet_rf_and_jump(name, blocks, bottleneck, rf):
    expected = resnet_main_path(blocks, bottleneck)
    assert expected == (rf, 32)
    rep = inspect(tvm.get_model(name, weights=None), (3, 224, 224))
    assert rep.method == "fx" and not rep.totals["misaligned"]
    assert (rep.totals["rf"], rep.totals["jump"]) == expected
    assert rep.layers[-1].rf_global  # fc after the global average: the whole input


def test_torchvision_resnet50_gmacs():
    s = cost_summary(tvm.resnet50(weights=None), (3, 224, 224))
    assert abs(s["macs"] / 4.09e9 - 1) < 0.01
    assert s["params"] == 25_557_032


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet1_0"])
def test_macs_match_flop_counter_torchvision(name):
    m = tvm.get_model(name, weights=None).eval()
    size = (3, 64, 64)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.zeros(1, *size))
    assert inspect(m, size).totals["macs"] == fc.get_total_flops() // 2


def test_resolve_and_cli_torchvision(capsys):
    r = resolve("torchvision:resnet18")
    assert r.source == "torchvision" and r.input_size == (3, 224, 224)
    rc = main(["inspect", "torchvision:resnet18", "--input", "3x64x64", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["totals"]["jump"] == 32
    rc = main(["inspect", "torchvision:nonesuch"])
    assert rc == 2 and "unknown torchvision model" in capsys.readouterr().err


def test_timm_model_runs():
    pytest.importorskip("timm")
    r = resolve("timm:resnet18")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = inspect(r.model, (3, 64, 64))
    assert rep.totals["jump"] == 32 and rep.totals["macs"] > 0
