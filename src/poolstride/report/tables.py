"""The report's tables as plain strings, shared by the HTML and Markdown writers."""

from __future__ import annotations

from typing import Any


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"


def count(x: Any) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.0f}"


def pct(x: Any) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.1f}%"


def pval(x: Any) -> str:
    if x is None:
        return "n/a"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def ci(c: Any, digits: int = 2, signed: bool = False) -> str:
    if not c:
        return "n/a (needs ≥2 seeds)"
    f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    return f"[{f.format(c[0])}, {f.format(c[1])}]"


CLIP_MARK = "*"
BOUNDS = (0.0, 100.0)  # accuracy and shift-consistency are percentages


def bounded_ci(s: dict[str, Any], bounds: tuple[float, float] = BOUNDS) -> str:
    """The CI of a percentage, clipped to ``bounds`` (a t interval from 2-3 seeds can reach below 0 % or above
    100 %), marked with :data:`CLIP_MARK` when clipped."""
    raw = s.get("ci")
    if not raw:
        return ci(raw)
    shown = s.get("ci_clipped") or [min(max(raw[0], bounds[0]), bounds[1]), min(max(raw[1], bounds[0]), bounds[1])]
    return ci(shown) + (CLIP_MARK if list(shown) != list(raw) else "")


def any_clipped(data: dict[str, Any]) -> bool:
    return any(bounded_ci(v[k]).endswith(CLIP_MARK) for v in data["variants"] for k in ("acc", "shift_consistency"))


def clip_caption(data: dict[str, Any]) -> str:
    """The sentence under the variants table that says how its CIs are shown."""
    s = (
        "CIs of accuracy and shift-consistency are clipped to [0, 100] %, the range a percentage can take "
        "(report.json keeps the raw interval)"
    )
    return s + (f"; {CLIP_MARK} marks a clipped interval." if any_clipped(data) else ".")


