"""``stem``: the question's ResNet stem claim, analytic (no training, no data).

The question: a 7x7 stride-2 stem against a 7x7 stride-1 conv followed by 2x2 pooling. Same output size, but
the stride-1 conv runs at 4x the positions, so its MACs are at least 4x. Alongside we show the deep stem of
Bag of Tricks (ResNet-C: three 3x3 convs 32, 32, 64) and TResNet's space-to-depth stem. For ResNet-18 and
ResNet-50 at 224x224 the protocol reports the stem's MACs, other ops, receptive field and jump (from
``poolstride.analysis.inspect``), whole-model MACs and parameters, and measured latency of the stem alone
and of the whole model (``poolstride.analysis.profile``, batch 1, forward, median and IQR).

The stem is every layer before ``layer1``: conv1, bn1, relu, the deep stem's extra convs, and the max-pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .. import models
from ..analysis import inspect, profile
from . import papers
from .common import (
    FAILS,
    HOLDS,
    UNSURE,
    Callback,
    Check,
    Reproduction,
    Table,
    Timer,
    check_budget,
    fact,
    hardware,
    pop_options,
    split_csv,
)

NAME = "stem"
TITLE = "ResNet stem: 7x7/2 vs 7x7/1 + 2x2 pool vs deep stem vs space-to-depth (MACs, latency, RF)"
STEMS = ("original", "deep", "s1pool", "s2d")
STEM_LABELS = {
    "original": "7x7/2 conv + 3x3/2 max-pool (He et al. 2016)",
    "deep": "3x3/2, 3x3, 3x3 (32,32,64) + max-pool (ResNet-C)",
    "s1pool": "7x7/1 conv + 2x2/2 max-pool + 3x3/2 max-pool (the question)",
    "s2d": "space-to-depth 4 + 3x3 conv 48->64 (TResNet)",
}
STEM_PREFIXES = ("conv1", "bn1", "relu", "stem_extra", "maxpool")
OPTIONS = {"models": "resnet18,resnet50", "latency": True, "repeats": 7, "image_size": 224}


def stem_module(model: nn.Module) -> nn.Module:
    parts = [getattr(model, n) for n in STEM_PREFIXES]
    return nn.Sequential(*parts)


def _is_stem_layer(name: str) -> bool:
    head = name.split(".", 1)[0]
    return head in STEM_PREFIXES


def analyze(model_name: str, stem: str, size: int = 224) -> dict[str, Any]:
    """Static figures of one (model, stem): stem MACs/other ops/params/RF/jump, whole-model totals."""
    model = models.build(model_name, stem=stem)
    rep = inspect(model, (3, size, size))
    stem_layers = [layer for layer in rep.layers if _is_stem_layer(layer.name)]
    last = next((layer for layer in reversed(stem_layers) if layer.rf is not None and layer.shape), None)
    return {
        "model": model_name,
        "stem": stem,
        "stem_macs": sum(layer.macs for layer in stem_layers),
        "stem_other_ops": sum(layer.other_ops for layer in stem_layers),
        "stem_params": sum(p.numel() for p in stem_module(model).parameters()),
        "stem_rf": last.rf[0] if last and last.rf else None,
        "stem_jump": last.jump[0] if last and last.jump else None,
        "stem_out": list(last.shape[1:]) if last and last.shape else None,
        "macs": rep.totals["macs"],
        "other_ops": rep.totals["other_ops"],
        "params": rep.totals["params"],
        "rf": rep.totals["rf"],
    }


def _latency(model_name: str, stem: str, size: int, repeats: int) -> dict[str, Any]:
    model = models.build(model_name, stem=stem)
    s = profile(stem_module(model), (3, size, size), "cpu", (1,), warmup=2, repeats=repeats, train=False, memory=False)
    m = profile(model, (3, size, size), "cpu", (1,), warmup=1, repeats=max(3, repeats // 2), train=False, memory=False)
    sf, mf = s.batches[0].forward, m.batches[0].forward
    return {"stem_ms": sf.median_ms, "stem_iqr_ms": sf.iqr_ms, "model_ms": mf.median_ms, "model_iqr_ms": mf.iqr_ms}


def _slower(a: dict[str, Any], b: dict[str, Any], key: str, claim: str, source: str) -> Check:
    """Measured: is ``a`` slower than ``b``? Holds when the median +- IQR/2 ranges do not overlap."""
    ma, mb = a.get(f"{key}_ms"), b.get(f"{key}_ms")
    if ma is None or mb is None:
        return Check(claim, source, UNSURE, "latency not measured (--no-latency)")
    ia, ib = a.get(f"{key}_iqr_ms") or 0.0, b.get(f"{key}_iqr_ms") or 0.0
    detail = f"{ma:.2f} ms (IQR {ia:.2f}) vs {mb:.2f} ms (IQR {ib:.2f}), ratio {ma / mb:.2f}x"
    if ma - ia / 2 > mb + ib / 2:
        return Check(claim, source, HOLDS, detail)
    if ma + ia / 2 < mb - ib / 2:
        return Check(claim, source, FAILS, detail)
    return Check(claim, source, UNSURE, detail + " (ranges overlap)")


Rows = dict[tuple[str, str], dict[str, Any]]  # (model, stem) -> analyze() (+ _latency()) figures
COLUMNS = [
    "stem",
    "layers",
    "stem MACs",
    "x original",
    "stem other ops",
    "stem params",
    "stem RF",
    "jump",
    "model GMACs",
    "model +%",
    "params (M)",
    "stem ms",
    "model ms",
]
NOTES = [
    "Analytic figures come from poolstride.analysis.inspect (fx graph on meta tensors); they are exact for "
    "the built-in models and do not depend on the hardware.",
    "Latency is a wall-clock median on a possibly shared machine: read the ratios, not the absolute numbers.",
]


def run(
    budget: str = "quick",
    *,
    seeds: int | None = None,
    callback: Callback | None = None,
    **options: Any,
) -> Reproduction:
    """Run the stem protocol. Options: ``models`` (comma list), ``latency`` (bool), ``repeats``, ``image_size``.
    ``budget`` and ``seeds`` are accepted for a uniform interface; the analysis is exact and the same at both
    budgets (only the number of latency repeats grows with ``paper``)."""
    check_budget(budget)
    for k in ("data_dir", "dataset", "out", "device", "threads", "report"):
        options.pop(k, None)
    opts = pop_options(NAME, options, OPTIONS)
    cb = callback or (lambda event, **kw: None)
    timer = Timer()
    model_names: Sequence[str] = split_csv(opts["models"])
    size = int(opts["image_size"])
    repeats = int(opts["repeats"]) * (3 if budget == "paper" else 1)
    hw = hardware("cpu")
    rows: Rows = {}
    for mn in model_names:
        for stem in STEMS:
            cb("analyze", model=mn, stem=stem)
            r = analyze(mn, stem, size)
            if opts["latency"]:
                r.update(_latency(mn, stem, size, repeats))
            rows[(mn, stem)] = r
    tables = [_table(mn, size, rows) for mn in model_names]
    checks = [c for mn in model_names for c in _checks(mn, rows, bool(opts["latency"]))]
    bud = {
        "name": budget,
        "description": "analytic (exact MACs, RF) + measured latency, batch 1, "
        f"{repeats} repeats for the stem; no training, no data",
        "image_size": size,
        "models": list(model_names),
        "latency_repeats": repeats if opts["latency"] else 0,
    }
    r50 = rows.get(("resnet50", "s1pool")), rows.get(("resnet50", "original"))
    data: dict[str, Any] = {"rows": [rows[k] for k in rows]}
    if r50[0] and r50[1]:
        data["resnet50_s1pool_stem_ratio"] = r50[0]["stem_macs"] / r50[1]["stem_macs"]
    timing = {"wall_s": round(timer.seconds, 2), "paper_estimate": {"seconds": 0, "text": "same as quick (analytic)"}}
    return Reproduction(NAME, TITLE, bud, hw, tables, checks, timing, list(NOTES), None, data)


def _table(mn: str, size: int, rows: Rows) -> Table:
    """One model's stems side by side: stem and whole-model MACs, other ops, parameters, RF, jump, latency."""
    o = rows[(mn, "original")]
    paper_macs = papers.PAPERS.get(f"{mn}/macs")
    trs = []
    for stem in STEMS:
        r = rows[(mn, stem)]
        trs.append(
            [
                stem, STEM_LABELS[stem], r["stem_macs"], round(r["stem_macs"] / o["stem_macs"], 3),
                r["stem_other_ops"], r["stem_params"], r["stem_rf"], r["stem_jump"], round(r["macs"] / 1e9, 3),
                round(100.0 * (r["macs"] / o["macs"] - 1.0), 1), round(r["params"] / 1e6, 3),
                None if r.get("stem_ms") is None else round(r["stem_ms"], 2),
                None if r.get("model_ms") is None else round(r["model_ms"], 1),
            ]
        )  # fmt: skip
    note = (
        f"input 3x{size}x{size}, batch 1; MACs = conv/linear multiply-accumulates; other ops = pooling "
        "comparisons/adds, BN, ReLU (poolstride counting conventions); latency = forward median on this CPU."
    )
    if paper_macs is not None:
        note += (
            f" Paper: {mn} {paper_macs.value / 1e9:.1f} G multiply-adds ({paper_macs.cite}); ours (original) "
            f"{o['macs'] / 1e9:.2f} G in torchvision's v1.5 layout."
        )
    return Table(f"{mn}: stems at {size}x{size}", COLUMNS, trs, note)


