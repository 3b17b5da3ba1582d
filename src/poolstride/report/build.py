"""Turn a loaded :class:`~poolstride.report.load.Study` into the report's data (the ``report.json`` dict)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..results import schema, stats
from ..results.format import fmt_ci
from ..results.stats import SiteVerdict, Verdict
from . import pareto as _pareto
from .decision import decide
from .load import ReportError, Study

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


@dataclass(frozen=True)
class ReportOptions:
    """How a report is made (``poolstride report`` options; :func:`poolstride.report.write_report`).

    ``baseline``: variant to compare with (None: study.json's baseline, else the first variant).
    ``bootstrap``: percentile-bootstrap CIs instead of t intervals. ``test``: ``"t"`` (paired t-test) or
    ``"wilcoxon"``. ``noninferiority_margin``: accuracy points a variant recommended for shift-consistency or
    cost may lose at most (None: :data:`NONINFERIORITY_MARGIN`). ``figures``, ``aliasing``: draw the plots,
    measure the aliasing section (when the study has checkpoints)."""

    baseline: str | None = None
    bootstrap: bool = False
    test: str = "t"
    noninferiority_margin: float | None = None
    figures: bool = True
    aliasing: bool = True


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
    ni_margin = _check_margin(noninferiority_margin)
    base, base_from = resolve_baseline(study, baseline)
    notes = list(study.notes)
    rows = [_variant_row(study, name, bootstrap, notes) for name in study.variants]
    variants = [row for row, _ in rows]
    per_seed = {row["name"]: seeds for row, seeds in rows}
    comparisons = _comparisons(variants, per_seed, base, test=test, bootstrap=bootstrap, notes=notes)
    fronts = _pareto_fronts(variants)
    max_n = max(v["n"] for v in variants)
    data: dict[str, Any] = {
        "schema": schema.REPORT,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "poolstride": __version__,
        "study": _study_record(study),
        "status": _status(study, max_n),
        "options": _options(base, base_from, bootstrap, test, ni_margin),
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


def _variant_row(
    study: Study, name: str, bootstrap: bool, notes: list[str]
) -> tuple[dict[str, Any], dict[str, dict[int, float]]]:
    """One variant's summaries, costs and failed runs, and its metrics by seed (for the paired comparisons);
    what the reader should know about them goes to ``notes``."""
    runs = study.ok_runs(name)
    row: dict[str, Any] = {"name": name, "n": len(runs), "seeds": [r.seed for r in runs]}
    per_seed: dict[str, dict[int, float]] = {}
    clipped: list[str] = []
    for key in list(METRICS) + list(EXTRA_METRICS):
        per_seed[key] = {r.seed: x for r in runs if (x := r.value(key)) is not None}
        row[key] = stats.summarize(list(per_seed[key].values()), bootstrap=bootstrap)
        if key in BOUNDED:
            shown = stats.clip_ci(row[key]["ci"], *BOUNDED[key])
            row[key]["ci_clipped"] = shown
            if shown and shown != row[key]["ci"] and key in METRICS:  # the tables show METRICS' CIs
                clipped.append(
                    f"{METRICS[key][0]} {fmt_ci(row[key]['ci'], 2, signed=False)} → {fmt_ci(shown, 2, signed=False)}"
                )
    if clipped:
        notes.append(
            f"{name}: 95% CI reaching outside [0, 100] %, the range of a percentage, shown clipped in the tables "
            f"(report.json keeps the raw interval in 'ci', the clipped one in 'ci_clipped'): {'; '.join(clipped)}"
        )
    row["costs"] = _costs(name, runs, notes)
    row["failed"] = [
        {"seed": r.seed, "reason": r.result.get("reason")} for r in study.runs if r.variant == name and not r.ok
    ]
    return row, per_seed


def _costs(name: str, runs: list[Any], notes: list[str]) -> dict[str, Any]:
    """A variant's static costs (its first seed's), measured costs (summaries over seeds) and devices."""
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
    return costs


def _cost_changes(vc: dict[str, Any], bc: dict[str, Any]) -> dict[str, float | None]:
    """A variant's cost change relative to the baseline's, in percent (latency: fastest; train time: mean)."""
    out = {key: _pct(vc[key], bc[key]) for key in ("params", "macs", "other_ops", "total_ops", "activation_bytes")}
    out["latency_ms"] = _pct(vc["latency_ms"]["min"], bc["latency_ms"]["min"])
    out["train_time_s"] = _pct(vc["train_time_s"]["mean"], bc["train_time_s"]["mean"])
    return out


def _comparisons(
    variants: list[dict[str, Any]],
    per_seed: dict[str, dict[str, dict[int, float]]],
    base: str,
    *,
    test: str,
    bootstrap: bool,
    notes: list[str],
) -> list[dict[str, Any]]:
    """Paired comparisons of every variant with the baseline, Holm-corrected across variants per metric."""
    base_row = next(v for v in variants if v["name"] == base)
    if base_row["n"] == 0:
        notes.append(f"baseline {base} has no successful run yet: no comparison is possible")
        return []
    comparisons: list[dict[str, Any]] = []
    for v in variants:
        if v["name"] == base or v["n"] == 0:
            continue
        metrics = {
            key: stats.paired(per_seed[base][key], per_seed[v["name"]][key], test=test, bootstrap=bootstrap)
            for key in METRICS
        }
        cost = _cost_changes(v["costs"], base_row["costs"])
        comparisons.append({"variant": v["name"], "baseline": base, "metrics": metrics, "cost_change_pct": cost})
    for key, (label, unit, margin) in METRICS.items():
        adj = stats.holm([c["metrics"][key]["p"] for c in comparisons])
        m = sum(p is not None for p in adj)
        for c, p in zip(comparisons, adj, strict=True):
            mc = c["metrics"][key]
            mc["p_holm"] = p
            mc["holm_m"] = m
            mc["verdict"] = stats.verdict(mc)
            mc["statement"] = stats.statement(mc, c["variant"], base, label, unit=unit, margin=margin)
    return comparisons


def _pareto_fronts(variants: list[dict[str, Any]]) -> dict[str, Any]:
    """Pareto fronts on mean accuracy against each cost; marks each variant's ``pareto`` membership."""
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
    fronts = _pareto.analyze(pareto_rows)
    for v in variants:
        v["pareto"] = {axis: v["name"] in fronts[axis]["front"] for axis in fronts}
    return fronts


