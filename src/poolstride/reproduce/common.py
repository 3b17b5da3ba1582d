"""What every reproduction shares: budgets, the hardware line, study summaries, claim checks, tables, rendering.

Training goes through the study engine (:mod:`poolstride.reproduce.training` calls :func:`poolstride.study.compare`),
statistics through :mod:`poolstride.results.stats`, numbers through :mod:`poolstride.results.format`: this module
adds no training loop, no CI formula and no number format of its own.

A claim check compares two variants seed by seed (a paired difference, :func:`poolstride.results.stats.paired`,
95 % t interval) and answers honestly:

* ``holds`` - the interval of the difference lies on the claimed side (or, for an "about equal" claim, inside
  +-margin);
* ``does not hold`` - the interval lies on the other side (or entirely outside +-margin);
* ``cannot tell`` - the interval straddles the line (CIs overlap at this number of seeds), fewer than two
  seeds finished, or the comparison is *not testable*: the same non-zero difference on every seed has no
  variance, so no interval or test exists (the report's rule, :func:`poolstride.results.stats.not_testable_reason`;
  the detail says why).

A claim that :func:`combine` s several comparisons corrects for them: each part carries the p-value of its own
verdict (the smallest alpha at which its 95 % t interval would still be on that side), and the parts' p-values are
Holm-adjusted across the comparisons of the claim; a part whose adjusted p is 0.05 or more becomes ``cannot tell``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from scipy import stats as st

from ..errors import PoolstrideError
from ..results import schema, stats
from ..results.format import fmt_duration, fmt_mean_ci
from ..results.stats import ClaimVerdict
from ..study.provenance import cpu_model

HOLDS, FAILS, UNSURE, SKIPPED = (
    ClaimVerdict.HOLDS,
    ClaimVerdict.FAILS,
    ClaimVerdict.CANNOT_TELL,
    ClaimVerdict.NOT_TESTED,
)
BUDGETS = ("quick", "paper")
ALPHA = stats.ALPHA

Callback = Callable[..., None]
Seeds = dict[int, float]  # a metric of one variant by seed


class ReproduceError(PoolstrideError):
    """A reproduction that cannot run as asked (unknown protocol, bad option, bad budget...)."""


# ---- results ---------------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One claim of a paper, and whether our numbers support it."""

    claim: str
    source: str
    verdict: str  # holds | does not hold | cannot tell | not tested
    detail: str = ""
    parts: list[Check] = field(default_factory=list)
    # a statistical check: the p-value of its verdict's side (see _Diff.p), and after combine() its Holm-adjusted p
    p: float | None = None
    p_holm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "claim": self.claim,
            "source": self.source,
            "verdict": self.verdict,
            "detail": self.detail,
            "parts": [p.to_dict() for p in self.parts],
        }
        if self.p is not None:
            out["p"] = self.p
        if self.p_holm is not None:
            out["p_holm"] = self.p_holm
        return out


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass
class Reproduction:
    """The outcome of one protocol: tables (paper next to ours), claim checks, budget, hardware, timing."""

    name: str
    title: str
    budget: dict[str, Any]
    hardware: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    study_dir: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # protocol-specific numbers (JSON)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": schema.REPRODUCTION,
            "name": self.name,
            "title": self.title,
            "budget": self.budget,
            "hardware": self.hardware,
            "timing": self.timing,
            "tables": [asdict(t) for t in self.tables],
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
            "study_dir": self.study_dir,
            "data": self.data,
        }

    def markdown(self) -> str:
        return render_markdown(self)


# ---- hardware and timing ---------------------------------------------------------------------------------------


def hardware(device: str = "cpu") -> dict[str, Any]:
    """What the run ran on: device, CPU model and cores, torch threads and version, load at the start."""
    dev = str(device)
    info: dict[str, Any] = {
        "device": dev,
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        info["load_avg_1m"] = None
    if dev.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(dev))
    return info


def hardware_line(hw: dict[str, Any]) -> str:
    s = f"{hw['device']}"
    if hw.get("gpu"):
        s += f" ({hw['gpu']})"
    s += f"; CPU {hw.get('cpu')} ({hw.get('logical_cores')} logical cores, torch threads {hw.get('torch_threads')})"
    s += f"; torch {hw.get('torch')}"
    if hw.get("load_avg_1m") is not None:
        s += f"; load average at start {hw['load_avg_1m']}"
    return s


