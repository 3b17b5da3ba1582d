"""Studies: variants, seeds, shards, resume (including a SIGKILL mid-run), summaries, CLI errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from poolstride import PoolstrideError, SpecError
from poolstride.cli import main
from poolstride.study import StudyError, ci95, compare, make_variants, parse_seeds, parse_shard
from poolstride.train import synthetic

SMALL = dict(epochs=1, batch_size=32, shift_images=32, eval_batch_size=64, report=False)


@pytest.fixture(scope="module")
def ds():
    return synthetic(n_train=96, n_test=48, num_classes=3, size=16, seed=0)


def test_variants():
    vs = make_variants("tiny", "max,blur(base=max,size=3),fancy=conv(k=3),default")
    assert [v.name for v in vs] == ["max", "blur(base=max,size=3)", "fancy", "default"]
    assert [v.downsample for v in vs] == ["max", "blur(size=3)", "conv", None]
    assert len({v.slug for v in vs}) == 4 and all("(" not in v.slug for v in vs)
    assert [v.name for v in make_variants("tiny", None)] == ["max", "avg", "conv", "convpool", "blur"]
    s = make_variants("allcnn-c", "allcnn-c:strided,allcnn-c:all-cnn")
    assert [(v.model, v.downsample) for v in s] == [("allcnn-c:strided", None), ("allcnn-c:all-cnn", None)]
    with pytest.raises(SpecError, match="unknown operator 'maxx'"):
        make_variants("tiny", "max,maxx")
    with pytest.raises(StudyError, match="given twice"):
        make_variants("tiny", "max,max")
    with pytest.raises(StudyError, match="unbalanced"):
        make_variants("tiny", "blur(size=3")


def test_shards_seeds_and_ci():
    assert parse_shard("1/3") == (1, 3) and parse_shard(None) is None
    for bad in ("3/3", "a/b", "1", "-1/2", "0/0"):
        with pytest.raises(StudyError, match="bad --shard"):
            parse_shard(bad)
    assert parse_seeds(3) == [0, 1, 2] and parse_seeds("2") == [0, 1]
    assert parse_seeds("0,5") == [0, 5] and parse_seeds("2-4") == [2, 3, 4]
    with pytest.raises(StudyError):
        parse_seeds("x")
    m, sd, ci = ci95([70.0, 72.0, 74.0])
    from scipy import stats

    h = stats.t.ppf(0.975, 2) * 2.0 / np.sqrt(3)
    assert m == 72.0 and sd == pytest.approx(2.0) and ci == pytest.approx((72 - h, 72 + h))
    assert ci95([70.0]) == (70.0, None, None)


def test_study_runs_resumes_and_refuses_other_definitions(ds, tmp_path):
    events = []
    s = compare(
        dataset=ds, variants="max,blur", seeds=2, out=tmp_path, callback=lambda e, **k: events.append(e), **SMALL
    )
    assert s["complete"] and s["runs_done"] == 4 and events.count("run_start") == 4
    assert [v["name"] for v in s["variants"]] == ["max", "blur"] and all(v["n"] == 2 for v in s["variants"])
    assert all(v["acc_ci95"] is not None and v["params"] for v in s["variants"])
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["schema"] == "poolstride.study/1" and study["seeds"] == [0, 1] and study["baseline"] == "max"
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert len(rows) == 4 and {r["variant"] for r in rows} == {"max", "blur"}
    summ = json.loads((tmp_path / "summary.json").read_text())
    assert summ["schema"] == "poolstride.summary/1" and len(summ["runs"]) == 4
    assert (tmp_path / "runs" / "blur" / "seed1" / "summary.csv").exists()

    results = {p: p.read_bytes() for p in tmp_path.rglob("result.json")}
    again = []
    s2 = compare(
        dataset=ds, variants="max,blur", seeds=2, out=tmp_path, callback=lambda e, **k: again.append(e), **SMALL
    )
    assert again.count("run_skip") == 4 and "run_start" not in again and s2["runs_done"] == 4
    assert {p: p.read_bytes() for p in tmp_path.rglob("result.json")} == results

    before = (tmp_path / "study.json").read_bytes()
    with pytest.raises(StudyError, match="created by a different command.*variants"):
        compare(dataset=ds, variants="max,avg", seeds=2, out=tmp_path, **SMALL)
    with pytest.raises(StudyError, match="epochs 1 vs 2"):
        compare(dataset=ds, variants="max,blur", seeds=2, out=tmp_path, **{**SMALL, "epochs": 2})
    assert (tmp_path / "study.json").read_bytes() == before
    assert {p: p.read_bytes() for p in tmp_path.rglob("result.json")} == results


def test_shards_split_the_runs(ds, tmp_path):
    started: dict[int, list] = {0: [], 1: []}
    for i in (0, 1):

        def cb(e, i=i, **k):
            if e == "run_start":
                started[i].append((k["variant"], k["seed"]))

        s = compare(dataset=ds, variants="max,avg,blur", seeds=[0], out=tmp_path, shard=f"{i}/2", callback=cb, **SMALL)
    assert started[0] == [("max", 0), ("blur", 0)] and started[1] == [("avg", 0)]
    assert s["complete"] and s["runs_done"] == 3


def test_failed_run_does_not_stop_the_study(ds, tmp_path):
    s = compare(dataset=ds, variants="max", seeds=1, out=tmp_path, lr=1e9, schedule="constant", **SMALL)
    assert s["runs_done"] == 1 and s["variants"][0]["failed"] == 1 and s["variants"][0]["acc_mean"] is None
    assert "loss" in s["variants"][0]["reasons"][0]


SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from poolstride.study import compare
    from poolstride.train import synthetic
    ds = synthetic(n_train=384, n_test=64, num_classes=3, size=16, seed=0)
    s = compare(dataset=ds, variants="max", seeds=[0], out=sys.argv[1], epochs=4, batch_size=32,
                shift_images=32, report=False)
    r = s["runs"][0]
    print("RESULT", r["acc"], r["loss"], r["shift_consistency"], [h["train_loss"] for h in r["history"]])
    """
)


