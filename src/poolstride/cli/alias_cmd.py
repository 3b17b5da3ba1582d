"""``poolstride alias``: aliasing of each operator (or of the sites of a model or a study), from 2-D sinusoids.

Definitions: docs/alias.md and the "Alias ratio" section of docs/conventions.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import typer
from rich.console import Console
from rich.table import Table

from .. import alias, models, ops
from ..errors import PoolstrideError, SpecError
from ..resolve import parse_options, resolve
from .common import (
    TORCH_LOAD_ERRORS,
    app,
    check_out_dir,
    console,
    input_must_fit,
    parse_input_size,
    print_json,
    torch_load_error,
)
from .common import examples as _examples

_HELP_TARGET = (
    "Operators, comma-separated specs (e.g. 'max,avg,blur(base=avg,size=3)'; 'subsample' = plain subsampling), "
    "default: subsample, every registered operator at its defaults and blur(base=avg,size=2..7). Or a MODEL "
    "(built-in name, torchvision:NAME, timm:NAME, package.module:callable): the alias ratio of each of its sites."
)
_DEFINITION = alias.DEFINITION


def _show(table: Table) -> None:
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=max(console.width, 200)).print(table)


def _f(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    if abs(x) < 1e-12:
        return "0"
    if x != 0 and abs(x) < 10 ** -(digits - 1):
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def _freqs(text: str) -> tuple[float, ...]:
    bad = f"bad --freqs {text!r}; expected numbers in (0, 0.5) cycles/px, e.g. 0.1,0.2,0.3"
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise PoolstrideError(bad) from None
    if not vals or any(not 0 < v < 0.5 for v in vals):
        raise PoolstrideError(bad)
    return vals


def _freq_label(f: float, stride: int) -> str:
    return f"{f:g} (alias)" if f > 1 / (2 * stride) else f"gain {f:g}"


@dataclass(frozen=True)
class _Probe:
    """The probe options shared by the three forms of the command, and where the results go."""

    offset: float
    amplitude: float
    freqs: tuple[float, ...]
    max_size: int
    json_out: bool
    out: Path | None

    def options(self) -> dict[str, Any]:
        return {"offset": self.offset, "amplitude": self.amplitude, "freqs": self.freqs}


def _is_model(target: str) -> bool:
    """Whether the positional argument names a model rather than operators."""
    first = alias.split_specs(target)[0]
    head = first.split("(")[0].strip().lower()
    if head == alias.SUBSAMPLE or head in ops.names():
        return False
    base = target.strip().partition(":")[0].lower()
    if base in models.names() or ":" in target:
        return True
    raise SpecError(
        f"unknown operator or model {head!r}; valid operators: {alias.SUBSAMPLE}, {', '.join(ops.names())}; "
        f"or a MODEL: {', '.join(models.names())}, torchvision:NAME, timm:NAME, package.module:callable"
    )


@app.command(
    "alias",
    epilog=_examples(
        [
            "poolstride alias",
            'poolstride alias "max,avg,blur(size=3)" --out alias/',
            "poolstride alias --study runs/STUDY",
        ]
    ),
)
def alias_command(
    target: str = typer.Argument(None, metavar="[OPS|MODEL]", help=_HELP_TARGET),
    size: int = typer.Option(32, "--size", min=1, help="Input side n of the probe (a multiple of the stride)."),
    stride: int = typer.Option(2, "--stride", min=1, help="Stride of the operators."),
    offset: float = typer.Option(0.5, "--offset", help="Probe offset: offset + amplitude * cos(...)."),
    amplitude: float = typer.Option(0.5, "--amplitude", help="Probe amplitude (non-linear operators depend on it)."),
    freqs: str = typer.Option("0.1,0.2,0.3", "--freqs", help="Frequencies (cycles/px) of the gain columns."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Write alias.json here, and a figure per operator (PNG + SVG) or, with --study, alias.md.",
    ),
    study: Path = typer.Option(None, "--study", help="A study directory: per-site alias ratios of its checkpoints."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="MODEL: load this state dict ({'model': ...} ok)."),
    input_size: str = typer.Option(None, "--input", "-i", help="MODEL: input CxHxW (default: the model's)."),
    downsample: str = typer.Option(None, "--downsample", help="MODEL: operator at every site (built-in)."),
    option: list[str] = typer.Option(None, "--model-opt", "--option", "-O", help="MODEL: option key=value."),
    max_size: int = typer.Option(32, "--max-size", min=4, help="MODEL/--study: largest probe side per site."),
) -> None:
    """Aliasing of downsampling operators: alias ratio, gains, shift sensitivity (docs/alias.md)."""
    probe = _Probe(offset, amplitude, _freqs(freqs), max_size, json_out, out)
    if out is not None:  # before any work: a path we cannot write fails now, not after the analysis
        check_out_dir(out, "--out")
    if study is not None:
        if target:
            raise PoolstrideError("give either --study DIR or OPS/MODEL, not both")
        _study(study, probe)
    elif target and _is_model(target):
        _model(target, checkpoint, input_size, downsample, option, probe)
    elif checkpoint is not None or input_size is not None or downsample is not None or option:
        raise PoolstrideError("--checkpoint, --input, --downsample and --option apply to a MODEL, not to operators")
    else:
        _operators(target, size, stride, probe)


def _study(study: Path, probe: _Probe) -> None:
    res = alias.study_alias(study, max_size=probe.max_size, **probe.options())
    _write_tables(probe.out, res, alias.study_markdown(res))
    if probe.json_out:
        print_json(res)
        return
    _study_table(res)


def _operators(target: str | None, size: int, stride: int, probe: _Probe) -> None:
    results = alias.analyze(target, size, stride, **probe.options())
    doc = alias.operators_document(results, size, stride, probe.offset, probe.amplitude)
    if probe.out is not None:
        figs = []
        for r in results:
            figs += alias.save_figure(r, probe.out)
        doc["figures"] = [str(p) for p in figs]
        _write_tables(probe.out, doc, None)
    if probe.json_out:
        print_json(doc)
        return
    _operators_table(results, size, stride, probe)
    if probe.out is not None:
        console.print(f"wrote {len(results)} figures (PNG + SVG) and alias.json to {probe.out}", markup=False)


def _operators_table(results: list[alias.AliasResult], size: int, stride: int, probe: _Probe) -> None:
    fr = probe.freqs
    t = Table(
        title=f"Aliasing at stride {stride}, {size}x{size} input (output Nyquist {1 / (2 * stride):.4g} cycles/px)"
    )
    cols = ["operator", "linear", "alias ratio", "exact", *(_freq_label(f, stride) for f in fr), "shift std"]
    cols.append("distortion")
    for c in cols:
        t.add_column(c, justify="left" if c == "operator" else "right")
    for r in results:
        t.add_row(
            r.spec,
            "yes" if r.linear else "no",
            _f(r.alias_ratio),
            _f(r.exact_alias_ratio) if r.linear else "-",
            *(_f(r.gains.get(f"{f:g}"), 3) for f in fr),
            _f(r.shift_std, 3),
            _f(r.distortion, 3),
        )
    _show(t)
    console.print(_DEFINITION, markup=False, highlight=False)
    console.print(
        f"Gains: horizontal sinusoids; a frequency above {1 / (2 * stride):g} shows the amplitude on its alias. "
        f"Non-linear operators: probe {probe.offset:g} + {probe.amplitude:g} cos, 4 phases; learnable ones at seed 0, "
        "their own init (conv: PyTorch's default). shift std: relative std of the output over the stride^2 circular "
        "input shifts of a random image (after the best whole-pixel realignment). distortion: share of the output's "
        "AC energy at neither the frequency nor its alias.",
        markup=False,
        highlight=False,
    )


def _write_tables(out: Path | None, doc: dict[str, Any], markdown: str | None) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "alias.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if markdown is not None:
        (out / "alias.md").write_text(markdown)


def _load_checkpoint(model: torch.nn.Module, name: str, checkpoint: Path) -> None:
    if not checkpoint.exists():
        raise PoolstrideError(f"cannot load checkpoint {checkpoint}: no such file")
    try:
        blob = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except TORCH_LOAD_ERRORS as e:
        raise torch_load_error(checkpoint, "--checkpoint", e) from None
    sd = blob.get("model", blob.get("state_dict", blob)) if isinstance(blob, dict) else blob
    if not isinstance(sd, dict):
        raise PoolstrideError(f"--checkpoint {checkpoint}: not a state dict (nor a checkpoint holding one)")
    try:
        model.load_state_dict(sd)
    except (RuntimeError, TypeError) as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PoolstrideError(f"--checkpoint {checkpoint} does not fit {name}: {msg}") from None


def _model(
    target: str,
    checkpoint: Path | None,
    input_size: str | None,
    downsample: str | None,
    option: list[str] | None,
    probe: _Probe,
) -> None:
    r = resolve(target, parse_options(option), downsample)
    size = parse_input_size(input_size) if input_size else r.input_size
    if checkpoint is not None:
        _load_checkpoint(r.model, r.name, checkpoint)
    with input_must_fit(r.model, size, r.name, natural=r.input_size):
        rows = alias.model_alias(r.model, size, max_size=probe.max_size, **probe.options())
    doc = alias.model_document(r.name, size, checkpoint, rows)
    _write_tables(probe.out, doc, None)
    if probe.json_out:
        print_json(doc)
        return
    fr = probe.freqs
    t = Table(title=f"Aliasing at the sites of {r.name} @ {'x'.join(map(str, size))}")
    for c in ("site", "kind", "operator", "input", "alias ratio", *(f"{f:g}" for f in fr), "shift std", "note"):
        t.add_column(c, justify="left" if c in ("site", "kind", "operator", "note") else "right")
    for s in rows:
        gains = s.get("gains") or {}
        t.add_row(
            s["path"], s["kind"], str(s["op"]),
            f"{s['in_channels']}x{'x'.join(map(str, s['in_size'] or []))}",
            _f(s.get("alias_ratio")), *(_f(gains.get(f"{f:g}"), 3) for f in fr), _f(s.get("shift_std"), 3),
            s.get("note") or "",
        )  # fmt: skip
    _show(t)
    console.print(_DEFINITION, markup=False, highlight=False)


def _study_table(res: dict[str, Any]) -> None:
    t = Table(title=f"Aliasing at the sites of the study {res['study']}")
    for c in ("variant", "site", "operator", "seeds", "alias ratio", "shift std"):
        t.add_column(c, justify="left" if c in ("variant", "site", "operator") else "right")
    for e in res["summary"]:
        ar = _f(e["alias_ratio"])
        if e.get("alias_ratio_std") is not None:
            ar += f" ± {e['alias_ratio_std']:.4f}"
        t.add_row(e["variant"], e["path"], str(e["op"]), str(e["seeds"]), ar, _f(e["shift_std"], 3))
    _show(t)
    for r in res["runs"]:
        if r.get("note"):
            console.print(f"left out: {r['variant']} seed {r['seed']}: {r['note']}", markup=False, highlight=False)
    console.print(_DEFINITION, markup=False, highlight=False)