def paper_estimate(
    images_per_s: dict[str, float | None], epochs: float, n_train: int, seeds: int, basis: str
) -> dict[str, Any]:
    """Time the paper budget would take here: sum over variants of ``seeds x epochs x n_train / images/s``
    (training only; evaluation excluded), from the images/s measured in this run."""
    known = {k: v for k, v in images_per_s.items() if v}
    if not known:
        return {"seconds": None, "text": "n/a (no training throughput measured)", "basis": basis}
    total = sum(seeds * epochs * n_train / v for v in known.values())
    missing = [k for k in images_per_s if k not in known]
    text = (
        f"{fmt_duration(total)} for {len(known)} variant(s) x {seeds} seed(s) x {epochs:g} epochs x {n_train} images "
        f"at the measured {min(known.values()):.0f}-{max(known.values()):.0f} images/s"
    )
    if missing:
        text += f" (no throughput for {', '.join(missing)})"
    return {"seconds": total, "text": text, "basis": basis, "images_per_s": known}


def scale_estimate(est: dict[str, Any], factor: float, why: str) -> None:
    """Scale a :func:`paper_estimate` to the runs not measured here (in place): ``about T (why): ...``."""
    if est.get("seconds"):
        est["seconds"] *= factor
        est["text"] = f"about {fmt_duration(est['seconds'])} {why}: {est['text']}"


# ---- data and study summaries ------------------------------------------------------------------------------------


def dataset_label(ds: Any) -> str:
    name = str(getattr(ds, "name", "dataset"))
    return f"{name} ({len(ds.x_train)} train / {len(ds.x_test)} test, {tuple(ds.x_train.shape[1:])})"


def per_seed(summary: dict[str, Any], metric: str = "acc") -> dict[str, Seeds]:
    """``{variant: {seed: value}}`` for the finished runs of a study summary."""
    out: dict[str, Seeds] = {v["name"]: {} for v in summary.get("variants", [])}
    for r in summary.get("runs", []):
        if r.get("status") == "ok" and r.get(metric) is not None:
            out.setdefault(r["variant"], {})[int(r["seed"])] = float(r[metric])
    return out


def variant_mean(summary: dict[str, Any], key: str) -> dict[str, float | None]:
    """A per-variant field of the summary (e.g. ``images_per_s_mean``)."""
    return {v["name"]: v.get(key) for v in summary.get("variants", [])}


def describe(values: Seeds | Iterable[float]) -> dict[str, Any]:
    """Mean, std and 95 % t interval over seeds (results.stats.summarize)."""
    vals = list(values.values()) if isinstance(values, dict) else list(values)
    return stats.summarize(vals)


def error_of(acc: Seeds) -> Seeds:
    return {s: 100.0 - a for s, a in acc.items()}


def chance_floor(ds: Any, slack: float = 1.0) -> float:
    """Chance accuracy (%) of a dataset plus ``slack`` points."""
    return 100.0 / max(1, len(ds.classes)) + slack


def recipe_text(recipe: Any, ds: Any = None) -> str:
    r = recipe
    n_tr = len(ds.x_train) if ds is not None else None
    n_te = len(ds.x_test) if ds is not None else None
    if r.train_subset and (n_tr is None or r.train_subset < n_tr):
        sub = f"a fixed subset of {r.train_subset} training images"
    else:
        sub = "the full training set" + (f" ({n_tr} images)" if n_tr else "")
    if r.test_subset and (n_te is None or r.test_subset < n_te):
        test = f"{r.test_subset} test images"
    else:
        test = "the full test set" + (f" ({n_te} images)" if n_te else "")
    sched = r.schedule + (f" x{r.gamma} at {list(r.milestones)}" if r.schedule == "step" else "")
    return (
        f"recipe {r.name}: {r.epochs} epochs on {sub}, evaluated on {test}; {r.optimizer} lr {r.lr:g} ({sched}), "
        f"batch {r.batch_size}, weight decay {r.weight_decay:g}, label smoothing {r.label_smoothing:g}, "
        f"augmentation {'crop+flip' if r.augment else 'none'}; shift-consistency on {r.shift_images or 'all'} "
        f"test images (shifts up to {r.shift_max} px, {r.shift_padding})"
    )


def at_chance(summary: dict[str, Any], floor: float) -> list[str]:
    """Finished runs whose test accuracy stayed at chance level (``<= floor``): the net did not learn."""
    return [
        f"{r.get('variant')}/seed{r.get('seed')}"
        for r in summary.get("runs", [])
        if r.get("status") == "ok" and r.get("acc") is not None and float(r["acc"]) <= floor
    ]


