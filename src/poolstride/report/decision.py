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

from dataclasses import dataclass, field
from typing import Any

from ..results import stats
from ..results.format import fmt_ci, fmt_delta
from ..results.stats import SiteVerdict, Verdict


def _pct_txt(v: float, label: str) -> str:
    return fmt_delta(v, 0, f"% {label}") if abs(v) >= 0.5 else f"±0% {label}"


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
        return fmt_delta(d, 1, " pt")
    return f"{fmt_delta(d, 1, ' pt')}, 95% CI {fmt_ci(ci, 1)}"


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
    why = stats.not_significant_reason(mc)
    return f"{c['variant']} {fmt_delta(mc['diff_mean'], 2, ' pt')}, 95% CI {fmt_ci(mc.get('ci'), 2)}, {why}"


def _names(xs: list[str]) -> str:
    return ", ".join(xs)


def _untestable(c: dict[str, Any]) -> str:
    """'name (why it cannot be tested)' for one accuracy comparison."""
    return f"{c['variant']} ({stats.not_testable_reason(c['metrics']['acc'])})"


def _per_site_policy(head: str, rs: list[dict[str, Any]], sc_head: str) -> list[str]:
    """'HEAD: changing X helps (...); changing Y hurts (...); cannot tell at 3 sites: a, b, c.' for the sites of
    one policy, and 'SC_HEAD: higher when changing X (...).' for those whose shift-consistency differs."""
    unsure = [r for r in rs if r["verdict"] == SiteVerdict.CANNOT_TELL]
    reasons = {r.get("reason") for r in unsure}
    if len(unsure) == len(rs) and len(rs) > 1 and len(reasons) == 1:
        paths = _names([r["path"] for r in rs])
        return [f"{head}: cannot tell at any of the {len(rs)} sites ({paths}), {next(iter(reasons))}."]
    parts = [f"changing {r['path']} {r['verdict']} ({_diff(r['acc'])})" for r in rs if r not in unsure]
    if len(unsure) == 1 and len(rs) == 1:
        parts.append(f"cannot tell at {unsure[0]['path']} ({unsure[0].get('reason')})")
    elif unsure:
        parts.append(
            f"cannot tell at {len(unsure)} site{'s' if len(unsure) > 1 else ''}: " + _names([r["path"] for r in unsure])
        )
    out = [f"{head}: " + "; ".join(parts) + "."]
    sc = [
        f"{r['shift_consistency']['verdict']} when changing {r['path']} ({_diff(r['shift_consistency'])})"
        for r in rs
        if r["shift_consistency"].get("verdict") in (Verdict.HIGHER, Verdict.LOWER)
    ]
    if sc:
        out.append(f"{sc_head}: " + "; ".join(sc) + ".")
    return out


def _per_site_sentences(data: dict[str, Any]) -> list[str]:
    """The per-site sentences (:func:`_per_site_policy`) of each policy of a per-site study."""
    rows = data.get("per_site") or []
    base = data["options"]["baseline"]
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("policy"), []).append(r)
    out: list[str] = []
    for pol, rs in groups.items():
        head = f"Per site ({'policy ' + pol + ', ' if pol else ''}against {base})"
        sc_head = f"Shift-consistency{' (policy ' + pol + ')' if pol and len(groups) > 1 else ''}"
        out += _per_site_policy(head, rs, sc_head)
    return out


