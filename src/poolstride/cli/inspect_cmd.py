"""``poolstride inspect``, ``poolstride cost`` and ``poolstride explain``: static and measured cost.

JSON outputs (``--json``) are documented in docs/analysis.md and carry ``"schema": 1``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from .. import analysis
from ..analysis.core import Inspection
from ..analysis.documents import GradflowDocument, explain_document, explain_parts
from ..analysis.gradflow import erf, gradflow
from ..resolve import parse_options, resolve
from ..results.format import fmt_count
from ..surgery.cost import CostOptions, CostSubject, CostTable, cost_table
from ..variants import Variant, build, check_model, describe, parse_variants
from .common import (
    IMAGE_SUFFIXES,
    app,
    check_out_file,
    console,
    input_must_fit,
    load_checkpoint,
    model_argument,
    parse_input_size,
    print_json,
)
from .common import examples as _examples

INSPECT_EXAMPLES = [
    "poolstride inspect resnet50 -O stem=s1pool",
    "poolstride inspect torchvision:resnet18 --input 3x32x32 --json",
]
COST_EXAMPLES = [
    'poolstride cost resnet20 --variants "conv(k=3),max,blur(base=max,size=3)"',
    'poolstride cost mynet:build --input 3x32x32 --num-classes 10 -v "default,pool->conv(k=3)"',
]
EXPLAIN_EXAMPLES = [
    "poolstride explain",
    "poolstride explain stem",
    'poolstride explain "max,blur(size=3)" --input 6x6',
]
GRADFLOW_EXAMPLES = ["poolstride gradflow resnet110 -O shortcut=fish", "poolstride gradflow resnet20 --erf erf.png"]


def _h(n: float | int | None, unit: str = "", digits: int = 3) -> str:
    """4089184256 -> '4.09G' (``digits`` significant digits)."""
    return "-" if n is None else fmt_count(n, digits) + unit


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    x = float(n)
    for div, suf in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if x >= div:
            return f"{x / div:.3g} {suf}"
    return f"{int(x)} B"


def _g(x: float | None) -> str:
    if x is None:
        return "-"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _pair(p: list[float] | None) -> str:
    if p is None:
        return "-"
    return _g(p[0]) if p[0] == p[1] else f"{_g(p[0])}x{_g(p[1])}"


def _show(table: Table) -> None:
    """Print a table; when stdout is not a terminal (pipes, files, tests) do not squeeze it into 80 columns. In a
    narrow terminal, text cells wrap (fold) instead of being cut to 'featu…', and the box gets lighter."""
    if console.is_terminal:
        if console.width < 140:
            table.box = box.SIMPLE_HEAD
            table.padding = (0, 1) if console.width >= 100 else (0, 0)
            for col in table.columns:
                col.overflow = "fold"
        console.print(table)
    else:
        Console(width=max(console.width, 200)).print(table)


def _input(text: str | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    return parse_input_size(text) if text else default


@app.command("inspect", epilog=_examples(INSPECT_EXAMPLES))
def inspect_command(
    model: str = typer.Argument(
        ...,
        help="Built-in name (allcnn-c:all-cnn, resnet50...), torchvision:NAME, timm:NAME or package.module:callable.",
    ),
    input_size: str = typer.Option(None, "--input", "-i", help="Input CxHxW, e.g. 3x224x224 (default: the model's)."),
    batch: int = typer.Option(1, "--batch", "-b", min=1, help="Batch size for the counts."),
    downsample: str = typer.Option(None, "--downsample", help="Operator at every site of a built-in model."),
    option: list[str] = typer.Option(
        None, "--model-opt", "--option", "-O", help="Model option key=value, e.g. stem=s1pool."
    ),
    all_layers: bool = typer.Option(False, "--all", help="Also list views and data movement (flatten, cat...)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (schema in docs/analysis.md)."),
) -> None:
    """Per-layer shapes, params, MACs, other ops, activation memory and receptive field, with totals."""
    r = resolve(model, parse_options(option), downsample)
    size = _input(input_size, r.input_size)
    with warnings.catch_warnings(), input_must_fit(r.model, size, r.name, batch=batch, natural=r.input_size):
        warnings.simplefilter("ignore")
        rep = analysis.inspect(r.model, size, batch=batch, name=r.name)  # looked up at call time (tests patch it)
    if json_out:
        print_json(rep.to_dict(all_layers=True))
        return
    _print_layers(rep, f"{r.name} @ {'x'.join(map(str, size))}, batch {batch}", all_layers)
    _print_totals(rep)


def _print_layers(rep: Inspection, what: str, all_layers: bool) -> None:
    t = Table(title=f"{what} ({rep.method}, {rep.execution} tensors)")
    for col, just in (
        ("#", "right"), ("layer", "left"), ("op", "left"), ("site", "left"), ("output", "left"),
        ("params", "right"), ("MACs", "right"), ("other ops", "right"), ("act", "right"),
        ("RF", "right"), ("jump", "right"), ("centre", "right"),
    ):  # fmt: skip
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for i, layer in enumerate(rep.layers):
        if layer.view and not all_layers and not layer.downsample:
            continue
        site = (
            f"[bold]{layer.site['kind']}[/]: {layer.site['op']}"
            if layer.site
            else ("downsamples" if layer.downsample else "")
        )
        params = _h(layer.params) + (
            "" if layer.params == layer.trainable_params else f" ({_h(layer.params - layer.trainable_params)} frozen)"
        )
        other = f"{_h(layer.other_ops)} {layer.other_kind}" if layer.other_ops else ""
        rf = "global" if layer.rf_global else _pair(layer.rf)
        note = " [yellow]![/]" if layer.note else ""
        t.add_row(
            str(i), layer.name + note, layer.op, site, "x".join(map(str, layer.shape)) if layer.shape else "-",
            params if layer.params else "", _h(layer.macs) if layer.macs else "", other,
            _bytes(layer.activation_bytes) if layer.activation_bytes else "", rf, _pair(layer.jump),
            _pair(layer.center),
        )  # fmt: skip
    _show(t)


def _print_totals(rep: Inspection) -> None:
    tot = rep.totals
    tr = tot["train_step"]
    console.print(
        f"[bold]forward[/]: params {tot['params']:,} ({tot['trainable_params']:,} trainable) | "
        f"MACs {tot['macs']:,} ({_h(tot['macs'])}, = {_h(tot['flops'])} FLOPs) | other ops {tot['other_ops']:,} "
        f"({', '.join(f'{k} {_h(v)}' for k, v in tot['other_ops_by_kind'].items())}) | "
        f"activations {_bytes(tot['activation_bytes'])}"
    )
    console.print(
        f"[bold]training step[/] (forward + backward): MACs {tr['macs']:,} ({_h(tr['macs'])}; backward "
        f"{_h(tr['backward_macs'])}) | other ops {_h(tr['other_ops'])}"
    )
    console.print(
        f"[bold]receptive field[/] at {tot['rf_layer']}: {_pair(tot['rf_hw'])} px, jump {_pair(tot['jump_hw'])}, "
        f"centre offset {_pair(tot['center'])}"
    )
    for w in rep.warnings:
        console.print(f"[yellow]note:[/] {w}", markup=True, highlight=False)
    console.print("[dim]conventions: docs/conventions.md (MACs are not FLOPs; pooling counted by its kernel)[/]")


@app.command("cost", epilog=_examples(COST_EXAMPLES))
def cost_command(
    model: str = model_argument(),
    variants: str = typer.Option(
        "default",
        "--variants",
        "-v",
        help="Comma list of variants, as in `compare`: 'default' (as built), operators at every site "
        "(max,conv(k=3),blur(base=max,size=3)), structural variants, surgery policies (pool->conv(k=3)...).",
    ),  # fmt: skip
    input_size: str = typer.Option(None, "--input", "-i", help="Input CxHxW (default: the model's)."),
    num_classes: int = typer.Option(
        None, "--num-classes", min=1, help="Adapt the classifier to N classes, as `compare` does for a dataset."
    ),
    option: list[str] = typer.Option(
        None, "--model-opt", "--option", "-O", help="Model option key=value, e.g. stem=s1pool."
    ),
    latency: bool = typer.Option(True, "--latency/--no-latency", help="Measure latency and peak memory."),
    batch: int = typer.Option(1, "--batch", "-b", min=1, help="Batch size for the latency measurement."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed repeats (median and IQR)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed warm-up runs."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (schema in docs/analysis.md)."),
) -> None:
    """One row per variant: params, MACs, other ops, activation memory, RF, latency, and the ratio to the first."""
    opts = parse_options(option)
    check_model(model)
    vlist = parse_variants(model, variants, opts)  # validates every entry before any work
    base = resolve(model, opts)
    size = _input(input_size, base.input_size)

    def fit(m: Any, label: str, b: int, train: bool) -> AbstractContextManager[None]:
        return input_must_fit(m, size, label, batch=b, train=train, natural=base.input_size)

    table = cost_table(
        _built(vlist, num_classes, size), size, CostOptions(latency, batch, repeats, warmup),
        model=base.name, num_classes=num_classes, guard=fit,
    )  # fmt: skip
    if json_out:
        print_json(table.to_json())
        return
    _print_cost(table)


def _built(vlist: list[Variant], num_classes: int | None, size: tuple[int, int, int]) -> Iterator[CostSubject]:
    """Each variant built (seed 0) when the table asks for it, with what was done to build it."""
    for vv in vlist:
        torch.manual_seed(0)
        built = build(vv, num_classes, size)
        said = describe(vv)
        yield CostSubject(vv.name, built.model, ([said] if said else []) + built.adaptations)


def _print_cost(table: CostTable) -> None:
    first = table.rows[0]
    devices = table.devices if table.options.latency else []
    tab = Table(
        title=f"{table.model} @ {'x'.join(map(str, table.input_size))}: cost per variant (ratio to {first.variant})"
    )
    cols = ["variant", "params", "MACs", "x", "other ops", "act", "RF", "jump"]
    if table.options.latency:
        for d in devices:
            cols += [f"fwd ms {d}", f"train ms {d}", "x"]
        cols.append("peak mem")
    for col in cols:
        tab.add_column(col, justify="left" if col == "variant" else "right")
    for row in table.rows:
        mx = row.ratio["macs"]
        cells = [
            # params with 5 significant digits: a +37k change on an 11.7M net must show (11.690M -> 11.727M)
            row.variant, _h(row.params, digits=5), _h(row.macs), f"{mx:.2f}" if mx else "-", _h(row.other_ops),
            _bytes(row.activation_bytes), _g(row.rf) + (" !" if row.misaligned else ""), _g(row.jump),
        ]  # fmt: skip
        if row.latency is not None:
            for d in devices:
                L = row.latency[d]
                r = row.ratio.get(f"forward_ms_{d}")
                cells += [
                    f"{L.forward_ms:.1f} ±{L.forward_iqr_ms:.1f}",
                    f"{L.train_step_ms:.1f}" if L.train_step_ms is not None else "-",
                    f"{r:.2f}" if r else "-",
                ]
            cells.append(_bytes(row.latency["cpu"].peak_memory_bytes))
        tab.add_row(*cells)
    for line in table.notes:
        console.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)
    _show(tab)
    console.print(
        "[dim]MACs: conv/linear multiply-accumulates (FLOPs = 2 x MACs); other ops: pooling by its kernel, norm, "
        "activation, add (docs/conventions.md). Latency: median ± IQR; '!' = misaligned residual branches.[/]"
    )


@app.command("explain", epilog=_examples(EXPLAIN_EXAMPLES))
def explain_command(
    what: str = typer.Argument(
        None,
        help="Operator specs (comma-separated) to walk the map through; or 'stem' (ResNet-50 stride-1 stem + "
        "pool vs stride-2 stem), 'vgg' (one 7x7 vs three 3x3), 'all'. Default: the question's operators.",
    ),
    input_size: str = typer.Option("4x4", "--input", "-i", help="Map size HxW for the operator walk-through."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The question's example: a 4x4 map through 2x2 max/avg pooling, a 2x2 stride-2 conv and the other
    operators; and its two quantitative claims ('stem', 'vgg')."""
    hw = (4, 4)
    if "ops" in explain_parts(what):  # the map size matters (and must parse) only for the walk-through
        _, h, wd = parse_input_size(input_size)
        hw = (h, wd)
    out = explain_document(what, hw)
    if json_out:
        print_json(out)
        return
    if "ops" in out:
        _print_ops(out["ops"])
    if "stem" in out:
        _print_stem(out["stem"])
    if "vgg" in out:
        _print_vgg(out["vgg"])


