"""Audit findings of issue 13: weight decay on learned downsampling parameters, and ConvBlurPool's kernel.

1. ``make_optimizer`` must not decay DiffStride's stride, the mixed-pool gate, norm-layer parameters or biases
   (decay alone drove a stride from 2 toward 0); conv/linear weights are still decayed, and the grouping is
   recorded in the run config and result.
2. ``blur(base=conv)`` must default to the 3x3 conv of the strided conv it replaces (it was 2x2: fewer parameters
   than ResNet-20 and a half-pixel shift against the shortcut); ``blur(base=max)`` keeps MaxBlurPool's 2x2 pool.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poolstride import models, ops, parse
from poolstride.analysis import inspect
from poolstride.ops.blur import blur_downsample
from poolstride.train import RunSpec, get_recipe, synthetic, train_run
from poolstride.train.engine import build_model, make_optimizer, run_config

CPU = torch.device("cpu")


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def groups(opt: torch.optim.Optimizer, recipe) -> tuple[set[int], set[int]]:
    """ids of the parameters in the decayed and the not-decayed groups (every group is one or the other)."""
    decay: set[int] = set()
    none: set[int] = set()
    for g in opt.param_groups:
        assert g["weight_decay"] in (0.0, recipe.weight_decay)
        (decay if g["weight_decay"] == recipe.weight_decay and recipe.weight_decay > 0 else none).update(
            id(p) for p in g["params"]
        )
    return decay, none


def zero_grad_steps(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    """``steps`` optimizer steps with a zero (not None) gradient on every parameter: only weight decay moves them."""
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()


# -- 1. weight decay groups ---------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["fast", "paper", "adamw"])
def test_learned_downsampling_params_are_not_decayed(recipe):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=True),
        nn.BatchNorm2d(8),
        ops.build("diffstride", 8),
        ops.build("diffstride(init=3,shared=false)", 8),
        ops.build("mixed(alpha=0.9,learnable=true)", 8),
    )
    rec = get_recipe(recipe)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, rec, CPU)
    zero_grad_steps(model, opt, 2000)
    after = dict(model.named_parameters())
    # the strides, the gate, the BN affine parameters and the conv bias do not move at all
    for name in ("2.strides", "3.strides", "4.logit", "1.weight", "1.bias", "0.bias"):
        assert torch.equal(after[name].detach(), before[name]), name
    assert after["2.strides"].tolist() == [2.0] and after["3.strides"].tolist() == [3.0, 3.0]
    assert float(torch.sigmoid(after["4.logit"].detach())) == pytest.approx(0.9, abs=1e-6)
    # ...while the conv weight is still decayed
    assert after["0.weight"].norm() < 0.9 * before["0.weight"].norm()


@pytest.mark.parametrize("downsample", ["diffstride", "mixed(learnable=true)", "blur(base=conv)"])
def test_groups_split_weights_from_norms_biases_and_operator_params(downsample):
    built = build_model(RunSpec.of("tiny", downsample), 4, (3, 16, 16))
    model = built.model
    rec = get_recipe("fast")
    decay, none = groups(make_optimizer(model, rec, CPU), rec)
    assert decay and none and not decay & none
    assert decay | none == {id(p) for p in model.parameters()}
    for name, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            full = f"{name}.{pname}"
            if isinstance(m, nn.modules.batchnorm._BatchNorm) or pname == "bias":
                assert id(p) in none, full
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                assert id(p) in decay, full  # conv weights, inside operators too (blur(base=conv).conv)
            elif isinstance(m, ops.Downsample):
                assert id(p) in none, full  # DiffStride's strides, the mixed gate
            else:  # pragma: no cover - tiny has nothing else
                raise AssertionError(full)
    if downsample == "diffstride":
        names = [n for n, p in model.named_parameters() if id(p) in none]
        assert any(n.endswith("op.strides") for n in names)


def test_operator_params_are_found_by_owner_not_by_shape():
    """A parameter held by a downsampling operator itself (not by a conv/linear inside it) is not decayed
    whatever its shape; a module may also declare names with ``no_weight_decay()`` (timm's convention)."""

    class Gain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(1, 4, 1, 1))
            self.kernel = nn.Parameter(torch.ones(4, 4))

        def no_weight_decay(self) -> set[str]:
            return {"gain"}

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - not called
            return x * self.gain

    op = ops.build("diffstride", 4)
    op.strides = nn.Parameter(torch.full((1, 1), 2.0))  # a 2-D operator parameter
    model = nn.Sequential(op, Gain(), ops.build("blur(base=conv)", 4, 8))
    rec = get_recipe("fast")
    decay, none = groups(make_optimizer(model, rec, CPU), rec)
    assert id(op.strides) in none and id(model[1].gain) in none
    assert id(model[1].kernel) in decay and id(model[2].conv.weight) in decay and id(model[2].conv.bias) in none


