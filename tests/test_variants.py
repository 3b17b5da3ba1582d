"""The one variant grammar and builder: parsing, head/channel adaptation, weights, per-site expansion, errors."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from _usermodel import MYNET
from poolstride.errors import ModelError, PoolstrideError, SpecError
from poolstride.variants import (
    RepeatChannels,
    Variant,
    build,
    init_hash,
    parse_entry,
    parse_variants,
    per_site_variants,
    weights_record,
)


@pytest.fixture()
def usermod(tmp_path, monkeypatch):
    """A user model file in the current directory (importable without PYTHONPATH, as in the CLI)."""
    name = f"mynet_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MYNET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


def test_grammar_names_are_what_the_user_wrote_and_meanings_are_recorded(usermod):
    vs = parse_variants(f"{usermod}:build", "default, pool->conv(k=3) ,max,x=conv->conv(s=1)+blur(size=4)[skip=stem]")
    assert [v.name for v in vs] == ["default", "pool->conv(k=3)", "max", "x"]
    assert [v.kind for v in vs] == ["default", "policy", "policy", "policy"]
    assert vs[2].expanded_from == "max" and vs[2].policy == "pool->max; conv->conv(s=1)+max"
    assert vs[2].select["skip"] == ["stem", "shortcut"]
    assert vs[3].select["skip"] == ["stem"] and vs[3].policy == "conv->conv(s=1)+blur(base=avg)"
    # the record round-trips, and the same meaning under two spellings is refused
    assert Variant.from_dict(vs[1].to_dict()).to_dict() == vs[1].to_dict()
    with pytest.raises(SpecError, match="same variant"):
        parse_variants("tiny", "max,max(k=2)")
    with pytest.raises(SpecError, match="unknown operator .nope.; valid operators: max"):
        parse_variants("tiny", "pool->nope(k=3)")
    with pytest.raises(SpecError, match="bad selector"):
        parse_variants("tiny", "pool->conv[colour=red]")
    # built-in: an operator is the family's own knob; structural variants are models
    named = parse_variants("tiny", "blur-2=blur(base=max,size=2),my net.v2 = pool->avg")
    assert [(v.name, v.slug) for v in named] == [("blur-2", "blur-2"), ("my net.v2", "my-net.v2")]
    b = parse_variants("allcnn-c", "max,allcnn-c:strided")
    assert (b[0].downsample, b[0].policy, b[1].model) == ("max", None, "allcnn-c:strided")


def test_head_and_channels_are_adapted_and_said(usermod):
    torch.manual_seed(0)
    b = build(parse_entry("default", f"{usermod}:build"), 3, (1, 16, 16))
    assert isinstance(b.model, RepeatChannels) and b.model(torch.zeros(2, 1, 16, 16)).shape == (2, 3)
    assert any("num_classes=3" in a for a in b.adaptations)
    assert any("repeated to 3 channels" in a for a in b.adaptations)
    b2 = build(parse_entry("default", f"{usermod}:avgnet"), 5, (2, 16, 16))
    assert b2.model(torch.zeros(1, 2, 16, 16)).shape == (1, 5)
    assert any("head: head replaced" in a and "1000 -> 5" in a for a in b2.adaptations)
    assert any("first conv conv adapted 3 -> 2" in a for a in b2.adaptations)
    with pytest.raises(ModelError, match="cannot find the classifier head"):
        build(parse_entry("default", f"{usermod}:nohead"), 10, (3, 16, 16))
    with pytest.raises(ModelError, match="factory exploded"):
        build(parse_entry("default", f"{usermod}:broken"), 10, (3, 16, 16))


def test_rebuild_from_the_record_is_bit_identical(usermod):
    v = parse_variants(f"{usermod}:build", "pool->conv(k=3)")[0]
    hashes = []
    for rec in (v, Variant.from_dict(v.to_dict())):
        torch.manual_seed(7)
        hashes.append(init_hash(build(rec, 3, (3, 16, 16)).model))
    torch.manual_seed(8)
    assert hashes[0] == hashes[1] != init_hash(build(v, 3, (3, 16, 16)).model)


def test_instances_are_copied_and_reinitialised_per_seed():
    from poolstride.variants import resolve_model_arg

    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    before = init_hash(net)
    name, obj = resolve_model_arg(net)
    assert name == "python:Sequential"
    v = Variant("default", name, obj=obj)
    hs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        hs.append(init_hash(build(v, 3, (3, 16, 16)).model))
    assert hs[0] == hs[1] != hs[2] and init_hash(net) == before  # the instance itself is untouched
    with pytest.raises(PoolstrideError, match="cannot be rebuilt"):
        build(Variant("default", name), 3, (3, 16, 16))


def test_weights_load_before_surgery_and_converted_sites_preserve_function(usermod, tmp_path):
    torch.manual_seed(0)
    src = build(parse_entry("default", f"{usermod}:avgnet"), 4, (3, 16, 16)).model
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    w = weights_record(path)
    x = torch.randn(2, 3, 16, 16)
    for entry, same in (("default", True), ("pool->conv(k=2)", True), ("pool->max", False)):
        v = Variant.from_dict({**parse_entry(entry, f"{usermod}:avgnet").to_dict(), "weights": w})
        torch.manual_seed(1)
        b = build(v, 4, (3, 16, 16))
        with torch.no_grad():
            diff = float((b.model.eval()(x) - src.eval()(x)).abs().max())
        assert (diff < 1e-5) == same, (entry, diff)
        assert any("tensors loaded" in a for a in b.adaptations)
    # another number of classes: the head keeps its fresh init, everything else is loaded
    b = build(
        Variant.from_dict({**parse_entry("default", f"{usermod}:avgnet").to_dict(), "weights": w}), 7, (3, 16, 16)
    )
    assert any("keeps its fresh init" in a for a in b.adaptations)
    # wrong architecture: the first mismatched keys are named; a corrupt file is one line
    bad = Variant.from_dict({**parse_entry("default", f"{usermod}:build").to_dict(), "weights": w})
    with pytest.raises(PoolstrideError, match=r"do not fit this model .*(missing|unexpected): "):
        build(bad, 4, (3, 16, 16))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PoolstrideError, match="not a readable state_dict"):
        build(Variant.from_dict({**bad.to_dict(), "weights": weights_record(junk)}), 4, (3, 16, 16))


def test_per_site_makes_one_variant_per_matched_site(usermod):
    base = parse_entry("default", f"{usermod}:build")
    vs, notes = per_site_variants(base, "pool->conv(k=3)", 3, (3, 16, 16))
    assert [v.name for v in vs] == ["max_pool2d", "max_pool2d_1"] and not notes
    assert (
        vs[0].site["kind"] == "pool" and vs[0].site["in_size"] == [16, 16] and vs[0].select["paths"] == ["max_pool2d"]
    )
    for v in vs:  # only that site changed
        torch.manual_seed(0)
        b = build(v, 3, (3, 16, 16))
        assert [c.site.path for c in b.conversion.changes] == [v.name]
    shortcut, _ = per_site_variants(base, "shortcut->avg+1x1", 3, (3, 16, 16))
    assert [v.name for v in shortcut] == ["block.shortcut.0"]
    with pytest.raises(PoolstrideError, match="matches no site"):
        per_site_variants(base, "stem->conv(s=1)+max", 3, (3, 16, 16))
    with pytest.raises(PoolstrideError, match="matches no site"):
        build(parse_entry("stem->conv(s=1)+max", f"{usermod}:build"), 3, (3, 16, 16))


def test_imagenet_net_on_small_data_warns_with_map_sizes():
    from poolstride.variants import feature_map_warning

    v = parse_entry("default", "resnet18")
    b = build(v, 10, (3, 32, 32))
    w = feature_map_warning(v, b.model, (3, 32, 32))
    assert w is not None and "final feature map is 1x1" in w and "32x32 -> 16x16 -> 8x8" in w
    tiny = parse_entry("default", "tiny")
    assert feature_map_warning(tiny, build(tiny, 10, (3, 32, 32)).model, (3, 32, 32)) is None


def test_a_name_may_hold_a_plus_sign() -> None:
    """The mishkin-pooling arm ``max+avg=mixed(...)`` is NAME=ENTRY (it once failed as an unparsable spec)."""
    v = parse_entry("max+avg=mixed(alpha=0.5,k=3)", "tiny")
    assert v.name == "max+avg"
    assert "mixed" in v.to_dict()["downsample"]
    # a policy whose action holds both '+' and '=' is still not a name
    assert parse_entry("conv->conv(s=1)+blur(size=4)", "tiny").name == "conv->conv(s=1)+blur(size=4)"
