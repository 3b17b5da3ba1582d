"""The study on torchvision and timm models (run in CI's vision environment: `make test-vision`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from poolstride.cli import main
from poolstride.train import synthetic

pytest.importorskip("torchvision")

VARIANTS = "default,pool->conv(k=3),conv->conv(s=1)+blur(size=4)"


@pytest.fixture()
def npz(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path / "cache"))
    d = synthetic(n_train=64, n_test=32, num_classes=3, size=32, seed=0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=d.x_train.permute(0, 2, 3, 1).numpy(), y_train=d.y_train.numpy(),
             x_test=d.x_test.permute(0, 2, 3, 1).numpy(), y_test=d.y_test.numpy())  # fmt: skip
    return f"npz:{path}"


@pytest.mark.parametrize("model", ["torchvision:resnet18", "timm:resnet18"])
def test_compare_hub_models_ends_with_a_decision_and_costs_match(model, npz, tmp_path, capsys):
    if model.startswith("timm"):
        pytest.importorskip("timm")
    out = tmp_path / "study"
    args = ["compare", "--model", model, "--variants", VARIANTS, "--dataset", npz, "--seeds", "2", "--epochs", "1",
            "--batch-size", "32", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "final feature map is 1x1" in text  # an ImageNet net on 32x32 data says so
    assert "Keep default" in text or "Use " in text or "No recommendation" in text
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["decision"]["sentences"]
    summ = {v["name"]: v for v in json.loads((out / "summary.json").read_text())["variants"]}
    assert all(summ[n]["n"] == 2 for n in VARIANTS.split(","))
    assert (
        main(["cost", model, "--input", "3x32x32", "--num-classes", "3", "--no-latency", "--json", "-v", VARIANTS]) == 0
    )
    cost = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["variants"]}
    for name in VARIANTS.split(","):
        assert (cost[name]["params"], cost[name]["macs"]) == (summ[name]["params"], summ[name]["macs"]), name
    assert summ["pool->conv(k=3)"]["params"] > summ["default"]["params"]


def test_named_hub_weights_that_are_not_cached_fail_in_one_line(npz, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    args = ["compare", "--model", "torchvision:resnet18", "-O", "weights=IMAGENET1K_V1", "--dataset", npz,
            "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not in the local cache" in err and "--weights FILE" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_torchvision_weights_file_then_function_preserving_surgery(tmp_path):
    import torchvision

    from poolstride.variants import Variant, build, parse_entry, weights_record

    torch.manual_seed(0)
    src = torchvision.models.resnet18(num_classes=3).eval()
    path = tmp_path / "r18.pt"
    torch.save(src.state_dict(), path)
    v = Variant.from_dict({**parse_entry("shortcut->avg+1x1", "torchvision:resnet18").to_dict(),
                           "weights": weights_record(path)})  # fmt: skip
    b = build(v, 3, (3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(build(Variant.from_dict({**v.to_dict(), "policy": None}), 3, (3, 64, 64)).model.eval()(x),
                              src(x), atol=1e-5)  # fmt: skip
        assert b.model.eval()(x).shape == (2, 3)
    assert any("tensors loaded" in a for a in b.adaptations)
