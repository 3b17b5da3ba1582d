"""The decision: a few sentences on what to use, and why, that never claim more than the data shows.

Rules (all judged against the baseline, paired by seed, Holm-corrected, alpha 0.05):
1. A variant with detectably higher accuracy wins; among several, the highest mean accuracy.
2. Else a variant with no detectable accuracy difference and detectably higher shift-consistency is
   recommended *if shift robustness matters* - provided it is **non-inferior** in accuracy: the lower bound
   of the 95% CI of its accuracy difference is above ``-margin`` (``options.noninferiority_margin_pt``,
   default 1 pt). Otherwise the decision says it cannot tell whether the variant costs accuracy.
3. Else keep the baseline; cheaper variants with no detectable accuracy loss are named as options (the same
   non-inferiority condition), with the reminder that "no detectable difference" is not proof of equality.
With fewer than 2 seeds nothing is recommended, and neither when no variant could be tested (e.g. 1 seed
against 2): the decision names them and says why.

Cost is **total ops = MACs + other ops** (docs/conventions.md), so that operators whose arithmetic is in other
ops (blur, spectral, DiffStride) do not look free; the MACs change is shown next to it when it differs.

A per-site study (``data["per_site"]``) also gets a sentence per policy naming the sites where the change
helps, hurts or cannot be told apart from the baseline, read off the same Holm-adjusted verdicts.
"""

from __future__ import annotations

from typing import Any

from ..results import stats


def _pct_txt(v: float, label: str) -> str:
    return f"{v:+.0f}% {label}" if abs(v) >= 0.5 else f"±0% {label}"


def _cost(cmp: dict[str, Any]) -> float | None:
    """The cost change the decision uses (%): total ops, else MACs when other ops are unknown."""
    cc = cmp.get("cost_change_pct") or {}
    t = cc.get("total_ops")
    return t if t is not None else cc.get("macs")


def _cost_phrase(cmp: dict[str, Any]) -> str:
    parts = []
    cc = cmp.get("cost_change_pct") or {}
    t, m = cc.get("total_ops"), cc.get("macs")
    if t is not None:
        s = _pct_txt(t, "total ops")
        if m is not None and abs(t) >= 0.5 and abs(m) < 0.5:
            s += " (the same MACs: the " + ("extra arithmetic" if t > 0 else "saving") + " is in other ops)"
        elif m is not None and _pct_txt(m, "") != _pct_txt(t, ""):
            s += f" ({_pct_txt(m, 'MACs')})"
        parts.append(s)
    elif m is not None:
        parts.append(_pct_txt(m, "MACs") + " (other ops unknown)")
    for key, label in (("latency_ms", "latency"), ("params", "parameters")):
        v = cc.get(key)
        if v is None:
            continue
        if key == "params" and abs(v) < 0.5:
            continue
        parts.append(_pct_txt(v, label))
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


def _noninferior(mc: dict[str, Any], margin: float) -> bool:
    """Non-inferiority: the lower bound of the CI of the difference is above ``-margin``."""
    ci = mc.get("ci")
    return ci is not None and ci[0] >= -margin


def _cannot_tell_cost(name: str, mc: dict[str, Any], margin: float) -> str:
    return (
        f"the data cannot tell whether {name} costs accuracy ({_diff(mc)}: the CI's lower bound is below the "
        f"-{margin:g} pt non-inferiority margin)"
    )


