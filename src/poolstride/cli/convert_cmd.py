"""``poolstride convert``: find and swap the downsampling of any model by policy."""

from __future__ import annotations

import dataclasses
import difflib
import sys
import warnings
from typing import Any

import typer
from rich.table import Table

from ..errors import SpecError
from ..resolve import parse_options, resolve
from ..results.format import fmt_delta, fmt_int
from ..surgery import Conversion, Policy, convert_detailed, parse_policy, save_converted
from ..surgery.convert import SiteStatus
from ..surgery.cost import model_cost
from ..variants import Variant, check_model, describe, expand_op, parse_entry
from .common import (
    app,
    check_out_file,
    console,
    err_console,
    input_must_fit,
    model_argument,
    parse_input_size,
    print_json,
)
from .common import examples as _examples

EXAMPLES = [
    'poolstride convert torchvision:resnet18 --policy "conv->conv(s=1)+act+blur(size=4)" --skip stem',
    'poolstride convert resnet50 --policy "shortcut->avg+1x1" --init preserve --out r50d.pt',
]


@dataclasses.dataclass(frozen=True)
class Selection:
    """The site selectors and init given on the command line, added to those written in the policy entry."""

    skip: list[str]
    stage: list[str]
    path: list[str]
    exclude: list[str]
    min_channels: int = 0
    init: str = "default"


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _delta(n: int) -> str:
    return fmt_delta(n, digits=None)


def _size(s: tuple[int, int] | None) -> str:
    return "?" if s is None else f"{s[0]}x{s[1]}"


