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
        "latency ms (best)",
        "Pareto (MACs/lat/params)",
    ]
    rows = []
    for v in data["variants"]:
        c = v["costs"]
        front = "/".join("●" if v["pareto"].get(k) else "○" for k in ("macs", "latency_ms", "params"))
        rows.append(
            [
                v["name"] + (" (baseline)" if v["name"] == base else ""),
                str(v["n"]) + (f" ({len(v['failed'])} failed)" if v["failed"] else ""),
                mean_std(v["acc"]),
                ci(v["acc"]["ci"]) if v["n"] else "n/a",
                mean_std(v["shift_consistency"]),
                ci(v["shift_consistency"]["ci"]) if v["shift_consistency"]["n"] else "n/a",
                count(c["params"]),
                count(c["macs"]),
                count(c["other_ops"]),
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
    head = ["variant", "MACs", "latency", "params", "other ops", "activation memory", "train time"]
    rows = []
    for c in data["comparisons"]:
        cc = c["cost_change_pct"]
        rows.append(
            [
                c["variant"],
                pct(cc["macs"]),
                pct(cc["latency_ms"]),
                pct(cc["params"]),
                pct(cc["other_ops"]),
                pct(cc["activation_bytes"]),
                pct(cc["train_time_s"]),
            ]
        )
    return head, rows


def status_line(data: dict[str, Any]) -> str:
    st = data["status"]
    s = f"{st['runs_done']} of {st['runs_total']} runs finished ({st['runs_ok']} ok, {st['runs_failed']} failed)"
    if not st["complete"]:
        s = "PARTLY FINISHED STUDY: " + s + "; the numbers below will change as the remaining runs finish"
    return s
