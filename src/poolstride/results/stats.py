"""Statistics over seeds: summaries with confidence intervals and paired comparisons against a baseline.

Every function returns plain dicts with ``None`` (never NaN) where a number cannot be computed, plus a
``note`` saying why, so that the JSON, HTML and Markdown outputs can state it in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np

from .format import fmt_ci

CONFIDENCE = 0.95
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0

NEED_TWO = "needs at least 2 seeds"
ZERO_VARIANCE = "the same difference on every seed: a test is undefined (is the run deterministic?)"


class _Words(str, Enum):
    """An outcome word: a ``str`` (it compares equal to, prints as and is written to JSON as its text)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


CANNOT_TELL = "cannot tell"  # the one word, shared by sites and claims, for "the data cannot separate them"


class Verdict(_Words):
    """The outcome of a paired comparison of one metric against the baseline (:func:`verdict`): the Holm-adjusted
    p is below alpha (``HIGHER``/``LOWER``), or it is not (``NO_DIFFERENCE``), or there is no test
    (``NOT_TESTABLE``, see :func:`not_testable_reason`)."""

    HIGHER = "higher"
    LOWER = "lower"
    NO_DIFFERENCE = "no detectable difference"
    NOT_TESTABLE = "not testable"


class SiteVerdict(_Words):
    """What changing one site does (a per-site study), read off its accuracy :class:`Verdict` by
    :func:`site_verdict`."""

    HELPS = "helps"
    HURTS = "hurts"
    CANNOT_TELL = CANNOT_TELL


class ClaimVerdict(_Words):
    """Whether a paper's claim holds in a reproduction (``poolstride reproduce``); a claim whose comparison is
    ``Verdict.NOT_TESTABLE`` is ``CANNOT_TELL`` with the reason, never ``HOLDS``."""

    HOLDS = "holds"
    FAILS = "does not hold"
    CANNOT_TELL = CANNOT_TELL
    NOT_TESTED = "not tested"


def site_verdict(acc_verdict: str | None) -> SiteVerdict:
    """``HELPS`` for a detectably higher accuracy, ``HURTS`` for a detectably lower one, else ``CANNOT_TELL``."""
    if acc_verdict == Verdict.HIGHER:
        return SiteVerdict.HELPS
    if acc_verdict == Verdict.LOWER:
        return SiteVerdict.HURTS
    return SiteVerdict.CANNOT_TELL