def run_notes(summary: dict[str, Any], floor: float) -> list[str]:
    """Notes on failed runs and runs that stayed at chance level."""
    notes = []
    failed = failed_runs(summary)
    if failed:
        notes.append("failed runs: " + "; ".join(failed))
    stuck = at_chance(summary, floor)
    if stuck:
        n = sum(1 for r in summary.get("runs", []) if r.get("status") == "ok")
        notes.append(
            f"{len(stuck)} of {n} runs ended at chance level (test accuracy <= {floor:g} %), i.e. did not learn: "
            + ", ".join(stuck)
        )
    return notes


def failed_runs(summary: dict[str, Any]) -> list[str]:
    return [
        f"{r.get('variant')}/seed{r.get('seed')}: {r.get('reason')}"
        for r in summary.get("runs", [])
        if r.get("status") != "ok"
    ]


# ---- claim checks ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Diff:
    """A paired difference ``a - b`` that can be read: mean, 95 % CI, paired seeds, standard error."""

    label: str  # "a - b"
    unit: str
    mean: float
    ci: list[float]
    n: int
    se: float

    def detail(self, tail: str) -> str:
        lo, hi = self.ci
        return f"{self.label} = {self.mean:+.2f} {self.unit}, 95% CI [{lo:+.2f}, {hi:+.2f}], {tail}"

    def p(self, threshold: float) -> float:
        """Two-sided p of the paired t-test of ``mean == threshold``: the smallest alpha at which the
        (1 - alpha) t interval lies entirely on ``mean``'s side of ``threshold`` (so p < 0.05 <=> the 95% CI is
        on that side)."""
        if self.se <= 0.0:
            return 0.0 if self.mean != threshold else 1.0
        return float(min(1.0, 2.0 * st.t.sf(abs(self.mean - threshold) / self.se, self.n - 1)))

    def higher(self, claim: str, source: str) -> Check:
        """Holds when the CI lies above 0, does not hold when below, cannot tell when it spans 0."""
        lo, hi = self.ci
        return _verdict(claim, source, self.detail(f"n={self.n}"), self.p(0.0), lo > 0, hi < 0, " (CI spans 0)")

    def within(self, margin: float, claim: str, source: str) -> Check:
        """Holds when the CI lies inside +-``margin``, does not hold when entirely outside it. The p is that of the
        verdict's side: both bounds inside (two one-sided tests), or the interval beyond the nearer bound."""
        nearer = margin if self.mean > 0 else -margin
        p = max(self.p(-margin), self.p(margin)) if abs(self.mean) < margin else self.p(nearer)
        lo, hi = self.ci
        inside, outside = -margin <= lo and hi <= margin, lo > margin or hi < -margin
        detail = self.detail(f"margin +-{margin:g}")
        return _verdict(claim, source, detail, p, inside, outside, " (CI not inside the margin)")

    def above(self, margin: float, claim: str, source: str) -> Check:
        """Holds when the CI lies above ``-margin`` (non-inferiority), does not hold when entirely below it."""
        lo, hi = self.ci
        detail, why = self.detail(f"margin -{margin:g}"), " (CI reaches below -margin)"
        return _verdict(claim, source, detail, self.p(-margin), lo > -margin, hi < -margin, why)


def _at_floor(a: Seeds, b: Seeds, floor: float | None) -> bool:
    """True when either side's mean is at or below ``floor`` (e.g. chance accuracy): no ordering to read."""
    if floor is None:
        return False
    return any(v and sum(v.values()) / len(v) <= floor for v in (a, b))


def _read(
    a_name: str, a: Seeds, b_name: str, b: Seeds, claim: str, source: str, unit: str, floor: float | None
) -> Check | _Diff:
    """The paired difference ``a - b`` (results.stats.paired(base=b, other=a)), or a ``cannot tell`` check when
    it cannot be read: a side at chance level, fewer than 2 paired seeds, or not testable (zero variance)."""
    if _at_floor(a, b, floor):
        return Check(claim, source, UNSURE, f"{a_name} or {b_name} is at chance level (<= {floor:g})")
    d = stats.paired(b, a)
    mean, ci, n = d.get("diff_mean"), d.get("ci"), d.get("n", 0)
    if mean is None or n < 2 or not ci:
        return Check(claim, source, UNSURE, f"{a_name} - {b_name}: needs 2 paired seeds (have {n})")
    why = stats.not_testable_reason(d)
    if why is not None:
        msg = f"{a_name} - {b_name} = {float(mean):+.2f} on each of {n} seeds; not testable: {why}"
        return Check(claim, source, UNSURE, msg)
    se = float(d["diff_std"]) / math.sqrt(n)
    return _Diff(f"{a_name} - {b_name}", unit, float(mean), list(ci), int(n), se)


