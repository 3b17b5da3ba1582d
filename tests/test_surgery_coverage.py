"""Coverage: torchvision (and timm) classification models convert under the main policies, keep their
shapes, or are reported as unsupported with a reason.

Skipped when torchvision / timm are not installed (CI does not install them). The required models run by
default (about 45 s on two shared CPU cores with one intra-op thread; 64x64 inputs, eval mode, no grad,
no weight downloads); the sweep over *every* torchvision classification model is marked ``slow`` and runs
only with ``POOLSTRIDE_COVERAGE_ALL=1`` (about 17 minutes: the largest RegNet/ViT models dominate).
"""

from __future__ import annotations

import os

import pytest
import torch

from poolstride.surgery.coverage import MAIN_POLICIES, check_coverage, markdown, sweep

tvm = pytest.importorskip("torchvision.models")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning"),
]


REQUIRED = [
    "resnet18", "resnet50", "vgg11", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1", "densenet121",
    "efficientnet_b0", "regnet_y_400mf", "shufflenet_v2_x1_0", "convnext_tiny",
]  # fmt: skip
#: models with pooling sites (pool policies must change them)
HAS_POOLS = {"resnet18", "resnet50", "vgg11", "squeezenet1_1", "densenet121", "shufflenet_v2_x1_0"}
#: models with strided-conv residual shortcuts
HAS_SHORTCUTS = {"resnet18", "resnet50", "regnet_y_400mf"}


def _check(name: str, model: torch.nn.Module, pools: bool, shortcuts: bool) -> None:
    with torch.no_grad():
        rows = {r.policy: r for r in check_coverage(name, model)}
    assert set(rows) == set(MAIN_POLICIES)
    for r in rows.values():
        assert r.status != "unsupported", f"{name} {r.policy}: {r.reason}"
        if r.status in ("partial", "no site"):
            assert r.reason, (name, r.policy)
        if r.changed:
            assert r.converted_out == r.model_out, (name, r.policy)
    # every model but VGG (pools only) has strided convs, at least the stem
    for p in ("conv->conv(s=1)+max", "conv->conv(s=1)+blur(size=4)"):
        if "vgg" in name:
            assert rows[p].status == "no site", (name, p)
        else:
            assert rows[p].status == "converted" and rows[p].changed >= 1, (name, p)
    if pools:
        for p in ("pool->conv(k=3)", "max->max(s=1)+blur"):
            assert rows[p].status == "converted", (name, p, rows[p].reason)
        assert rows["pool->remove+stride-prev"].status in ("converted", "partial")
    if shortcuts:
        for p in ("shortcut->avg+1x1", "shortcut->pool+concat"):
            assert rows[p].status == "converted", (name, p, rows[p].reason)


@pytest.mark.parametrize("name", REQUIRED)
def test_required_torchvision_models_convert(name):
    torch.manual_seed(0)
    _check(f"torchvision:{name}", tvm.get_model(name, weights=None), name in HAS_POOLS, name in HAS_SHORTCUTS)


@pytest.mark.parametrize("name", ["resnet50d", "efficientnet_b0"])
def test_timm_models_convert(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    _check(f"timm:{name}", timm.create_model(name, pretrained=False), name == "resnet50d", False)


@pytest.mark.skipif(not os.environ.get("POOLSTRIDE_COVERAGE_ALL"), reason="set POOLSTRIDE_COVERAGE_ALL=1")
def test_every_torchvision_classification_model_converts_or_says_why():
    from poolstride.surgery.coverage import torchvision_builders

    rows = sweep(torchvision_builders())
    print(markdown(rows))
    names = {r.model for r in rows}
    assert len(names) == len(tvm.list_models(module=tvm))
    for r in rows:
        assert r.status in ("converted", "partial", "no site", "unsupported")
        if r.status != "converted":
            assert r.reason, (r.model, r.policy)
        if r.changed:
            assert r.converted_out == r.model_out


def test_shortcuts_are_told_apart_by_the_graph():
    from poolstride import sites

    kinds = {s.path: s.kind for s in sites(tvm.get_model("resnet50", weights=None), (3, 64, 64))}
    assert kinds["conv1"] == "stem" and kinds["maxpool"] == "pool"
    for i in (2, 3, 4):
        assert kinds[f"layer{i}.0.conv2"] == "conv" and kinds[f"layer{i}.0.downsample.0"] == "shortcut"
    reg = {s.path: s.kind for s in sites(tvm.get_model("regnet_y_400mf", weights=None), (3, 64, 64))}
    assert reg["trunk_output.block2.block2-0.proj.0"] == "shortcut"
    assert reg["trunk_output.block2.block2-0.f.b.0"] == "conv"
    timm = pytest.importorskip("timm")
    d = {s.path: (s.kind, s.type) for s in sites(timm.create_model("resnet50d", pretrained=False), (3, 64, 64))}
    assert d["layer2.0.downsample.0"] == ("shortcut", "avg")  # ResNet-D's pool sits on the shortcut