def _print_stem(s: dict[str, Any]) -> None:
    t = Table(title="ResNet-50 stem: stride 1 + 2x2 max pool (s1pool) vs stride 2 (original), 224x224")
    for col in ("stem", "stem MACs", "stem other ops", "model MACs", "RF"):
        t.add_column(col, justify="right" if col != "stem" else "left")
    for k in ("original", "s1pool"):
        r = s[k]
        t.add_row(k, f"{r['stem_macs']:,}", f"{r['stem_other_ops']:,}", _h(r["total_macs"]), _g(r["rf"]))
    _show(t)
    console.print(
        f"stem MACs x{s['stem_mac_ratio']:.2f}, model MACs x{s['total_mac_ratio']:.3f}, plus "
        f"{s['extra_pool_ops']:,} pool comparisons: claim {'holds' if s['holds'] else 'does NOT hold'}"
    )


def _print_vgg(v: dict[str, Any]) -> None:
    t = Table(title=f"one 7x7 vs three 3x3 convs, C = {v['channels']} (no bias)")
    for col in ("layout", "RF", "weights", "weights / C^2", "MACs", "ReLUs"):
        t.add_column(col, justify="right" if col != "layout" else "left")
    for k in ("one_7x7", "three_3x3"):
        r = v[k]
        t.add_row(k, _g(r["rf"]), f"{r['params']:,}", _g(r["params_per_c2"]), _h(r["macs"]), str(r["relus"]))
    _show(t)
    console.print(f"7x7 has x{v['param_ratio']:.2f} the weights: claim {'holds' if v['holds'] else 'does NOT hold'}")


