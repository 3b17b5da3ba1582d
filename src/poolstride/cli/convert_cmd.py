"""``poolstride convert``: find and swap the downsampling of any model by policy."""

from __future__ import annotations

import dataclasses
import difflib
import sys
import warnings
from typing import Any

import typer
from rich.table import Table

from .common import app, check_out_file, console, err_console, input_must_fit, parse_input_size, print_json
from .common import examples as _examples


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _resolve(model: str, options: list[str] | None) -> tuple[Any, tuple[int, int, int], dict[str, Any]]:
    from ..resolve import parse_options, resolve  # lazy: keeps `poolstride --help` fast

    opts = parse_options(options)
    r = resolve(model, opts)
    return r.model, r.input_size, opts


def _fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _fmt_delta(n: int) -> str:
    return "0" if n == 0 else f"{n:+,}"


def _short_init(text: str | None) -> str:
    """The init column: preserved (function-preserving, verified), kept (old weights), new, approx, -."""
    if not text:
        return ""
    if "function-preserving (verified)" in text:
        return "preserved"
    if text.startswith("preserving init"):
        return "approx"
    if "kept" in text:
        return "kept"
    if text.startswith("new"):
        return "new"
    return "-"


def _size(s: tuple[int, int] | None) -> str:
    return "?" if s is None else f"{s[0]}x{s[1]}"


@app.command(
    "convert",
    epilog=_examples(
        [
            'poolstride convert torchvision:resnet18 --policy "conv->conv(s=1)+act+blur(size=4)" --skip stem',
            'poolstride convert resnet50 --policy "shortcut->avg+1x1" --init preserve --out r50d.pt',
        ]
    ),
)
def convert_command(
    model: str = typer.Argument(
        ..., help="Model: a built-in name, torchvision:NAME, timm:NAME or package.module:callable."
    ),
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
    from ..errors import SpecError
    from ..surgery import convert_detailed, parse_policy, save_converted
    from ..surgery.cost import model_cost
    from ..variants import check_model, describe, expand_op, parse_entry

    if out:  # before any work: a path we cannot write fails now, not after the conversion
        check_out_file(out, "--out")
        check_out_file(out + ".json", "--out")
    check_model(model)
    v = parse_entry(policy, model)  # the --variants grammar: a policy [selectors], or an operator spec
    if v.downsample is not None:  # an operator on a built-in model: the same expansion as on any model
        v = dataclasses.replace(v, policy=expand_op(v.downsample), select={"skip": ["stem", "shortcut"]})
    if v.policy is None:
        raise SpecError(f"--policy {policy!r} changes nothing here; give a surgery policy such as pool->conv(k=3)")
    sel = dict(v.select or {})
    pol = parse_policy(
        v.policy, skip=[*sel.get("skip", []), *_split(skip)],
        stages=",".join([*map(str, sel.get("stages") or []), *_split(stage)]) or None,
        paths=[*sel.get("paths", []), *_split(path)], exclude=[*sel.get("exclude", []), *_split(exclude)],
        min_channels=max(int(sel.get("min_channels") or 0), min_channels),
        init=init if init != "default" or v.init == "auto" else v.init,
    )  # fmt: skip
    note = describe(v)
    if note:
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    net, natural, opts = _resolve(model, option)
    size = parse_input_size(input_size) if input_size else natural
    with input_must_fit(net, size, model, natural=natural):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv = convert_detailed(net, pol, size, strict=not lenient).compute_costs()
        before, after = model_cost(net, size), model_cost(conv.model, size)
    expanded = v.expanded_from is not None or v.downsample is not None
    for w in conv.warnings:
        if expanded and "matches no site" in w:  # an operator touches the site kinds the model has; no noise
            continue
        err_console.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
    by_path = {c.site.path: c for c in conv.changes}
    why = {s.path: r for s, r in conv.skipped}
    rows = []
    for s in conv.sites:
        c = by_path.get(s.path)
        rows.append(
            {
                **s.to_dict(),
                "after": c.after if c else None,
                "status": "changed" if c else ("skipped: " + why[s.path] if s.path in why else "untouched"),
                "params_delta": c.params_delta if c else 0,
                "macs_delta": (c.macs_delta or 0) if c else 0,
                "other_ops_delta": c.other_delta if c else 0,
                "init": c.init if c else None,
                "fit": c.fit if c else None,
            }
        )
    saved = None
    if out:
        saved = save_converted(conv, out, model=model, model_kwargs=opts)
    if json_out:
        print_json(
            {
                "model": model, "input_size": list(size), "policy": conv.policy.to_dict(), "traced": conv.traced,
                "graph_rewritten": conv.graph_rewritten, "sites": rows, "before": before, "after": after,
                "max_abs_diff": conv.max_abs_diff, "warnings": conv.warnings, "out": out, "recipe": saved,
            }
        )  # fmt: skip
    else:
        t = Table(
            title=f"{model} at {'x'.join(map(str, size))}: {v.name}"
            + ("" if conv.traced else " (no fx graph: module walk only)"),
        )
        for col in ("#", "path", "kind@stage", "ch", "size", "before", "after", "dparams", "dMACs", "dother", "init"):
            t.add_column(col, overflow="fold")
        for i, r in enumerate(rows):
            t.add_row(
                str(i), r["path"], f"{r['kind']}@{r['stage']}", f"{r['in_channels']}->{r['out_channels']}",
                f"{_size(r['in_size'])}->{_size(r['out_size'])}", r["op"], r["after"] or f"= ({r['status']})",
                _fmt_delta(r["params_delta"]), _fmt_delta(r["macs_delta"]),
                "?" if r["other_ops_delta"] is None else _fmt_delta(r["other_ops_delta"]), _short_init(r["init"]),
            )  # fmt: skip
        console.print(t)
        console.print(
            "MACs = conv/linear multiply-accumulates; other = pooling, blur and elementwise ops. "
            "init: preserved = same function as before (verified), kept = old weights reused, new = fresh layer, "
            "- = no parameters",
            highlight=False,
            style="dim",
        )
        dp, dm = after["params"] - before["params"], after["macs"] - before["macs"]
        console.print(
            f"params {_fmt_int(before['params'])} -> {_fmt_int(after['params'])} ({_fmt_delta(dp)}); "
            f"MACs {_fmt_int(before['macs'])} -> {_fmt_int(after['macs'])} ({_fmt_delta(dm)}, "
            f"{100.0 * dm / max(before['macs'], 1):+.1f}%)"
            + (
                f"; other ops {_fmt_int(before['other_ops'])} -> {_fmt_int(after['other_ops'])} "
                f"({_fmt_delta(after['other_ops'] - before['other_ops'])})"
                if before.get("other_ops") is not None and after.get("other_ops") is not None
                else ""
            )
            + f" [{after['source']}]",
            highlight=False,
        )
        console.print(
            f"{len(conv.changes)} of {len(conv.sites)} sites changed; output shape kept; probe output max |diff| = "
            f"{conv.max_abs_diff:.3g}" + ("; rewritten as a torch.fx GraphModule" if conv.graph_rewritten else ""),
            highlight=False,
        )
        if saved is not None:
            console.print(
                f"saved weights + recipe to {out} (recipe also in {out}.json); load with "
                "poolstride.surgery.load_converted(path)",
                highlight=False,
            )
    if diff:
        a, b = str(net).splitlines(), str(conv.model).splitlines()
        lines = list(difflib.unified_diff(a, b, "before", "after", n=1, lineterm=""))
        sys.stdout.write(("\n".join(lines) if lines else "(no structural change)") + "\n")
