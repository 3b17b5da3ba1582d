"""Per-site ablation reporting (``compare --per-site``): rows, verdicts, decision, tables and figure."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _fake_study import FakeVariant, make_study
from poolstride.report import build_report, load_study, write_report

POLICY = "conv->conv(s=1)+blur(size=4)"
SEEDS = (0, 1, 2, 3)
BASE_ACC = (70.0, 71.0, 69.5, 70.5)
BASE_SHIFT = (85.0, 86.0, 84.0, 85.5)
BASE_MACS, BASE_PARAMS = 1_000_000, 50_000


def _site(path: str, kind: str, stage: int, size: int | None, cin: int, cout: int) -> dict[str, Any]:
    return {
        "path": path,
        "kind": kind,
        "type": "conv",
        "stage": stage,
        "in_size": [size, size] if size else None,
        "out_size": [size // 2, size // 2] if size else None,
        "in_channels": cin,
        "out_channels": cout,
    }


# path -> (site record, acc change per seed, shift change per seed, MACs, params); model order
SITES: dict[str, tuple[dict[str, Any], tuple[float, ...], tuple[float, ...], int, int]] = {
    "conv1": (_site("conv1", "stem", 0, 32, 3, 64), (-3.0, -2.6, -3.4, -2.9), (0.5, -0.4, 0.2, 0.1), 1_150_000, 52_000),
    "layer2.0.conv1": (
        _site("layer2.0.conv1", "conv", 1, 16, 64, 128),
        (2.0, 2.5, 1.8, 2.2),
        (2.0, 2.4, 1.9, 2.1),
        1_200_000,
        50_000,
    ),
    "layer2.0.downsample.0": (
        _site("layer2.0.downsample.0", "shortcut", 1, 16, 64, 128),
        (0.5, -0.7, 0.3, -0.2),
        (0.3, -0.2, 0.1, -0.4),
        1_050_000,
        50_000,
    ),
    "layer3.0.conv1": (
        _site("layer3.0.conv1", "conv", 2, None, 128, 256),
        (-0.4, 0.6, 0.1, -0.5),
        (0.2, -0.3, 0.4, -0.1),
        1_020_000,
        50_000,
    ),
}
EXPECTED = {
    "conv1": "hurts",
    "layer2.0.conv1": "helps",
    "layer2.0.downsample.0": "cannot tell",
    "layer3.0.conv1": "cannot tell",
}


def _variants(seeds: tuple[int, ...] = SEEDS) -> list[FakeVariant]:
    k = len(seeds)
    out = [
        FakeVariant(
            "default", None, 0, 0, BASE_MACS, 10_000, BASE_PARAMS, 1.0, accs=BASE_ACC[:k], shifts=BASE_SHIFT[:k]
        )
    ]
    for path, (site, da, ds, macs, params) in SITES.items():
        accs = tuple(round(b + x, 2) for b, x in zip(BASE_ACC[:k], da, strict=False))
        shifts = tuple(round(b + x, 2) for b, x in zip(BASE_SHIFT[:k], ds, strict=False))
        out.append(
            FakeVariant(path, None, 0, 0, macs, 10_000, params, 1.0, site=site, policy=POLICY, accs=accs, shifts=shifts)
        )
    # an ordinary variant beside the per-site ones: in the comparisons (and the Holm family), not a per-site row
    out.append(FakeVariant("max", "max", 0, 0, BASE_MACS, 12_000, BASE_PARAMS, 1.0, accs=(70.1, 71.2, 69.4, 70.5)[:k]))
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study(tmp_path_factory.mktemp("persite") / "s", variants=_variants(), seeds=SEEDS)


@pytest.fixture(scope="module")
def report(study: Path) -> Path:
    return write_report(study)


def test_load_exposes_sites(study: Path) -> None:
    s = load_study(study)
    assert list(s.sites) == list(SITES)
    assert s.sites["layer2.0.conv1"]["stage"] == 1 and "default" not in s.sites and "max" not in s.sites
    assert s.records["layer2.0.conv1"]["policy"] == POLICY


def test_rows_match_the_paired_comparisons(study: Path) -> None:
    data = build_report(study)
    assert data["options"]["baseline"] == "default"
    rows = data["per_site"]
    assert [r["variant"] for r in rows] == list(SITES)  # study order, the baseline and `max` left out
    cmps = {c["variant"]: c for c in data["comparisons"]}
    assert set(cmps) == {*SITES, "max"}
    for r in rows:
        site, da, ds, macs, params = SITES[r["variant"]]
        assert r["path"] == site["path"] and r["kind"] == site["kind"] and r["stage"] == site["stage"]
        assert r["policy"] == POLICY and r["baseline"] == "default" and r["n"] == 4
        # the hand-computed paired mean differences
        assert r["acc"]["diff_mean"] == pytest.approx(float(np.mean(da)), abs=1e-9)
        assert r["shift_consistency"]["diff_mean"] == pytest.approx(float(np.mean(ds)), abs=1e-9)
        # the very numbers of build()'s comparisons (paired by seed, Holm across all 5 variants)
        for key in ("acc", "shift_consistency"):
            mc = cmps[r["variant"]]["metrics"][key]
            for k in ("diff_mean", "ci", "p", "p_holm", "verdict"):
                assert r[key][k] == mc[k]
        assert r["macs"] == {
            "baseline": BASE_MACS,
            "variant": macs,
            "delta": macs - BASE_MACS,
            "delta_pct": pytest.approx(100.0 * (macs - BASE_MACS) / BASE_MACS),
        }
        assert r["params"]["delta"] == params - BASE_PARAMS
        assert r["params"]["delta_pct"] == pytest.approx(100.0 * (params - BASE_PARAMS) / BASE_PARAMS)
        assert r["verdict"] == EXPECTED[r["variant"]], r
        assert (r["reason"] is None) == (r["verdict"] != "cannot tell")
    by = {r["variant"]: r for r in rows}
    assert by["layer2.0.conv1"]["acc"]["verdict"] == "higher" and by["conv1"]["acc"]["verdict"] == "lower"
    assert by["layer2.0.conv1"]["shift_consistency"]["verdict"] == "higher"
    assert by["layer2.0.conv1"]["resolution"] == "16×16 → 8×8" and by["layer3.0.conv1"]["resolution"] is None
    assert "spans 0" in by["layer2.0.downsample.0"]["reason"]
    json.dumps(data, allow_nan=False)


def test_decision_names_the_sites(study: Path) -> None:
    sentences = build_report(study)["decision"]["sentences"]
    per = [s for s in sentences if s.startswith("Per site")]
    assert len(per) == 1, sentences
    s = per[0]
    assert s.startswith(f"Per site (policy {POLICY}, against default): ")
    assert "changing layer2.0.conv1 helps (+2.1 pt, 95% CI [+" in s
    assert "changing conv1 hurts (-3.0 pt, 95% CI [" in s
    assert s.endswith("cannot tell at 2 sites: layer2.0.downsample.0, layer3.0.conv1.")
    assert "changing layer2.0.downsample.0" not in s and "max" not in s
    shift = [x for x in sentences if x.startswith("Shift-consistency")]
    assert shift == [shift[0]] and "higher when changing layer2.0.conv1 (+2.1 pt" in shift[0]
    assert "changing conv1 " not in shift[0]


def test_tables_and_figure(report: Path) -> None:
    rep = report.parent
    md = (rep / "report.md").read_text()
    assert "## Per-site ablation (vs default)" in md
    assert "| site | kind@stage | resolution | Δacc pt \\[95% CI\\] | Δshift pt \\[95% CI\\] | ΔMACs | verdict |" in md
    assert "| layer2.0.conv1 | conv@1 | 16×16 → 8×8 | +2.12 \\[+" in md
    assert "| conv1 | stem@0 | 32×32 → 16×16 | -2.98 \\[" in md and "| +150k (+15.0%) | hurts |" in md
    assert "| layer3.0.conv1 | conv@2 | n/a |" in md
    assert "cannot tell at layer2.0.downsample.0: the 95% CI of the accuracy difference" in md
    html = report.read_text()
    assert '<h2 id="per-site">Per-site ablation (vs default)</h2>' in html
    assert "<th>Δacc pt [95% CI]</th>" in html and '<td class="text">helps</td>' in html
    assert '<td class="text">layer2.0.downsample.0</td>' in html
    data = json.loads((rep / "report.json").read_text())
    names = [f["name"] for f in data["figures"]]
    assert names[0] == "per_site" and "pareto" in names
    png = (rep / "figures" / "per_site.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert ET.parse(rep / "figures" / "per_site.svg").getroot().tag.endswith("svg")
    assert 'id="fig-per_site"' in html and "](figures/per_site.png)" in md


def test_one_seed_cannot_tell_anywhere(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s", variants=_variants((0,)), seeds=(0,))
    index = write_report(d)
    data = json.loads((index.parent / "report.json").read_text())
    rows = data["per_site"]
    assert len(rows) == len(SITES)
    for r in rows:
        assert r["verdict"] == "cannot tell"
        assert r["reason"] == "with 1 seed per variant there is no paired comparison (it needs at least 2 seeds)"
        assert r["acc"]["ci"] is None and r["acc"]["diff_mean"] is not None
    sentences = data["decision"]["sentences"]
    assert sentences[0].startswith("No recommendation: with 1 seed")
    per = [s for s in sentences if s.startswith("Per site")]
    assert per == [
        f"Per site (policy {POLICY}, against default): cannot tell at any of the 4 sites (conv1, layer2.0.conv1, "
        "layer2.0.downsample.0, layer3.0.conv1), with 1 seed per variant there is no paired comparison (it needs at "
        "least 2 seeds)."
    ]
    assert not any(s.startswith("Shift-consistency") for s in sentences)
    md = (index.parent / "report.md").read_text()
    assert "cannot tell at all 4 sites: with 1 seed per variant there is no paired comparison" in md
    assert "(no CI: 1 paired seed)" in md
    assert "helps" not in " ".join(r["verdict"] for r in rows)
    assert (index.parent / "figures" / "per_site.png").exists()


def test_ordinary_study_has_no_per_site(tmp_path: Path) -> None:
    data = build_report(make_study(tmp_path / "s"))
    assert "per_site" not in data
    assert not any(s.startswith("Per site") for s in data["decision"]["sentences"])


def test_baseline_without_runs_says_why(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s", variants=_variants(), seeds=SEEDS, fail={("default", s) for s in SEEDS})
    rows = build_report(d)["per_site"]
    assert {r["verdict"] for r in rows} == {"cannot tell"}
    assert {r["reason"] for r in rows} == {"the baseline default has no successful run"}