def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tmp_path):
    script = tmp_path / "study.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, str(script), str(cut)], env=env, stdout=subprocess.PIPE, text=True)
    ckpt = cut / "runs" / "max" / "seed0" / "checkpoint.pt"
    deadline = time.time() + 120  # kill once the first epoch is saved (metrics.jsonl follows the checkpoint)
    while not (ckpt.parent / "metrics.jsonl").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ckpt.parent / "result.json").exists()
    done_epochs = len((ckpt.parent / "metrics.jsonl").read_text().splitlines())
    assert 1 <= done_epochs < 4

    resumed = subprocess.run([sys.executable, str(script), str(cut)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    full = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "full")], env=env, capture_output=True, text=True
    )
    assert full.returncode == 0, full.stderr
    line = [x for x in resumed.stdout.splitlines() if x.startswith("RESULT")]
    assert line and line == [x for x in full.stdout.splitlines() if x.startswith("RESULT")]
    metrics = [json.loads(x) for x in (ckpt.parent / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]  # nothing duplicated or lost


@pytest.fixture()
def npz_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path / "cache"))
    d = synthetic(n_train=64, n_test=32, num_classes=3, size=16)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=d.x_train.permute(0, 2, 3, 1).numpy(), y_train=d.y_train.numpy(),
             x_test=d.x_test.permute(0, 2, 3, 1).numpy(), y_test=d.y_test.numpy())  # fmt: skip
    return f"npz:{path}"