@dataclass
class _Judged:
    """A study's comparisons with the baseline, grouped by their accuracy and shift-consistency verdicts."""

    data: dict[str, Any]
    base: str = ""
    margin: float = 1.0  # equivalence margin, pt
    ni: float = 1.0  # non-inferiority margin, pt
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    comps: list[dict[str, Any]] = field(default_factory=list)
    better: list[dict[str, Any]] = field(default_factory=list)
    worse: list[dict[str, Any]] = field(default_factory=list)
    tied: list[dict[str, Any]] = field(default_factory=list)
    untestable: list[dict[str, Any]] = field(default_factory=list)
    sc_ok: list[dict[str, Any]] = field(default_factory=list)  # more shift-consistent, non-inferior accuracy
    sc_unsure: list[dict[str, Any]] = field(default_factory=list)  # more shift-consistent, accuracy cost unknown

    def __post_init__(self) -> None:
        opts = self.data["options"]
        self.base = opts["baseline"]
        self.margin = opts["equivalence_margin_pt"]["acc"]
        self.ni = float(opts.get("noninferiority_margin_pt") or 1.0)
        self.variants = {v["name"]: v for v in self.data["variants"]}
        self.comps = self.data["comparisons"]
        acc_v = {c["variant"]: c["metrics"]["acc"].get("verdict") for c in self.comps}
        self.better = [c for c in self.comps if acc_v[c["variant"]] == Verdict.HIGHER]
        self.worse = [c for c in self.comps if acc_v[c["variant"]] == Verdict.LOWER]
        self.tied = [c for c in self.comps if acc_v[c["variant"]] == Verdict.NO_DIFFERENCE]
        self.untestable = [c for c in self.comps if acc_v[c["variant"]] == Verdict.NOT_TESTABLE]
        sc_better = [c for c in self.tied if c["metrics"]["shift_consistency"].get("verdict") == Verdict.HIGHER]
        self.sc_ok = [c for c in sc_better if _noninferior(c["metrics"]["acc"], self.ni)]
        self.sc_unsure = [c for c in sc_better if c not in self.sc_ok]

    def sc_key(self, c: dict[str, Any]) -> float:
        """The mean shift-consistency of a comparison's variant (to pick the most shift-consistent)."""
        return float(self.variants[c["variant"]]["shift_consistency"]["mean"] or 0.0)

    def none_is(self) -> str:
        """'no variant is' or how many of the tested variants are not, when some could not be tested."""
        k_tested = len(self.comps) - len(self.untestable)
        if not self.untestable:
            return "no variant is"
        if k_tested > 1:
            return f"of the {k_tested} variants that could be tested, none is"
        only = next(c["variant"] for c in self.comps if c not in self.untestable)
        return f"the only variant that could be tested, {only}, is not"


def _seeds_txt(data: dict[str, Any]) -> str:
    n_seeds = sorted({v["n"] for v in data["variants"] if v["n"] > 0})
    return f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"


def _no_recommendation(data: dict[str, Any]) -> tuple[str, str] | None:
    """(basis, sentence) when nothing can be recommended: 1 seed, no comparison, or nothing testable."""
    base = data["options"]["baseline"]
    comps = data["comparisons"]
    base_n = next(v["n"] for v in data["variants"] if v["name"] == base)
    if not data["status"]["enough_seeds"]:
        best = max((v for v in data["variants"] if v["acc"]["mean"] is not None), key=lambda v: v["acc"]["mean"])
        return "insufficient seeds", (
            f"No recommendation: with 1 seed per variant the differences cannot be told apart from seed noise "
            f"(run-to-run spread is typically around 1 pt). The single-seed ranking puts {best['name']} first "
            f"({best['acc']['mean']:.1f}%). Run at least 3 seeds per variant."
        )
    if base_n == 0 or not comps:
        return "no comparison", (
            f"No recommendation: the baseline {base} has no successful run to compare with."
            if base_n == 0
            else "No recommendation: the study has only one variant with results."
        )
    if not all(c["metrics"]["acc"].get("verdict") == Verdict.NOT_TESTABLE for c in comps):
        return None
    first = (
        f"No recommendation: {comps[0]['variant']} could not be tested against {base} on accuracy "
        f"({stats.not_testable_reason(comps[0]['metrics']['acc'])})."
        if len(comps) == 1
        else f"No recommendation: no variant could be tested against {base} on accuracy: "
        + "; ".join(_untestable(c) for c in comps)
        + "."
    )
    if any((c["metrics"]["acc"].get("n") or 0) < 2 for c in comps):
        first += f" A paired comparison needs at least 2 seeds that both the variant and {base} finished."
    return "not testable", first


