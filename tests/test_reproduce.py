"""poolstride reproduce: paper table, claim checks, the analytic stem protocol, the CLI, missing data, and one
training protocol end to end on a tiny synthetic dataset (1 epoch, 2 seeds)."""

from __future__ import annotations

import json

import pytest

from poolstride import DataError, reproduce
from poolstride.cli import main
from poolstride.reproduce import common, papers


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_paper_table_has_the_three_anchor_numbers():
    assert papers.value("allcnn/c/all-cnn/error") == 9.08
    assert papers.value("allcnn/c/strided/error") == 10.19
    assert papers.value("resnet20/A/error") == 8.75
    assert papers.value("blurpool/resnet50/5/consistency") == 91.31
    assert all(r["tag"] in ("P", "S", "U", "C") for r in papers.table())
    with pytest.raises(KeyError, match="allcnn/"):
        papers.get("allcnn/z/base/error")


def test_claim_checks_are_honest():
    a = {0: 80.0, 1: 81.0, 2: 80.5}
    b = {0: 70.0, 1: 71.5, 2: 70.2}
    assert common.better("a", a, "b", b, "a > b", "x").verdict == common.HOLDS
    assert common.better("b", b, "a", a, "b > a", "x").verdict == common.FAILS
    noisy = {0: 79.0, 1: 82.0, 2: 80.0}
    assert common.better("a", a, "n", noisy, "a > n", "x").verdict == common.UNSURE
    assert common.about_equal("a", a, "n", noisy, 5.0, "a ~ n", "x").verdict == common.HOLDS
    assert common.about_equal("a", a, "b", b, 1.0, "a ~ b", "x").verdict == common.FAILS
    assert common.not_worse("b", b, "a", a, 1.0, "b >= a", "x").verdict == common.FAILS
    assert common.better("a", a, "b", {0: 1.0}, "one seed", "x").verdict == common.UNSURE
    chance = {0: 10.0, 1: 10.0, 2: 10.0}
    assert common.about_equal("c", chance, "c2", chance, 1.0, "at chance", "x", floor=11.0).verdict == common.UNSURE
    both = common.combine("all", "x", [common.Check("p", "x", common.HOLDS), common.Check("q", "x", common.UNSURE)])
    assert both.verdict == common.UNSURE and len(both.parts) == 2


def test_stem_protocol_numbers():
    r = reproduce.run("stem", models="resnet50", latency=False)
    assert r.data["resnet50_s1pool_stem_ratio"] >= 4.0
    rows = {x["stem"]: x for x in r.data["rows"]}
    assert rows["original"]["stem_rf"] == 11 and rows["original"]["stem_jump"] == 4
    assert rows["s1pool"]["stem_rf"] == 12 and rows["deep"]["stem_rf"] == 15 and rows["s2d"]["stem_rf"] == 12
    assert rows["original"]["stem_macs"] == 118_013_952  # 7*7*3*64*112*112
    assert rows["s1pool"]["stem_macs"] == 4 * rows["original"]["stem_macs"]
    assert all(rows[s]["stem_out"] == [64, 56, 56] for s in rows)
    assert all(c.verdict == common.HOLDS for c in r.checks), [(c.claim, c.verdict) for c in r.checks]
    md = r.markdown()
    assert "resnet50: stems at 224x224" in md and "holds" in md


def test_registry_and_cli_help(capsys):
    assert reproduce.names() == ["allcnn", "resnet-shortcuts", "stem", "blurpool", "mishkin-pooling"]
    with pytest.raises(reproduce.ReproduceError, match="valid: allcnn"):
        reproduce.get("nope")
    rc, out, _ = run_cli(capsys, "--help")
    assert rc == 0 and "reproduce" in out
    rc, out, _ = run_cli(capsys, "reproduce", "--help")
    assert rc == 0 and "--budget" in out and "--data-dir" in out
    rc, out, _ = run_cli(capsys, "reproduce")
    assert rc == 0 and "resnet-shortcuts" in out and "mishkin" in out
    rc, _, err = run_cli(capsys, "reproduce", "nope")
    assert rc == 2 and "unknown reproduction" in err
    rc, _, err = run_cli(capsys, "reproduce", "stem", "--families", "c")
    assert rc == 2 and "do not apply" in err
    rc, _, err = run_cli(capsys, "reproduce", "allcnn", "--budget", "huge")
    assert rc == 2 and "--budget" in err