def test_cli_compare_and_user_errors(npz_dataset, tmp_path, capsys):
    out = tmp_path / "study"
    args = ["compare", "--dataset", npz_dataset, "--variants", "max,blur", "--seeds", "2", "--epochs", "1",
            "--batch-size", "32", "--out", str(out), "--no-report"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "95%" in text and "blur" in text and "study directory" in text
    assert main([*args, "--json"]) == 0
    summ = json.loads(capsys.readouterr().out)
    assert summ["runs_done"] == 4 and summ["complete"]
    results = {p: p.read_bytes() for p in out.rglob("result.json")}

    def fails(argv, match):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err

    fails([*args[:-3], "--variants", "max,avg", "--out", str(out)], "created by a different command")
    fails([*args, "--shard", "2/2"], "bad --shard 2/2")
    fails(["compare", "--dataset", "nope", "--out", str(tmp_path / "x")], "unknown dataset 'nope'")
    fails(["compare", "--dataset", "npz:/does/not/exist.npz", "--out", str(tmp_path / "x")], "exist")
    fails(["compare", "--dataset", npz_dataset, "--variants", "max,conv(k=0)", "--out", str(tmp_path / "x")],
          "conv")  # fmt: skip
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fails(["compare", "--dataset", npz_dataset, "--out", str(blocker / "sub")], "cannot write to output directory")
    assert {p: p.read_bytes() for p in out.rglob("result.json")} == results
    assert not (tmp_path / "x").exists()

    fails(["train", "--dataset", npz_dataset, "--out", str(out)], "is a study directory")
    run_dir = next(iter(results)).parent
    fails([*args[:-3], "--out", str(run_dir), "--no-report"], "single-run directory")
    assert not (run_dir / "study.json").exists()

    bad = next(iter(results))
    bad.write_text("{broken")
    fails(args, "result.json is corrupted")
    assert bad.read_text() == "{broken"


def test_cli_train_single_run(npz_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", npz_dataset, "--downsample", "blur", "--epochs", "1", "--batch-size", "32",
            "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "ok" and r["downsample"] == "blur" and (out / "result.json").exists()
    with pytest.raises(PoolstrideError):
        from poolstride.train import get_recipe

        get_recipe("fast", epochs=0)


CONCURRENT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from poolstride.study import compare
    from poolstride.train import synthetic
    ds = synthetic(n_train=96, n_test=32, num_classes=3, size=16, seed=0)
    started = []
    compare(dataset=ds, variants="max,avg,blur,conv", seeds=[0, 1], out=sys.argv[1], epochs=1, batch_size=32,
            shift_images=16, report=False,
            callback=lambda e, **k: started.append(f"{k['variant']}/{k['seed']}") if e == "run_start" else None)
    print("STARTED", " ".join(started))
    """
)


def test_two_unsharded_processes_share_a_study_without_duplicates(tmp_path):
    script = tmp_path / "c.py"
    script.write_text(CONCURRENT)
    out = tmp_path / "study"
    procs = [subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    started = []
    for p in procs:
        stdout, _ = p.communicate(timeout=180)
        assert p.returncode == 0
        started += next(x for x in stdout.splitlines() if x.startswith("STARTED")).split()[1:]
    assert sorted(started) == sorted(f"{v}/{s}" for v in ("max", "avg", "blur", "conv") for s in (0, 1))
    assert json.loads((out / "summary.json").read_text())["complete"]
    assert not list(out.rglob(".lock"))


def test_model_options_are_part_of_the_variant_definition():
    from poolstride.study.core import Variant

    plain = Variant("base", "allcnn-c:base", None, "base")
    assert "model_kwargs" not in plain.to_dict()  # studies without options keep their auto names
    opt = Variant("base", "allcnn-c:base", None, "base", {"bn": True})
    assert opt.to_dict()["model_kwargs"] == {"bn": True}


STATUS = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from poolstride.study import compare
    from poolstride.train import synthetic
    ds = synthetic(n_train=256, n_test=32, num_classes=3, size=16, seed=0)
    compare(dataset=ds, variants="max,avg", seeds=[0, 1], out=sys.argv[1], epochs=int(sys.argv[2]), batch_size=32,
            shift_images=16, report=False, jobs=sys.argv[3])
    """
)


def test_jobs_match_one_process_and_status_sees_a_study_in_progress(tmp_path):
    from poolstride.study import status

    script = tmp_path / "s.py"
    script.write_text(STATUS)
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "2", "1"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, str(script), str(tmp_path / "two"), "2", "2"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr

    def metrics(d):
        rs = [json.loads(p.read_text()) for p in sorted(d.rglob("result.json"))]
        return sorted((r["variant"], r["seed"], r["acc"], r["loss"], r["shift_consistency"], r["init_sha256"])
                      for r in rs)  # fmt: skip

    assert len(metrics(tmp_path / "one")) == 4 and metrics(tmp_path / "one") == metrics(tmp_path / "two")
    st = status(tmp_path / "two")
    assert (st["done"], st["running"], st["pending"], st["complete"]) == (4, 0, 0, True)
    # a study in progress: one run is being trained while we look
    slow = tmp_path / "slow"
    proc = subprocess.Popen([sys.executable, str(script), str(slow), "40", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not list(slow.rglob(".lock")) and time.time() < deadline:
            time.sleep(0.1)
        st = status(slow)
        assert (st["running"], st["done"], st["pending"]) == (1, 0, 3), st
        assert st["running_runs"][0]["variant"] == "max" and st["running_runs"][0]["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()
    st = status(slow)  # the killed process's lock is not "running" any more
    assert (st["running"], st["pending"]) == (0, 4)


def test_replay_from_a_study_directory_and_provenance(npz_dataset, tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    args = ["compare", "--dataset", npz_dataset, "--variants", "max,pool->avg", "--seeds", "2", "--epochs", "1",
            "--batch-size", "32", "--out", str(src)]  # fmt: skip
    assert main(args) == 0
    assert main(["compare", "--from", str(src), "--out", str(dst)]) == 0
    capsys.readouterr()

    def runs(d):
        return sorted((r["variant"], r["seed"], r["acc"], r["loss"], r["shift_consistency"], r["init_sha256"])
                      for r in (json.loads(p.read_text()) for p in d.rglob("result.json")))  # fmt: skip

    assert len(runs(src)) == 4 and runs(src) == runs(dst)
    prov = json.loads((dst / "study.json").read_text())["provenance"]
    assert prov["command"].startswith("poolstride compare --from") or "from_study" in prov["command"]
    assert prov["replay_of"] == str(src.resolve()) and prov["torch"] and prov["threads"] == 1
    assert prov["autocast"] in ("bf16", "fp32")
    s = json.loads((src / "study.json").read_text())
    assert "overridden here: batch_size=32, epochs=1" in s["recipe"]["notes"]
    assert "## Provenance" in (dst / "report" / "report.md").read_text()
    assert main(["compare", "--from", str(src), "--out", str(tmp_path / "x"), "--seeds", "5"]) == 2
    assert "drop --seeds" in capsys.readouterr().err
    assert main(["compare", "--from", str(src)]) == 2
    assert "needs --out" in capsys.readouterr().err


def test_tensorboard_events_per_run(ds, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = compare(dataset=ds, variants="max,avg", seeds=1, out=tmp_path, tensorboard=True, **SMALL)
    assert s["complete"]
    ev = EventAccumulator(str(next((tmp_path / "runs" / "avg" / "seed0" / "tensorboard").iterdir()).parent))
    ev.Reload()
    tags = set(ev.Tags()["scalars"])
    assert {"loss/train", "accuracy/test", "lr", "shift_consistency/reflect"} <= tags
    r = json.loads((tmp_path / "runs" / "avg" / "seed0" / "result.json").read_text())
    assert ev.Scalars("accuracy/test")[-1].value == pytest.approx(r["acc"], abs=1e-4)
