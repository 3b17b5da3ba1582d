"""Turn a loaded :class:`~poolstride.report.load.Study` into the report's data (the ``report.json`` dict)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ..results import stats
from . import pareto as _pareto
from .load import ReportError, Study

REPORT_SCHEMA = "poolstride.report/1"

# metric key -> (label, unit, equivalence margin in its unit)
METRICS: dict[str, tuple[str, str, float]] = {
    "acc": ("accuracy", "pt", 1.0),
    "shift_consistency": ("shift-consistency", "pt", 1.0),
}
EXTRA_METRICS: dict[str, str] = {"loss": "test loss", "shift_consistency_circular": "circular shift-consistency"}
STATIC_COSTS = ("params", "trainable_params", "macs", "other_ops", "activation_bytes", "rf", "jump")
MEASURED_COSTS = ("latency_ms", "train_time_s", "images_per_s")
# Percentages: their CIs are shown clipped to this range in the tables (report.json keeps the raw interval).
BOUNDED: dict[str, tuple[float, float]] = {
    "acc": (0.0, 100.0),
    "shift_consistency": (0.0, 100.0),
    "shift_consistency_circular": (0.0, 100.0),
}
NONINFERIORITY_MARGIN = 1.0  # pt of accuracy a variant may lose, at most, to be recommended for another gain
COST_RULE = (
    "total ops = MACs + other ops (the arithmetic of pooling, blur, spectral and DiffStride operators is in other "
    "ops); the decision's cost and its Pareto sentence use total ops, the MACs-only front is shown as well"
)


def _pct(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return 100.0 * (a - b) / b


def resolve_baseline(study: Study, baseline: str | None) -> tuple[str, str]:
    """The baseline name and where it came from ('option', 'study.json' or 'first variant')."""
    if baseline is not None:
        if baseline not in study.variants:
            raise ReportError(
                f"unknown baseline {baseline!r}; the variants of this study are: {', '.join(study.variants)}"
            )
        return baseline, "option"
    declared = study.meta.get("baseline")
    if isinstance(declared, str) and declared in study.variants:
        return declared, "study.json"
    return study.variants[0], "first variant"


def _total_ops(macs: float | None, other: float | None) -> float | None:
    """MACs + other ops (docs/conventions.md), None when either is unknown."""
    return None if macs is None or other is None else float(macs) + float(other)


def _check_margin(margin: Any) -> float:
    try:
        x = float(margin)
    except (TypeError, ValueError):
        x = float("nan")
    if not (x > 0.0 and x < float("inf")) or isinstance(margin, bool):
        raise ReportError(f"noninferiority_margin must be a positive number of accuracy points, got {margin!r}")
    return x


def build(
    study: Study,
    baseline: str | None = None,
    *,
    bootstrap: bool = False,
    test: str = "t",
    noninferiority_margin: float = NONINFERIORITY_MARGIN,
) -> dict[str, Any]:
    """Everything the report says, as JSON-ready data (no NaN anywhere).

    ``noninferiority_margin`` (accuracy points, default 1): a variant recommended for something other than
    accuracy (shift-consistency, cost) must have the lower bound of its accuracy CI above ``-margin``."""
    from .. import __version__
    from .decision import decide

    ni_margin = _check_margin(noninferiority_margin)
    base, base_from = resolve_baseline(study, baseline)
    notes = list(study.notes)

    variants: list[dict[str, Any]] = []
    per_seed: dict[str, dict[str, dict[int, float]]] = {}
    for name in study.variants:
        runs = study.ok_runs(name)
        row: dict[str, Any] = {"name": name, "n": len(runs), "seeds": [r.seed for r in runs]}
        per_seed[name] = {}
        clipped: list[str] = []
        for key in list(METRICS) + list(EXTRA_METRICS):
            vals = {r.seed: x for r in runs if (x := r.value(key)) is not None}
            per_seed[name][key] = vals
            row[key] = stats.summarize(list(vals.values()), bootstrap=bootstrap)
            if key in BOUNDED:
                lo, hi = BOUNDED[key]
                shown = stats.clip_ci(row[key]["ci"], lo, hi)
                row[key]["ci_clipped"] = shown
                if shown and shown != row[key]["ci"] and key in METRICS:  # the tables show METRICS' CIs
                    clipped.append(
                        f"{METRICS[key][0]} {stats.fmt_ci(row[key]['ci'], 2, signed=False)} → "
                        f"{stats.fmt_ci(shown, 2, signed=False)}"
                    )
        if clipped:
            notes.append(
                f"{name}: 95% CI reaching outside [0, 100] %, the range of a percentage, shown clipped in the tables "
                f"(report.json keeps the raw interval in 'ci', the clipped one in 'ci_clipped'): {'; '.join(clipped)}"
            )
        costs: dict[str, Any] = {}
        for key in STATIC_COSTS:
            vals_l = [x for r in runs if (x := r.value(key)) is not None]
            costs[key] = vals_l[0] if vals_l else None
            if len(set(vals_l)) > 1:
                notes.append(f"{name}: {key} differs between seeds ({min(vals_l):g}..{max(vals_l):g}); first used")
        costs["total_ops"] = _total_ops(costs["macs"], costs["other_ops"])
        for key in MEASURED_COSTS:
            costs[key] = stats.summarize([x for r in runs if (x := r.value(key)) is not None], bootstrap=False)
        lat = costs["latency_ms"]
        costs["latency_noisy"] = bool(lat["min"] and lat["max"] and lat["max"] > 1.5 * lat["min"])
        if costs["latency_noisy"]:
            notes.append(
                f"{name}: latency varies {lat['max'] / lat['min']:.1f}x across seeds ({lat['min']:.3g} to "
                f"{lat['max']:.3g} ms): timing noise (a busy machine?); the report uses the fastest measurement"
            )
        devices = sorted({str(r.result.get("device")) for r in runs if r.result.get("device")})
        costs["device"] = ", ".join(devices) or None
        row["costs"] = costs
        row["failed"] = [
            {"seed": r.seed, "reason": r.result.get("reason")} for r in study.runs if r.variant == name and not r.ok
        ]
        variants.append(row)

    by_name = {v["name"]: v for v in variants}
    base_row = by_name[base]

    # Paired comparisons with the baseline, Holm-corrected across variants per metric.
    comparisons: list[dict[str, Any]] = []
    if base_row["n"] == 0:
        notes.append(f"baseline {base} has no successful run yet: no comparison is possible")
    else:
        for v in variants:
            if v["name"] == base or v["n"] == 0:
                continue
            cmp: dict[str, Any] = {"variant": v["name"], "baseline": base, "metrics": {}}
            for key in METRICS:
                cmp["metrics"][key] = stats.paired(
                    per_seed[base][key], per_seed[v["name"]][key], test=test, bootstrap=bootstrap
                )
            bc, vc = base_row["costs"], v["costs"]
            cmp["cost_change_pct"] = {
                "params": _pct(vc["params"], bc["params"]),
                "macs": _pct(vc["macs"], bc["macs"]),
                "other_ops": _pct(vc["other_ops"], bc["other_ops"]),
                "total_ops": _pct(vc["total_ops"], bc["total_ops"]),
                "activation_bytes": _pct(vc["activation_bytes"], bc["activation_bytes"]),
                "latency_ms": _pct(vc["latency_ms"]["min"], bc["latency_ms"]["min"]),
                "train_time_s": _pct(vc["train_time_s"]["mean"], bc["train_time_s"]["mean"]),
            }
            comparisons.append(cmp)
        for key, (label, unit, margin) in METRICS.items():
            adj = stats.holm([c["metrics"][key]["p"] for c in comparisons])
            m = sum(p is not None for p in adj)
            for c, p in zip(comparisons, adj, strict=True):
                mc = c["metrics"][key]
                mc["p_holm"] = p
                mc["holm_m"] = m
                mc["verdict"] = stats.verdict(mc)
                mc["statement"] = stats.statement(mc, c["variant"], base, label, unit=unit, margin=margin, m=m)

    # Pareto fronts on mean accuracy against each cost.
    pareto_rows = [
        {
            "name": v["name"],
            "acc_mean": v["acc"]["mean"],
            "total_ops": v["costs"]["total_ops"],
            "macs": v["costs"]["macs"],
            "params": v["costs"]["params"],
            "latency_ms": v["costs"]["latency_ms"]["min"],
        }
        for v in variants
        if v["n"] > 0
    ]
    fronts = _pareto.analyse(pareto_rows)
    for v in variants:
        v["pareto"] = {axis: v["name"] in fronts[axis]["front"] for axis in fronts}

    missing = study.missing()
    failed = study.failed_runs()
    max_n = max(v["n"] for v in variants)
    data: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "poolstride": __version__,
        "study": {
            "dir": str(study.dir),
            "name": study.name,
            "model": study.meta.get("model"),
            "dataset": study.dataset,
            "recipe": study.meta.get("recipe"),
            "seeds": study.seeds,
            "variants": study.variants,
            "created": study.meta.get("created"),
            "provenance": study.meta.get("provenance"),
            "model_notes": (study.meta.get("model_source") or {}).get("notes") or [],
        },
        "status": {
            "complete": study.complete,
            "runs_total": study.runs_total,
            "runs_done": study.runs_done,
            "runs_ok": sum(r.ok for r in study.runs),
            "runs_failed": len(failed),
            "failed": [{"variant": r.variant, "seed": r.seed, "reason": r.result.get("reason")} for r in failed],
            "missing": [{"variant": v, "seed": s} for v, s in missing],
            "max_seeds_per_variant": max_n,
            "enough_seeds": max_n >= 2,
        },
        "options": {
            "baseline": base,
            "baseline_from": base_from,
            "ci": "bootstrap (percentile, 10000 resamples, seed 0)" if bootstrap else "t distribution",
            "confidence": stats.CONFIDENCE,
            "test": "paired t-test" if test == "t" else "Wilcoxon signed-rank",
            "correction": "Holm across variants, per metric",
            "alpha": stats.ALPHA,
            "equivalence_margin_pt": {k: m for k, (_, _, m) in METRICS.items()},
            "noninferiority_margin_pt": ni_margin,
            "cost": COST_RULE,
            "ci_clipping": "CIs of accuracy and shift-consistency are shown clipped to [0, 100] % in the tables",
        },
        "variants": variants,
        "comparisons": comparisons,
        "pareto": fronts,
        "notes": notes,
        "figures": [],
    }
    if not study.complete:
        notes.insert(
            0,
            f"partly finished study: {study.runs_done} of {study.runs_total} runs done; numbers will change",
        )
    if max_n < 2:
        notes.insert(0, "1 seed per variant: std, confidence intervals and tests need at least 2 seeds")
    notes.extend(_comparison_notes(comparisons, base))
    if any(c["cost_change_pct"]["total_ops"] is not None for c in comparisons):
        notes.append(
            f"cost rule: {COST_RULE}. A variant is recommended for shift-consistency or cost only if its accuracy "
            f"is non-inferior: the lower bound of the 95% CI of the accuracy difference is above "
            f"-{ni_margin:g} pt"
        )
    if study.sites:
        data["per_site"] = per_site_rows(study, data)
    data["decision"] = decide(data)
    return data


def _comparison_notes(comparisons: list[dict[str, Any]], base: str) -> list[str]:
    """The comparisons' statistical notes (Wilcoxon floor, bootstrap with few seeds, ...), one line per note
    text, naming the comparisons it applies to. Notes of untestable comparisons are in their statements."""
    by: dict[str, list[str]] = {}
    total = 0
    for c in comparisons:
        for key, (label, _, _) in METRICS.items():
            mc = c["metrics"][key]
            total += 1
            if mc.get("note") and mc.get("verdict") != "not testable":
                by.setdefault(str(mc["note"]), []).append(f"{c['variant']} ({label})")
    return [
        f"vs {base}, {'every comparison' if len(who) == total > 1 else ', '.join(who)}: {note}"
        for note, who in by.items()
    ]


def _resolution(site: dict[str, Any]) -> str | None:
    def hw(x: Any) -> str | None:
        if isinstance(x, (list, tuple)) and x and all(isinstance(i, int) and not isinstance(i, bool) for i in x):
            return "×".join(str(i) for i in x)
        return None

    a, b = hw(site.get("in_size")), hw(site.get("out_size"))
    return None if a is None and b is None else f"{a or '?'} → {b or '?'}"


def _delta(v: float | None, b: float | None) -> dict[str, Any]:
    return {
        "baseline": b,
        "variant": v,
        "delta": None if v is None or b is None else v - b,
        "delta_pct": _pct(v, b),
    }


def _cannot_tell_reason(mc: dict[str, Any] | None, enough_seeds: bool, m: int) -> str:
    """Why a site's accuracy comparison gives no verdict, in words."""
    if not enough_seeds:
        return "with 1 seed per variant there is no paired comparison (it needs at least 2 seeds)"
    if mc is None:
        return "no comparison"
    v = mc.get("verdict")
    if v == "not testable":
        return str(mc.get("note") or "no test possible")
    ci = mc.get("ci")
    margin = METRICS["acc"][2]
    if ci and ci[0] <= 0.0 <= ci[1]:
        s = f"the 95% CI of the accuracy difference, {stats.fmt_ci(ci, 2)} pt, spans 0"
    else:
        s = stats.not_significant_reason({**mc, "holm_m": mc.get("holm_m") or m}, digits=3)
    if ci and -margin <= ci[0] and ci[1] <= margin:
        s += f"; the CI lies within ±{margin:g} pt"
    return s