def _accuracy_win(j: _Judged) -> tuple[str, list[str]]:
    """The most accurate of the detectably more accurate variants, and why."""
    base, ni = j.base, j.ni
    best = max(j.better, key=lambda c: j.variants[c["variant"]]["acc"]["mean"])
    rec = best["variant"]
    s = (
        f"Use {rec}: it is more accurate than {base} ({_diff(best['metrics']['acc'])}, "
        f"Holm-adjusted p = {best['metrics']['acc']['p_holm']:.2g})"
    )
    scm = best["metrics"]["shift_consistency"]
    if scm.get("verdict") in (Verdict.HIGHER, Verdict.LOWER):
        s += f", {'more' if scm['verdict'] == Verdict.HIGHER else 'less'} shift-consistent ({_diff(scm)})"
    sentences = [s + f", {_cost_phrase(best)}."]
    if scm.get("verdict") != Verdict.HIGHER and j.sc_ok:
        a = max(j.sc_ok, key=j.sc_key)
        sentences.append(
            f"If shift robustness matters more than accuracy, {a['variant']} is more shift-consistent than "
            f"{base} ({_diff(a['metrics']['shift_consistency'])}) with no detectable accuracy difference "
            f"and any loss smaller than {ni:g} pt ({_diff(a['metrics']['acc'])}), {_cost_phrase(a)}."
        )
    others = [c["variant"] for c in j.better if c is not best]
    if others:
        sentences.append(f"Also detectably more accurate than {base}: {', '.join(others)}.")
    return rec, sentences


def _shift_win(j: _Judged) -> tuple[str, list[str]]:
    """The most shift-consistent of the non-inferior variants, and why."""
    base, margin = j.base, j.margin
    best = max(j.sc_ok, key=j.sc_key)
    rec = best["variant"]
    am = best["metrics"]["acc"]
    how = (
        f"is as accurate as {base} within ±{margin:g} pt ({_diff(am)})"
        if _within(am, margin)
        else f"shows no detectable accuracy difference from {base} ({_diff(am)}; any loss is smaller "
        f"than the {j.ni:g} pt non-inferiority margin)"
    )
    gain = f"is more shift-consistent ({_diff(best['metrics']['shift_consistency'])}), {_cost_phrase(best)}"
    if (_cost(best) or 0) > 0:
        return rec, [
            f"If shift robustness matters, use {rec}: it {how} and {gain}. Otherwise {base} is the cheaper choice."
        ]
    return rec, [f"Use {rec}: it {how} and {gain}."]


def _keep_baseline(j: _Judged) -> list[str]:
    """Keep the baseline; name a more shift-consistent variant of unknown accuracy cost and a cheaper option."""
    base, ni = j.base, j.ni
    if j.sc_unsure:
        u = max(j.sc_unsure, key=j.sc_key)
        out = [
            f"Keep {base} for now: {j.none_is()} detectably more accurate; {u['variant']} is more "
            f"shift-consistent ({_diff(u['metrics']['shift_consistency'])}), but "
            f"{_cannot_tell_cost(u['variant'], u['metrics']['acc'], ni)}."
        ]
    else:
        out = [f"Keep {base}: {j.none_is()} detectably more accurate or, at equal accuracy, more shift-consistent."]
    cheaper = [c for c in j.tied if (_cost(c) or 0) < -0.5 or (c["cost_change_pct"].get("latency_ms") or 0) < -5]
    if not cheaper:
        return out
    c = min(cheaper, key=lambda c: _cost(c) or 0)
    am = c["metrics"]["acc"]
    if not _noninferior(am, ni):
        return out + [f"{c['variant']} is cheaper ({_cost_phrase(c)}), but {_cannot_tell_cost(c['variant'], am, ni)}."]
    eq = (
        f"as accurate within ±{j.margin:g} pt"
        if _within(am, j.margin)
        else f"no detectable accuracy difference and any loss smaller than {ni:g} pt, which is not "
        "proof of equal accuracy"
    )
    return out + [f"If cost matters, {c['variant']} is an option: {_cost_phrase(c)} with {eq} ({_diff(am)})."]


