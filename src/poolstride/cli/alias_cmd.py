"""``poolstride alias``: aliasing of each operator (or of the sites of a model or a study), from 2-D sinusoids.

Definitions: docs/alias.md and the "Alias ratio" section of docs/conventions.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import PoolstrideError, SpecError
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
_DEFINITION = (
    "alias ratio = mean over the stopband (input frequencies above the output Nyquist limit, 1/(2*stride) "
    "cycles/px) of g^2 at the folded frequency / mean over the passband of g^2; g = output amplitude / input "
    "amplitude. 1 = plain subsampling, 0 = nothing folds."
)


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


def _is_model(target: str) -> bool:
    """Whether the positional argument names a model rather than operators."""
    from .. import models, ops
    from ..analysis.alias import SUBSAMPLE, split_specs

    first = split_specs(target)[0]
    head = first.split("(")[0].strip().lower()
    if head == SUBSAMPLE or head in ops.names():
        return False
    base = target.strip().partition(":")[0].lower()
    if base in models.names() or ":" in target:
        return True
    raise SpecError(
        f"unknown operator or model {head!r}; valid operators: {SUBSAMPLE}, {', '.join(ops.names())}; "
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
    from ..analysis import alias

    fr = _freqs(freqs)
    if out is not None:  # before any work: a path we cannot write fails now, not after the analysis
        check_out_dir(out, "--out")
    if study is not None:
        if target:
            raise PoolstrideError("give either --study DIR or OPS/MODEL, not both")
        res = alias.study_alias(study, max_size=max_size, offset=offset, amplitude=amplitude, freqs=fr)
        _write_tables(out, res, alias.study_markdown(res))
        if json_out:
            print_json(res)
            return
        _study_table(res)
        return
    if target and _is_model(target):
        _model(target, checkpoint, input_size, downsample, option, max_size, offset, amplitude, fr, json_out, out)
        return
    if checkpoint is not None or input_size is not None or downsample is not None or option:
        raise PoolstrideError("--checkpoint, --input, --downsample and --option apply to a MODEL, not to operators")
    results = alias.analyze(target, size, stride, offset=offset, amplitude=amplitude, freqs=fr)
    doc = {
        "schema": 1,
        "size": size,
        "stride": stride,
        "output_nyquist": 1 / (2 * stride),
        "input": {"offset": offset, "amplitude": amplitude, "phases": 4},
        "definition": _DEFINITION,
        "operators": [r.to_dict() for r in results],
    }
    if out is not None:
        figs = []
        for r in results:
            figs += alias.save_figure(r, out)
        doc["figures"] = [str(p) for p in figs]
        _write_tables(out, doc, None)
    if json_out:
        print_json(doc)
        return
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
        f"Non-linear operators: probe {offset:g} + {amplitude:g} cos, 4 phases; learnable ones at seed 0, their own "
        "init (conv: PyTorch's default). shift std: relative std of the output over the stride^2 circular input "
        "shifts of a random image (after the best whole-pixel realignment). distortion: share of the output's AC "
        "energy at neither the frequency nor its alias.",
        markup=False,
        highlight=False,
    )
    if out is not None:
        console.print(f"wrote {len(results)} figures (PNG + SVG) and alias.json to {out}", markup=False)


def _write_tables(out: Path | None, doc: dict[str, Any], markdown: str | None) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "alias.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if markdown is not None:
        (out / "alias.md").write_text(markdown)


def _model(
    target: str,
    checkpoint: Path | None,
    input_size: str | None,
    downsample: str | None,
    option: list[str] | None,
    max_size: int,
    offset: float,
    amplitude: float,
    fr: tuple[float, ...],
    json_out: bool,
    out: Path | None,
) -> None:
    import torch

    from ..analysis import alias
    from ..resolve import parse_options, resolve

    r = resolve(target, parse_options(option), downsample)
    size = parse_input_size(input_size) if input_size else r.input_size
    if checkpoint is not None:
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
            r.model.load_state_dict(sd)
        except (RuntimeError, TypeError) as e:
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise PoolstrideError(f"--checkpoint {checkpoint} does not fit {r.name}: {msg}") from None
    with input_must_fit(r.model, size, r.name, natural=r.input_size):
        rows = alias.model_alias(r.model, size, max_size=max_size, offset=offset, amplitude=amplitude, freqs=fr)
    doc = {"schema": 1, "model": r.name, "input_size": list(size), "checkpoint": checkpoint, "sites": rows}
    _write_tables(out, doc, None)
    if json_out:
        print_json(doc)
        return
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