def per_site_rows(study: Study, data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per per-site variant (study.json ``site`` record), in study order, read off ``data``'s
    comparisons with the baseline (paired by seed, Holm-corrected across all variants): the accuracy and
    shift-consistency differences, the MACs and params deltas, and a verdict word from the accuracy verdict:
    ``helps`` (detectably higher), ``hurts`` (detectably lower) or ``cannot tell`` (with ``reason``)."""
    base = data["options"]["baseline"]
    enough = bool(data["status"]["enough_seeds"])
    by_name = {v["name"]: v for v in data["variants"]}
    cmps = {c["variant"]: c for c in data["comparisons"]}
    m = sum(c["metrics"]["acc"].get("p_holm") is not None for c in data["comparisons"])
    source = study.meta.get("model_source")
    default_policy = source.get("per_site") if isinstance(source, dict) else None
    records = study.records
    base_costs = by_name[base]["costs"]
    keys = ("n", "diff_mean", "ci", "p", "p_holm", "verdict", "note")
    rows: list[dict[str, Any]] = []
    for name, site in study.sites.items():
        if name == base or name not in by_name:
            continue
        cmp = cmps.get(name)
        row: dict[str, Any] = {
            "variant": name,
            "path": str(site.get("path")),
            "kind": site.get("kind"),
            "type": site.get("type"),
            "stage": site.get("stage"),
            "in_size": site.get("in_size"),
            "out_size": site.get("out_size"),
            "in_channels": site.get("in_channels"),
            "out_channels": site.get("out_channels"),
            "resolution": _resolution(site),
            "policy": default_policy or records.get(name, {}).get("policy"),  # as the user wrote it
            "baseline": base,
            "n": by_name[name]["n"],
        }
        for key in METRICS:
            mc = cmp["metrics"][key] if cmp is not None else None
            row[key] = {k: mc.get(k) for k in keys} if mc is not None else {k: None for k in keys}
        vc = by_name[name]["costs"]
        row["macs"] = _delta(vc["macs"], base_costs["macs"])
        row["params"] = _delta(vc["params"], base_costs["params"])
        acc = cmp["metrics"]["acc"] if cmp is not None else None
        verdict = acc.get("verdict") if acc is not None and enough else None
        if verdict == "higher":
            row["verdict"], row["reason"] = "helps", None
        elif verdict == "lower":
            row["verdict"], row["reason"] = "hurts", None
        else:
            row["verdict"] = "cannot tell"
            if cmp is None:
                row["reason"] = (
                    f"the baseline {base} has no successful run"
                    if by_name[base]["n"] == 0
                    else "no successful run of this variant"
                )
            else:
                row["reason"] = _cannot_tell_reason(acc, enough, m)
        rows.append(row)
    return rows
