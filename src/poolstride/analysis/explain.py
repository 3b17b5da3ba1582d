"""The question's worked examples, as data (``poolstride explain``).

* :func:`explain_ops` - a small map (4x4 by default, values 1..16) through 2x2 max and average pooling, a
  2x2 stride-2 conv and the other operators: each output, its parameters, its MACs and other ops, and its
  receptive field, and its alias ratio (:mod:`poolstride.analysis.alias`) on the example's scale: the
  smallest square the alias analysis supports at stride 2 (8x8: 4x4 outputs) that is at least the map's
  smaller side. Learnable operators are shown with an *averaging* initialisation (every conv weight
  1/fan-in, bias 0) so that their outputs are comparable; in training these weights are learnt.
* :func:`explain_stem` - ResNet-50's stem at stride 1 followed by 2x2 max pooling (``stem="s1pool"``)
  against the stride-2 stem (``stem="original"``): at least 4x the stem MACs, plus the pool's comparisons.
* :func:`explain_vgg` - one 7x7 conv against three 3x3 convs (Simonyan & Zisserman 2015): the same 7x7
  receptive field, 49C^2 against 27C^2 weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .. import models, ops
from ..errors import PoolstrideError
from ..spec import parse, parse_many
from .alias import analyze_module
from .core import inspect

DEFAULT_OPS = ("max", "avg", "conv(k=2)")


def default_ops() -> list[str]:
    """The question's three candidates, then every other registered operator at its defaults."""
    return list(DEFAULT_OPS) + [n for n in ops.names() if n not in ("max", "avg")]


def _averaging_init(m: nn.Module) -> None:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            with torch.no_grad():
                mod.weight.fill_(1.0 / mod.weight[0].numel())
                if mod.bias is not None:
                    mod.bias.zero_()


def alias_size(size: tuple[int, int], stride: int = 2) -> int:
    """The square the alias ratio of an ``size`` example is probed on: its smaller side rounded down to a
    multiple of ``stride``, raised to the smallest size the alias analysis supports (``4 * stride``: 4x4
    outputs; 8 at stride 2, so the 4x4 example is probed at 8x8)."""
    n = min(size)
    n -= n % stride
    return max(n, 4 * stride)


def _alias_ratio(op: nn.Module, n: int, stride: int) -> tuple[float | None, str | None]:
    """(alias ratio, error) of ``op`` (as initialised for the example) on ``n x n`` periodic inputs: the exact
    figure of a linear operator, the measured one otherwise (:func:`poolstride.analysis.alias.analyze_module`)."""
    try:
        res = analyze_module(copy.deepcopy(op).double().eval(), n, stride)
    except (PoolstrideError, RuntimeError, ValueError) as e:
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    ar = res.exact_alias_ratio if res.exact_alias_ratio is not None else res.alias_ratio
    return (None if ar is None else round(float(ar), 4)), None


def explain_ops(specs: str | Sequence[str] | None = None, size: tuple[int, int] = (4, 4)) -> dict[str, Any]:
    """Walk a ``size`` map (values 1..H*W, one channel) through each operator at stride 2."""
    h, w = size
    text = ",".join(specs) if isinstance(specs, (list, tuple)) else specs
    parsed = parse_many(text) if text else [parse(s) for s in default_ops()]
    x = torch.arange(1, h * w + 1, dtype=torch.float32).reshape(1, 1, h, w)
    n_alias = alias_size((h, w))
    rows: list[dict[str, Any]] = []
    for spec in parsed:
        row: dict[str, Any] = {"spec": str(spec), "name": spec.name}
        try:
            op = ops.build(spec, 1, 1, stride=2)
            ops.check_input(op, h, w)
            _averaging_init(op)
            net = nn.Sequential(op).eval()
            with torch.no_grad():
                y = net(x)
            rep = inspect(net, (1, h, w))
            last = rep.layers[-1]
            big = ops.build(spec, 64, 64, stride=2)
            ar, ar_err = _alias_ratio(op, n_alias, 2)
            row.update(
                output=[[round(float(v), 4) for v in r] for r in y[0, 0]],
                out_size=[int(y.shape[-2]), int(y.shape[-1])],
                params=sum(p.numel() for p in op.parameters()),
                params_c64=sum(p.numel() for p in big.parameters()),
                learnable=any(p.requires_grad for p in op.parameters()),
                macs=rep.totals["macs"],
                other_ops=rep.totals["other_ops"],
                rf=last.rf[0] if last.rf else None,
                jump=last.jump[0] if last.jump else None,
                center=last.center[0] if last.center else None,
                rf_global=last.rf_global,
                alias_ratio=ar,
                alias_error=ar_err,
                error=None,
            )
        except Exception as e:  # noqa: BLE001 - one operator failing must not hide the others
            row.update(output=None, alias_ratio=None, error=f"{type(e).__name__}: {e}")
        rows.append(row)
    return {
        "input": [[float(v) for v in r] for r in x[0, 0]],
        "input_size": [1, h, w],
        "stride": 2,
        "init": "learnable operators: every conv weight 1/fan-in, bias 0 (an average), to make outputs comparable",
        "alias_size": [n_alias, n_alias],
        "alias_note": (
            f"alias ratio (docs/alias.md) of each operator as initialised here, on {n_alias}x{n_alias} periodic "
            "inputs at stride 2 (the smallest the alias analysis supports is 8x8, 4x4 outputs): stopband over "
            "passband energy at the folded frequency; 1 = plain subsampling, 0 = no aliasing; exact for a linear "
            "operator, measured with 0.5 + 0.5 cos sinusoids otherwise"
        ),
        "operators": rows,
    }