@app.command("convert", epilog=_examples(EXAMPLES))
def convert_command(
    model: str = model_argument("Model: a built-in name, torchvision:NAME, timm:NAME or package.module:callable."),
    policy: str = typer.Option(
        ...,
        "--policy",
        "-p",
        help='Policy, e.g. "pool->conv(k=3)", "conv->conv(s=1)+blur(size=4)", "shortcut->avg+1x1"; '
        "several rules separated by ';'.",
    ),
    skip: list[str] = typer.Option(
        None, "--skip", help="Skip sites of a kind (stem, pool, conv, shortcut) or path glob."
    ),
    stage: list[str] = typer.Option(None, "--stage", help="Only sites of these stages (0 = full resolution)."),
    path: list[str] = typer.Option(None, "--path", help="Only sites whose path matches this glob."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Leave sites whose path matches this glob."),
    min_channels: int = typer.Option(0, "--min-channels", help="Only sites with at least this many input channels."),
    init: str = typer.Option("default", "--init", help="default, or preserve (function-preserving where possible)."),
    input_size: str = typer.Option(None, "--input", help="Input CxHxW for the probe (default: the model's own)."),
    option: list[str] = typer.Option(
        None, "--model-opt", "--option", "-O", help="Model constructor option key=value (repeatable)."
    ),
    lenient: bool = typer.Option(False, "--lenient", help="Leave sites the policy cannot apply to, with a warning."),
    out: str = typer.Option(
        None, "--out", "-o", help="Save the converted weights + recipe here (loads with weights_only)."
    ),
    diff: bool = typer.Option(False, "--diff", help="Also print a diff of the model's structure."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Convert the downsampling of a model by policy and show the sites before/after with params and MACs."""
    if out:  # before any work: a path we cannot write fails now, not after the conversion
        check_out_file(out, "--out")
        check_out_file(out + ".json", "--out")
    v, pol = _policy(model, policy, Selection(skip, stage, path, exclude, min_channels, init))
    note = describe(v)
    if note:
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    opts = parse_options(option)
    r = resolve(model, opts)
    size = parse_input_size(input_size) if input_size else r.input_size
    with input_must_fit(r.model, size, model, natural=r.input_size):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv = convert_detailed(r.model, pol, size, strict=not lenient).compute_costs()
        before, after = model_cost(r.model, size), model_cost(conv.model, size)
    _print_warnings(conv, expanded=v.expanded_from is not None or v.downsample is not None)
    saved = save_converted(conv, out, model=model, model_kwargs=opts) if out else None
    if json_out:
        print_json(
            {
                "model": model, "input_size": list(size), "policy": conv.policy.to_dict(), "traced": conv.traced,
                "graph_rewritten": conv.graph_rewritten, "sites": [_site_json(st) for st in conv.site_status()],
                "before": before, "after": after, "max_abs_diff": conv.max_abs_diff, "warnings": conv.warnings,
                "out": out, "recipe": saved,
            }
        )  # fmt: skip
    else:
        _print_sites(conv, f"{model} at {'x'.join(map(str, size))}: {v.name}")
        _print_totals(conv, before, after)
        if saved is not None:
            console.print(
                f"saved weights + recipe to {out} (recipe also in {out}.json); load with "
                "poolstride.surgery.load_converted(path)",
                highlight=False,
            )
    if diff:
        a, b = str(r.model).splitlines(), str(conv.model).splitlines()
        lines = list(difflib.unified_diff(a, b, "before", "after", n=1, lineterm=""))
        sys.stdout.write(("\n".join(lines) if lines else "(no structural change)") + "\n")


def _policy(model: str, policy: str, sel: Selection) -> tuple[Variant, Policy]:
    """The --policy entry in the --variants grammar (a policy [selectors], or an operator spec), with the
    command line's selectors added."""
    check_model(model)
    v = parse_entry(policy, model)
    if v.downsample is not None:  # an operator on a built-in model: the same expansion as on any model
        v = dataclasses.replace(v, policy=expand_op(v.downsample), select={"skip": ["stem", "shortcut"]})
    if v.policy is None:
        raise SpecError(f"--policy {policy!r} changes nothing here; give a surgery policy such as pool->conv(k=3)")
    given = dict(v.select or {})
    pol = parse_policy(
        v.policy, skip=[*given.get("skip", []), *_split(sel.skip)],
        stages=",".join([*map(str, given.get("stages") or []), *_split(sel.stage)]) or None,
        paths=[*given.get("paths", []), *_split(sel.path)], exclude=[*given.get("exclude", []), *_split(sel.exclude)],
        min_channels=max(int(given.get("min_channels") or 0), sel.min_channels),
        init=sel.init if sel.init != "default" or v.init == "auto" else v.init,
    )  # fmt: skip
    return v, pol


def _print_warnings(conv: Conversion, expanded: bool) -> None:
    for w in conv.warnings:
        if expanded and "matches no site" in w:  # an operator touches the site kinds the model has; no noise
            continue
        err_console.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)


def _site_json(st: SiteStatus) -> dict[str, Any]:
    c = st.change
    return {
        **st.site.to_dict(),
        "after": c.after if c else None,
        "status": st.label,
        "params_delta": c.params_delta if c else 0,
        "macs_delta": (c.macs_delta or 0) if c else 0,
        "other_ops_delta": c.other_delta if c else 0,
        "init": c.init if c else None,
        "fit": c.fit if c else None,
    }


def _print_sites(conv: Conversion, title: str) -> None:
    t = Table(title=title + ("" if conv.traced else " (no fx graph: module walk only)"))
    for col in ("#", "path", "kind@stage", "ch", "size", "before", "after", "dparams", "dMACs", "dother", "init"):
        t.add_column(col, overflow="fold")
    for i, st in enumerate(conv.site_status()):
        s, r = st.site, _site_json(st)
        other = r["other_ops_delta"]
        t.add_row(
            str(i), s.path, f"{s.kind}@{s.stage}", f"{s.in_channels}->{s.out_channels}",
            f"{_size(s.in_size)}->{_size(s.out_size)}", s.op, r["after"] or f"= ({st.label})",
            _delta(r["params_delta"]), _delta(r["macs_delta"]), "?" if other is None else _delta(other), st.init_kind,
        )  # fmt: skip
    console.print(t)
    console.print(
        "MACs = conv/linear multiply-accumulates; other = pooling, blur and elementwise ops. "
        "init: preserved = same function as before (verified), kept = old weights reused, new = fresh layer, "
        "- = no parameters",
        highlight=False,
        style="dim",
    )


def _print_totals(conv: Conversion, before: dict[str, Any], after: dict[str, Any]) -> None:
    dp, dm = after["params"] - before["params"], after["macs"] - before["macs"]
    other = (
        f"; other ops {fmt_int(before['other_ops'])} -> {fmt_int(after['other_ops'])} "
        f"({_delta(after['other_ops'] - before['other_ops'])})"
        if before.get("other_ops") is not None and after.get("other_ops") is not None
        else ""
    )
    console.print(
        f"params {fmt_int(before['params'])} -> {fmt_int(after['params'])} ({_delta(dp)}); "
        f"MACs {fmt_int(before['macs'])} -> {fmt_int(after['macs'])} ({_delta(dm)}, "
        f"{100.0 * dm / max(before['macs'], 1):+.1f}%){other} [{after['source']}]",
        highlight=False,
    )
    console.print(
        f"{len(conv.changes)} of {len(conv.sites)} sites changed; output shape kept; probe output max |diff| = "
        f"{conv.max_abs_diff:.3g}" + ("; rewritten as a torch.fx GraphModule" if conv.graph_rewritten else ""),
        highlight=False,
    )