def _print_ops(d: dict[str, Any]) -> None:
    def grid(m: list[list[float]]) -> str:
        cells = [[_g(round(v, 2)) for v in row] for row in m]
        wd = max((len(c) for row in cells for c in row), default=1)
        return "\n".join(" ".join(f"{c:>{wd}}" for c in row) for row in cells)

    console.print(f"input ({d['input_size'][1]}x{d['input_size'][2]}, one channel):")
    console.print(grid(d["input"]), highlight=False)
    t = Table(title="stride-2 downsampling of this map (learnable ops shown with an averaging init)")
    n_alias = d.get("alias_size", [8, 8])[0]
    cols = ("operator", "output", "params (C=1)", "params (C=64)", "MACs", "other ops", "RF", "centre")
    for c in (*cols, f"alias ratio ({n_alias}x{n_alias})"):
        t.add_column(c, justify="left" if c in ("operator", "output") else "right")
    for r in d["operators"]:
        if r.get("error"):
            t.add_row(r["spec"], f"[red]{r['error']}[/]", "", "", "", "", "", "", "")
            continue
        ar = "-" if r.get("alias_ratio") is None else f"{r['alias_ratio']:.3f}"
        t.add_row(
            r["spec"], grid(r["output"]), str(r["params"]), f"{r['params_c64']:,}", str(r["macs"]),
            str(r["other_ops"]), "global" if r["rf_global"] else _g(r["rf"]), _g(r["center"]), ar,
        )  # fmt: skip
    _show(t)
    if d.get("alias_note"):
        console.print(d["alias_note"] + ".", highlight=False)


