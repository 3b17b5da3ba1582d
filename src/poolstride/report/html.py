"""The self-contained HTML report: inline CSS, figures embedded as base64 PNG, no script, no network.

Every string that comes from the study (variant names, reasons, paths...) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import struct
from pathlib import Path
from typing import Any

from . import tables

CSS = """
:root { --fg: #1a1a1a; --muted: #5a5a5a; --line: #d8d8d8; --accent: #0072B2; --warn: #D55E00; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0 auto; max-width: 1100px; padding: 24px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0 0 16px; }
.banner { border-left: 5px solid var(--warn); background: #fdf1ea; padding: 10px 14px; margin: 12px 0;
          font-weight: 600; }
.decision { border-left: 5px solid var(--accent); background: #eef5fb; padding: 12px 16px; margin: 12px 0; }
.decision p { margin: 0 0 6px; }
.caveats { color: var(--muted); font-size: 0.92em; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 0.88em;
        font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; }
td:first-child, th:first-child, td.text { text-align: left; }
.tablewrap { overflow-x: auto; }
figure { margin: 16px 0 28px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 6px; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
footer { color: var(--muted); font-size: 0.85em; margin-top: 40px; border-top: 1px solid var(--line);
         padding-top: 8px; }
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

e = html.escape


def _table(head: list[str], rows: list[list[str]], text_cols: tuple[int, ...] = ()) -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = []
    for r in rows:
        tds = "".join(
            f'<td class="text">{e(c)}</td>' if i in text_cols else f"<td>{e(c)}</td>" for i, c in enumerate(r)
        )
        body.append(f"<tr>{tds}</tr>")
    return f'<div class="tablewrap"><table><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _img(report_dir: Path, rel: str, alt: str, dpi: int = 200) -> str:
    """A PNG as a data URI, displayed at its physical size (CSS px are 1/96 in), never wider than the page."""
    raw = (report_dir / rel).read_bytes()
    b64 = base64.b64encode(raw).decode("ascii")
    size = ""
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        w, h = struct.unpack(">II", raw[16:24])
        size = f' width="{round(w * 96 / dpi)}" height="{round(h * 96 / dpi)}"'
    return f'<img src="data:image/png;base64,{b64}"{size} alt="{e(alt)}">'


def render(data: dict[str, Any], report_dir: Path) -> str:
    """The HTML page; ``report_dir`` is where the figures' PNG files are (read to embed them)."""
    st = data["study"]
    opts = data["options"]
    dec = data["decision"]
    status = data["status"]
    recipe = st.get("recipe") if isinstance(st.get("recipe"), dict) else {}
    # the fields that decide a comparison; the full recipe is under Provenance and in report.json
    keys = ("name", "epochs", "batch_size", "optimizer", "lr", "schedule", "weight_decay", "train_subset", "amp")
    recipe_txt = ", ".join(f"{k}={recipe[k]}" for k in keys if recipe.get(k) is not None)
    parts: list[str] = []
    a = parts.append
    a("<!DOCTYPE html>")
    a('<html lang="en"><head><meta charset="utf-8">')
    a('<meta name="viewport" content="width=device-width, initial-scale=1">')
    # Self-contained: no script, no fetch; images only from data: URIs.
    a(f'<meta http-equiv="Content-Security-Policy" content="{CSP}">')
    a(f"<title>poolstride report: {e(str(st['name']))}</title>")
    a(f"<style>{CSS}</style></head><body>")
    a(f"<h1>poolstride report: {e(str(st['name']))}</h1>")
    a(
        '<p class="meta">'
        + e(
            f"model {st.get('model') or '?'} · dataset {st['dataset']} · "
            f"{tables.plural(len(st['variants']), 'variant')} × {tables.plural(len(st['seeds']), 'seed')} · "
            f"baseline {opts['baseline']}"
        )
        + (f"<br>recipe: {e(recipe_txt)}" if recipe_txt else "")
        + f"<br>{e(tables.status_line(data))}</p>"
    )
    if not status["complete"]:
        a(f'<div class="banner" id="partial">{e(tables.status_line(data))}</div>')
    if not status["enough_seeds"]:
        a(
            '<div class="banner" id="one-seed">1 seed per variant: std, confidence intervals and tests need at '
            "least 2 seeds; the numbers below are single draws.</div>"
        )

    a('<h2 id="decision">Decision</h2><div class="decision">')
    for s in dec["sentences"]:
        a(f"<p>{e(s)}</p>")
    a("</div>")
    if dec["caveats"]:
        a('<ul class="caveats">' + "".join(f"<li>{e(c)}</li>" for c in dec["caveats"]) + "</ul>")

    if data.get("per_site"):
        a(f'<h2 id="per-site">Per-site ablation (vs {e(opts["baseline"])})</h2>')
        head, rows = tables.per_site_table(data)
        a(_table(head, rows, text_cols=(0, 1, 6)))
        a(f'<p class="caveats">{e(tables.per_site_caption(data))}</p>')
        notes = tables.per_site_notes(data)
        if notes:
            a('<ul class="caveats">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")

    a('<h2 id="variants">Variants</h2>')
    head, rows = tables.variants_table(data)
    a(_table(head, rows))
    a(
        '<p class="caveats">Accuracy and shift-consistency in percent; CI: 95% confidence interval of the mean '
        f"({e(opts['ci'])}). {e(tables.clip_caption(data))} MACs: conv + linear multiply-accumulates per image; "
        "other ops: pooling comparisons and adds, fixed filters (blur, spectral, DiffStride), elementwise ops; "
        "total ops = MACs + other ops, the cost the decision uses. Latency: the fastest of the seeds' "
        "measurements (timing noise only adds). ● on the Pareto front, ○ dominated.</p>"
    )

    if data["comparisons"]:
        a(f'<h2 id="comparisons">Comparisons with {e(opts["baseline"])}</h2>')
        head, rows = tables.comparisons_table(data)
        a(_table(head, rows, text_cols=(1, 8)))
        a("<ul>")
        for c in data["comparisons"]:
            for key in ("acc", "shift_consistency"):
                a(f"<li>{e(c['metrics'][key]['statement'])}</li>")
        a("</ul>")
        a(
            '<p class="caveats">'
            + e(
                f"Differences are variant − {opts['baseline']}, paired by seed; {opts['test']}; p-values "
                f"{opts['correction']}; effect size d_z = mean/sd of the paired differences. A variant is "
                "recommended for shift-consistency or cost only if its accuracy is non-inferior: the lower bound "
                f"of the CI of the accuracy difference above -{opts.get('noninferiority_margin_pt', 1.0):g} pt."
            )
            + "</p>"
        )
        a(f'<h3 id="cost-changes">Cost relative to {e(opts["baseline"])}</h3>')
        head, rows = tables.costs_table(data)
        a(_table(head, rows))

    a('<h2 id="pareto">Pareto fronts (mean accuracy vs cost)</h2><ul>')
    for _key, p in data["pareto"].items():
        txt = f"accuracy vs {p['label']}: " + (", ".join(p["front"]) or "none")
        if p["missing"]:
            txt += f" (no {p['label']} for: {', '.join(p['missing'])})"
        a(f"<li>{e(txt)}</li>")
    a("</ul>")
    a(
        '<p class="caveats">The decision uses the total-ops front (MACs + other ops); the MACs-only front is '
        "shown for comparison.</p>"
    )

    if data["figures"]:
        a('<h2 id="figures">Figures</h2>')
        for f in data["figures"]:
            a(f'<figure id="fig-{e(f["name"])}">')
            a(_img(report_dir, f["png"], f["title"]))
            a(
                f"<figcaption><b>{e(f['title'])}.</b> {e(f['caption'])} "
                f"Files: <code>{e(f['png'])}</code>, <code>{e(f['svg'])}</code>.</figcaption></figure>"
            )

    if status["failed"] or status["missing"]:
        a('<h2 id="runs">Failed and missing runs</h2>')
        if status["failed"]:
            a(
                _table(
                    ["variant", "seed", "reason"],
                    [[r["variant"], str(r["seed"]), str(r["reason"] or "no reason given")] for r in status["failed"]],
                    text_cols=(2,),
                )
            )
        if status["missing"]:
            miss = ", ".join(f"{m['variant']} seed {m['seed']}" for m in status["missing"])
            a(f"<p>Not finished yet: {e(miss)}.</p>")

    if data["notes"]:
        a('<h2 id="notes">Notes</h2><ul>' + "".join(f"<li>{e(n)}</li>" for n in data["notes"]) + "</ul>")

    al = data.get("aliasing") or {}
    if al.get("summary"):
        from ..analysis.alias import CONSISTENCY_CAPTION, variant_consistency

        sc = variant_consistency(data.get("variants"))

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        rows = [
            [r["variant"], r["path"], str(r.get("op") or ""), str(r["seeds"]),
             "-" if r["alias_ratio"] is None else f"{r['alias_ratio']:.3f}",
             "-" if r["shift_std"] is None else f"{r['shift_std']:.3f}"]
            + ([pct(v) for v in sc.get(r["variant"], (None, None))] if sc else [])
            for r in al["summary"]
        ]  # fmt: skip
        head = ["variant", "site", "operator", "seeds", "alias ratio", "shift std"]
        if sc:
            head += ["shift-consistency %", "circular %"]
        a('<h2 id="aliasing">Aliasing at the downsampling sites</h2>')
        a(_table(head, rows, (0, 1, 2)))
        a(
            '<p class="caption">Alias ratio of each site\'s trained operator (first seed; docs/alias.md): '
            "energy folded from above the output Nyquist limit over energy passed; 1 = plain subsampling, "
            "0 = no aliasing. Functional sites (F.max_pool2d) cannot be probed alone and show -."
            + (" " + e(CONSISTENCY_CAPTION) if sc else "")
            + "</p>"
        )
    prov = (data.get("study") or {}).get("provenance")
    if prov:
        from .markdown import PROVENANCE_FIELDS

        items = [f"<li>{e(label)}: <code>{e(str(prov[k]))}</code></li>" for k, label in PROVENANCE_FIELDS
                 if prov.get(k) not in (None, "")]  # fmt: skip
        rec = st.get("recipe") or {}
        if rec:
            items.append(f"<li>recipe as run: {e(str(rec.get('name')))} ({e(str(rec.get('notes') or ''))})</li>")
            full = ", ".join(f"{k}={v}" for k, v in rec.items() if k not in ("notes", "extra"))
            items.append(f"<li>recipe fields: <code>{e(full)}</code></li>")
        items += [f"<li>model: {e(n)}</li>" for n in st.get("model_notes") or []]
        a('<h2 id="provenance">Provenance</h2><ul>' + "".join(items) + "</ul>")

    a(
        "<footer>"
        + e(
            f"poolstride {data['poolstride']} · report {data['schema']} · generated {data['generated']} · "
            f"study directory {st['dir']}"
        )
        + " · machine-readable: <code>report.json</code></footer>"
    )
    a("</body></html>")
    return "\n".join(parts) + "\n"
