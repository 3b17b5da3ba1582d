"""The report's tables as plain strings, shared by the HTML and Markdown writers."""

from __future__ import annotations

from typing import Any

from ..results import stats
from ..results.format import fmt_ci, fmt_count, fmt_delta, fmt_number, fmt_p

NO_CI = "n/a (needs ≥2 seeds)"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def ci(c: Any, digits: int = 2, signed: bool = False) -> str:
    """A CI cell: :func:`~poolstride.results.format.fmt_ci`, saying why there is none."""
    return fmt_ci(c, digits, signed, missing=NO_CI)


CLIP_MARK = "*"
BOUNDS = (0.0, 100.0)  # accuracy and shift-consistency are percentages


def bounded_ci(s: dict[str, Any], bounds: tuple[float, float] = BOUNDS) -> str:
    """The CI of a percentage, clipped to ``bounds`` (a t interval from 2-3 seeds can reach below 0 % or above
    100 %), marked with :data:`CLIP_MARK` when clipped."""
    raw = s.get("ci")
    if not raw:
        return ci(raw)
    shown = s.get("ci_clipped") or stats.clip_ci(raw, *bounds) or raw
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
                fmt_count(c["params"]),
                fmt_count(c["macs"]),
                fmt_count(c["other_ops"]),
                fmt_count(c.get("total_ops")),
                fmt_number(c["latency_ms"]["min"], 3),
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
                    fmt_delta(m["diff_mean"], 2),
                    ci(m["ci"], signed=True),
                    fmt_p(m["p"]),
                    fmt_p(m.get("p_holm")),
                    fmt_number(m["effect_dz"]),
                    m.get("verdict", "n/a"),
                ]
            )
    return head, rows


def statements(data: dict[str, Any]) -> list[str]:
    """The comparisons' sentences: accuracy, then shift-consistency, per variant."""
    return [c["metrics"][key]["statement"] for c in data["comparisons"] for key in ("acc", "shift_consistency")]


COST_CHANGES = (
    ("total_ops", "total ops"),
    ("macs", "MACs"),
    ("other_ops", "other ops"),
    ("latency_ms", "latency"),
    ("params", "params"),
    ("activation_bytes", "activation memory"),
    ("train_time_s", "train time"),
)


def costs_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Each variant's cost change relative to the baseline, in percent."""
    head = ["variant"] + [label for _, label in COST_CHANGES]
    rows = []
    for c in data["comparisons"]:
        cc = c["cost_change_pct"]
        rows.append([c["variant"]] + [fmt_delta(cc.get(key), 1, "%") for key, _ in COST_CHANGES])
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
    s = ("+" if x >= 0 else "-") + fmt_count(abs(x))
    return s + (f" ({fmt_delta(d['delta_pct'], 1, '%')})" if d.get("delta_pct") is not None else "")


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
        if r["verdict"] == stats.SiteVerdict.CANNOT_TELL:
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


def failed_runs_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The failed runs and why they failed."""
    rows = [[r["variant"], str(r["seed"]), str(r["reason"] or "no reason given")] for r in data["status"]["failed"]]
    return ["variant", "seed", "reason"], rows


def missing_runs(data: dict[str, Any]) -> str:
    """'v seed 1, w seed 2': the runs not finished yet."""
    return ", ".join(f"{m['variant']} seed {m['seed']}" for m in data["status"]["missing"])


# study.json provenance key -> label, in the order the report lists them
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


def status_line(data: dict[str, Any]) -> str:
    st = data["status"]
    s = f"{st['runs_done']} of {st['runs_total']} runs finished ({st['runs_ok']} ok, {st['runs_failed']} failed)"
    if not st["complete"]:
        s = "PARTLY FINISHED STUDY: " + s + "; the numbers below will change as the remaining runs finish"
    return s