def _not_sig(c: dict[str, Any]) -> str:
    """'name +1.10 pt, 95% CI [+0.18, +2.02], <why it is not significant>' for one accuracy comparison."""
    mc = c["metrics"]["acc"]
    ci = mc.get("ci")
    return f"{c['variant']} {mc['diff_mean']:+.2f} pt, 95% CI {stats.fmt_ci(ci, 2)}, {stats.not_significant_reason(mc)}"


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
    ni = float(data["options"].get("noninferiority_margin_pt") or 1.0)
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
    elif all(c["metrics"]["acc"].get("verdict") == "not testable" for c in comps):
        reasons = [f"{c['variant']} ({stats.not_testable_reason(c['metrics']['acc'])})" for c in comps]
        sentences.append(
            (
                f"No recommendation: {comps[0]['variant']} could not be tested against {base} on accuracy "
                f"({stats.not_testable_reason(comps[0]['metrics']['acc'])})."
                if len(reasons) == 1
                else f"No recommendation: no variant could be tested against {base} on accuracy: "
                + "; ".join(reasons)
                + "."
            )
            + (
                f" A paired comparison needs at least 2 seeds that both the variant and {base} finished."
                if any((c["metrics"]["acc"].get("n") or 0) < 2 for c in comps)
                else ""
            )
        )
        basis = "not testable"
    else:
        acc_v = {c["variant"]: c["metrics"]["acc"].get("verdict") for c in comps}
        better = [c for c in comps if acc_v[c["variant"]] == "higher"]
        worse = [c for c in comps if acc_v[c["variant"]] == "lower"]
        tied = [c for c in comps if acc_v[c["variant"]] == "no detectable difference"]
        untestable = [c for c in comps if acc_v[c["variant"]] == "not testable"]
        sc_better = [c for c in tied if c["metrics"]["shift_consistency"].get("verdict") == "higher"]
        sc_ok = [c for c in sc_better if _noninferior(c["metrics"]["acc"], ni)]
        sc_unsure = [c for c in sc_better if c not in sc_ok]
        k_tested = len(comps) - len(untestable)
        if not untestable:
            none = "no variant is"
        elif k_tested > 1:
            none = f"of the {k_tested} variants that could be tested, none is"
        else:
            only = next(c["variant"] for c in comps if c not in untestable)
            none = f"the only variant that could be tested, {only}, is not"

        def sc_key(c: dict[str, Any]) -> float:
            return float(variants[c["variant"]]["shift_consistency"]["mean"] or 0.0)

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
            if scm.get("verdict") != "higher" and sc_ok:
                a = max(sc_ok, key=sc_key)
                sentences.append(
                    f"If shift robustness matters more than accuracy, {a['variant']} is more shift-consistent than "
                    f"{base} ({_diff(a['metrics']['shift_consistency'])}) with no detectable accuracy difference "
                    f"and any loss smaller than {ni:g} pt ({_diff(a['metrics']['acc'])}), {_cost_phrase(a)}."
                )
            others = [c["variant"] for c in better if c is not best]
            if others:
                sentences.append(f"Also detectably more accurate than {base}: {', '.join(others)}.")
        elif sc_ok:
            best = max(sc_ok, key=sc_key)
            rec, basis = best["variant"], "shift-consistency"
            am = best["metrics"]["acc"]
            how = (
                f"is as accurate as {base} within ±{margin:g} pt ({_diff(am)})"
                if _within(am, margin)
                else f"shows no detectable accuracy difference from {base} ({_diff(am)}; any loss is smaller "
                f"than the {ni:g} pt non-inferiority margin)"
            )
            sentences.append(
                f"If shift robustness matters, use {rec}: it {how} and is more shift-consistent "
                f"({_diff(best['metrics']['shift_consistency'])}), {_cost_phrase(best)}. "
                f"Otherwise {base} is the cheaper choice."
                if (_cost(best) or 0) > 0
                else f"Use {rec}: it {how} and is more shift-consistent "
                f"({_diff(best['metrics']['shift_consistency'])}), {_cost_phrase(best)}."
            )
        else:
            basis = "baseline"
            rec = base
            if sc_unsure:
                u = max(sc_unsure, key=sc_key)
                sentences.append(
                    f"Keep {base} for now: {none} detectably more accurate; {u['variant']} is more "
                    f"shift-consistent ({_diff(u['metrics']['shift_consistency'])}), but "
                    f"{_cannot_tell_cost(u['variant'], u['metrics']['acc'], ni)}."
                )
            else:
                sentences.append(
                    f"Keep {base}: {none} detectably more accurate or, at equal accuracy, more shift-consistent."
                )
            cheaper = [c for c in tied if (_cost(c) or 0) < -0.5 or (c["cost_change_pct"].get("latency_ms") or 0) < -5]
            if cheaper:
                c = min(cheaper, key=lambda c: _cost(c) or 0)
                am = c["metrics"]["acc"]
                if _noninferior(am, ni):
                    eq = (
                        f"as accurate within ±{margin:g} pt"
                        if _within(am, margin)
                        else f"no detectable accuracy difference and any loss smaller than {ni:g} pt, which is not "
                        "proof of equal accuracy"
                    )
                    sentences.append(
                        f"If cost matters, {c['variant']} is an option: {_cost_phrase(c)} with {eq} ({_diff(am)})."
                    )
                else:
                    sentences.append(
                        f"{c['variant']} is cheaper ({_cost_phrase(c)}), but {_cannot_tell_cost(c['variant'], am, ni)}."
                    )
        named = max(sc_unsure, key=sc_key) if sc_unsure and basis == "baseline" else None
        extra_unsure = [c for c in sc_unsure if c is not named]
        if extra_unsure:
            also = "Also more" if basis in ("shift-consistency", "baseline") else "More"
            sentences.append(
                f"{also} shift-consistent than {base}, but the data cannot tell whether "
                + ("it costs" if len(extra_unsure) == 1 else "they cost")
                + f" accuracy (the lower bound of the accuracy CI is below the -{ni:g} pt non-inferiority margin): "
                + "; ".join(
                    f"{u['variant']} (shift-consistency {_diff(u['metrics']['shift_consistency'])}; accuracy "
                    f"{_diff(u['metrics']['acc'])})"
                    for u in extra_unsure
                )
                + "."
            )
        if worse:
            sentences.append(
                "Detectably less accurate than "
                + base
                + ": "
                + "; ".join(f"{c['variant']} ({_diff(c['metrics']['acc'])})" for c in worse)
                + "."
            )
        if untestable:
            sentences.append(
                f"Could not be tested against {base}: "
                + "; ".join(f"{c['variant']} ({stats.not_testable_reason(c['metrics']['acc'])})" for c in untestable)
                + "."
            )
        unresolved = [c for c in tied if not _within(c["metrics"]["acc"], margin)]
        if unresolved and len(unresolved) == len(comps):
            cis = [c["metrics"]["acc"]["ci"] for c in unresolved]
            if all(ci[0] <= 0.0 <= ci[1] for ci in cis):
                sentences.append(
                    f"{seeds_txt} seeds cannot separate any variant from {base} on accuracy: every 95% CI of the "
                    f"difference spans 0 and reaches beyond ±{margin:g} pt."
                )
            else:
                sentences.append(
                    f"{seeds_txt} seeds cannot separate any variant from {base} on accuracy (no CI of the "
                    f"difference lies within ±{margin:g} pt): " + "; ".join(_not_sig(c) for c in unresolved) + "."
                )
        if rec is not None and rec in variants:
            front = variants[rec]["pareto"]
            cost_axis = "total_ops" if variants[rec]["costs"].get("total_ops") is not None else "macs"
            axes = ((cost_axis, "total ops" if cost_axis == "total_ops" else "MACs"), ("latency_ms", "latency"))
            on = [lab for axis, lab in axes if front.get(axis)]
            off = [
                f"{lab} (dominated by {', '.join(data['pareto'][axis]['dominated_by'].get(rec, []))})"
                for axis, lab in axes
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