def _f(x: Any) -> float | None:
    """A finite float or None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided t-distribution CI of the mean; None for fewer than 2 values."""
    from scipy import stats as st

    a = np.asarray(values, dtype=float)
    n = a.size
    if n < 2:
        return None
    m = float(a.mean())
    se = float(a.std(ddof=1)) / math.sqrt(n)
    h = float(st.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return (m - h, m + h)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean (fixed RNG seed, so reports are reproducible)."""
    a = np.asarray(values, dtype=float)
    n = a.size
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    means = a[idx].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return (float(lo), float(hi))


def summarize(values: Sequence[float], *, bootstrap: bool = False, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """n, mean, std (ddof=1), CI of the mean (t or percentile bootstrap), min, max, and a note."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(a.size)
    out: dict[str, Any] = {
        "n": n,
        "mean": None,
        "std": None,
        "ci": None,
        "ci_method": "bootstrap" if bootstrap else "t",
        "min": None,
        "max": None,
        "values": [float(v) for v in a],
        "note": None,
    }
    if n == 0:
        out["note"] = "no values"
        return out
    out["mean"] = float(a.mean())
    out["min"] = float(a.min())
    out["max"] = float(a.max())
    if n < 2:
        out["note"] = f"1 seed: std and CI {NEED_TWO}"
        return out
    out["std"] = float(a.std(ddof=1))
    ci = bootstrap_interval(a, confidence) if bootstrap else t_interval(a, confidence)
    out["ci"] = [ci[0], ci[1]] if ci else None
    if bootstrap and n < 5:
        out["note"] = f"bootstrap CI from {n} seeds is too narrow to trust; prefer the t interval below 5 seeds"
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni step-down adjusted p-values (None entries are ignored and stay None)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    adj: list[float | None] = [None] * len(pvalues)
    order = sorted(idx, key=lambda i: pvalues[i])  # type: ignore[arg-type, return-value]
    running = 0.0
    for rank, i in enumerate(order):
        p = pvalues[i]
        assert p is not None
        running = max(running, min(1.0, (m - rank) * p))
        adj[i] = running
    return adj


def paired(
    base: Mapping[int, float],
    other: Mapping[int, float],
    *,
    test: str = "t",
    bootstrap: bool = False,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Compare ``other`` with ``base`` over the seeds both have: difference other - base.

    Returns the mean difference, its CI (t or bootstrap), the p-value of a paired t-test or Wilcoxon
    signed-rank test, and the effect size (Cohen's d_z = mean/sd of the differences, and Hedges' g_z,
    its small-sample correction).
    """
    from scipy import stats as st

    if test not in ("t", "wilcoxon"):
        raise ValueError(f"unknown test {test!r}; use 't' or 'wilcoxon'")
    seeds = sorted(set(base) & set(other))
    d = np.asarray([other[s] - base[s] for s in seeds], dtype=float)
    n = int(d.size)
    out: dict[str, Any] = {
        "n": n,
        "seeds": seeds,
        "unpaired_seeds": sorted(set(base) ^ set(other)),
        "diff_mean": None,
        "diff_std": None,
        "ci": None,
        "ci_method": "bootstrap" if bootstrap else "t",
        "test": "paired t-test" if test == "t" else "Wilcoxon signed-rank",
        "p": None,
        "effect_dz": None,
        "effect_gz": None,
        "note": None,
    }
    if n == 0:
        out["note"] = "no seed in common with the baseline"
        return out
    out["diff_mean"] = float(d.mean())
    if n < 2:
        out["note"] = f"1 paired seed: CI and test {NEED_TWO}"
        return out
    sd = float(d.std(ddof=1))
    out["diff_std"] = sd
    ci = bootstrap_interval(d, confidence) if bootstrap else t_interval(d, confidence)
    out["ci"] = [ci[0], ci[1]] if ci else None
    notes: list[str] = []
    if bootstrap and n < 5:
        notes.append(
            f"too few seeds for a bootstrap CI ({n} paired seeds: a percentile bootstrap below 5 seeds is too "
            "narrow to trust; prefer the t interval)"
        )
    if sd == 0.0:
        if float(d.mean()) == 0.0:
            out["p"] = 1.0
            notes.insert(0, "identical on every seed")
        else:
            notes.insert(0, ZERO_VARIANCE)
        out["note"] = "; ".join(notes)
        return out
    dz = float(d.mean()) / sd
    out["effect_dz"] = dz
    if n > 2:
        out["effect_gz"] = dz * (1.0 - 3.0 / (4.0 * (n - 1) - 1.0))
    p = float(st.ttest_1samp(d, 0.0).pvalue) if test == "t" else _wilcoxon_p(d, notes)
    out["p"] = _f(p)
    out["note"] = "; ".join(notes) or None
    return out


def _wilcoxon_p(d: np.ndarray, notes: list[str]) -> float:
    """The Wilcoxon signed-rank p of the paired differences ``d``, with a note when too few are non-zero for
    the test to reach alpha at all."""
    from scipy import stats as st

    # Zero differences carry no sign: the signed-rank test drops them, so its smallest reachable p
    # depends on the number of non-zero pairs, not on n.
    n = int(d.size)
    nz = d[d != 0.0]
    p = 1.0 if nz.size == 0 else float(st.wilcoxon(nz).pvalue)
    k = int(nz.size)
    floor = 2.0 / 2**k
    if floor >= ALPHA:
        zeros = f" ({n - k} of the {n} paired differences are 0)" if k < n else ""
        notes.append(
            f"with {k} non-zero paired differences{zeros} the Wilcoxon test cannot go below p = {floor:.3g}; "
            "use the t-test or more seeds"
        )
    return p


def not_testable_reason(cmp: Mapping[str, Any]) -> str | None:
    """Why a paired comparison cannot be tested, or None when it can.

    The one rule shared by the report (verdict ``not testable``) and the reproductions (``cannot tell`` with
    this reason): fewer than 2 paired seeds, or a difference without variance (the same non-zero
    difference on every seed: a t interval of width 0 and an undefined test). Differences that are 0 on
    every seed are testable (p = 1: the two variants gave the same numbers)."""
    n = int(cmp.get("n") or 0)
    if n == 0 or cmp.get("diff_mean") is None:
        return str(cmp.get("note") or "no seed in common with the baseline")
    if n < 2:
        return str(cmp.get("note") or f"1 paired seed: CI and test {NEED_TWO}")
    if cmp.get("p") is None:
        return str(cmp.get("note") or "no test possible")
    return None


def verdict(cmp: dict[str, Any], *, alpha: float = ALPHA) -> Verdict:
    """The :class:`Verdict` of a paired comparison whose ``p_holm`` has been filled in."""
    p = cmp.get("p_holm")
    if not_testable_reason(cmp) is not None or p is None:
        return Verdict.NOT_TESTABLE
    if p < alpha:
        return Verdict.HIGHER if cmp["diff_mean"] > 0 else Verdict.LOWER
    return Verdict.NO_DIFFERENCE


def clip_ci(ci: Sequence[float] | None, lo: float = 0.0, hi: float = 100.0) -> list[float] | None:
    """``ci`` clipped to the range ``[lo, hi]`` the quantity can take (a percentage by default): a t interval
    from 2 or 3 seeds can reach below 0 % or above 100 %."""
    if not ci:
        return None
    return [min(max(float(ci[0]), lo), hi), min(max(float(ci[1]), lo), hi)]


def not_significant_reason(cmp: Mapping[str, Any], *, alpha: float = ALPHA, digits: int = 3) -> str:
    """Why a testable comparison is not significant, in words that are true for this case:

    * the CI of the difference spans 0: ``"spans 0"``;
    * the uncorrected p is below ``alpha`` and only the Holm-adjusted one is not: ``"not significant after Holm
      correction across m variants (adjusted p = ...)"`` (``m`` = ``cmp["holm_m"]``);
    * otherwise (the CI excludes 0 but the test's own p does not reach alpha, e.g. a bootstrap CI next to a
      t-test, or a Wilcoxon test): the test and its p.
    """
    ci = cmp.get("ci")
    p, ph = cmp.get("p"), cmp.get("p_holm")
    m = int(cmp.get("holm_m") or 1)
    if ci and ci[0] <= 0.0 <= ci[1]:
        return "spans 0"
    if p is not None and p < alpha and ph is not None and ph >= alpha:
        return f"not significant after Holm correction across {m} variants (adjusted p = {ph:.{digits}g})"
    test = cmp.get("test") or "test"
    return f"{test} p = {(ph if ph is not None else p) or 1.0:.{digits}g} although the CI excludes 0"


def statement(
    cmp: dict[str, Any],
    variant: str,
    baseline: str,
    metric_label: str,
    *,
    unit: str = "pt",
    margin: float | None = None,
    alpha: float = ALPHA,
) -> str:
    """A plain sentence that says what a paired comparison does and does not show (``cmp["holm_m"]``: the
    number of comparisons its p-value was Holm-corrected across, 1 when absent)."""
    n = cmp.get("n", 0)
    d = cmp.get("diff_mean")
    ci = cmp.get("ci")
    if n == 0 or d is None:
        return f"{variant} and {baseline} share no seed: no paired {metric_label} comparison is possible."
    if n < 2 or ci is None:
        return (
            f"{variant} vs {baseline}: {d:+.2f} {unit} {metric_label} on a single paired seed; a comparison {NEED_TWO}."
        )
    v = verdict(cmp, alpha=alpha)
    ci_s = f"95% CI {fmt_ci(ci, 2)}"
    if v in (Verdict.HIGHER, Verdict.LOWER):
        p = cmp.get("p_holm")
        corr = f"Holm-adjusted p = {p:.3g}" if int(cmp.get("holm_m") or 1) > 1 else f"p = {p:.3g}"
        return f"{variant} has {v} {metric_label} than {baseline}: {d:+.2f} {unit} ({ci_s}, {corr}, n = {n} seeds)."
    if v == Verdict.NOT_TESTABLE:
        note = cmp.get("note") or "no test possible"
        return f"{variant} vs {baseline}: {d:+.2f} {unit} {metric_label} ({ci_s}); {note}."
    lo, hi = ci
    if lo <= 0.0 <= hi:
        s = (
            f"{n} seeds cannot separate {variant} from {baseline} on {metric_label}: "
            f"the {ci_s} of the difference spans 0"
        )
    else:
        why = not_significant_reason(cmp, alpha=alpha, digits=3)
        s = f"{variant} vs {baseline}: {d:+.2f} {unit} {metric_label} ({ci_s}), {why}"
    if margin is not None and -margin <= lo and hi <= margin:
        s += f"; the CI lies within ±{margin:g} {unit}, so any difference is smaller than that"
    return s + "."