def _more_sentences(j: _Judged, basis: str, seeds_txt: str) -> list[str]:
    """What else the comparisons show: shift-consistent variants of unknown accuracy cost, less accurate and
    untestable variants, and when no CI of the accuracy difference is narrow enough."""
    base, ni, margin = j.base, j.ni, j.margin
    out: list[str] = []
    named = max(j.sc_unsure, key=j.sc_key) if j.sc_unsure and basis == "baseline" else None
    extra_unsure = [c for c in j.sc_unsure if c is not named]
    if extra_unsure:
        also = "Also more" if basis in ("shift-consistency", "baseline") else "More"
        out.append(
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
    if j.worse:
        worse = "; ".join(f"{c['variant']} ({_diff(c['metrics']['acc'])})" for c in j.worse)
        out.append(f"Detectably less accurate than {base}: {worse}.")
    if j.untestable:
        out.append(f"Could not be tested against {base}: " + "; ".join(_untestable(c) for c in j.untestable) + ".")
    unresolved = [c for c in j.tied if not _within(c["metrics"]["acc"], margin)]
    if unresolved and len(unresolved) == len(j.comps):
        if all(c["metrics"]["acc"]["ci"][0] <= 0.0 <= c["metrics"]["acc"]["ci"][1] for c in unresolved):
            out.append(
                f"{seeds_txt} seeds cannot separate any variant from {base} on accuracy: every 95% CI of the "
                f"difference spans 0 and reaches beyond ±{margin:g} pt."
            )
        else:
            out.append(
                f"{seeds_txt} seeds cannot separate any variant from {base} on accuracy (no CI of the "
                f"difference lies within ±{margin:g} pt): " + "; ".join(_not_sig(c) for c in unresolved) + "."
            )
    return out


def _pareto_sentences(data: dict[str, Any], rec: str) -> list[str]:
    """Whether the recommended variant is on the accuracy-vs-cost and accuracy-vs-latency Pareto fronts."""
    v = next((v for v in data["variants"] if v["name"] == rec), None)
    if v is None:
        return []
    cost_axis = "total_ops" if v["costs"].get("total_ops") is not None else "macs"
    axes = ((cost_axis, "total ops" if cost_axis == "total_ops" else "MACs"), ("latency_ms", "latency"))
    on = [lab for axis, lab in axes if v["pareto"].get(axis)]
    off = [
        f"{lab} (dominated by {', '.join(data['pareto'][axis]['dominated_by'].get(rec, []))})"
        for axis, lab in axes
        if not v["pareto"].get(axis) and data["pareto"][axis]["dominated_by"].get(rec)
    ]
    out = []
    if on:
        out.append(f"{rec} is on the accuracy-vs-{' and -vs-'.join(on)} Pareto front.")
    if off:
        out.append(f"On mean accuracy it is off the Pareto front for {'; '.join(off)}.")
    return out


def _recommend(data: dict[str, Any], seeds_txt: str) -> tuple[str, str, list[str]]:
    """(recommendation, basis, sentences) for a study whose comparisons can be judged: rules 1-3 of the module
    docstring, then what else the comparisons show and where the recommendation lies on the Pareto fronts."""
    j = _Judged(data)
    if j.better:
        basis = "accuracy"
        rec, sentences = _accuracy_win(j)
    elif j.sc_ok:
        basis = "shift-consistency"
        rec, sentences = _shift_win(j)
    else:
        basis, rec = "baseline", j.base
        sentences = _keep_baseline(j)
    sentences += _more_sentences(j, basis, seeds_txt)
    return rec, basis, sentences + _pareto_sentences(data, rec)


def _caveats(data: dict[str, Any], seeds_txt: str) -> list[str]:
    """What the decision always states: what was measured, how, and on what; partial and failed runs."""
    study, status = data["study"], data["status"]
    recipe = study.get("recipe") or {}
    epochs = recipe.get("epochs") if isinstance(recipe, dict) else None
    rname = recipe.get("name") if isinstance(recipe, dict) else None
    caveats = [
        f"Measured for model {study.get('model') or '?'} on {study.get('dataset')}"
        + (f" with the {rname} recipe" if rname else "")
        + (f" ({epochs} epochs)" if epochs else "")
        + "; other data, models or longer training can change the ranking."
    ]
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
    return caveats


def decide(data: dict[str, Any]) -> dict[str, Any]:
    """The decision of a report's data: a recommendation, its basis, sentences (the first is the headline) and
    caveats."""
    seeds_txt = _seeds_txt(data)
    rec: str | None = None
    stop = _no_recommendation(data)
    if stop is not None:
        basis: str | None = stop[0]
        sentences = [stop[1]]
    else:
        rec, basis, sentences = _recommend(data, seeds_txt)
    sentences.extend(_per_site_sentences(data))
    headline = sentences[0] if sentences else ""
    return {
        "recommendation": rec,
        "basis": basis,
        "headline": headline,
        "sentences": sentences,
        "caveats": _caveats(data, seeds_txt),
    }
