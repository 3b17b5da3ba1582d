"""Turn a loaded :class:`~poolstride.report.load.Study` into the report's data (the ``report.json`` dict)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from . import pareto as _pareto
from . import stats
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


def build(study: Study, baseline: str | None = None, *, bootstrap: bool = False, test: str = "t") -> dict[str, Any]:
    """Everything the report says, as JSON-ready data (no NaN anywhere)."""
    from .. import __version__
    from .decision import decide

    base, base_from = resolve_baseline(study, baseline)
    notes = list(study.notes)

    variants: list[dict[str, Any]] = []
    per_seed: dict[str, dict[str, dict[int, float]]] = {}
    for name in study.variants:
        runs = study.ok_runs(name)
        row: dict[str, Any] = {"name": name, "n": len(runs), "seeds": [r.seed for r in runs]}
        per_seed[name] = {}
        for key in list(METRICS) + list(EXTRA_METRICS):
            vals = {r.seed: x for r in runs if (x := r.value(key)) is not None}
            per_seed[name][key] = vals
            row[key] = stats.summarize(list(vals.values()), bootstrap=bootstrap)
        costs: dict[str, Any] = {}
        for key in STATIC_COSTS:
            vals_l = [x for r in runs if (x := r.value(key)) is not None]
            costs[key] = vals_l[0] if vals_l else None
            if len(set(vals_l)) > 1:
                notes.append(f"{name}: {key} differs between seeds ({min(vals_l):g}..{max(vals_l):g}); first used")
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
                mc["verdict"] = stats.verdict(mc)
                mc["statement"] = stats.statement(mc, c["variant"], base, label, unit=unit, margin=margin, m=m)

    # Pareto fronts on mean accuracy against each cost.
    pareto_rows = [
        {
            "name": v["name"],
            "acc_mean": v["acc"]["mean"],
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
    data["decision"] = decide(data)
    return data
