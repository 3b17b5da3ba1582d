"""The self-contained HTML report: inline CSS, figures embedded as base64 PNG, no script, no network.

Every string that comes from the study (variant names, reasons, paths...) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import struct
from pathlib import Path
from typing import Any

from ..alias import CONSISTENCY_CAPTION, variant_consistency
from ..results.format import fmt_number
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


def _ul(items: list[str], cls: str = "") -> str:
    """A list of escaped items (``cls``: its class)."""
    attr = f' class="{cls}"' if cls else ""
    return f"<ul{attr}>" + "".join(f"<li>{e(x)}</li>" for x in items) + "</ul>"


def _head(data: dict[str, Any]) -> list[str]:
    """The document head, the title, the study line and the warning banners."""
    st, opts, status = data["study"], data["options"], data["status"]
    recipe = st.get("recipe") if isinstance(st.get("recipe"), dict) else {}
    # the fields that decide a comparison; the full recipe is under Provenance and in report.json
    keys = ("name", "epochs", "batch_size", "optimizer", "lr", "schedule", "weight_decay", "train_subset", "amp")
    recipe_txt = ", ".join(f"{k}={recipe[k]}" for k in keys if recipe.get(k) is not None)
    meta = e(
        f"model {st.get('model') or '?'} · dataset {st['dataset']} · "
        f"{tables.plural(len(st['variants']), 'variant')} × {tables.plural(len(st['seeds']), 'seed')} · "
        f"baseline {opts['baseline']}"
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Self-contained: no script, no fetch; images only from data: URIs.
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>poolstride report: {e(str(st['name']))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>poolstride report: {e(str(st['name']))}</h1>",
        f'<p class="meta">{meta}'
        + (f"<br>recipe: {e(recipe_txt)}" if recipe_txt else "")
        + f"<br>{e(tables.status_line(data))}</p>",
    ]
    if not status["complete"]:
        out.append(f'<div class="banner" id="partial">{e(tables.status_line(data))}</div>')
    if not status["enough_seeds"]:
        out.append(
            '<div class="banner" id="one-seed">1 seed per variant: std, confidence intervals and tests need at '
            "least 2 seeds; the numbers below are single draws.</div>"
        )
    return out


def _decision(data: dict[str, Any]) -> list[str]:
    dec = data["decision"]
    out = ['<h2 id="decision">Decision</h2><div class="decision">', *(f"<p>{e(s)}</p>" for s in dec["sentences"])]
    out.append("</div>")
    if dec["caveats"]:
        out.append(_ul(dec["caveats"], "caveats"))
    if not data.get("per_site"):
        return out
    out += [
        f'<h2 id="per-site">Per-site ablation (vs {e(data["options"]["baseline"])})</h2>',
        _table(*tables.per_site_table(data), text_cols=(0, 1, 6)),
        f'<p class="caveats">{e(tables.per_site_caption(data))}</p>',
    ]
    notes = tables.per_site_notes(data)
    return out + ([_ul(notes, "caveats")] if notes else [])


def _variants(data: dict[str, Any]) -> list[str]:
    return [
        '<h2 id="variants">Variants</h2>',
        _table(*tables.variants_table(data)),
        '<p class="caveats">Accuracy and shift-consistency in percent; CI: 95% confidence interval of the mean '
        f"({e(data['options']['ci'])}). {e(tables.clip_caption(data))} MACs: conv + linear multiply-accumulates "
        "per image; other ops: pooling comparisons and adds, fixed filters (blur, spectral, DiffStride), elementwise "
        "ops; total ops = MACs + other ops, the cost the decision uses. Latency: the fastest of the seeds' "
        "measurements (timing noise only adds). ● on the Pareto front, ○ dominated.</p>",
    ]


def _comparisons(data: dict[str, Any]) -> list[str]:
    if not data["comparisons"]:
        return []
    opts = data["options"]
    why = e(
        f"Differences are variant − {opts['baseline']}, paired by seed; {opts['test']}; p-values "
        f"{opts['correction']}; effect size d_z = mean/sd of the paired differences. A variant is "
        "recommended for shift-consistency or cost only if its accuracy is non-inferior: the lower bound "
        f"of the CI of the accuracy difference above -{opts.get('noninferiority_margin_pt', 1.0):g} pt."
    )
    return [
        f'<h2 id="comparisons">Comparisons with {e(opts["baseline"])}</h2>',
        _table(*tables.comparisons_table(data), text_cols=(1, 8)),
        "<ul>",
        *(f"<li>{e(x)}</li>" for x in tables.statements(data)),
        "</ul>",
        f'<p class="caveats">{why}</p>',
        f'<h3 id="cost-changes">Cost relative to {e(opts["baseline"])}</h3>',
        _table(*tables.costs_table(data)),
    ]


def _pareto_and_figures(data: dict[str, Any], report_dir: Path) -> list[str]:
    out = ['<h2 id="pareto">Pareto fronts (mean accuracy vs cost)</h2><ul>']
    for p in data["pareto"].values():
        txt = f"accuracy vs {p['label']}: " + (", ".join(p["front"]) or "none")
        if p["missing"]:
            txt += f" (no {p['label']} for: {', '.join(p['missing'])})"
        out.append(f"<li>{e(txt)}</li>")
    out += [
        "</ul>",
        '<p class="caveats">The decision uses the total-ops front (MACs + other ops); the MACs-only front is '
        "shown for comparison.</p>",
    ]
    if data["figures"]:
        out.append('<h2 id="figures">Figures</h2>')
    for f in data["figures"]:
        out += [
            f'<figure id="fig-{e(f["name"])}">',
            _img(report_dir, f["png"], f["title"]),
            f"<figcaption><b>{e(f['title'])}.</b> {e(f['caption'])} "
            f"Files: <code>{e(f['png'])}</code>, <code>{e(f['svg'])}</code>.</figcaption></figure>",
        ]
    return out


def _runs_and_notes(data: dict[str, Any]) -> list[str]:
    status = data["status"]
    out: list[str] = []
    if status["failed"] or status["missing"]:
        out.append('<h2 id="runs">Failed and missing runs</h2>')
    if status["failed"]:
        out.append(_table(*tables.failed_runs_table(data), text_cols=(2,)))
    if status["missing"]:
        out.append(f"<p>Not finished yet: {e(tables.missing_runs(data))}.</p>")
    if data["notes"]:
        out.append('<h2 id="notes">Notes</h2>' + _ul(data["notes"]))
    return out


def _aliasing(data: dict[str, Any]) -> list[str]:
    al = data.get("aliasing") or {}
    if not al.get("summary"):
        return []
    sc = variant_consistency(data.get("variants"))
    rows = [
        [r["variant"], r["path"], str(r.get("op") or ""), str(r["seeds"]),
         fmt_number(r["alias_ratio"], 3, missing="-"), fmt_number(r["shift_std"], 3, missing="-")]
        + ([fmt_number(v, 2, missing="-") for v in sc.get(r["variant"], (None, None))] if sc else [])
        for r in al["summary"]
    ]  # fmt: skip
    head = ["variant", "site", "operator", "seeds", "alias ratio", "shift std"]
    if sc:
        head += ["shift-consistency %", "circular %"]
    return [
        '<h2 id="aliasing">Aliasing at the downsampling sites</h2>',
        _table(head, rows, (0, 1, 2)),
        '<p class="caption">Alias ratio of each site\'s trained operator (first seed; docs/alias.md): '
        "energy folded from above the output Nyquist limit over energy passed; 1 = plain subsampling, "
        "0 = no aliasing. Functional sites (F.max_pool2d) cannot be probed alone and show -."
        + (" " + e(CONSISTENCY_CAPTION) if sc else "")
        + "</p>",
    ]


def _provenance(data: dict[str, Any]) -> list[str]:
    st = data["study"]
    prov = (data.get("study") or {}).get("provenance")
    if not prov:
        return []
    items = [f"<li>{e(label)}: <code>{e(str(prov[k]))}</code></li>" for k, label in tables.PROVENANCE_FIELDS
             if prov.get(k) not in (None, "")]  # fmt: skip
    rec = st.get("recipe") or {}
    if rec:
        items.append(f"<li>recipe as run: {e(str(rec.get('name')))} ({e(str(rec.get('notes') or ''))})</li>")
        full = ", ".join(f"{k}={v}" for k, v in rec.items() if k not in ("notes", "extra"))
        items.append(f"<li>recipe fields: <code>{e(full)}</code></li>")
    items += [f"<li>model: {e(n)}</li>" for n in st.get("model_notes") or []]
    return ['<h2 id="provenance">Provenance</h2><ul>' + "".join(items) + "</ul>"]


def render(data: dict[str, Any], report_dir: Path) -> str:
    """The HTML page; ``report_dir`` is where the figures' PNG files are (read to embed them)."""
    st = data["study"]
    parts = _head(data) + _decision(data) + _variants(data) + _comparisons(data)
    parts += _pareto_and_figures(data, report_dir) + _runs_and_notes(data) + _aliasing(data) + _provenance(data)
    footer = e(
        f"poolstride {data['poolstride']} · report {data['schema']} · generated {data['generated']} · "
        f"study directory {st['dir']}"
    )
    parts += [f"<footer>{footer} · machine-readable: <code>report.json</code></footer>", "</body></html>"]
    return "\n".join(parts) + "\n"
