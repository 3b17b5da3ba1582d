"""The study on any model: a user's file in the current directory, per-site ablation, kill/resume, shards,
weights, Python objects, and one-line errors for every bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _usermodel import MYNET
from poolstride.cli import main
from poolstride.errors import PoolstrideError
from poolstride.train import synthetic

SMALL = {"epochs": 1, "batch_size": 32, "shift_images": 16, "report": False}


@pytest.fixture()
def userdir(tmp_path, monkeypatch):
    """A directory with mynet.py and a small npz dataset; it is the current directory."""
    (tmp_path / "mynet.py").write_text(MYNET)
    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path / "cache"))
    d = synthetic(n_train=96, n_test=32, num_classes=3, size=16, seed=0)
    np.savez(tmp_path / "d.npz", x_train=d.x_train.permute(0, 2, 3, 1).numpy(), y_train=d.y_train.numpy(),
             x_test=d.x_test.permute(0, 2, 3, 1).numpy(), y_test=d.y_test.numpy())  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    sys.modules.pop("mynet", None)


def _metrics(study: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(study.rglob("result.json")):
        r = json.loads(p.read_text())
        out[f"{r['variant']}/{r['seed']}"] = (
            r["acc"],
            r["loss"],
            r["shift_consistency"],
            r["init_sha256"],
            [h["train_loss"] for h in r["history"]],
        )
    return out


def test_cli_per_site_study_of_a_file_model(userdir, capsys):
    out = userdir / "study"
    args = ["compare", "--model", "mynet:build", "--per-site", "pool->conv(k=3)", "--dataset", "npz:d.npz",
            "--seeds", "2", "--epochs", "1", "--batch-size", "32", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "per-site study: 'pool->conv(k=3)' at 2 site(s)" in text and "head: built with num_classes=3" in text
    study = json.loads((out / "study.json").read_text())
    assert [v["name"] for v in study["variants"]] == ["default", "max_pool2d", "max_pool2d_1"]
    assert study["variants"][1]["site"]["kind"] == "pool" and study["model_source"]["model"] == "mynet:build"
    assert "Keep default" in text or "Use " in text or "No recommendation" in text  # the decision is printed
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["decision"]["sentences"]
    assert [r["path"] for r in report["per_site"]] == ["max_pool2d", "max_pool2d_1"]
    assert all(r["verdict"] in ("helps", "hurts", "cannot tell") for r in report["per_site"])
    assert (out / "report" / "figures" / "per_site.png").exists()
    md = (out / "report" / "report.md").read_text()
    assert "Per-site" in md and "## Aliasing at the downsampling sites" in md  # trained sites' alias ratios
    assert any(r.get("alias_ratio") is not None for r in report["aliasing"]["summary"])
    # the run records carry what rebuilds them
    cfg = json.loads((out / "runs" / "max-pool2d" / "seed0" / "config.json").read_text())
    assert cfg["variant_record"]["select"]["paths"] == ["max_pool2d"] and len(cfg["init_sha256"]) == 16
    # cost prints the same params / MACs as the study for the same variant text
    assert main(["cost", "mynet:build", "--input", "1x16x16", "--num-classes", "3", "--no-latency", "--json",
                 "-v", "default,pool->conv(k=3)[path=max_pool2d]"]) == 0  # fmt: skip
    cost = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["variants"]}
    summ = {v["name"]: v for v in json.loads((out / "summary.json").read_text())["variants"]}
    assert (cost["default"]["params"], cost["default"]["macs"]) == (summ["default"]["params"], summ["default"]["macs"])
    site = cost["pool->conv(k=3)[path=max_pool2d]"]
    assert (site["params"], site["macs"]) == (summ["max_pool2d"]["params"], summ["max_pool2d"]["macs"])


def test_bad_inputs_are_one_line_and_leave_a_study_alone(userdir, capsys):
    out = userdir / "study"
    base = ["compare", "--dataset", "npz:d.npz", "--seeds", "1", "--epochs", "1", "--batch-size", "32"]
    assert main([*base, "--model", "mynet:build", "--variants", "default", "--out", str(out), "--no-report"]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    net = userdir / "net.pt"
    torch.save({"conv.weight": torch.zeros(8, 3, 3, 3)}, net)
    junk = userdir / "junk.pt"
    junk.write_bytes(b"\x00garbage")

    def fails(extra, match):
        assert main([*base, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1 and "Traceback" not in err, err

    fails(["--model", "mynet:nope"], "has no attribute 'nope'")
    fails(["--model", "nosuchmodule:build"], "unknown model")
    fails(["--model", "mynet:broken"], "factory exploded")
    fails(["--model", "mynet:build", "--variants", "stem->conv(s=1)+max"], "matches no site")
    fails(["--model", "mynet:build", "--per-site", "shortcut->pool+concat[path=nothing]"], "matches no site")
    fails(["--model", "mynet:nohead"], "cannot find the classifier head")
    fails(["--model", "mynet:build", "--weights", str(net)], "do not fit this model")
    fails(["--model", "mynet:build", "--weights", str(junk)], "not a readable state_dict")
    fails(["--model", "mynet:build", "--weights", str(userdir / "missing.pt")], "no such file")
    fails(["--model", "python:MyNet"], "cannot be rebuilt from the command line")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


KILLED = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from poolstride.study import compare
    from poolstride.train import synthetic
    ds = synthetic(n_train=256, n_test=32, num_classes=3, size=16, seed=0)
    shard = sys.argv[2] if len(sys.argv) > 2 else None
    compare("mynet:build", "default,pool->conv(k=3)", seeds=2, dataset=ds, out=sys.argv[1], epochs=3,
            batch_size=32, shift_images=16, report=False, shard=shard)
    """
)


