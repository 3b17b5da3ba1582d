"""Aliasing analysis (issue 14): exact vs measured responses, the alias ratio, the ``alias`` command, and the
shift-invariant polyphase operators ``aps`` and ``lps``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import poolstride.cli.alias_cmd  # noqa: F401  (registers `poolstride alias` on the shared app)
from poolstride import SpecError, alias, ops, parse
from poolstride.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


# -- closed forms (written from the definitions, independently of the implementation) -------------------------------
def _dirichlet(a: np.ndarray, k: int, n: int) -> np.ndarray:
    """|mean of e^{2 pi i a u / n} over k consecutive u|."""
    a = np.asarray(a, dtype=float)
    num, den = np.sin(np.pi * a * k / n), k * np.sin(np.pi * a / n)
    return np.abs(np.where(a == 0, 1.0, num / np.where(a == 0, 1.0, den)))


def _diffstride_mask(a: np.ndarray, n: int, s: float = 2.0, r: float = 4.0) -> np.ndarray:
    m = math.floor(n / s)
    t = n / (2 * s)
    reff = min(r, m - t)
    return np.clip((t + reff - np.abs(a)) / reff, 0.0, 1.0)


def closed_form_gain(spec: str, a: np.ndarray, b: np.ndarray, n: int, stride: int = 2) -> np.ndarray:
    """|H(a, b)| of a linear operator, from its definition."""
    ca, cb = np.abs(np.cos(np.pi * a / n)), np.abs(np.cos(np.pi * b / n))
    if spec == "subsample":
        return np.ones(len(a))
    if spec == "avg":
        return ca * cb
    if spec == "avg(k=3)":
        return _dirichlet(a, 3, n) * _dirichlet(b, 3, n)
    if spec.startswith("blur(base=avg,size="):
        size = int(spec.split("size=")[1].rstrip(")"))
        return (ca * cb) ** (size - 1)
    if spec == "spectral":
        m = n // stride
        return ((np.abs(a) < m / 2) & (np.abs(b) < m / 2)).astype(float)
    if spec == "diffstride":
        return _diffstride_mask(a, n) * _diffstride_mask(b, n)
    raise KeyError(spec)


LINEAR_CLOSED = ["subsample", "avg", "avg(k=3)", "spectral", "diffstride"] + [
    f"blur(base=avg,size={s})" for s in range(1, 8)
]


@pytest.mark.parametrize("spec", LINEAR_CLOSED)
def test_exact_response_matches_closed_form_and_measurement(spec):
    n = 16
    res = alias.analyze_op(spec, size=n)
    grid = res.grid
    assert res.linear and res.g2 is not None and res.g2_exact is not None and grid is not None
    ref = closed_form_gain(spec, grid.a, grid.b, n)
    np.testing.assert_allclose(np.sqrt(res.g2_exact), ref, atol=1e-9)  # exact (effective filter) = closed form
    np.testing.assert_allclose(np.sqrt(res.g2), ref, atol=1e-3)  # measured (sinusoids) = exact
    assert res.max_gain_error is not None and res.max_gain_error < 1e-3
    assert res.polyphase_error is not None and res.polyphase_error < 1e-9
    ar = np.mean(ref[grid.stopband] ** 2) / np.mean(ref[grid.passband] ** 2)
    assert res.alias_ratio == pytest.approx(ar, abs=1e-3)
    assert res.exact_alias_ratio == pytest.approx(ar, abs=1e-9)
    assert res.distortion < 1e-9


@pytest.mark.parametrize(
    "spec", ["conv", "conv(k=2)", "s2d", "blur(base=conv)", "mixed(alpha=0)", "convpool(pool=avg)"]
)
def test_learnable_linear_ops_measured_equals_exact(spec):
    res = alias.analyze_op(spec, size=16)
    assert res.linear and res.exact_alias_ratio is not None and res.alias_ratio is not None
    assert abs(res.alias_ratio - res.exact_alias_ratio) < 1e-3
    assert res.max_gain_error is not None and res.max_gain_error < 1e-3
    assert res.exact_gains is not None
    for k, g in res.gains.items():
        assert g == pytest.approx(res.exact_gains[k], abs=1e-3)


def test_conv_response_is_that_of_its_registered_init_weight():
    n = 16
    res = alias.analyze_op("conv", size=n)  # seed 0, nn.Conv2d's default init
    torch.manual_seed(0)
    w = ops.build("conv", 1, 1).conv.weight.detach().double()[0, 0].numpy()
    grid = res.grid
    assert grid is not None and res.g2 is not None
    i = np.arange(3)[:, None] - 1  # padding 1: the taps sit at offsets -1, 0, 1
    h = np.array(
        [abs(np.sum(w * np.exp(2j * np.pi * (a * i + b * i.T) / n))) for a, b in zip(grid.a, grid.b, strict=True)]
    )
    np.testing.assert_allclose(np.sqrt(res.g2), h, atol=1e-3)


def test_gains_at_the_requested_frequencies():
    avg = alias.analyze_op("avg", size=32)
    b3 = alias.analyze_op("blur(base=avg,size=3)", size=32)
    for f in (0.1, 0.2, 0.3):  # 0.3 > 0.25: the amplitude that lands on its alias 0.2
        assert avg.gains[f"{f:g}"] == pytest.approx(math.cos(math.pi * f), abs=1e-6)
        assert b3.gains[f"{f:g}"] == pytest.approx(math.cos(math.pi * f) ** 2, abs=1e-6)
        assert avg.exact_gains is not None
        assert avg.exact_gains[f"{f:g}"] == pytest.approx(math.cos(math.pi * f), abs=1e-9)
    # a frequency on the output Nyquist limit has no gain (it is its own alias)
    res = alias.analyze_op("avg", size=16, freqs=(0.25, 0.1))
    assert res.gains["0.25"] is None and res.gains["0.1"] is not None and res.notes


# -- the alias ratio ------------------------------------------------------------------------------------------------
def test_alias_ratio_ordering_and_limits():
    r = {s: alias.analyze_op(s, size=32) for s in ["subsample", "avg", "spectral"]}
    for s in range(2, 8):
        r[f"b{s}"] = alias.analyze_op(f"blur(base=avg,size={s})", size=32)
    ar = {k: v.alias_ratio for k, v in r.items()}
    assert ar["subsample"] == pytest.approx(1.0, abs=1e-12)  # every frequency folds with gain 1: by construction
    assert ar["spectral"] == pytest.approx(0.0, abs=1e-12)  # the ideal low-pass folds nothing
    assert ar["avg"] == pytest.approx(ar["b2"], abs=1e-12)  # the 2x2 mean is the Rect-2 binomial filter
    chain = [ar["subsample"], ar["avg"], *(ar[f"b{s}"] for s in range(3, 8))]
    assert all(x > y for x, y in zip(chain, chain[1:], strict=False))  # wider binomial filters alias less
    assert ar["b5"] < 0.01 and ar["b7"] < 0.002 and ar["spectral"] < ar["b7"]
    assert ar["avg"] == pytest.approx(0.1546, abs=1e-3)


def test_frequency_grid_exclusions():
    g = alias.frequency_grid(32, 2)
    assert len(g) == 420 and int(g.passband.sum()) == 112
    assert (np.abs(g.a) < 16).all() and (np.abs(g.b) < 16).all()
    assert not ((g.la == 0) & (g.lb == 0)).any()  # nothing folds onto DC
    assert not ((g.la == -8) | (g.lb == -8)).any()  # nothing on the output Nyquist
    assert ((g.a > 0) | ((g.a == 0) & (g.b > 0))).all()  # one of each +- pair
    np.testing.assert_array_equal(g.la[g.passband], g.a[g.passband])  # the passband does not move
    with pytest.raises(alias.PoolstrideError, match="multiple of the stride"):
        alias.frequency_grid(31, 2)
    with pytest.raises(alias.PoolstrideError, match="need >= 4x4"):
        alias.frequency_grid(6, 2)


@pytest.mark.parametrize("spec", ["max", "lp", "softpool", "stochastic", "mixed", "blur", "aps", "lps", "convpool"])
def test_non_linear_operators_are_measured_only(spec):
    res = alias.analyze_op(spec, size=16)
    assert not res.linear and res.exact_alias_ratio is None and res.g2_exact is None
    assert res.alias_ratio is not None and 0 <= res.alias_ratio < 1
    assert res.offset == 0.5 and res.amplitude == 0.5 and res.phases == 4
    assert res.distortion > 0.01  # energy at harmonics, not only at the frequency or its alias


def test_probe_amplitude_matters_for_some_non_linear_operators_only():
    # max (the max/avg mix, max then a blur, a conv then max) commutes with x -> c + a x (a > 0): no dependence
    for spec in ("max", "mixed", "blur", "convpool"):
        a = alias.analyze_op(spec, size=16).alias_ratio
        b = alias.analyze_op(spec, size=16, offset=-2.0, amplitude=3.0).alias_ratio
        assert a == pytest.approx(b, rel=1e-9)
    a = alias.analyze_op("softpool", size=16).alias_ratio
    b = alias.analyze_op("softpool", size=16, offset=0.0, amplitude=4.0).alias_ratio
    assert a is not None and b is not None and abs(a - b) > 1e-3
    # a linear operator does not depend on it either
    a = alias.analyze_op("blur(base=avg,size=3)", size=16).alias_ratio
    b = alias.analyze_op("blur(base=avg,size=3)", size=16, offset=5.0, amplitude=0.1).alias_ratio
    assert a == pytest.approx(b, abs=1e-9)


def test_shift_sensitivity():
    sub = alias.analyze_op("subsample", size=32).shift_std
    assert 0.6 < sub < 1.0  # about sqrt(3/4) for white noise
    assert alias.analyze_op("blur(base=avg,size=5)", size=32).shift_std < sub
    for spec in ("aps", "lps", "aps(base=none)", "aps(base=avg,size=3)"):
        assert alias.analyze_op(spec, size=16).shift_std == pytest.approx(0.0, abs=1e-9), spec
    assert alias.analyze_op("max", size=16).shift_std > 0.3


def test_periodic_pad_is_the_periodic_extension():
    x = torch.arange(2 * 5 * 5, dtype=torch.float64).reshape(1, 2, 5, 5)
    for p in (0, 3, 7, 12):
        y = alias.periodic_pad(x, p)
        i = (torch.arange(5 + 2 * p) - p) % 5
        assert torch.equal(y, x[..., i[:, None], i[None, :]])


def test_operator_with_another_stride_is_refused():
    with pytest.raises(alias.PoolstrideError, match="stride"):
        alias.analyze_op("diffstride(init=4)", size=32)


def test_default_specs_cover_the_registry():
    d = alias.default_specs()
    assert d[0] == "subsample" and set(ops.names()) <= set(d)
    assert [s for s in d if s.startswith("blur(base=avg")] == [f"blur(base=avg,size={s})" for s in range(2, 8)]


# -- model sites -----------------------------------------------------------------------------------------------------
def test_model_sites_alias():
    from poolstride import models

    rows = alias.model_alias(models.build("tiny", downsample="blur(base=avg,size=3)"), (3, 32, 32))
    assert [r["path"] for r in rows] == ["features.3.op", "features.7.op", "features.11.op"]
    assert [r["probe_size"] for r in rows] == [32, 16, 8] and [r["in_channels"] for r in rows] == [16, 32, 64]
    for r in rows:  # the same fixed filter at every site, whatever the channels: the one-channel figure at that size
        ref = alias.analyze_op("blur(base=avg,size=3)", size=r["probe_size"]).alias_ratio
        assert r["alias_ratio"] == pytest.approx(ref, abs=1e-5) and r["linear"]


# -- aps / lps --------------------------------------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self, spec: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        c = lambda i, o: nn.Conv2d(i, o, 3, padding=1, padding_mode="circular")  # noqa: E731
        self.body = nn.Sequential(
            c(3, 8), nn.ReLU(), ops.build(spec, 8), c(8, 16), nn.ReLU(), ops.build(spec, 16), c(16, 16), nn.ReLU()
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((-2, -1)))


@pytest.mark.parametrize(
    "spec", ["aps", "lps", "aps(base=none)", "aps(base=avg,size=3,norm=linf)", "lps(base=avg,size=3)"]
)
def test_polyphase_ops_give_exactly_the_same_logits_for_circular_shifts(spec):
    net = _Net(spec).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 32, 32, generator=g)
    with torch.no_grad():
        ref = net(x)
        for shift in [(1, 0), (0, 1), (1, 1), (3, 6)]:
            got = net(torch.roll(x, shift, dims=(-2, -1)))
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_max_pool_subsampling_is_not_shift_invariant():
    net = _Net("max").eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x)
        for shift in [(1, 0), (0, 1), (1, 1)]:
            assert (net(torch.roll(x, shift, dims=(-2, -1))) - ref).abs().max() > 1e-3


def test_aps_keeps_the_component_of_largest_norm():
    x = torch.randn(3, 4, 10, 10, dtype=torch.float64)
    comps = [x[..., i::2, j::2] for i in range(2) for j in range(2)]
    for norm, fn in (
        ("l2", lambda c: c.square().sum()),
        ("l1", lambda c: c.abs().sum()),
        ("linf", lambda c: c.abs().max()),
    ):
        y = ops.build(f"aps(base=none,norm={norm})", 4)(x)
        for b in range(3):
            best = max(range(4), key=lambda p, b=b: float(fn(comps[p][b])))
            assert torch.equal(y[b], comps[best][b]), norm
    # base=max: the circular stride-1 2x2 max, then one of its phases
    xm = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="circular"), 2, 1)
    y = ops.build("aps", 4)(x)
    for b in range(3):
        assert any(torch.equal(y[b], xm[b, :, i::2, j::2]) for i in range(2) for j in range(2))


def test_aps_l1_after_an_average_pool_ties_on_non_negative_maps():
    # the circular 2x2 averages of a component's positions tile the map once: every component has the same sum
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    op = ops.build("aps(base=avg,norm=l1)", 3)
    from poolstride.ops.aps import component_norms, polyphase_components

    norms = component_norms(polyphase_components(op.prefilter(x), 2), "l1")
    torch.testing.assert_close(norms, norms[:, :1].expand_as(norms))


@pytest.mark.parametrize("n", [31, 15, 7, 3, 2])
def test_polyphase_ops_follow_the_floor_rule_of_max(n):
    for spec in ("aps", "lps", "aps(base=avg,k=3,size=5)"):
        op = ops.build(spec, 3).eval()
        assert op.out_size(n) == n // 2 == ops.build("max", 3).out_size(n)
        assert op(torch.randn(2, 3, n, n)).shape[-2:] == (n // 2, n // 2)


def test_lps_trains_its_scorer_and_evaluates_by_argmax():
    torch.manual_seed(0)
    op = ops.build("lps", 4)
    x = torch.randn(2, 4, 8, 8)
    op.train()
    op(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in op.scorer.parameters())
    op.eval()
    comps = [x[..., i::2, j::2] for i in range(2) for j in range(2)]
    pre = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="circular"), 2, 1)
    comps = [pre[..., i::2, j::2] for i in range(2) for j in range(2)]
    with torch.no_grad():
        logits = torch.stack([op.scorer(c).mean((1, 2, 3)) for c in comps], 1)
        y = op(x)
    for b in range(2):
        assert torch.equal(y[b], comps[int(logits[b].argmax())][b])
    hard = ops.build("lps(hard=true,tau=0.5)", 4).train()
    yh = hard(x)
    assert any(torch.allclose(yh[0], c[0]) for c in comps)  # straight-through: a one-hot forward


@pytest.mark.parametrize("spec", ["aps", "aps(base=avg,size=3)", "lps", "lps(base=none)"])
def test_polyphase_ops_gradcheck(spec):
    torch.manual_seed(0)
    op = ops.build(spec, 2).double().eval()
    x = ((torch.randperm(60) + 1.0) / 60).double().reshape(1, 2, 5, 6).requires_grad_()
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-5)


def test_polyphase_ops_registration():
    aps, lps = ops.get_info("aps"), ops.get_info("lps")
    assert not aps.learnable and lps.learnable and aps.onnx and lps.onnx
    assert "Chaman" in aps.source and "Rojas-Gomez" in lps.source
    assert ops.build("aps", 16).param_count() == 0
    assert ops.build("lps", 16).param_count() == 8 * 16 + 2 * 8 + 1  # h*Cin + 2h + 1
    assert ops.build("lps(hidden=4)", 3).param_count() == 4 * 3 + 2 * 4 + 1
    assert str(parse("aps(base=max,k=2,size=1,norm=l2)")) == "aps"
    with pytest.raises(SpecError, match="base"):
        parse("aps(base=conv)")


# -- the command ------------------------------------------------------------------------------------------------------
def test_cli_table(capsys):
    rc, out, err = run(capsys, "alias", "subsample,avg,blur(base=avg,size=3),max", "--size", "16")
    assert rc == 0, err
    assert "alias ratio" in out and "subsample" in out and "blur(base=avg,size=3)" in out
    assert "gain 0.1" in out and "0.3 (alias)" in out and "shift std" in out
    line = next(ln for ln in out.splitlines() if "subsample" in ln)
    assert "1.0000" in line


def test_cli_json(capsys):
    rc, out, _ = run(capsys, "alias", "subsample,spectral,max", "--size", "16", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["size"] == 16 and d["stride"] == 2 and d["output_nyquist"] == 0.25
    rows = {r["spec"]: r for r in d["operators"]}
    assert rows["subsample"]["alias_ratio"] == pytest.approx(1.0) and rows["subsample"]["linear"]
    assert rows["spectral"]["exact_alias_ratio"] == pytest.approx(0.0, abs=1e-9)
    assert rows["max"]["exact_alias_ratio"] is None and rows["max"]["input"]["offset"] == 0.5
    assert set(rows["max"]["gains"]) == {"0.1", "0.2", "0.3"}


def test_cli_figures(capsys, tmp_path):
    rc, _, err = run(capsys, "alias", "avg,aps", "--size", "16", "--out", str(tmp_path))
    assert rc == 0, err
    for stem in ("avg", "aps"):
        png, svg = tmp_path / f"{stem}.png", tmp_path / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert "<svg" in svg.read_text()[:2000]
    d = json.loads((tmp_path / "alias.json").read_text())
    assert [r["spec"] for r in d["operators"]] == ["avg", "aps"]


@pytest.mark.parametrize(
    "args, msg",
    [
        (["blur(size=99)"], "size"),
        (["maxx"], "unknown operator or model 'maxx'"),
        (["max,"], "empty entry"),
        (["max", "--size", "31"], "multiple of the stride"),
        (["max", "--freqs", "0.7"], "--freqs"),
        (["max", "--checkpoint", "x.pt"], "apply to a MODEL"),
        (["diffstride(init=4)", "--size", "16"], "stride"),
    ],
)
def test_cli_errors_are_one_line(capsys, args, msg):
    rc, out, err = run(capsys, "alias", *args)
    assert rc == 2 and msg in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")


def test_cli_model_and_study(capsys, tmp_path):
    from poolstride import models

    rc, out, err = run(capsys, "alias", "tiny", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["model"] == "tiny" and len(d["sites"]) == 3 and d["sites"][0]["spec"] == "max"
    # a study directory with one checkpoint per run
    study = tmp_path / "study"
    recs = [{"name": s, "model": "tiny", "downsample": s, "slug": s} for s in ("max", "aps")]
    study.mkdir()
    (study / "study.json").write_text(
        json.dumps({"variants": recs, "dataset_info": {"input_size": [3, 32, 32], "num_classes": 10}})
    )
    for r in recs:
        for seed in (0, 1):
            rd = study / "runs" / r["slug"] / f"seed{seed}"
            rd.mkdir(parents=True)
            torch.manual_seed(seed)
            torch.save(
                {"model": models.build("tiny", downsample=r["downsample"]).state_dict(), "epoch": 1},
                rd / "checkpoint.pt",
            )
            (rd / "config.json").write_text(json.dumps({"variant": r["name"], "seed": seed}))
    (study / "runs" / "aps" / "seed2").mkdir()  # an unfinished run: no checkpoint
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, "alias", "--study", str(study), "--out", str(out_dir))
    assert rc == 0, err
    assert "features.3.op" in out and "no checkpoint" in out
    d = json.loads((out_dir / "alias.json").read_text())
    by = {(e["variant"], e["path"]): e for e in d["summary"]}
    assert by[("max", "features.3.op")]["seeds"] == 2
    assert by[("aps", "features.3.op")]["shift_std"] == pytest.approx(0.0, abs=1e-6)
    assert "## Aliasing at the downsampling sites" in (out_dir / "alias.md").read_text()
    rc, _, err = run(capsys, "alias", "--study", str(tmp_path / "nope"))
    assert rc == 2 and "not a study directory" in err


# -- issue 14: the 2x2 average's exact response, explain's alias column, the report, circular padding -----------------
def test_avg_exact_response_is_the_product_of_cosines():
    """|H| of the 2x2 average = |cos(pi fx) cos(pi fy)| (f in cycles per input pixel) at every DFT bin."""
    n = 16
    op, _ = alias.build_op("avg")
    filt = alias.effective_filter(alias.Runner.make(op, n, 2))
    aa, bb = (g.ravel() for g in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    fx, fy = aa / n, bb / n
    np.testing.assert_allclose(
        np.sqrt(filt.response(aa, bb)), np.abs(np.cos(np.pi * fx) * np.cos(np.pi * fy)), atol=1e-6
    )


def test_explain_shows_each_operators_alias_ratio(capsys):
    import poolstride.cli.inspect_cmd  # noqa: F401  (registers `poolstride explain`)
    from poolstride.analysis.explain import alias_size, explain_ops

    assert alias_size((4, 4)) == 8 and alias_size((16, 12)) == 12
    d = explain_ops("max,avg,conv(k=2),spectral")
    ar = {r["spec"]: r["alias_ratio"] for r in d["operators"]}
    assert d["alias_size"] == [8, 8] and "8x8" in d["alias_note"]
    ref = alias.analyze_op("avg", size=8)
    assert ar["avg"] == pytest.approx(ref.exact_alias_ratio, abs=1e-4)
    assert ar["conv(k=2)"] == pytest.approx(ar["avg"], abs=1e-4)  # the averaging init is the 2x2 average
    assert ar["spectral"] == pytest.approx(0.0, abs=1e-4) and 0 < ar["max"] < 1
    rc, out, _ = run(capsys, "explain", "max,avg", "--json")
    assert rc == 0 and all("alias_ratio" in r for r in json.loads(out)["ops"]["operators"])
    rc, out, _ = run(capsys, "explain", "max,avg")
    assert rc == 0 and "alias ratio (8x8)" in out and f"{ar['avg']:.3f}" in out


def test_report_aliasing_section_shows_shift_consistency():
    res = {
        "runs": [],
        "summary": [
            {"variant": "max", "path": "features.3", "op": "max", "seeds": 1, "alias_ratio": 0.5, "shift_std": 0.4},
            {"variant": "aps", "path": "features.3", "op": "aps", "seeds": 1, "alias_ratio": 0.3, "shift_std": 0.0},
        ],
    }
    variants = [
        {"name": "max", "shift_consistency": {"mean": 81.25}, "shift_consistency_circular": {"mean": 77.5}},
        {"name": "aps", "shift_consistency": {"mean": 90.0}, "shift_consistency_circular": {"mean": 100.0}},
    ]
    md = alias.study_markdown(res, variants)
    assert "| shift-consistency % | circular % |" in md and "shift-consistency" in md.split("\n")[2]
    assert "| max | `features.3` | max | 1 | 0.500 | 0.400 | 81.25 | 77.50 |" in md
    assert "| aps | `features.3` | aps | 1 | 0.300 | 0.000 | 90.00 | 100.00 |" in md
    assert "circular %" not in alias.study_markdown(res)  # without the variants: as before


def test_tiny_padding_option():
    from poolstride import ModelError, models

    net = models.build("tiny", padding="circular")
    assert {m.padding_mode for m in net.modules() if isinstance(m, nn.Conv2d)} == {"circular"}
    assert {m.padding_mode for m in models.build("tiny").modules() if isinstance(m, nn.Conv2d)} == {"zeros"}
    with pytest.raises(ModelError, match="padding"):
        models.build("tiny", padding="reflect")


def test_circular_tiny_with_aps_is_exactly_circular_shift_consistent(tmp_path):
    """With circular padding every layer of the tiny net but the site commutes with circular shifts, so with aps
    the logits do too (circular shift-consistency 100 %), and with max pooling they do not. The report's
    aliasing section puts these beside the per-site alias ratios."""
    from poolstride.report import write_report
    from poolstride.study import compare
    from poolstride.train import synthetic

    # 512 training images: with 128 (4 steps) both nets still predict one class, trivially 100 % consistent
    ds = synthetic(n_train=512, n_test=256, num_classes=3, size=16)
    s = compare(
        "tiny", "max,aps", seeds=1, epochs=1, dataset=ds, out=tmp_path, report=False, batch_size=32,
        model_options={"padding": "circular"}, jobs=1,
    )  # fmt: skip
    circ = {v["name"]: v["shift_consistency_circular_mean"] for v in s["variants"]}
    assert circ["aps"] == 100.0 and circ["max"] < 100.0
    write_report(tmp_path, figures=False)
    md = (tmp_path / "report" / "report.md").read_text()
    section = md.split("## Aliasing at the downsampling sites", 1)[1]
    assert "| shift-consistency % | circular % |" in section
    assert any(line.startswith("| aps |") and line.rstrip().endswith("| 100.00 |") for line in section.splitlines())
    html = (tmp_path / "report" / "index.html").read_text()
    assert "<th>circular %</th>" in html.split('id="aliasing"', 1)[1]