def _verdict(claim: str, source: str, detail: str, p: float, holds: bool, fails: bool, unsure: str) -> Check:
    """``holds``, else ``does not hold``, else ``cannot tell`` with the reason ``unsure`` added to the detail."""
    if holds:
        return Check(claim, source, HOLDS, detail, p=p)
    if fails:
        return Check(claim, source, FAILS, detail, p=p)
    return Check(claim, source, UNSURE, detail + unsure, p=p)


def better(a_name: str, a: Seeds, b_name: str, b: Seeds, claim: str, source: str, unit: str = "pt",
           floor: float | None = None) -> Check:  # fmt: skip
    """Claim: ``a`` is higher than ``b`` (e.g. accuracy). ``floor``: a mean at or below it (chance level)
    makes the check ``cannot tell``."""
    d = _read(a_name, a, b_name, b, claim, source, unit, floor)
    return d if isinstance(d, Check) else d.higher(claim, source)


def about_equal(a_name: str, a: Seeds, b_name: str, b: Seeds, margin: float, claim: str, source: str,
                unit: str = "pt", floor: float | None = None) -> Check:  # fmt: skip
    """Claim: ``a`` and ``b`` differ by less than ``margin`` (an equivalence check on the paired CI)."""
    d = _read(a_name, a, b_name, b, claim, source, unit, floor)
    return d if isinstance(d, Check) else d.within(margin, claim, source)


def not_worse(a_name: str, a: Seeds, b_name: str, b: Seeds, margin: float, claim: str, source: str,
              unit: str = "pt", floor: float | None = None) -> Check:  # fmt: skip
    """Claim: ``a`` is not worse than ``b`` by more than ``margin`` (non-inferiority on the paired CI)."""
    d = _read(a_name, a, b_name, b, claim, source, unit, floor)
    return d if isinstance(d, Check) else d.above(margin, claim, source)


@dataclass(frozen=True)
class Claims:
    """Claim checks on one metric of a study: per-seed values by variant, one source, one chance floor, one unit
    (a variant that did not run has no seeds)."""

    values: dict[str, Seeds]
    source: str
    floor: float | None = None
    unit: str = "pt"

    def of(self, variant: str) -> Seeds:
        return self.values.get(variant, {})

    def better(self, a: str, b: str, claim: str) -> Check:
        return better(a, self.of(a), b, self.of(b), claim, self.source, self.unit, self.floor)

    def about_equal(self, a: str, b: str, margin: float, claim: str) -> Check:
        return about_equal(a, self.of(a), b, self.of(b), margin, claim, self.source, self.unit, self.floor)

    def not_worse(self, a: str, b: str, margin: float, claim: str) -> Check:
        return not_worse(a, self.of(a), b, self.of(b), margin, claim, self.source, self.unit, self.floor)


def _holm(parts: list[Check]) -> tuple[list[Check], str]:
    """The parts with their Holm-adjusted p across the claim's statistical comparisons (a part that is no longer
    significant becomes ``cannot tell``), and the note for the claim's detail."""
    tested = [i for i, p in enumerate(parts) if p.p is not None]
    m = len(tested)
    if m <= 1:
        return parts, ""
    adj = stats.holm([parts[i].p for i in tested])
    parts = list(parts)
    lost = 0
    for i, ph in zip(tested, adj, strict=True):
        part = parts[i]
        assert ph is not None
        if part.verdict in (HOLDS, FAILS) and ph >= ALPHA:
            lost += 1
            would = "hold" if part.verdict == HOLDS else "not hold"
            detail = f"{part.detail} (would {would} alone; Holm-adjusted p = {ph:.3g} across {m} comparisons)"
            parts[i] = replace(part, verdict=UNSURE, detail=detail, p_holm=ph)
        else:
            parts[i] = replace(part, p_holm=ph)
    return parts, f"; Holm-corrected across {m} comparisons" + (f" ({lost} no longer conclusive)" if lost else "")