def _stem_rows(rep: Any) -> tuple[int, int, list[str]]:
    macs = other = 0
    names: list[str] = []
    for layer in rep.layers:
        if layer.site is not None and layer.site["kind"] == "stem":
            macs += layer.macs
            other += layer.other_ops
            names.append(f"{layer.name} ({layer.site['op']})")
    return macs, other, names


def explain_stem(model: str = "resnet50", input_size: tuple[int, int, int] = (3, 224, 224)) -> dict[str, Any]:
    """ResNet stem at stride 1 + 2x2 max pool vs the stride-2 stem: MACs, other ops, totals."""
    out: dict[str, Any] = {"model": model, "input_size": list(input_size)}
    for stem in ("original", "s1pool"):
        rep = inspect(models.build(model, stem=stem), input_size)
        macs, other, names = _stem_rows(rep)
        out[stem] = {
            "stem_macs": macs,
            "stem_other_ops": other,
            "stem_layers": names,
            "total_macs": rep.totals["macs"],
            "total_other_ops": rep.totals["other_ops"],
            "rf": rep.totals["rf"],
            "params": rep.totals["params"],
        }
    o, s = out["original"], out["s1pool"]
    out["stem_mac_ratio"] = s["stem_macs"] / o["stem_macs"]
    out["total_mac_ratio"] = s["total_macs"] / o["total_macs"]
    out["extra_pool_ops"] = s["stem_other_ops"] - o["stem_other_ops"]
    out["claim"] = "stride-1 stem + 2x2 pooling costs >= 4x the stem MACs of the stride-2 stem, plus the pool's ops"
    out["holds"] = bool(out["stem_mac_ratio"] >= 4.0 and out["extra_pool_ops"] > 0)
    return out


def explain_vgg(channels: int = 64, size: int = 32) -> dict[str, Any]:
    """One 7x7 conv vs three 3x3 convs (C -> C, no bias): receptive field, weights and MACs."""
    c = channels
    one = nn.Sequential(nn.Conv2d(c, c, 7, 1, 3, bias=False))
    three = nn.Sequential(
        nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.ReLU(),
        nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.ReLU(),
        nn.Conv2d(c, c, 3, 1, 1, bias=False),
    )  # fmt: skip
    out: dict[str, Any] = {"channels": c, "input_size": [c, size, size]}
    for key, net in (("one_7x7", one), ("three_3x3", three)):
        rep = inspect(net, (c, size, size))
        out[key] = {
            "rf": rep.totals["rf"],
            "params": rep.totals["params"],
            "params_per_c2": rep.totals["params"] / (c * c),
            "macs": rep.totals["macs"],
            "relus": sum(1 for layer in rep.layers if layer.other_kind == "act"),
        }
    out["param_ratio"] = out["one_7x7"]["params"] / out["three_3x3"]["params"]
    out["claim"] = "three 3x3 convs see 7x7 like one 7x7 conv, with 27C^2 instead of 49C^2 weights"
    out["holds"] = bool(
        out["one_7x7"]["rf"] == out["three_3x3"]["rf"] == 7
        and out["one_7x7"]["params"] == 49 * c * c
        and out["three_3x3"]["params"] == 27 * c * c
    )
    return out


__all__ = ["DEFAULT_OPS", "alias_size", "default_ops", "explain_ops", "explain_stem", "explain_vgg"]