def test_fused_and_foreach_fallbacks_keep_the_groups(monkeypatch):
    real = torch.optim.SGD
    calls: list[dict] = []

    def picky(params, **kw):
        calls.append(kw)
        if kw.get("fused") or kw.get("foreach"):
            raise RuntimeError("not here")
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "SGD", picky)
    model = models.build("tiny", "diffstride", num_classes=4)
    rec = get_recipe("fast")
    opt = make_optimizer(model, rec, CPU)
    assert len(calls) == 3 and "fused" not in calls[-1] and "foreach" not in calls[-1]
    decay, none = groups(opt, rec)
    assert decay and none and decay | none == {id(p) for p in model.parameters()}


def test_grouping_is_recorded_in_config_and_result(tmp_path):
    ds = synthetic(n_train=64, n_test=32, num_classes=4, size=16, seed=0)
    spec = RunSpec.of("tiny", "diffstride", seed=0)
    rec = get_recipe("fast", epochs=1, batch_size=32, shift_images=16, eval_batch_size=32)
    built = build_model(spec, 4, (3, 16, 16))
    cfg = run_config(spec, rec, "synthetic", "cpu", built)
    g = cfg["optimizer_groups"]
    total = nparams(built.model)
    assert g["decay"]["params"] + g["no_decay"]["params"] == total
    assert g["decay"]["tensors"] + g["no_decay"]["tensors"] == len(list(built.model.parameters()))
    assert any(n.endswith("op.strides") for n in g["operator"])
    assert g["no_decay"]["names"] and len(g["no_decay"]["names"]) <= 8
    r = train_run(spec, ds, rec, "cpu", tmp_path / "run")
    assert r["status"] == "ok" and r["optimizer_groups"] == g
    import json

    assert json.loads((tmp_path / "run" / "config.json").read_text())["optimizer_groups"] == g


# -- 2. blur(base=conv): the kernel of the conv it replaces ------------------------------------------------
def test_blur_conv_defaults_to_a_centred_3x3_conv_and_max_keeps_2x2():
    op = ops.build("blur(base=conv)", 16, 32)
    assert op.conv is not None and op.conv.kernel_size == (3, 3) and op.conv.padding == (1, 1)
    assert op.param_count() == 9 * 16 * 32 + 32
    ref = ops.build("conv(k=3)", 16, 32)
    assert op.geometry()[0].center_offset == ref.geometry()[0].center_offset == 0  # centred like the strided conv
    assert ops.build("blur(base=conv,k=2)", 16, 32).conv.kernel_size == (2, 2)  # an explicit k is honoured
    mx = ops.build("blur", 8)
    assert mx.k == 2 and mx.geometry()[0].kernel == 2  # MaxBlurPool: 2x2 max pool at stride 1 (Zhang 2019)
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(mx(x), blur_downsample(F.max_pool2d(x, 2, 1), mx.filt, 2))
    torch.testing.assert_close(mx(x), ops.build("blur(k=2)", 8)(x))
    assert ops.build("blur(base=max,k=3)", 8).k == 3


def test_blur_conv_spec_round_trips():
    for text, canon in [
        ("blur(base=conv)", "blur(base=conv)"),
        ("blur", "blur"),
        ("blur(base=conv,bias=false)", "blur(base=conv,bias=false)"),
        ("blur(base=conv,k=2)", "blur(base=conv,k=2)"),
    ]:
        s = parse(text)
        assert str(s) == canon and parse(str(s)) == s
    assert ops.build(parse(str(parse("blur(base=conv)"))), 4, 8).conv.kernel_size == (3, 3)


def test_resnet20_blur_conv_keeps_its_parameter_count():
    base = nparams(models.build("resnet20"))
    assert base == 269_722
    # the sites are 3x3 convs without bias (a BN follows): bias=false gives exactly ResNet-20's count
    assert nparams(models.build("resnet20", downsample="blur(base=conv,bias=false)")) == base
    # with its default bias, ConvBlurPool has the parameters of the `conv` operator (3x3 + bias) at every site
    assert nparams(models.build("resnet20", downsample="blur(base=conv)")) == nparams(
        models.build("resnet20", downsample="conv")
    )


def _misaligned(model: nn.Module) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = inspect(model.eval(), (3, 32, 32), batch=1)
    return [m["problem"] for m in rep.totals["misaligned"]]


def test_resnet20_blur_conv_is_aligned_with_its_shortcut():
    # an odd (centred) blur after the 3x3 conv: no residual add is misaligned, like the strided 3x3 conv
    assert _misaligned(models.build("resnet20")) == []
    for size in (1, 3, 5):
        assert _misaligned(models.build("resnet20", downsample=f"blur(base=conv,size={size})")) == [], size
    # the default 4-tap blur has its own half-pixel offset (an even filter has no centre pixel); the conv adds
    # none: the offsets are those of a centred 3x3 conv followed by the blur alone
    centred = models.build("resnet20", downsample="blur(base=avg)")  # 3x3 adapter conv, then the blur
    assert _misaligned(models.build("resnet20", downsample="blur(base=conv)")) == _misaligned(centred)