@app.command("gradflow", epilog=_examples(GRADFLOW_EXAMPLES))
def gradflow_command(
    model: str = model_argument(),
    input_size: str = typer.Option(None, "--input", "-i", help="Input CxHxW (default: the model's)."),
    batch: int = typer.Option(8, "--batch", "-b", min=1, help="Batch of random images (labels drawn at random)."),
    option: list[str] = typer.Option(
        None, "--model-opt", "--option", "-O", help="Model option key=value, e.g. shortcut=fish."
    ),
    checkpoint: str = typer.Option(None, "--checkpoint", help="A state dict to load (default: at init)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the initialisation and the batch."),
    erf_png: str = typer.Option(None, "--erf", help="Also compute the effective receptive field; write it here (PNG)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Per-layer gradient norms (weights, activations) for one batch, the first/last ratio, and the effective
    receptive field (Luo et al. 2016)."""
    if erf_png:  # before any work: a path we cannot write fails now, not after the analysis
        check_out_file(erf_png, "--erf", IMAGE_SUFFIXES)
    state = load_checkpoint(checkpoint, "--checkpoint") if checkpoint else None
    torch.manual_seed(seed)
    r = resolve(model, parse_options(option))
    size = _input(input_size, r.input_size)
    x = torch.randn(batch, *size, generator=torch.Generator().manual_seed(seed))
    with input_must_fit(r.model, size, r.name, batch=batch, train=True, natural=r.input_size):
        doc = GradflowDocument(r.name, size, batch, seed, checkpoint, gradflow(r.model, x, checkpoint=state, seed=seed))
    if erf_png:
        with input_must_fit(r.model, size, r.name, natural=r.input_size):
            doc.erf = erf(r.model, size, seed=seed)
        Path(erf_png).parent.mkdir(parents=True, exist_ok=True)
        doc.erf.save(erf_png)
    if json_out:
        print_json(doc.to_json())
        return
    _print_gradflow(doc, erf_png)


def _print_gradflow(doc: GradflowDocument, erf_png: str | None) -> None:
    res, e = doc.gradflow, doc.erf
    when = "checkpoint" if doc.checkpoint else "at init"
    t = Table(title=f"{doc.model}: gradient flow, batch {doc.batch} ({when}), loss {res.loss:.4g}")
    for col in ("#", "layer", "type", "|W|", "|dL/dW|", "|dL/dW|/|W|", "|dL/dA|"):
        t.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for i, layer in enumerate(res.layers):
        a = layer.activation_grad_norm
        t.add_row(
            str(i), layer.name, layer.type, f"{layer.weight_norm:.3g}", f"{layer.weight_grad_norm:.3g}",
            f"{layer.relative:.3g}", f"{a:.3g}" if a is not None else "-",
        )  # fmt: skip
    _show(t)
    console.print(
        f"first/last weight-gradient ratio {res.ratio:.3g}; activation-gradient ratio {res.activation_ratio:.3g}"
    )
    if e is not None:
        console.print(
            f"effective RF of {e.layer} (unit {e.unit} of {e.feature_size}): 95% of the gradient within "
            f"{e.extent(0.95)} px; image written to {erf_png}"
        )
