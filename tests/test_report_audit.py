"""Audit findings of issue 13 on the report's statistics and decision, one test per finding.

Each test builds the smallest fake study (tests/_fake_study.py) or paired comparison that shows the finding, with
exact per-seed numbers so that the premise (a CI, a p-value) is asserted before the wording is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _fake_study import FakeVariant, make_study
from poolstride.report import build_report, load_study, tables
from poolstride.report.build import build
from poolstride.reproduce import common
from poolstride.results import stats

BASE_ACC = (70.0, 71.0, 72.0)
BASE_SHIFT = (85.0, 86.0, 85.5)
MACS, OTHER, PARAMS = 1_234_567, 23_456, 24_346


def _v(
    name: str,
    accs: tuple[float, ...],
    shifts: tuple[float, ...],
    *,
    macs: int = MACS,
    other: int = OTHER,
    latency: float = 1.2,
    slug: str | None = None,
) -> FakeVariant:
    return FakeVariant(name, name, 0.0, 0.0, macs, other, PARAMS, latency, slug, accs=accs, shifts=shifts)


def _plus(base: tuple[float, ...], diffs: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(b + d, 2) for b, d in zip(base, diffs, strict=True))


def _cmp(data: dict, name: str) -> dict:
    return next(c for c in data["comparisons"] if c["variant"] == name)


# ---- 1. "every CI of the difference spans 0" when a CI excludes 0 and only Holm removes significance ----------


def test_decision_says_per_variant_why_it_is_not_significant(tmp_path: Path) -> None:
    vs = [
        _v("max", BASE_ACC, BASE_SHIFT),
        _v("avg", _plus(BASE_ACC, (0.8, 1.0, 1.5)), _plus(BASE_SHIFT, (0.5, -0.5, 0.2))),
        _v("blur", _plus(BASE_ACC, (-1.0, 1.0, 0.0)), _plus(BASE_SHIFT, (-0.3, 0.6, -0.2))),
        _v("conv", _plus(BASE_ACC, (0.5, -0.5, 0.3)), _plus(BASE_SHIFT, (0.4, -0.4, 0.1))),
    ]
    data = build_report(make_study(tmp_path / "s", variants=vs))
    avg = _cmp(data, "avg")["metrics"]["acc"]
    # premise: avg's uncorrected CI excludes 0 (p < 0.05), the Holm-adjusted p across 3 variants does not
    assert avg["ci"][0] > 0 and avg["p"] < 0.05 <= avg["p_holm"]
    assert avg["verdict"] == "no detectable difference"
    dec = data["decision"]
    assert dec["headline"].startswith("Keep max")
    text = " ".join(dec["sentences"])
    assert "every CI of the difference spans 0" not in text
    lo, hi = avg["ci"]
    assert f"avg +1.10 pt, 95% CI [{lo:+.2f}, {hi:+.2f}], not significant after Holm correction across 3 variants" in (
        text
    )
    blur = _cmp(data, "blur")["metrics"]["acc"]
    assert blur["ci"][0] < 0 < blur["ci"][1]
    assert re.search(r"blur \+0\.00 pt, 95% CI \[-\d+\.\d\d, \+\d+\.\d\d\], spans 0", text), text
    # the per-comparison statement says the same
    assert "not significant after Holm correction across 3 variants" in avg["statement"]


def test_decision_keeps_spans_zero_when_every_ci_spans_zero(tmp_path: Path) -> None:
    vs = [
        _v("max", BASE_ACC, BASE_SHIFT),
        _v("blur", _plus(BASE_ACC, (-1.0, 1.0, 0.0)), _plus(BASE_SHIFT, (-0.3, 0.6, -0.2))),
        _v("conv", _plus(BASE_ACC, (1.5, -1.5, 0.3)), _plus(BASE_SHIFT, (0.4, -0.4, 0.1))),
    ]
    text = " ".join(build_report(make_study(tmp_path / "s", variants=vs))["decision"]["sentences"])
    assert "every 95% CI of the difference spans 0" in text and "Holm" not in text


# ---- 2. "Use X" on a non-significant accuracy loss: non-inferiority ------------------------------------------


def _shift_only_study(tmp_path: Path) -> Path:
    """blur: -3.0 pt accuracy, 95% CI about [-6.7, +0.7] (not significant), clearly more shift-consistent."""
    vs = [
        _v("max", BASE_ACC, BASE_SHIFT),
        _v("blur", _plus(BASE_ACC, (-4.5, -3.0, -1.5)), _plus(BASE_SHIFT, (5.0, 5.2, 4.9))),
    ]
    return make_study(tmp_path / "s", variants=vs)


def test_rule2_needs_noninferiority(tmp_path: Path) -> None:
    data = build_report(_shift_only_study(tmp_path))
    acc = _cmp(data, "blur")["metrics"]["acc"]
    assert acc["diff_mean"] == pytest.approx(-3.0) and acc["verdict"] == "no detectable difference"
    assert acc["ci"][0] == pytest.approx(-6.73, abs=0.01) and acc["ci"][1] == pytest.approx(0.73, abs=0.01)
    assert _cmp(data, "blur")["metrics"]["shift_consistency"]["verdict"] == "higher"
    dec = data["decision"]
    assert dec["recommendation"] != "blur" and not dec["headline"].startswith("Use blur")
    assert "cannot tell whether blur costs accuracy" in dec["headline"]
    assert "-1 pt" in dec["headline"]
    assert data["options"]["noninferiority_margin_pt"] == 1.0


def test_noninferiority_margin_is_an_option(tmp_path: Path) -> None:
    study = load_study(_shift_only_study(tmp_path))
    data = build(study, noninferiority_margin=7.0)
    assert data["options"]["noninferiority_margin_pt"] == 7.0
    dec = data["decision"]
    assert dec["recommendation"] == "blur" and dec["basis"] == "shift-consistency"
    assert "7 pt" in dec["headline"]
    with pytest.raises(ValueError, match="noninferiority_margin"):
        build(study, noninferiority_margin=-1.0)


# ---- 3. the cost of operator arithmetic (other ops) ----------------------------------------------------------


def test_cost_counts_other_ops(tmp_path: Path) -> None:
    vs = [
        _v("max", BASE_ACC, BASE_SHIFT),
        # same MACs as max, 10x its other ops (a fixed blur filter), clearly more shift-consistent
        _v(
            "blur",
            _plus(BASE_ACC, (0.1, -0.1, 0.05)),
            _plus(BASE_SHIFT, (5.0, 5.2, 4.9)),
            other=10 * OTHER,
            latency=1.5,
        ),
    ]
    data = build_report(make_study(tmp_path / "s", variants=vs))
    dec = data["decision"]
    assert dec["recommendation"] == "blur"
    assert "±0%" not in dec["headline"], dec["headline"]  # was "at ±0% MACs and +25% latency"
    cc = _cmp(data, "blur")["cost_change_pct"]
    assert cc["macs"] == 0.0
    expected = 100.0 * (9 * OTHER) / (MACS + OTHER)
    assert cc["total_ops"] == pytest.approx(expected)
    assert f"+{expected:.0f}% total ops" in dec["headline"]
    # the fronts: a total-ops front exists, and max (cheaper in total ops) is on it
    assert data["pareto"]["total_ops"]["front"][0] == "max"
    assert "MACs + other ops" in data["options"]["cost"]
    by = {v["name"]: v for v in data["variants"]}
    assert by["blur"]["costs"]["total_ops"] == MACS + 10 * OTHER


# ---- 4. statistics notes ----------------------------------------------------------------------------------------


def test_wilcoxon_floor_counts_nonzero_pairs_only() -> None:
    base = {s: 70.0 + s for s in range(6)}
    other = {0: 71.0, 1: 72.5, 2: 72.6, 3: 73.8, 4: 74.0, 5: 75.0}  # two zero differences (seeds 4, 5)
    p = stats.paired(base, other, test="wilcoxon")
    # 4 non-zero pairs: the smallest two-sided p is 2 / 2**4 = 0.125
    assert p["note"] is not None and "cannot go below p = 0.125" in p["note"]
    assert "4 non-zero" in p["note"]


def test_paired_bootstrap_with_few_seeds_says_so() -> None:
    p = stats.paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.5, 2: 3.7}, bootstrap=True)
    assert p["note"] is not None and "too few seeds for a bootstrap CI" in p["note"]
    many = stats.paired({s: float(s) for s in range(6)}, {s: s + 1.0 + 0.1 * (s % 3) for s in range(6)}, bootstrap=True)
    assert many["note"] is None or "too few seeds" not in many["note"]


def test_paired_bootstrap_note_reaches_the_report(tmp_path: Path) -> None:
    data = build_report(make_study(tmp_path / "s"), bootstrap=True)
    assert any("too few seeds for a bootstrap CI" in n for n in data["notes"]), data["notes"]


def test_zero_variance_difference_is_not_testable_everywhere() -> None:
    a = {0: 72.0, 1: 73.0, 2: 74.0}
    b = {0: 71.0, 1: 72.0, 2: 73.0}  # a - b = +1 on every seed
    cmp = stats.paired(b, a)
    cmp["p_holm"] = cmp["p"]
    assert stats.verdict(cmp) == "not testable"
    for chk in (
        common.better("a", a, "b", b, "a > b", "x"),
        common.not_worse("a", a, "b", b, 0.5, "a >= b", "x"),
        common.about_equal("a", a, "b", b, 2.0, "a ~ b", "x"),
    ):
        assert chk.verdict == common.UNSURE, chk
        assert "not testable" in chk.detail and "same difference on every seed" in chk.detail


def test_combine_corrects_across_its_comparisons() -> None:
    b = {0: 70.0, 1: 71.0, 2: 72.0}
    a = {0: 70.8, 1: 72.0, 2: 73.5}  # +0.8, +1.0, +1.5: p = 0.034 alone
    single = common.better("a", a, "b", b, "a > b", "x")
    assert single.verdict == common.HOLDS
    parts = [common.better(f"a{i}", a, "b", b, f"a{i} > b", "x") for i in range(3)]
    both = common.combine("every a beats b", "x", parts)
    assert both.verdict == common.UNSURE, both
    assert "Holm" in both.detail and "3" in both.detail
    assert all(p.verdict == common.UNSURE and "Holm" in p.detail for p in both.parts)
    # clear differences survive the correction
    big = {0: 75.0, 1: 76.1, 2: 77.0}
    strong = common.combine("x", "x", [common.better(f"g{i}", big, "b", b, "", "x") for i in range(3)])
    assert strong.verdict == common.HOLDS


def test_untestable_variants_are_named_instead_of_keep_base(tmp_path: Path) -> None:
    vs = [
        _v("max", BASE_ACC[:2], BASE_SHIFT[:2]),
        _v("avg", _plus(BASE_ACC[:2], (0.5, 0.7)), _plus(BASE_SHIFT[:2], (0.1, 0.3))),
    ]
    d = make_study(tmp_path / "s", variants=vs, seeds=(0, 1), fail={("avg", 1)})
    data = build_report(d)
    assert _cmp(data, "avg")["metrics"]["acc"]["verdict"] == "not testable"
    dec = data["decision"]
    assert not dec["headline"].startswith("Keep max"), dec["headline"]
    assert dec["recommendation"] is None
    assert "avg" in dec["headline"] and "could not be tested" in dec["headline"]
    assert "1 paired seed" in dec["headline"]


# ---- 5. CIs of bounded quantities clipped to [0, 100] --------------------------------------------------------


def test_bounded_cis_are_clipped_in_the_tables(tmp_path: Path) -> None:
    vs = [
        _v("max", (20.0, 23.0), (80.0, 99.0)),
        _v("avg", (10.0, 30.0), (85.0, 90.0)),
    ]
    data = build_report(make_study(tmp_path / "s", variants=vs, seeds=(0, 1)))
    by = {v["name"]: v for v in data["variants"]}
    assert by["avg"]["acc"]["ci"][0] < 0 and by["max"]["shift_consistency"]["ci"][1] > 100  # raw t intervals
    _, rows = tables.variants_table(data)
    cells = " ".join(" ".join(r) for r in rows)
    for lo, hi in re.findall(r"\[(-?\d+\.\d+), (-?\d+\.\d+)\]", cells):
        assert 0.0 <= float(lo) <= float(hi) <= 100.0, cells
    assert any("outside [0, 100] %" in n and "shown clipped" in n for n in data["notes"]), data["notes"]
    assert by["avg"]["acc"]["ci_clipped"] == [0.0, 100.0]  # raw [-107.06, 147.06]
    assert by["max"]["acc"]["ci_clipped"] == pytest.approx(by["max"]["acc"]["ci"])  # inside: unchanged
    assert by["max"]["shift_consistency"]["ci_clipped"] == [0.0, 100.0]
    assert "*" in rows[1][3] and "*" not in rows[0][3]