def _checks(mn: str, rows: Rows, latency: bool) -> list[Check]:
    """One model's claims: the s1pool stem costs >= 4x; the original stem's RF and stride; every stem hands
    layer1 the same map; the paper's MACs; the deep stem's cost (ResNet-50); the measured latency."""
    o, s1, d = rows[(mn, "original")], rows[(mn, "s1pool")], rows[(mn, "deep")]
    ratio = s1["stem_macs"] / o["stem_macs"]
    checks = [
        fact(
            f"{mn}: a 7x7/1 stem + 2x2 pool costs >= 4x the stem MACs of the 7x7/2 stem",
            papers.get("stem/s1pool_ratio").cite,
            ratio >= 4.0,
            f"{s1['stem_macs']:,} vs {o['stem_macs']:,} MACs = {ratio:.3f}x, plus "
            f"{s1['stem_other_ops'] - o['stem_other_ops']:,} more other ops (the extra pool)",
        ),
        fact(
            f"{mn}: the original stem sees 11 px at output stride 4",
            papers.get("stem/original/rf").cite,
            o["stem_rf"] == 11 and o["stem_jump"] == 4,
            f"RF {o['stem_rf']:g}, jump {o['stem_jump']:g}",
        ),
        fact(
            f"{mn}: every stem hands layer1 the same map (output stride 4)",
            "by construction",
            all(rows[(mn, s)]["stem_out"] == o["stem_out"] for s in STEMS)
            and all(rows[(mn, s)]["stem_jump"] == 4 for s in STEMS),
            ", ".join(f"{s}: {rows[(mn, s)]['stem_out']} RF {rows[(mn, s)]['stem_rf']:g}" for s in STEMS),
        ),
    ]
    paper_macs = papers.PAPERS.get(f"{mn}/macs")
    if paper_macs is not None:
        rel = o["macs"] / paper_macs.value - 1.0
        why = "; the paper's v1 strides in the bottleneck's first 1x1 conv, torchvision's v1.5 in the 3x3)"
        checks.append(
            fact(
                f"{mn} (original stem) matches the paper's multiply-adds within 10%",
                paper_macs.cite,
                abs(rel) <= 0.10,
                f"{o['macs'] / 1e9:.2f} G vs {paper_macs.value / 1e9:.1f} G ({100 * rel:+.1f}%"
                + (why if "50" in mn else ")"),
            )
        )
    if mn == "resnet50":  # Bag of Tricks measured ResNet-50
        checks.append(
            fact(
                f"{mn}: the deep stem (ResNet-C) adds MACs but stays within 15% of the model",
                f"{papers.get('resnet50/deep/gflops').source} [U]",
                o["macs"] < d["macs"] <= 1.15 * o["macs"],
                f"{d['macs'] / 1e9:.3f} G vs {o['macs'] / 1e9:.3f} G ({100 * (d['macs'] / o['macs'] - 1):+.1f}%);"
                f" stem {d['stem_macs'] / o['stem_macs']:.2f}x the original's",
            )
        )
    if latency:
        checks.append(
            _slower(s1, o, "stem", f"{mn}: the 7x7/1 + pool stem is slower than 7x7/2 (measured)", "the question")
        )
    return checks


__all__ = ["NAME", "STEMS", "TITLE", "analyze", "run", "stem_module"]