def test_sigkill_at_random_moments_then_resume_and_shards_equal_one_process(userdir):
    script = userdir / "killed.py"
    script.write_text(KILLED)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": ""}

    def run(out: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(out), *extra], env=env, capture_output=True,
                              text=True, cwd=userdir, timeout=300)  # fmt: skip

    rng = random.Random(0)
    cut = userdir / "cut"
    kills = 0
    for _ in range(6):  # SIGKILL after a random delay; the study picks up where it was each time
        proc = subprocess.Popen([sys.executable, str(script), str(cut)], env=env, cwd=userdir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        time.sleep(rng.uniform(2.0, 5.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    done = run(cut)
    assert done.returncode == 0, done.stderr
    full = run(userdir / "full")
    assert full.returncode == 0, full.stderr
    a, b = _metrics(cut), _metrics(userdir / "full")
    assert len(b) == 4 and a == b
    for p in cut.rglob("metrics.jsonl"):  # nothing duplicated or lost
        assert [json.loads(x)["epoch"] for x in p.read_text().splitlines()] == [1, 2, 3]

    sharded = userdir / "sharded"
    procs = [subprocess.Popen([sys.executable, str(script), str(sharded), f"{i}/2"], env=env, cwd=userdir,
                              stderr=subprocess.PIPE) for i in range(2)]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    assert _metrics(sharded) == b


def test_python_objects_resume_in_python_and_return_the_decision(tmp_path):
    from poolstride.study import compare

    ds = synthetic(n_train=64, n_test=32, num_classes=3, size=16, seed=0)

    def make() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, 2, 1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))  # fmt: skip

    net = make()
    s = compare(net, "default,pool->avg", seeds=2, dataset=ds, out=tmp_path / "s", **SMALL)
    assert s.study_dir == tmp_path / "s" and s["complete"] and s.decision and s.decision["sentences"]
    assert s["study"]["model"] == "python:Sequential" and s["study"]["model_source"]["python_object"]
    h = {r["seed"]: r["init_sha256"] for r in s["runs"] if r["variant"] == "default"}
    assert h[0] != h[1]  # re-initialised per seed
    again = compare(net, "default,pool->avg", seeds=2, dataset=ds, out=tmp_path / "s", **SMALL)
    assert again["runs_done"] == 4 and _metrics(tmp_path / "s") == _metrics(tmp_path / "s")
    from rich.console import Console

    c = Console(record=True, width=100)
    c.print(s.table)
    assert "pool->avg" in c.export_text()


def test_resume_refuses_a_model_that_changed_since_the_run_started(userdir, capsys):
    from poolstride.study import compare

    ds = synthetic(n_train=64, n_test=32, num_classes=3, size=16, seed=0)
    out = userdir / "s"
    compare("mynet:build", "default", seeds=1, dataset=ds, out=out, **SMALL)
    run = out / "runs" / "default" / "seed0"
    (run / "result.json").unlink()  # as if killed after its last checkpoint
    (userdir / "mynet.py").write_text(MYNET.replace("nn.Conv2d(3, 8, 3, 1, 1, bias=False)", "nn.Conv2d(3, 8, 3, 1, 1)"))
    sys.modules.pop("mynet", None)
    with pytest.raises(PoolstrideError, match="not the one it started from .initial weights [0-9a-f]{16} recorded"):
        compare("mynet:build", "default", seeds=1, dataset=ds, out=out, **SMALL)
    assert not (run / "result.json").exists()


def test_factories_name_themselves_and_train_takes_any_model(userdir, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(userdir))
    import mynet  # the user's file

    from poolstride.study import compare
    from poolstride.variants import python_model_name

    assert python_model_name(mynet.build) == "mynet:build"  # rebuildable from the command line
    assert python_model_name(lambda: mynet.build()).startswith("python:")
    assert python_model_name(mynet.MyNet()) == "python:MyNet"
    ds = synthetic(n_train=64, n_test=32, num_classes=3, size=16, seed=0)
    s = compare(mynet.build, "default", seeds=1, dataset=ds, out=userdir / "f", progress=True, **SMALL)
    assert s["study"]["model"] == "mynet:build" and s["complete"]
    capsys.readouterr()
    argv = ["train", "--model", "mynet:build", "--variant", "pool->avg", "--dataset", "npz:d.npz", "--epochs", "1",
            "--batch-size", "32", "--out", str(userdir / "t"), "--json"]  # fmt: skip
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "ok" and r["policy"] == "pool->avg" and r["variant"] == "pool->avg"
    assert "head: built with num_classes=3" in r["adaptations"]
