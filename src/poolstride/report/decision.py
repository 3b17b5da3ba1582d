"""The decision: a few sentences on what to use, and why, that never claim more than the data shows.

Rules (all judged against the baseline, paired by seed, Holm-corrected, alpha 0.05):
1. A variant with detectably higher accuracy wins; among several, the highest mean accuracy.
2. Else a variant with no detectable accuracy difference and detectably higher shift-consistency is
   recommended *if shift robustness matters*.
3. Else keep the baseline; cheaper variants with no detectable accuracy loss are named as options, with
   the reminder that "no detectable difference" is not proof of equality.
With fewer than 2 seeds nothing is recommended.

A per-site study (``data["per_site"]``) also gets a sentence per policy naming the sites where the change
helps, hurts or cannot be told apart from the baseline, read off the same Holm-adjusted verdicts.
"""

from __future__ import annotations

from typing import Any


def _cost_phrase(cmp: dict[str, Any]) -> str:
    parts = []
    cc = cmp.get("cost_change_pct") or {}
    for key, label in (("macs", "MACs"), ("latency_ms", "latency"), ("params", "parameters")):
        v = cc.get(key)
        if v is None:
            continue
        if key == "params" and abs(v) < 0.5:
            continue
        parts.append(f"{v:+.0f}% {label}" if abs(v) >= 0.5 else f"±0% {label}")
    if not parts:
        return "at unknown cost"
    return "at " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])


def _diff(mc: dict[str, Any]) -> str:
    ci = mc.get("ci")
    d = mc.get("diff_mean")
    if d is None:
        return "n/a"
    if not ci:
        return f"{d:+.1f} pt"
    return f"{d:+.1f} pt, 95% CI [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def _within(mc: dict[str, Any], margin: float) -> bool:
    ci = mc.get("ci")
    return ci is not None and -margin <= ci[0] and ci[1] <= margin


def _names(xs: list[str]) -> str:
    return ", ".join(xs)


def _per_site_sentences(data: dict[str, Any]) -> list[str]:
    """'Per site (policy P, against B): changing X helps (...); changing Y hurts (...); cannot tell at 3 sites:
    a, b, c.' per policy, plus the sites whose shift-consistency differs detectably."""
    rows = data.get("per_site") or []
    if not rows:
        return []
    base = data["options"]["baseline"]
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("policy"), []).append(r)
    out: list[str] = []
    for pol, rs in groups.items():
        head = f"Per site ({'policy ' + pol + ', ' if pol else ''}against {base})"
        unsure = [r for r in rs if r["verdict"] == "cannot tell"]
        reasons = {r.get("reason") for r in unsure}
        if len(unsure) == len(rs) and len(rs) > 1 and len(reasons) == 1:
            out.append(
                f"{head}: cannot tell at any of the {len(rs)} sites ({_names([r['path'] for r in rs])}), "
                f"{next(iter(reasons))}."
            )
            continue
        parts = [
            f"changing {r['path']} {r['verdict']} ({_diff(r['acc'])})" for r in rs if r["verdict"] != "cannot tell"
        ]
        if len(unsure) == 1 and len(rs) == 1:
            parts.append(f"cannot tell at {unsure[0]['path']} ({unsure[0].get('reason')})")
        elif unsure:
            parts.append(
                f"cannot tell at {len(unsure)} site{'s' if len(unsure) > 1 else ''}: "
                + _names([r["path"] for r in unsure])
            )
        out.append(f"{head}: " + "; ".join(parts) + ".")
        sc = [
            f"{'higher' if r['shift_consistency']['verdict'] == 'higher' else 'lower'} when changing {r['path']} "
            f"({_diff(r['shift_consistency'])})"
            for r in rs
            if r["shift_consistency"].get("verdict") in ("higher", "lower")
        ]
        if sc:
            out.append(
                f"Shift-consistency{' (policy ' + pol + ')' if pol and len(groups) > 1 else ''}: " + "; ".join(sc) + "."
            )
    return out