def _study_record(study: Study) -> dict[str, Any]:
    return {
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
    }


def _status(study: Study, max_n: int) -> dict[str, Any]:
    failed = study.failed_runs()
    return {
        "complete": study.complete,
        "runs_total": study.runs_total,
        "runs_done": study.runs_done,
        "runs_ok": sum(r.ok for r in study.runs),
        "runs_failed": len(failed),
        "failed": [{"variant": r.variant, "seed": r.seed, "reason": r.result.get("reason")} for r in failed],
        "missing": [{"variant": v, "seed": s} for v, s in study.missing()],
        "max_seeds_per_variant": max_n,
        "enough_seeds": max_n >= 2,
    }


def _options(base: str, base_from: str, bootstrap: bool, test: str, ni_margin: float) -> dict[str, Any]:
    return {
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
    }


def _comparison_notes(comparisons: list[dict[str, Any]], base: str) -> list[str]:
    """The comparisons' statistical notes (Wilcoxon floor, bootstrap with few seeds, ...), one line per note
    text, naming the comparisons it applies to. Notes of untestable comparisons are in their statements."""
    by: dict[str, list[str]] = {}
    total = 0
    for c in comparisons:
        for key, (label, _, _) in METRICS.items():
            mc = c["metrics"][key]
            total += 1
            if mc.get("note") and mc.get("verdict") != Verdict.NOT_TESTABLE:
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


def _cannot_tell_reason(mc: dict[str, Any] | None, enough_seeds: bool) -> str:
    """Why a site's accuracy comparison gives no verdict, in words."""
    if not enough_seeds:
        return "with 1 seed per variant there is no paired comparison (it needs at least 2 seeds)"
    if mc is None:
        return "no comparison"
    v = mc.get("verdict")
    if v == Verdict.NOT_TESTABLE:
        return str(mc.get("note") or "no test possible")
    ci = mc.get("ci")
    margin = METRICS["acc"][2]
    if ci and ci[0] <= 0.0 <= ci[1]:
        s = f"the 95% CI of the accuracy difference, {fmt_ci(ci, 2)} pt, spans 0"
    else:
        s = stats.not_significant_reason(mc, digits=3)
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
        row["verdict"] = stats.site_verdict(acc.get("verdict") if acc is not None and enough else None)
        if row["verdict"] != SiteVerdict.CANNOT_TELL:
            row["reason"] = None
        elif cmp is None:
            no_base = by_name[base]["n"] == 0
            row["reason"] = (
                f"the baseline {base} has no successful run" if no_base else "no successful run of this variant"
            )
        else:
            row["reason"] = _cannot_tell_reason(acc, enough)
        rows.append(row)
    return rows
