"""The report end to end on realistic fake study directories (docs/study-format.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from _fake_study import DEFAULT_VARIANTS, FakeVariant, make_study
from poolstride.report import ReportError, build_report, write_report


def main(argv: list[str]) -> int:
    from poolstride.cli import main as cli_main  # imports torch: only in the tests that need it

    return cli_main(argv)


FIGURES = ["pareto", "curves", "gradflow", "shift", "costs", "erf"]


def _no_nan(text: str) -> dict:
    def bad(x: str) -> float:
        raise AssertionError(f"non-finite number {x} in report.json")

    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 4 variants x 3 seeds study with per-site costs and ERFs, reported once."""
    d = make_study(tmp_path_factory.mktemp("study") / "s", sites=True, erf=True)
    return write_report(d)


def _variants(**over: tuple[float, float]) -> list[FakeVariant]:
    """The default variants with (acc, shift) overridden by name."""
    out = []
    for v in DEFAULT_VARIANTS:
        key = v.slug or v.name
        if key in over:
            acc, shift = over[key]
            v = FakeVariant(v.name, v.downsample, acc, shift, v.macs, v.other_ops, v.params, v.latency_ms, v.slug)
        out.append(v)
    return out


def test_files_and_figures(full_report: Path) -> None:
    rep = full_report.parent
    assert full_report.name == "index.html" and rep.name == "report"
    for f in ("index.html", "report.md", "report.json"):
        assert (rep / f).stat().st_size > 500
    for name in FIGURES:
        png = (rep / "figures" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        root = ET.parse(rep / "figures" / f"{name}.svg").getroot()
        assert root.tag.endswith("svg")
    data = _no_nan((rep / "report.json").read_text())
    assert data["schema"] == "poolstride.report/1"
    assert [f["name"] for f in data["figures"]] == FIGURES
    assert data["status"]["complete"] is True
    assert not list(rep.parent.glob(".report*")), "temporary directories left behind"


def test_json_contents(full_report: Path) -> None:
    data = _no_nan((full_report.parent / "report.json").read_text())
    assert data["options"]["baseline"] == "max" and data["options"]["baseline_from"] == "study.json"
    by = {v["name"]: v for v in data["variants"]}
    assert by["max"]["n"] == 3 and len(by["max"]["acc"]["ci"]) == 2
    assert by["conv(k=3)"]["costs"]["macs"] == 1_901_234
    cmp = {c["variant"]: c for c in data["comparisons"]}
    assert set(cmp) == {"avg", "blur(base=max,size=4)", "conv(k=3)"}
    for c in cmp.values():
        for m in c["metrics"].values():
            assert m["n"] == 3 and m["verdict"] in ("higher", "lower", "no detectable difference")
            assert m["p_holm"] >= m["p"]
    assert cmp["blur(base=max,size=4)"]["cost_change_pct"]["macs"] == pytest.approx(3.0, abs=0.1)
    assert data["pareto"]["macs"]["front"][0] == "max"
    assert data["decision"]["sentences"] and data["decision"]["caveats"]


def test_html_is_self_contained(full_report: Path) -> None:
    html = full_report.read_text()
    assert html.count('<img src="data:image/png;base64,') == len(FIGURES)
    assert "<script" not in html
    assert "http://" not in html and "https://" not in html
    assert "default-src 'none'" in html
    assert 'id="partial"' not in html
    md = (full_report.parent / "report.md").read_text()
    assert "## Decision" in md and "](figures/pareto.png)" in md


def test_rewrite_replaces_previous_report(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s")
    index = write_report(study, figures=False)
    (index.parent / "stale.txt").write_text("old")
    assert write_report(study, figures=False) == index
    assert not (index.parent / "stale.txt").exists()
    assert index.exists() and (index.parent / "report.json").exists()
    assert not list(study.glob(".report*"))


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>'
    vs = [DEFAULT_VARIANTS[0], FakeVariant(evil, "avg", 70.0, 86.0, 1_234_567, 2, 24_346, 1.2, "evil")]
    d = make_study(tmp_path / "s", variants=vs, fail={(evil, 2)})
    index = write_report(d, figures=False)
    html = index.read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "loss became NaN" in html
    assert "<script>" not in (index.parent / "report.md").read_text()


def test_partial_study_is_marked(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s", skip={("conv(k=3)", 2), ("avg", 1)}, fail={("avg", 2)})
    index = write_report(d, figures=False)
    data = _no_nan((index.parent / "report.json").read_text())
    assert data["status"]["complete"] is False
    assert data["status"]["runs_done"] == 10 and data["status"]["runs_total"] == 12
    assert {"variant": "avg", "seed": 1} in data["status"]["missing"]
    assert data["status"]["failed"][0]["reason"].startswith("loss became NaN")
    assert any("Partly finished" in c for c in data["decision"]["caveats"])
    html = index.read_text()
    assert 'id="partial"' in html and "PARTLY FINISHED STUDY: 10 of 12 runs" in html
    assert "PARTLY FINISHED" in (index.parent / "report.md").read_text()
    by = {v["name"]: v for v in data["variants"]}
    assert by["avg"]["n"] == 1 and by["avg"]["acc"]["ci"] is None


def test_decision_clear_accuracy_win(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s", variants=_variants(**{"conv-k3": (75.0, 85.0)}), noise=0.2, seeds=(0, 1, 2, 3))
    dec = build_report(d)["decision"]
    assert dec["recommendation"] == "conv(k=3)" and dec["basis"] == "accuracy"
    assert dec["headline"].startswith("Use conv(k=3): it is more accurate than max (+")
    assert "+54% MACs" in dec["headline"]


def test_decision_shift_consistency(tmp_path: Path) -> None:
    vs = _variants(**{"conv-k3": (71.0, 80.0), "avg": (71.0, 85.0), "blur": (71.1, 92.0)})
    data = build_report(make_study(tmp_path / "s", variants=vs, noise=0.2, seeds=(0, 1, 2, 3, 4)))
    dec = data["decision"]
    assert dec["recommendation"] == "blur(base=max,size=4)" and dec["basis"] == "shift-consistency"
    assert "more shift-consistent" in dec["headline"] and "+3% MACs" in dec["headline"]
    assert "no detectable accuracy difference" in dec["headline"] or "within ±1 pt" in dec["headline"]


def test_decision_nothing_separates(tmp_path: Path) -> None:
    vs = [
        FakeVariant(v.name, v.downsample, 71.0, 85.0, v.macs, v.other_ops, v.params, v.latency_ms, v.slug)
        for v in DEFAULT_VARIANTS
    ]
    data = build_report(make_study(tmp_path / "s", variants=vs, noise=1.0))
    dec = data["decision"]
    assert dec["recommendation"] == "max" and dec["headline"].startswith("Keep max")
    text = " ".join(c["metrics"]["acc"]["statement"] for c in data["comparisons"])
    assert "3 seeds cannot separate" in text and "spans 0" in text


def test_baseline_option_and_wilcoxon(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s")
    data = build_report(d, baseline="avg", bootstrap=True, test="wilcoxon")
    assert data["options"]["baseline"] == "avg" and data["options"]["baseline_from"] == "option"
    assert {c["variant"] for c in data["comparisons"]} == {"max", "blur(base=max,size=4)", "conv(k=3)"}
    assert data["variants"][0]["acc"]["ci_method"] == "bootstrap"
    assert "Wilcoxon" in data["comparisons"][0]["metrics"]["acc"]["test"]
    with pytest.raises(ReportError, match="unknown baseline 'nope'.*max, avg"):
        build_report(d, baseline="nope")


def test_one_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_study(tmp_path / "s", seeds=(0,))
    data = build_report(d)
    assert data["status"]["enough_seeds"] is False
    for v in data["variants"]:
        assert v["acc"]["std"] is None and v["acc"]["ci"] is None
    for c in data["comparisons"]:
        assert "at least 2 seeds" in c["metrics"]["acc"]["statement"]
    assert data["decision"]["recommendation"] is None
    assert data["decision"]["headline"].startswith("No recommendation: with 1 seed")
    json.dumps(data, allow_nan=False)
    assert main(["report", str(d), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "only 1 seed per variant" in err and "report written to" in err
    html = (d / "report" / "index.html").read_text()
    assert 'id="one-seed"' in html
    assert not re.search(r"\bnan\b", html, re.IGNORECASE)


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "no such study directory"),
        ("empty", "is empty: not a poolstride study directory"),
        ("foreign", "not a poolstride study directory: it has no study.json"),
        ("schema", "is not a poolstride study (schema"),
        ("norun", "no finished runs yet (0 of 12)"),
        ("mixed", "mixed datasets in one study directory"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str) -> None:
    d = tmp_path / "s"
    if setup == "empty":
        d.mkdir()
    elif setup == "foreign":
        d.mkdir()
        (d / "notes.txt").write_text("hello")
        (d / "runs").mkdir()
    elif setup == "schema":
        d.mkdir()
        (d / "study.json").write_text('{"schema": "something/else"}')
    elif setup == "norun":
        make_study(d)
        for p in d.glob("runs/*/seed*/result.json"):
            p.unlink()
    elif setup == "mixed":
        make_study(d, dataset_of={("avg", 1): "cifar10", ("max", 2): "cifar10"})
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err, err
    assert len(err.splitlines()) == 1 or message in err.splitlines()[0]
    assert not (d / "report").exists()


def test_cli_json_and_bad_test(full_report: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = full_report.parent.parent
    assert main(["report", str(study), "--json", "--baseline", "avg", "--no-figures"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["options"]["baseline"] == "avg"
    assert main(["report", str(study), "--test", "anova"]) == 2
    assert "unknown --test" in capsys.readouterr().err
    assert main(["report", str(study), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "Use " in out or "Keep " in out
    assert "report: " in out


def test_matplotlib_and_scipy_are_imported_lazily() -> None:
    code = (
        "import sys, poolstride, poolstride.report, poolstride.report.build, poolstride.report.plots;"
        "bad = [m for m in ('matplotlib', 'scipy') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_nan_text_in_outputs(full_report: Path) -> None:
    for name in ("report.md", "report.json"):
        text = (full_report.parent / name).read_text()
        assert not re.search(r"\b(nan|inf|infinity)\b", text, re.IGNORECASE), name
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", full_report.read_text())
    assert not re.search(r"\b(nan|inf)\b", html, re.IGNORECASE)


def test_baseline_without_successful_runs(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s", fail={("max", 0), ("max", 1), ("max", 2)})
    data = build_report(d)
    assert data["comparisons"] == []
    assert data["decision"]["recommendation"] is None
    assert "baseline max has no successful run" in data["decision"]["headline"]
    assert data["status"]["runs_failed"] == 3
    other = build_report(d, baseline="avg")
    assert len(other["comparisons"]) == 2  # max has no runs to pair with


def test_all_runs_failed_is_an_error(tmp_path: Path) -> None:
    vs = DEFAULT_VARIANTS[:2]
    d = make_study(tmp_path / "s", variants=vs, seeds=(0,), fail={("max", 0), ("avg", 0)})
    with pytest.raises(ReportError, match="all 2 finished runs failed.*loss became NaN"):
        write_report(d)


def test_noisy_latency_uses_the_fastest_and_says_so(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s")
    p = d / "runs" / "avg" / "seed1" / "result.json"
    res = json.loads(p.read_text())
    res["latency_ms"] = 250.0  # a run timed on a busy machine
    p.write_text(json.dumps(res))
    data = build_report(d)
    avg = next(v for v in data["variants"] if v["name"] == "avg")
    assert avg["costs"]["latency_noisy"] is True
    assert avg["costs"]["latency_ms"]["min"] < 2.0
    assert any(n.startswith("avg: latency varies") for n in data["notes"])
    assert any("treat latency differences with care" in c for c in data["decision"]["caveats"])
    cmp = next(c for c in data["comparisons"] if c["variant"] == "avg")
    assert abs(cmp["cost_change_pct"]["latency_ms"]) < 10


def test_non_finite_values_in_the_study_become_null(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s")
    meta = json.loads((d / "study.json").read_text())
    meta["recipe"]["lr"] = float("nan")
    (d / "study.json").write_text(json.dumps(meta))  # writes the NaN literal
    p = d / "runs" / "max" / "seed0" / "result.json"
    p.write_text(p.read_text().replace('"macs": 1234567', '"macs": Infinity'))
    index = write_report(d, figures=False)
    data = _no_nan((index.parent / "report.json").read_text())
    assert data["study"]["recipe"]["lr"] is None


def test_signature_used_by_compare() -> None:
    import inspect

    params = list(inspect.signature(write_report).parameters.values())
    assert [p.name for p in params[:3]] == ["study_dir", "baseline", "bootstrap"]
    assert params[1].default is None and params[2].default is False


def test_concurrent_writers_leave_one_complete_report(tmp_path: Path) -> None:
    import threading

    d = make_study(tmp_path / "s")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                write_report(d, figures=False)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(p.name for p in (d / "report").iterdir()) == ["index.html", "report.json", "report.md"]
    assert not list(d.glob(".report*"))