def decide(data: dict[str, Any]) -> dict[str, Any]:
    base = data["options"]["baseline"]
    margin = data["options"]["equivalence_margin_pt"]["acc"]
    variants = {v["name"]: v for v in data["variants"]}
    comps = data["comparisons"]
    status = data["status"]
    study = data["study"]
    sentences: list[str] = []
    caveats: list[str] = []
    rec: str | None = None
    basis: str | None = None

    n_seeds = sorted({v["n"] for v in data["variants"] if v["n"] > 0})
    seeds_txt = f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"

    if not status["enough_seeds"]:
        best = max((v for v in data["variants"] if v["acc"]["mean"] is not None), key=lambda v: v["acc"]["mean"])
        sentences.append(
            f"No recommendation: with 1 seed per variant the differences cannot be told apart from seed noise "
            f"(run-to-run spread is typically around 1 pt). The single-seed ranking puts {best['name']} first "
            f"({best['acc']['mean']:.1f}%). Run at least 3 seeds per variant."
        )
        basis = "insufficient seeds"
    elif variants[base]["n"] == 0 or not comps:
        sentences.append(
            f"No recommendation: the baseline {base} has no successful run to compare with."
            if variants[base]["n"] == 0
            else "No recommendation: the study has only one variant with results."
        )
        basis = "no comparison"
    else:
        better = [c for c in comps if c["metrics"]["acc"].get("verdict") == "higher"]
        worse = [c for c in comps if c["metrics"]["acc"].get("verdict") == "lower"]
        tied = [c for c in comps if c["metrics"]["acc"].get("verdict") == "no detectable difference"]
        sc_better = [c for c in tied if c["metrics"]["shift_consistency"].get("verdict") == "higher"]

        if better:
            best = max(better, key=lambda c: variants[c["variant"]]["acc"]["mean"])
            rec, basis = best["variant"], "accuracy"
            s = (
                f"Use {rec}: it is more accurate than {base} ({_diff(best['metrics']['acc'])}, "
                f"Holm-adjusted p = {best['metrics']['acc']['p_holm']:.2g})"
            )
            scm = best["metrics"]["shift_consistency"]
            if scm.get("verdict") in ("higher", "lower"):
                s += f", {'more' if scm['verdict'] == 'higher' else 'less'} shift-consistent ({_diff(scm)})"
            sentences.append(s + f", {_cost_phrase(best)}.")
            alt = [c for c in tied if c["metrics"]["shift_consistency"].get("verdict") == "higher"]
            if scm.get("verdict") != "higher" and alt:
                a = max(alt, key=lambda c: variants[c["variant"]]["shift_consistency"]["mean"] or 0.0)
                sentences.append(
                    f"If shift robustness matters more than accuracy, {a['variant']} is more shift-consistent than "
                    f"{base} ({_diff(a['metrics']['shift_consistency'])}) with no detectable accuracy difference "
                    f"({_diff(a['metrics']['acc'])}), {_cost_phrase(a)}."
                )
            others = [c["variant"] for c in better if c is not best]
            if others:
                sentences.append(f"Also detectably more accurate than {base}: {', '.join(others)}.")
        elif sc_better:
            best = max(sc_better, key=lambda c: variants[c["variant"]]["shift_consistency"]["mean"] or 0.0)
            rec, basis = best["variant"], "shift-consistency"
            am = best["metrics"]["acc"]
            how = (
                f"is as accurate as {base} within ±{margin:g} pt"
                if _within(am, margin)
                else f"shows no detectable accuracy difference from {base}"
            )
            sentences.append(
                f"If shift robustness matters, use {rec}: it {how} ({_diff(am)}) and is more shift-consistent "
                f"({_diff(best['metrics']['shift_consistency'])}), {_cost_phrase(best)}. "
                f"Otherwise {base} is the cheaper choice."
                if (best["cost_change_pct"].get("macs") or 0) > 0
                else f"Use {rec}: it {how} ({_diff(am)}) and is more shift-consistent "
                f"({_diff(best['metrics']['shift_consistency'])}), {_cost_phrase(best)}."
            )
        else:
            basis = "baseline"
            sentences.append(
                f"Keep {base}: no variant is detectably more accurate or, at equal accuracy, more shift-consistent."
            )
            cheaper = [
                c
                for c in tied
                if (c["cost_change_pct"].get("macs") or 0) < -0.5 or (c["cost_change_pct"].get("latency_ms") or 0) < -5
            ]
            if cheaper:
                c = min(cheaper, key=lambda c: c["cost_change_pct"].get("macs") or 0)
                am = c["metrics"]["acc"]
                eq = (
                    f"as accurate within ±{margin:g} pt"
                    if _within(am, margin)
                    else "no detectable accuracy difference, which is not proof of equal accuracy"
                )
                sentences.append(
                    f"If cost matters, {c['variant']} is an option: {_cost_phrase(c)} with {eq} ({_diff(am)})."
                )
            rec = base
        if worse:
            sentences.append(
                "Detectably less accurate than "
                + base
                + ": "
                + "; ".join(f"{c['variant']} ({_diff(c['metrics']['acc'])})" for c in worse)
                + "."
            )
        unresolved = [c for c in tied if not _within(c["metrics"]["acc"], margin)]
        if unresolved and len(unresolved) == len(comps):
            sentences.append(
                f"{seeds_txt} seeds cannot separate any variant from {base} on accuracy: every CI of the difference "
                "spans 0 and is wider than ±" + f"{margin:g} pt."
            )
        if rec is not None and rec in variants:
            front = variants[rec]["pareto"]
            on = [lab for axis, lab in (("macs", "MACs"), ("latency_ms", "latency")) if front.get(axis)]
            off = [
                f"{lab} (dominated by {', '.join(data['pareto'][axis]['dominated_by'].get(rec, []))})"
                for axis, lab in (("macs", "MACs"), ("latency_ms", "latency"))
                if not front.get(axis) and data["pareto"][axis]["dominated_by"].get(rec)
            ]
            if on:
                sentences.append(f"{rec} is on the accuracy-vs-{' and -vs-'.join(on)} Pareto front.")
            if off:
                sentences.append(f"On mean accuracy it is off the Pareto front for {'; '.join(off)}.")

    sentences.extend(_per_site_sentences(data))

    # Caveats: always stated.
    recipe = study.get("recipe") or {}
    epochs = recipe.get("epochs") if isinstance(recipe, dict) else None
    rname = recipe.get("name") if isinstance(recipe, dict) else None
    caveats.append(
        f"Measured for model {study.get('model') or '?'} on {study.get('dataset')}"
        + (f" with the {rname} recipe" if rname else "")
        + (f" ({epochs} epochs)" if epochs else "")
        + "; other data, models or longer training can change the ranking."
    )
    if status["enough_seeds"]:
        caveats.append(
            f"{seeds_txt} seeds per variant; differences are paired by seed and Holm-corrected across variants. "
            "'No detectable difference' means the data cannot tell, not that the variants are equal."
        )
    devices = sorted({v["costs"]["device"] for v in data["variants"] if v["costs"].get("device")})
    if devices:
        noisy = [v["name"] for v in data["variants"] if v["costs"].get("latency_noisy")]
        caveats.append(
            f"Latency was measured on {', '.join(devices)}; it differs on other hardware and batch sizes."
            + (
                f" The measurements of {', '.join(noisy)} vary by more than 1.5x across seeds (see Notes): "
                "treat latency differences with care."
                if noisy
                else ""
            )
        )
    if not status["complete"]:
        caveats.append(
            f"Partly finished study ({status['runs_done']} of {status['runs_total']} runs): the numbers will change."
        )
    if status["runs_failed"]:
        caveats.append(
            f"{status['runs_failed']} run(s) failed; their variants are judged on fewer seeds (see Failed runs)."
        )
    headline = sentences[0] if sentences else ""
    return {"recommendation": rec, "basis": basis, "headline": headline, "sentences": sentences, "caveats": caveats}
