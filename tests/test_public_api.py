"""Direct tests of the public APIs added by the refactor: counters, the cost table, site statuses, make_report,
the results file layer, try_trace and the number formatting."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import fx, nn

from _fake_study import make_study
from poolstride import analysis, ops
from poolstride.analysis import counting
from poolstride.analysis.counting import Node, NodeRule, register_counter
from poolstride.analysis.trace import try_trace
from poolstride.cli import main
from poolstride.errors import PoolstrideError
from poolstride.ops.pool import AvgPool
from poolstride.report import ReportOptions, WrittenReport, make_report
from poolstride.resolve import resolve
from poolstride.results.format import fmt_ci, fmt_count, fmt_delta, fmt_duration, fmt_int, fmt_mean_ci
from poolstride.results.io import ResultFileError, read_json, write_json
from poolstride.results.study import StudyFileError, read_study
from poolstride.spec import parse as parse_spec
from poolstride.surgery import SiteStatus, convert_detailed, sites
from poolstride.surgery.cost import CostOptions, CostSubject, CostTable, cost_table
from poolstride.variants import build, describe, parse_variants


# ------------------------------------------------------------------------------------------ register_counter
class CountedAvg(AvgPool):
    """A custom registered-operator subclass with no counter of its own (a leaf of the trace)."""


class TwoPools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.mine = CountedAvg(parse_spec("avg"), 4, 4)
        self.stock = ops.build("avg", 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stock(self.mine(self.conv(x)))


def _by_kind(model: nn.Module) -> dict[str, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(analysis.inspect(model, (3, 8, 8)).totals["other_ops_by_kind"])


def test_register_counter_for_a_downsample_subclass_changes_inspect():
    net = TwoPools()
    before = _by_kind(net)
    # the subclass falls back to the Downsample counter: k^2 = 4 ops per output, 4x4x4 + 4x2x2 outputs
    assert before["avg"] == 4 * (64 + 16) and "mine" not in before
    seen: list[Node] = []

    def mine(m: nn.Module, n: Node) -> NodeRule:
        seen.append(n)
        assert isinstance(m, CountedAvg)
        return NodeRule(([(2.0, 2.0, 0.0)], [(2.0, 2.0, 0.0)]), 7 * n.numel, "mine")

    previous = counting._MODULE_COUNTERS.get(CountedAvg)
    register_counter(CountedAvg, mine)
    try:
        after = _by_kind(net)
    finally:
        if previous is None:
            counting._MODULE_COUNTERS.pop(CountedAvg, None)
        else:
            register_counter(CountedAvg, previous)
    assert len(seen) == 1 and seen[0].tin is not None and list(seen[0].tin.shape) == [1, 4, 8, 8]
    assert seen[0].numel == 64
    assert after["mine"] == 7 * 64
    assert after["avg"] == 4 * 16  # the stock operator keeps the Downsample counter
    assert {k: v for k, v in after.items() if k not in ("avg", "mine")} == {
        k: v for k, v in before.items() if k != "avg"
    }
    assert _by_kind(net) == before  # restored


def test_register_counter_replaces_a_builtin_counter_and_restores():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 2))
    before = analysis.inspect(net, (3, 8, 8))
    previous = counting._MODULE_COUNTERS[nn.AvgPool2d]
    register_counter(nn.AvgPool2d, lambda m, n: NodeRule(([(2.0, 2.0, 0.0)], [(2.0, 2.0, 0.0)]), 1000, "custom"))
    try:
        after = analysis.inspect(net, (3, 8, 8))
    finally:
        register_counter(nn.AvgPool2d, previous)
    assert before.totals["other_ops_by_kind"]["avg"] == 256  # 4x4x4 outputs x 4 adds
    assert "avg" not in after.totals["other_ops_by_kind"] and after.totals["other_ops_by_kind"]["custom"] == 1000
    assert after.totals["other_ops"] == before.totals["other_ops"] - 256 + 1000
    pool = next(layer for layer in after.layers if layer.name == "2")
    assert (pool.other_ops, pool.other_kind) == (1000, "custom")
    assert after.totals["rf"] == before.totals["rf"]  # same geometry given
    assert analysis.inspect(net, (3, 8, 8)).totals == before.totals


# ------------------------------------------------------------------------------------------ cost_table
def test_cost_table_matches_cost_cli_json(capsys):
    base = resolve("tiny", {})
    subjects = []
    for v in parse_variants("tiny", "max,conv", {}):
        torch.manual_seed(0)
        b = build(v, None, base.input_size)
        said = describe(v)
        subjects.append(CostSubject(v.name, b.model, ([said] if said else []) + b.adaptations))
    table = cost_table(iter(subjects), base.input_size, CostOptions(latency=False), model=base.name)
    assert isinstance(table, CostTable)
    assert [r.variant for r in table.rows] == ["max", "conv"]
    first, second = table.rows
    assert all(first.ratio[k] == 1 for k in ("params", "macs", "other_ops", "activation_bytes", "train_step_macs"))
    assert second.ratio["macs"] == pytest.approx(second.macs / first.macs) and second.macs > first.macs
    assert second.params > first.params and first.latency is None
    doc = table.to_json()
    assert doc["schema"] == 1 and doc["devices"] == [] and doc["latency_batch"] is None

    rc = main(["cost", "tiny", "-v", "max,conv", "--no-latency", "--json"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert json.loads(out) == json.loads(json.dumps(doc, default=str))


def test_cost_table_accepts_pairs_and_keeps_order():
    torch.manual_seed(0)
    small = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
    big = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2))
    t = cost_table([("big", big), ("small", small)], (3, 8, 8), CostOptions(latency=False))
    assert [r.variant for r in t.rows] == ["big", "small"]
    assert t.rows[0].ratio["macs"] == 1.0 and t.rows[1].ratio["macs"] == pytest.approx(0.5)
    assert t.rows[1].macs == 4 * 27 * 64


# ------------------------------------------------------------------------------------------ site_status
def _pool_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 6, 3, padding=1),
    )  # fmt: skip


def _convert(net: nn.Module, policy: str, **select):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_detailed(net, policy, (3, 16, 16), **select)


def test_site_status_pool_to_conv_preserve():
    net = _pool_net()
    c = _convert(net, "pool->conv(k=2)", init="preserve")
    st = c.site_status()
    assert all(isinstance(s, SiteStatus) for s in st)
    assert [s.site.path for s in st] == [s.path for s in sites(net, (3, 16, 16))] == ["2", "5"]
    assert all(s.status in {"changed", "skipped", "untouched"} for s in st)
    avg, mx = st
    assert avg.status == "changed" and avg.init_kind == "preserved" and avg.function_preserving
    assert avg.change is not None and avg.change.site.path == "2" and avg.label == "changed"
    assert mx.status == "changed" and mx.init_kind != "preserved" and not mx.function_preserving


def test_site_status_untouched_and_skipped():
    net = _pool_net()
    x = torch.randn(2, 3, 16, 16)
    c = _convert(net, "avg->conv(k=2)", init="preserve")
    st = c.site_status()
    assert [(s.site.path, s.status) for s in st] == [("2", "changed"), ("5", "untouched")]
    assert st[1].init_kind == "" and st[1].change is None and not st[1].function_preserving
    with torch.no_grad():
        assert torch.allclose(c.model.eval()(x), net.eval()(x), atol=1e-5)  # preserved means preserved

    s = _convert(net, "pool->conv(k=2)", init="preserve", skip="2").site_status()
    assert [(t.site.path, t.status) for t in s] == [("2", "skipped"), ("5", "changed")]
    assert s[0].reason and s[0].label == f"skipped: {s[0].reason}" and s[0].init_kind == ""


# ------------------------------------------------------------------------------------------ make_report
def test_make_report_data_equals_report_json(tmp_path: Path):
    study = make_study(tmp_path / "s")
    r = make_report(study, ReportOptions(figures=False, aliasing=False))
    assert isinstance(r, WrittenReport)
    assert r.index == study / "report" / "index.html" and r.index.is_file()
    on_disk = json.loads((r.index.parent / "report.json").read_text(encoding="utf-8"))
    assert r.data == on_disk
    assert r.data["figures"] == []  # figures=False: none drawn
    assert sorted(p.name for p in r.index.parent.iterdir()) == ["index.html", "report.json", "report.md"]
    assert not [p for p in study.iterdir() if p.name.startswith(".report")]  # no temp dir left


# ------------------------------------------------------------------------------------------ results file layer
def test_read_json_errors_name_the_file(tmp_path: Path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ResultFileError) as e:
        read_json(missing, "run config")
    assert isinstance(e.value, PoolstrideError) and e.value.missing and e.value.path == missing
    assert str(missing) in str(e.value) and "run config" in str(e.value)

    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ResultFileError) as e:
        read_json(bad, "run config")
    assert not e.value.missing and e.value.path == bad and e.value.detail
    assert str(bad) in str(e.value) and "\n" not in str(e.value)

    ok = tmp_path / "ok.json"
    ok.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert read_json(ok, "x") == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("text", "kind"),
    [(None, "missing"), ("{bad", "unreadable"), ('{"schema": "other/1"}', "schema"), ("[1, 2]", "schema")],
)
def test_read_study_errors(tmp_path: Path, text: str | None, kind: str):
    path = tmp_path / "study.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyFileError) as e:
        read_study(tmp_path)
    assert isinstance(e.value, ResultFileError) and isinstance(e.value, PoolstrideError)
    assert e.value.kind == kind and e.value.path == path and e.value.missing == (kind == "missing")
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_read_study_schema_rules(tmp_path: Path):
    (tmp_path / "study.json").write_text('{"name": "by hand"}', encoding="utf-8")
    with pytest.raises(StudyFileError) as e:
        read_study(tmp_path)
    assert e.value.kind == "schema"
    assert read_study(tmp_path, require_schema=False) == {"name": "by hand"}
    (tmp_path / "study.json").write_text('{"schema": "other/1"}', encoding="utf-8")
    with pytest.raises(StudyFileError):
        read_study(tmp_path, require_schema=False)  # another schema never passes
    assert read_study(make_study(tmp_path / "s"))["schema"] == "poolstride.study/1"


def test_write_json_atomic_and_refuses_nan(tmp_path: Path):
    p = tmp_path / "x.json"
    write_json(p, {"t": (1, 2), "p": Path("/a/b")})
    assert json.loads(p.read_text(encoding="utf-8")) == {"t": [1, 2], "p": "/a/b"}
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]
    for bad in (float("nan"), float("inf"), torch.tensor(float("nan"))):
        with pytest.raises(ValueError, match="not JSON compliant"):
            write_json(p, {"t": bad})
        assert [q.name for q in tmp_path.iterdir()] == ["x.json"]  # no temp file behind
        assert json.loads(p.read_text(encoding="utf-8"))["t"] == [1, 2]  # the old content is intact


# ------------------------------------------------------------------------------------------ try_trace
class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.conv(x)
        return x


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.down = ops.build("blur", 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(torch.relu(self.conv(x))).mean((2, 3)))


def test_try_trace_data_dependent_control_flow():
    gm, reason = try_trace(DataDependent())
    assert gm is None
    assert isinstance(reason, str) and reason.startswith("TraceError: ") and "\n" not in reason
    assert "control flow" in reason


def test_try_trace_keeps_operator_as_one_node():
    torch.manual_seed(0)
    model = Plain().eval()
    gm, reason = try_trace(model)
    assert reason is None and isinstance(gm, fx.GraphModule)
    calls = [n for n in gm.graph.nodes if n.op == "call_module"]
    assert [n.target for n in calls] == ["conv", "down", "head"]
    assert isinstance(gm.get_submodule("down"), ops.Downsample)
    assert not any(str(n.target).startswith("down.") for n in gm.graph.nodes)  # not traced through
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(gm(x), model(x))


# ------------------------------------------------------------------------------------------ format
def test_fmt_int():
    assert fmt_int(0) == "0"
    assert fmt_int(1234567) == "1,234,567"
    assert fmt_int(-1234567) == "-1,234,567"
    assert fmt_int(10**12) == "1,000,000,000,000"
    assert fmt_int(None) == "-" and fmt_int(None, missing="n/a") == "n/a"


def test_fmt_delta():
    assert fmt_delta(1.234, unit=" pt") == "+1.2 pt"
    assert fmt_delta(-3, unit="%") == "-3.0%"
    assert fmt_delta(0.0) == "+0.0"
    assert fmt_delta(2.5, 2) == "+2.50"
    assert fmt_delta(None) == "n/a" and fmt_delta(None, missing="-") == "-"
    assert fmt_delta(1234, None) == "+1,234"
    assert fmt_delta(-56, None) == "-56"
    assert fmt_delta(0, None) == "0" and fmt_delta(0, None, " p") == "0 p"
    assert fmt_delta(-1_234_567, None, " params") == "-1,234,567 params"


def test_fmt_count():
    assert fmt_count(1234567) == "1.23M"
    assert fmt_count(1_200_000) == "1.2M"
    assert fmt_count(1_200_000, style="fixed") == "1.20M"
    assert fmt_count(24_300) == "24.3k" and fmt_count(24_300, style="fixed") == "24.3k"
    assert fmt_count(1_500_000, style="plain") == "1.5M"
    assert fmt_count(250, style="plain") == "250" and fmt_count(12.5, style="plain") == "12.5"
    assert fmt_count(250) == "250" and fmt_count(0) == "0"
    assert fmt_count(-24_300) == "-24.3k"
    assert fmt_count(2_500_000_000) == "2.5G"
    assert fmt_count(11_690_000, 5) == "11.69M"
    assert fmt_count(None) == "n/a" and fmt_count(None, missing="-") == "-"


def test_fmt_count_rounds_into_the_next_suffix():
    """999,999 once printed '1e+03k' (and '1000k' fixed); 3e12 '3e+03G'."""
    assert fmt_count(999_999) == "1M"
    assert fmt_count(999_999, style="fixed") == "1.00M"
    assert fmt_count(999_999_999) == "1G" and fmt_count(3e12) == "3T"


def test_fmt_ci_and_mean_ci():
    assert fmt_ci((0.18, 2.02)) == "[+0.2, +2.0]"
    assert fmt_ci((0.18, 2.02), 2) == "[+0.18, +2.02]"
    assert fmt_ci((70.1, 72.3), 2, signed=False) == "[70.10, 72.30]"
    assert fmt_ci((-1.25, 0.0)) == "[-1.2, +0.0]"
    assert fmt_ci(None) == "n/a" and fmt_ci([]) == "n/a" and fmt_ci(None, missing="-") == "-"
    assert fmt_mean_ci({"mean": 71.234, "ci": (70.5, 72.0), "n": 3}) == "71.23 [70.50, 72.00] (n=3)"
    assert fmt_mean_ci({"mean": 99.0, "ci": (79.0, 119.0), "n": 3}) == "99.00 [79.00, 100.00] (n=3)"  # clipped
    assert fmt_mean_ci({"mean": 2.0, "ci": (-1.0, 5.0), "n": 2}) == "2.00 [0.00, 5.00] (n=2)"
    assert fmt_mean_ci({"mean": 0.5, "ci": (-0.2, 1.7), "n": 3}, 1, (0.0, None)) == "0.5 [0.0, 1.7] (n=3)"
    assert fmt_mean_ci({"mean": 1.5, "ci": None, "n": 1}) == "1.50 (n=1)"
    assert fmt_mean_ci({"mean": None, "n": 0}) == "n/a"


def test_fmt_duration():
    assert fmt_duration(0) == "0 s"
    assert fmt_duration(95) == "95 s"
    assert fmt_duration(120) == "2.0 min"
    assert fmt_duration(750) == "12.5 min"
    assert fmt_duration(2 * 3600) == "2.0 h"
    assert fmt_duration(3.1 * 3600) == "3.1 h"
    assert fmt_duration(2 * 86400) == "2.0 days"
    assert fmt_duration(5 * 86400 + 43200) == "5.5 days"
    assert fmt_duration(None) == "n/a"
    assert fmt_duration(float("nan")) == "n/a" and fmt_duration(float("inf")) == "n/a"


def test_one_writer_of_result_json_checks_the_record(tmp_path):
    """Every result.json (the engine's and a crashed run's) goes through results.study.write_result, which refuses
    a record without a RunResult field; read_result reads it back, or names a corrupted file."""
    import torch

    from poolstride.results import schema
    from poolstride.results.study import RUN_FIELDS, RunFileError, read_result, write_result
    from poolstride.study.runner import failed_result
    from poolstride.train.recipe import get_recipe
    from poolstride.variants import parse_entry

    rec = failed_result(parse_entry("max", "tiny"), 3, get_recipe("fast"), "textures", torch.device("cpu"), "boom")
    assert set(RUN_FIELDS) <= set(rec) and rec["schema"] == schema.RUN
    assert read_result(tmp_path) is None
    write_result(tmp_path, rec)
    assert read_result(tmp_path) == rec
    broken = {k: v for k, v in rec.items() if k != "acc"}
    with pytest.raises(ValueError, match="missing \\['acc'\\]"):
        write_result(tmp_path / "x", broken)
    assert not (tmp_path / "x").exists()
    (tmp_path / "result.json").write_text("{")
    with pytest.raises(RunFileError, match="result.json is corrupted"):
        read_result(tmp_path)
