"""The Markdown report, for GitHub pages and PR comments (figures linked as ``figures/*.png``)."""

from __future__ import annotations

from typing import Any

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


def render(data: dict[str, Any]) -> str:
    st = data["study"]
    opts = data["options"]
    dec = data["decision"]
    status = data["status"]
    out: list[str] = []
    a = out.append
    a(f"# poolstride report: {_text(str(st['name']))}")
    a("")
    a(
        _text(
            f"model {st.get('model') or '?'} · dataset {st['dataset']} · "
            f"{tables.plural(len(st['variants']), 'variant')} × {tables.plural(len(st['seeds']), 'seed')} · "
            f"baseline {opts['baseline']} · {tables.status_line(data)}"
        )
    )
    a("")
    if not status["complete"]:
        a(f"> **Warning:** {_text(tables.status_line(data))}.")
        a("")
    if not status["enough_seeds"]:
        a("> **Warning:** 1 seed per variant: std, confidence intervals and tests need at least 2 seeds.")
        a("")
    a("## Decision")
    a("")
    for s in dec["sentences"]:
        a(_text(s))
        a("")
    for c in dec["caveats"]:
        a(f"- {_text(c)}")
    a("")
    if data.get("per_site"):
        a(f"## Per-site ablation (vs {_text(opts['baseline'])})")
        a("")
        a(_table(*tables.per_site_table(data)))
        a("")
        a(_text(tables.per_site_caption(data)))
        a("")
        for n in tables.per_site_notes(data):
            a(f"- {_text(n)}")
        a("")
    a("## Variants")
    a("")
    a(_table(*tables.variants_table(data)))
    a("")
    a(
        f"CI: 95% confidence interval of the mean ({_text(opts['ci'])}). "
        + _text(tables.clip_caption(data))
        + " Total ops = MACs + other ops (the arithmetic of pooling, blur, spectral and DiffStride operators is in "
        "other ops); the decision's cost uses total ops. Latency: the fastest of the seeds' measurements. "
        "● on the Pareto front, ○ dominated."
    )
    a("")
    if data["comparisons"]:
        a(f"## Comparisons with {_text(opts['baseline'])}")
        a("")
        a(_table(*tables.comparisons_table(data)))
        a("")
        for c in data["comparisons"]:
            for key in ("acc", "shift_consistency"):
                a(f"- {_text(c['metrics'][key]['statement'])}")
        a("")
        a(
            _text(
                f"Paired by seed; {opts['test']}; p-values {opts['correction']}; "
                "d_z = mean/sd of the paired differences. A variant is recommended for shift-consistency or cost "
                "only if its accuracy is non-inferior: the lower bound of the CI of the accuracy difference above "
                f"-{opts.get('noninferiority_margin_pt', 1.0):g} pt."
            )
        )
        a("")
        a(_table(*tables.costs_table(data)))
        a("")
    a("## Pareto fronts (mean accuracy vs cost)")
    a("")
    for p in data["pareto"].values():
        a(f"- accuracy vs {_text(p['label'])}: " + (_text(", ".join(p["front"])) or "none"))
    a("")
    a("The decision uses the total-ops front (MACs + other ops); the MACs-only front is shown for comparison.")
    a("")
    if data["figures"]:
        a("## Figures")
        a("")
        for f in data["figures"]:
            a(f"![{_text(f['title'])}]({f['png']})")
            a("")
            a(f"*{_text(f['title'])}.* {_text(f['caption'])} ([SVG]({f['svg']}))")
            a("")
    if status["failed"]:
        a("## Failed runs")
        a("")
        a(
            _table(
                ["variant", "seed", "reason"],
                [[r["variant"], str(r["seed"]), str(r["reason"] or "no reason given")] for r in status["failed"]],
            )
        )
        a("")
    if status["missing"]:
        a("Not finished yet: " + _text(", ".join(f"{m['variant']} seed {m['seed']}" for m in status["missing"])))
        a("")
    if data["notes"]:
        a("## Notes")
        a("")
        for n in data["notes"]:
            a(f"- {_text(n)}")
        a("")
    if data.get("aliasing") and data["aliasing"].get("summary"):
        from ..analysis.alias import study_markdown

        out.append(study_markdown(data["aliasing"], data.get("variants")).rstrip() + "\n")
    for line in provenance_lines(data):
        a(line)
    a(f"<sub>poolstride {data['poolstride']} · {data['schema']} · generated {data['generated']}</sub>")
    return "\n".join(out) + "\n"


def provenance_lines(data: dict[str, Any]) -> list[str]:
    """The study's provenance (how it was made, on what) as Markdown lines; empty for older studies."""
    prov = (data.get("study") or {}).get("provenance")
    if not prov:
        return []
    out = ["## Provenance", ""]
    for key, label in PROVENANCE_FIELDS:
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


PROVENANCE_FIELDS = (
    ("command", "command"),
    ("git_commit", "poolstride commit"),
    ("poolstride", "poolstride"),
    ("torch", "torch"),
    ("cuda", "CUDA"),
    ("cudnn", "cuDNN"),
    ("device_name", "device"),
    ("cpu", "CPU"),
    ("cpu_count", "CPU cores"),
    ("threads", "torch threads"),
    ("autocast", "autocast"),
    ("host", "host"),
    ("replay_of", "replay of"),
)
