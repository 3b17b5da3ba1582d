"""``poolstride models``: built-in families and their sites."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from .. import models
from .common import app, console, print_json
from .common import examples as _examples


@app.command("models", epilog=_examples(["poolstride models", "poolstride models resnet20"]))
def models_command(
    name: str = typer.Argument(None, help="Show the sites of one model, e.g. allcnn-c:all-cnn or resnet20."),
    downsample: str = typer.Option(None, "--downsample", help="Operator spec for every site, e.g. blur."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """List the built-in model families with their sites and default operators."""
    names = [name] if name else models.names()
    out: list[dict[str, Any]] = []
    for n in names:
        entry = models.get_entry(n)
        m = models.build(n, downsample=downsample)
        params = sum(p.numel() for p in m.parameters())
        sites = models.sites(m, entry.input_size)
        out.append(
            {
                "name": n,
                "family": entry.family,
                "summary": entry.summary,
                "input": "x".join(map(str, entry.input_size)),
                "params": params,
                "options": {k: list(v) for k, v in entry.options.items()},
                "sites": [s.to_dict() for s in sites],
            }
        )
    if json_out:
        print_json(out)
        return
    if not name:
        t = Table(title="built-in models (poolstride models NAME shows every site)")
        for col in ("name", "family", "input", "params", "sites (kind: operators)", "options"):
            t.add_column(col, overflow="fold")
        for r in out:
            by_kind: dict[str, list[str]] = {}
            for s in r["sites"]:
                by_kind.setdefault(s["kind"], []).append(s["op"])
            site_text = "\n".join(f"{len(v)} {k}: {', '.join(dict.fromkeys(v))}" for k, v in by_kind.items())
            opts = "; ".join(f"{k}={'|'.join(v)}" for k, v in r["options"].items()) or "-"
            t.add_row(r["name"], r["family"], r["input"], f"{r['params']:,}", site_text, opts)
        console.print(t)
        return
    r = out[0]
    t = Table(title=f"{r['name']}: {r['summary']} - {r['params']:,} params, input {r['input']}")
    for col in ("#", "path", "kind", "channels", "stride", "in -> out", "operator"):
        t.add_column(col)
    for i, s in enumerate(r["sites"]):
        size = f"{s['in_size'][0]}x{s['in_size'][1]} -> {s['out_size'][0]}x{s['out_size'][1]}"
        t.add_row(
            str(i),
            s["path"],
            s["kind"],
            f"{s['in_channels']}->{s['out_channels']}",
            str(s["stride"]),
            size,
            s["op"],
        )
    console.print(t)