def combine(claim: str, source: str, parts: list[Check]) -> Check:
    """All parts hold -> holds; any does not hold -> does not hold; otherwise cannot tell.

    The statistical parts (those with a p-value: :func:`better`, :func:`about_equal`, :func:`not_worse`) are
    Holm-corrected across the claim's comparisons first: a part that holds or does not hold on its own but
    whose Holm-adjusted p is 0.05 or more becomes ``cannot tell``, with the adjusted p in its detail. (For a
    claim that needs every part to hold this is conservative; it is what keeps "does not hold" from being one
    chance failure among many.)"""
    if not parts:
        return Check(claim, source, SKIPPED, "nothing to compare")
    parts, note = _holm(parts)
    verdicts = [p.verdict for p in parts]
    if any(v == FAILS for v in verdicts):
        v = FAILS
    elif all(v == HOLDS for v in verdicts):
        v = HOLDS
    else:
        v = UNSURE
    n = {k: verdicts.count(k) for k in (HOLDS, FAILS, UNSURE) if verdicts.count(k)}
    return Check(claim, source, v, ", ".join(f"{c} {k}" for k, c in n.items()) + note, parts)


def fact(claim: str, source: str, ok: bool, detail: str) -> Check:
    """An analytic (exact) check: holds or does not hold, no statistics."""
    return Check(claim, source, HOLDS if ok else FAILS, detail)


# ---- budgets and options ------------------------------------------------------------------------------------------


def check_budget(budget: str) -> str:
    b = str(budget).strip().lower()
    if b not in BUDGETS:
        raise ReproduceError(f"unknown --budget {budget!r}; valid: {', '.join(BUDGETS)}")
    return b


def pop_options(protocol: str, options: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Protocol options with their defaults; an option this protocol does not take is an error."""
    unknown = sorted(k for k, v in options.items() if v is not None and k not in allowed)
    if unknown:
        valid = ", ".join(f"--{k.replace('_', '-')}" for k in allowed) or "none"
        raise ReproduceError(
            f"{protocol}: option(s) {', '.join('--' + k.replace('_', '-') for k in unknown)} do not apply; "
            f"its options: {valid}"
        )
    return {k: (options[k] if options.get(k) is not None else d) for k, d in allowed.items()}


def split_csv(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


# ---- rendering -----------------------------------------------------------------------------------------------------


def cell(v: Any) -> str:
    """A table cell as text: ``-`` for a missing value, 4 significant digits, thousands separators from 1e4."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 1e4:
        return f"{v:,}"
    return str(v)


def table_markdown(t: Table) -> str:
    lines = [f"**{t.title}**", "", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    for r in t.rows:
        lines.append("| " + " | ".join(cell(c).replace("|", "/") for c in r) + " |")
    if t.note:
        lines += ["", t.note]
    return "\n".join(lines)


def checks_markdown(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"- **{c.verdict}** - {c.claim} ({c.source}){': ' + c.detail if c.detail else ''}")
        for p in c.parts:
            lines.append(f"  - {p.verdict}: {p.claim}{': ' + p.detail if p.detail else ''}")
    return "\n".join(lines)


def render_markdown(r: Reproduction) -> str:
    out = [f"### {r.title}", ""]
    out.append(f"- budget: {r.budget.get('description', r.budget.get('name'))}")
    out.append(f"- hardware: {hardware_line(r.hardware)}")
    if r.timing:
        out.append(f"- wall time: {fmt_duration(r.timing.get('wall_s'))}")
        if r.timing.get("paper_estimate"):
            out.append(f"- paper budget here would take: {r.timing['paper_estimate'].get('text')}")
    if r.study_dir:
        out.append(f"- study directory: `{r.study_dir}`")
    out.append("")
    for t in r.tables:
        out += [table_markdown(t), ""]
    if r.checks:
        out += ["**Claims**", "", checks_markdown(r.checks), ""]
    if r.notes:
        out += ["**Notes**", ""] + [f"- {n}" for n in r.notes] + [""]
    return "\n".join(out)


__all__ = [
    "BUDGETS",
    "FAILS",
    "HOLDS",
    "SKIPPED",
    "UNSURE",
    "Check",
    "Claims",
    "ReproduceError",
    "Reproduction",
    "Table",
    "about_equal",
    "at_chance",
    "better",
    "cell",
    "chance_floor",
    "check_budget",
    "combine",
    "describe",
    "error_of",
    "fact",
    "fmt_duration",
    "fmt_mean_ci",
    "hardware",
    "hardware_line",
    "not_worse",
    "paper_estimate",
    "per_seed",
    "pop_options",
    "recipe_text",
    "render_markdown",
    "run_notes",
    "scale_estimate",
    "split_csv",
    "variant_mean",
]