def test_stem_cli_json(capsys):
    rc, out, _ = run_cli(capsys, "reproduce", "stem", "--models", "resnet18", "--no-latency", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["schema"] == "poolstride.reproduction/1" and d["name"] == "stem"
    assert d["hardware"]["device"] == "cpu" and d["budget"]["name"] == "quick"
    assert {c["verdict"] for c in d["checks"]} == {"holds"}


def test_missing_cifar10_is_one_clear_line(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "reproduce", "allcnn", "--data-dir", str(tmp_path / "nothing"))
    assert rc == 2 and out == ""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "--data-dir" in err and "train_*.npz" in err and "cifar-10-batches-py" in err
    for name in ("resnet-shortcuts", "blurpool"):
        with pytest.raises(DataError, match="needs CIFAR-10"):
            reproduce.run(name, data_dir=str(tmp_path / "nothing"))


def test_training_protocol_end_to_end_tiny(tmp_path):
    from poolstride.train import synthetic

    ds = synthetic(n_train=64, n_test=32, num_classes=4, size=16)
    kw = dict(dataset=ds, seeds=2, epochs=1, batch_size=32, shift_images=16, out=str(tmp_path / "study"))
    r = reproduce.run("resnet-shortcuts", shortcuts="A,B,fish", gradflow_depths="20", **kw)
    assert r.name == "resnet-shortcuts" and r.budget["seeds"] == 2 and r.budget["recipe"]["epochs"] == 1
    assert (tmp_path / "study" / "summary.json").exists()
    assert json.loads((tmp_path / "study" / "reproduction.json").read_text())["name"] == "resnet-shortcuts"
    acc = r.tables[0]
    assert [row[0] for row in acc.rows] == ["ResNet-20"] * 3 and acc.rows[0][2] == 8.75
    assert all("(n=2)" in row[3] for row in acc.rows)
    verdicts = {c.verdict for c in r.checks}
    assert verdicts <= {common.HOLDS, common.FAILS, common.UNSURE, common.SKIPPED}
    assert any("isolated conv" in c.claim for c in r.checks)
    assert set(r.data["gradflow_init"]) == {"resnet20:a", "resnet20:b", "resnet20:fish"}
    assert r.timing["paper_estimate"]["seconds"] > 0 and "images/s" in r.timing["paper_estimate"]["text"]
    assert "cpu" in common.hardware_line(r.hardware)
    json.dumps(r.to_dict())  # serialisable
    # the same command again resumes the finished study (no retraining) and gives the same table
    r2 = reproduce.run("resnet-shortcuts", shortcuts="A,B,fish", gradflow=False, **kw)
    assert r2.tables[0].rows == acc.rows


def test_mean_ci_is_clipped_to_the_range_of_the_quantity():
    # three seeds, one of them a constant-output run at 100 % consistency: the t-interval overshoots 100
    d = common.describe({0: 100.0, 1: 88.0, 2: 89.2})
    assert d["ci"][1] > 100
    assert common.fmt_mean_ci(d, 1).endswith(", 100.0] (n=3)")
    r = common.describe({0: 0.05, 1: 0.9, 2: 0.2})  # a ratio: clipped at 0, not at 100
    assert r["ci"][0] < 0 and common.fmt_mean_ci(r, 3, (0.0, None)).startswith("0.383 [0.000, ")


def test_paper_recipe_keeps_its_own_name() -> None:
    """A budget whose recipe dict has a ``name`` (he2016-cifar) builds (it once clashed with get_recipe's base)."""
    from poolstride.reproduce.resnet_shortcuts import HE_CIFAR
    from poolstride.reproduce.training import budget_recipe

    rec = budget_recipe("fast", HE_CIFAR, {"epochs": 82})
    assert rec.name == "he2016-cifar" and rec.epochs == 82 and rec.milestones == (41, 62)
