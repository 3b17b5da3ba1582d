"""``poolstride ops``: the operator zoo."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from .. import ops
from .common import app, console, print_json
from .common import examples as _examples


@app.command("ops", epilog=_examples(["poolstride ops", "poolstride ops blur --json"]))
def ops_command(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the downsampling operators: name, arguments, learnable, params formula, ONNX export, source."""
    rows: list[dict[str, Any]] = []
    for info in ops.infos():
        args = ", ".join(f"{p.name}={p.default}" for p in info.params) or "-"
        rows.append(
            {
                "name": info.name,
                "arguments": args,
                "summary": info.summary,
                "learnable": info.learnable,
                "changes_channels": info.changes_channels,
                "params": info.params_formula,
                "shape_rule": info.shape_rule,
                "onnx": info.onnx,
                "onnx_note": info.onnx_note,
                "source": info.source,
            }
        )
    if json_out:
        print_json(rows)
        return
    t = Table(title=f"{len(rows)} downsampling operators", show_lines=False)
    for col in ("name", "arguments (defaults)", "learnable", "params", "ONNX", "source"):
        t.add_column(col, overflow="fold")
    for r in rows:
        onnx = "yes" if r["onnx"] else f"no: {r['onnx_note']}"
        t.add_row(r["name"], r["arguments"], "yes" if r["learnable"] else "no", r["params"], onnx, r["source"])
    console.print(t)
    console.print("Spec language: NAME or NAME(key=value,...), e.g. blur(base=max,size=4); see README.")
