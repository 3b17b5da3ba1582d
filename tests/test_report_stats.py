"""Statistics and Pareto fronts of the report (pure numbers, fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from poolstride.report import pareto
from poolstride.results import stats


def test_summary_matches_scipy_t_interval() -> None:
    vals = [70.1, 71.3, 69.8, 70.9]
    s = stats.summarize(vals)
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(np.mean(vals))
    assert s["std"] == pytest.approx(np.std(vals, ddof=1))
    lo, hi = st.t.interval(0.95, 3, loc=np.mean(vals), scale=st.sem(vals))
    assert s["ci"] == pytest.approx([lo, hi])
    assert s["ci_method"] == "t"


def test_one_seed_says_so_instead_of_nan() -> None:
    s = stats.summarize([70.0])
    assert s["mean"] == 70.0
    assert s["std"] is None and s["ci"] is None
    assert "at least 2 seeds" in s["note"]
    p = stats.paired({0: 70.0}, {0: 71.0})
    assert p["diff_mean"] == 1.0 and p["ci"] is None and p["p"] is None
    assert "at least 2 seeds" in p["note"]
    assert not any(isinstance(v, float) and math.isnan(v) for v in list(s.values()) + list(p.values()))


def test_bootstrap_is_reproducible_and_brackets_the_mean() -> None:
    vals = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    a = stats.summarize(vals, bootstrap=True)
    b = stats.summarize(vals, bootstrap=True)
    assert a["ci"] == b["ci"]
    assert a["ci"][0] < 3.5 < a["ci"][1]
    assert a["ci_method"] == "bootstrap"
    assert "too narrow" in stats.summarize([1.0, 2.0, 3.0], bootstrap=True)["note"]


def test_holm() -> None:
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0] or stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_paired_t_matches_scipy_and_effect_size() -> None:
    base = {0: 70.0, 1: 72.0, 2: 71.0, 3: 69.5}
    other = {0: 71.0, 1: 72.8, 2: 72.1, 3: 70.0, 9: 80.0}
    p = stats.paired(base, other)
    d = np.array([1.0, 0.8, 1.1, 0.5])
    assert p["n"] == 4 and p["unpaired_seeds"] == [9]
    assert p["diff_mean"] == pytest.approx(d.mean())
    assert p["p"] == pytest.approx(st.ttest_rel([71.0, 72.8, 72.1, 70.0], [70.0, 72.0, 71.0, 69.5]).pvalue)
    assert p["effect_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert p["effect_gz"] < p["effect_dz"]


def test_wilcoxon_warns_when_it_cannot_reach_alpha() -> None:
    p = stats.paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.5, 2: 3.7}, test="wilcoxon")
    assert p["p"] == pytest.approx(0.25)
    assert "cannot go below" in p["note"]
    with pytest.raises(ValueError):
        stats.paired({}, {}, test="anova")


def test_identical_differences_do_not_produce_nan() -> None:
    same = stats.paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert same["p"] == 1.0
    shifted = stats.paired({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0})
    assert shifted["p"] is None and "same difference" in shifted["note"]


def test_statement_says_when_seeds_cannot_separate() -> None:
    cmp = stats.paired({0: 70.0, 1: 71.0, 2: 70.4}, {0: 70.5, 1: 70.9, 2: 71.0})
    cmp["p_holm"] = cmp["p"]
    s = stats.statement(cmp, "blur", "max", "accuracy")
    assert s.startswith("3 seeds cannot separate blur from max on accuracy")
    assert "spans 0" in s
    assert stats.verdict(cmp) == "no detectable difference"


def test_pareto_front() -> None:
    pts = [("a", 1.0, 70.0), ("b", 2.0, 72.0), ("c", 2.0, 71.0), ("d", 3.0, 72.0), ("e", None, 99.0), ("f", 1.0, 70.0)]
    assert pareto.front(pts) == ["a", "f", "b"]
    res = pareto.analyze(
        [
            {"name": "a", "acc_mean": 70.0, "macs": 10, "params": 5, "latency_ms": None},
            {"name": "b", "acc_mean": 69.0, "macs": 12, "params": 4, "latency_ms": 1.0},
        ]
    )
    assert res["macs"]["front"] == ["a"]
    assert res["macs"]["dominated_by"] == {"b": ["a"]}
    assert res["params"]["front"] == ["b", "a"]
    assert res["latency_ms"]["missing"] == ["a"]


def test_pareto_front_properties() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as hs

    point = hs.tuples(hs.integers(0, 5), hs.integers(0, 5))

    @settings(max_examples=100, deadline=None)
    @given(hs.lists(point, min_size=1, max_size=8))
    def check(pts: list[tuple[int, int]]) -> None:
        named = [(f"v{i}", float(c), float(v)) for i, (c, v) in enumerate(pts)]
        f = set(pareto.front(named))

        def dom(a: tuple[str, float, float], b: tuple[str, float, float]) -> bool:
            return a[1] <= b[1] and a[2] >= b[2] and (a[1] < b[1] or a[2] > b[2])

        for p in named:
            dominated = any(dom(q, p) for q in named)
            assert (p[0] in f) == (not dominated)
        assert f  # a finite set always has a non-dominated point

    check()
