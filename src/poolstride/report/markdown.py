"""The Markdown report, for GitHub pages and PR comments (figures linked as ``figures/*.png``)."""

from __future__ import annotations

from typing import Any

from ..alias import study_markdown
from . import tables


def _text(s: str) -> str:
    """Neutralise Markdown/HTML in user-provided text."""
    out = s.replace("\\", "\\\\")
    for ch in "`*_[]<>#|":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_text(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_text(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _bullets(items: list[str]) -> list[str]:
    return [f"- {_text(x)}" for x in items]


def _header(data: dict[str, Any]) -> list[str]:
    st, opts, status = data["study"], data["options"], data["status"]
    out = [
        f"# poolstride report: {_text(str(st['name']))}",
        "",
        _text(
            f"model {st.get('model') or '?'} · dataset {st['dataset']} · "
            f"{tables.plural(len(st['variants']), 'variant')} × {tables.plural(len(st['seeds']), 'seed')} · "
            f"baseline {opts['baseline']} · {tables.status_line(data)}"
        ),
        "",
    ]
    if not status["complete"]:
        out += [f"> **Warning:** {_text(tables.status_line(data))}.", ""]
    if not status["enough_seeds"]:
        out += ["> **Warning:** 1 seed per variant: std, confidence intervals and tests need at least 2 seeds.", ""]
    return out


def _decision(data: dict[str, Any]) -> list[str]:
    dec = data["decision"]
    out = ["## Decision", ""]
    for s in dec["sentences"]:
        out += [_text(s), ""]
    return out + _bullets(dec["caveats"]) + [""]


def _per_site(data: dict[str, Any]) -> list[str]:
    if not data.get("per_site"):
        return []
    return [
        f"## Per-site ablation (vs {_text(data['options']['baseline'])})",
        "",
        _table(*tables.per_site_table(data)),
        "",
        _text(tables.per_site_caption(data)),
        "",
        *_bullets(tables.per_site_notes(data)),
        "",
    ]


def _variants(data: dict[str, Any]) -> list[str]:
    return [
        "## Variants",
        "",
        _table(*tables.variants_table(data)),
        "",
        f"CI: 95% confidence interval of the mean ({_text(data['options']['ci'])}). "
        + _text(tables.clip_caption(data))
        + " Total ops = MACs + other ops (the arithmetic of pooling, blur, spectral and DiffStride operators is in "
        "other ops); the decision's cost uses total ops. Latency: the fastest of the seeds' measurements. "
        "● on the Pareto front, ○ dominated.",
        "",
    ]


def _comparisons(data: dict[str, Any]) -> list[str]:
    if not data["comparisons"]:
        return []
    opts = data["options"]
    return [
        f"## Comparisons with {_text(opts['baseline'])}",
        "",
        _table(*tables.comparisons_table(data)),
        "",
        *_bullets(tables.statements(data)),
        "",
        _text(
            f"Paired by seed; {opts['test']}; p-values {opts['correction']}; "
            "d_z = mean/sd of the paired differences. A variant is recommended for shift-consistency or cost "
            "only if its accuracy is non-inferior: the lower bound of the CI of the accuracy difference above "
            f"-{opts.get('noninferiority_margin_pt', 1.0):g} pt."
        ),
        "",
        _table(*tables.costs_table(data)),
        "",
    ]


def _pareto_and_figures(data: dict[str, Any]) -> list[str]:
    out = ["## Pareto fronts (mean accuracy vs cost)", ""]
    out += [
        f"- accuracy vs {_text(p['label'])}: " + (_text(", ".join(p["front"])) or "none")
        for p in data["pareto"].values()
    ]
    out += [
        "",
        "The decision uses the total-ops front (MACs + other ops); the MACs-only front is shown for comparison.",
        "",
    ]
    if data["figures"]:
        out += ["## Figures", ""]
        for f in data["figures"]:
            out += [f"![{_text(f['title'])}]({f['png']})", ""]
            out += [f"*{_text(f['title'])}.* {_text(f['caption'])} ([SVG]({f['svg']}))", ""]
    return out


def _runs_and_notes(data: dict[str, Any]) -> list[str]:
    status = data["status"]
    out: list[str] = []
    if status["failed"]:
        out += ["## Failed runs", "", _table(*tables.failed_runs_table(data)), ""]
    if status["missing"]:
        out += ["Not finished yet: " + _text(tables.missing_runs(data)), ""]
    if data["notes"]:
        out += ["## Notes", "", *_bullets(data["notes"]), ""]
    if data.get("aliasing") and data["aliasing"].get("summary"):
        out.append(study_markdown(data["aliasing"], data.get("variants")).rstrip() + "\n")
    return out


def render(data: dict[str, Any]) -> str:
    """The Markdown report, section by section."""
    out: list[str] = []
    for section in (_header, _decision, _per_site, _variants, _comparisons, _pareto_and_figures, _runs_and_notes):
        out += section(data)
    out += provenance_lines(data)
    out.append(f"<sub>poolstride {data['poolstride']} · {data['schema']} · generated {data['generated']}</sub>")
    return "\n".join(out) + "\n"


def provenance_lines(data: dict[str, Any]) -> list[str]:
    """The study's provenance (how it was made, on what) as Markdown lines; empty for older studies."""
    prov = (data.get("study") or {}).get("provenance")
    if not prov:
        return []
    out = ["## Provenance", ""]
    for key, label in tables.PROVENANCE_FIELDS:
        if prov.get(key) not in (None, ""):
            v = prov[key]
            out.append(f"- {label}: `{v}`" if key == "command" else f"- {label}: {_text(str(v))}")
    rec = (data.get("study") or {}).get("recipe") or {}
    if rec:
        out.append(f"- recipe as run: {_text(str(rec.get('name')))} ({_text(str(rec.get('notes') or ''))})")
    for n in (data.get("study") or {}).get("model_notes") or []:
        out.append(f"- model: {_text(n)}")
    out.append("")
    return out