def mean_std(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "n/a"
    if s["std"] is None:
        return f"{s['mean']:.2f}"
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def variants_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    base = data["options"]["baseline"]
    head = [
        "variant",
        "seeds",
        "accuracy % (mean ± sd)",
        "acc 95% CI",
        "shift-cons. % (mean ± sd)",
        "shift 95% CI",
        "params",
        "MACs",
        "other ops",
        "total ops",
        "latency ms (best)",
        "Pareto (ops/MACs/lat/params)",
    ]
    rows = []
    for v in data["variants"]:
        c = v["costs"]
        front = "/".join("●" if v["pareto"].get(k) else "○" for k in ("total_ops", "macs", "latency_ms", "params"))
        rows.append(
            [
                v["name"] + (" (baseline)" if v["name"] == base else ""),
                str(v["n"]) + (f" ({len(v['failed'])} failed)" if v["failed"] else ""),
                mean_std(v["acc"]),
                bounded_ci(v["acc"]) if v["n"] else "n/a",
                mean_std(v["shift_consistency"]),
                bounded_ci(v["shift_consistency"]) if v["shift_consistency"]["n"] else "n/a",
                count(c["params"]),
                count(c["macs"]),
                count(c["other_ops"]),
                count(c.get("total_ops")),
                num(c["latency_ms"]["min"], 3),
                front if v["n"] else "-",
            ]
        )
    return head, rows


def comparisons_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = [
        "variant",
        "metric",
        "paired seeds",
        "difference (pt)",
        "95% CI",
        "p",
        "p (Holm)",
        "effect d_z",
        "verdict",
    ]
    rows = []
    for c in data["comparisons"]:
        for key, label in (("acc", "accuracy"), ("shift_consistency", "shift-cons.")):
            m = c["metrics"][key]
            rows.append(
                [
                    c["variant"],
                    label,
                    str(m["n"]),
                    "n/a" if m["diff_mean"] is None else f"{m['diff_mean']:+.2f}",
                    ci(m["ci"], signed=True),
                    pval(m["p"]),
                    pval(m.get("p_holm")),
                    num(m["effect_dz"]),
                    m.get("verdict", "n/a"),
                ]
            )
    return head, rows


def costs_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["variant", "total ops", "MACs", "other ops", "latency", "params", "activation memory", "train time"]
    rows = []
    for c in data["comparisons"]:
        cc = c["cost_change_pct"]
        rows.append(
            [
                c["variant"],
                pct(cc.get("total_ops")),
                pct(cc["macs"]),
                pct(cc["other_ops"]),
                pct(cc["latency_ms"]),
                pct(cc["params"]),
                pct(cc["activation_bytes"]),
                pct(cc["train_time_s"]),
            ]
        )
    return head, rows


def _diff_ci(m: dict[str, Any]) -> str:
    d = m.get("diff_mean")
    if d is None:
        return "n/a"
    c = m.get("ci")
    return f"{d:+.2f} {ci(c, signed=True)}" if c else f"{d:+.2f} (no CI: {m.get('n') or 0} paired seed)"


def _delta_count(d: dict[str, Any]) -> str:
    x = d.get("delta")
    if x is None:
        return "n/a"
    s = ("+" if x >= 0 else "-") + count(abs(x))
    return s + (f" ({pct(d['delta_pct'])})" if d.get("delta_pct") is not None else "")


def per_site_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-site ablation (``data["per_site"]``): one row per site variant, in study order."""
    head = ["site", "kind@stage", "resolution", "Δacc pt [95% CI]", "Δshift pt [95% CI]", "ΔMACs", "verdict"]
    rows = []
    for r in data.get("per_site") or []:
        site = r["path"] + ("" if r["variant"] == r["path"] else f" ({r['variant']})")
        stage = "?" if r.get("stage") is None else str(r["stage"])
        rows.append(
            [
                site,
                f"{r.get('kind') or '?'}@{stage}",
                r.get("resolution") or "n/a",
                _diff_ci(r["acc"]),
                _diff_ci(r["shift_consistency"]),
                _delta_count(r["macs"]),
                r["verdict"],
            ]
        )
    return head, rows


def per_site_notes(data: dict[str, Any]) -> list[str]:
    """Why each 'cannot tell' site cannot be told apart, grouped by reason."""
    by: dict[str, list[str]] = {}
    for r in data.get("per_site") or []:
        if r["verdict"] == "cannot tell":
            by.setdefault(str(r.get("reason") or "no reason recorded"), []).append(r["path"])
    rows = data.get("per_site") or []
    out = []
    for reason, paths in by.items():
        who = f"all {len(paths)} sites" if len(paths) == len(rows) and len(paths) > 1 else ", ".join(paths)
        out.append(f"cannot tell at {who}: {reason}")
    return out


def per_site_caption(data: dict[str, Any]) -> str:
    opts = data["options"]
    pols = sorted({str(r["policy"]) for r in data.get("per_site") or [] if r.get("policy")})
    return (
        (f"Each row changes one site ({'policy ' + ', '.join(pols)}) and nothing else. " if pols else "")
        + f"Differences are site variant − {opts['baseline']}, paired by seed, 95% CI ({opts['ci']}); verdict from "
        f"the accuracy difference, {opts['test']}, p-values Holm-corrected across all variants: helps / hurts = "
        f"detectably higher / lower accuracy (adjusted p < {opts['alpha']:g}), cannot tell = the data cannot "
        "separate it from the baseline (which is not proof of equality). ΔMACs: conv + linear, per image."
    )


def status_line(data: dict[str, Any]) -> str:
    st = data["status"]
    s = f"{st['runs_done']} of {st['runs_total']} runs finished ({st['runs_ok']} ok, {st['runs_failed']} failed)"
    if not st["complete"]:
        s = "PARTLY FINISHED STUDY: " + s + "; the numbers below will change as the remaining runs finish"
    return s
