"""Studies through submitit's local executor: real subprocesses, one shard per array task, a task killed
mid-run, resubmission with --retry-failed, and the same per-run metrics as one process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from poolstride.cli import main
from poolstride.errors import PoolstrideError
from poolstride.study import compare, status
from poolstride.study.launch import parse_params
from poolstride.train import synthetic

submitit = pytest.importorskip("submitit")

ARGS = {"variants": "max,avg", "seeds": 2, "epochs": 3, "batch_size": 32, "shift_images": 16}


@pytest.fixture()
def npz(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path / "cache"))
    d = synthetic(n_train=384, n_test=32, num_classes=3, size=16, seed=0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=d.x_train.permute(0, 2, 3, 1).numpy(), y_train=d.y_train.numpy(),
             x_test=d.x_test.permute(0, 2, 3, 1).numpy(), y_test=d.y_test.numpy())  # fmt: skip
    return f"npz:{path}"


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc), deepest first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(children.get(c, []))
    return out[::-1]


def _metrics(d: Path) -> list:
    rs = [json.loads(p.read_text()) for p in sorted(d.rglob("result.json"))]
    return sorted((r["variant"], r["seed"], r["acc"], r["loss"], r["shift_consistency"], r["init_sha256"]) for r in rs)


def test_local_array_kill_one_task_resubmit_equals_one_process(npz, tmp_path):
    one = compare(dataset=npz, out=tmp_path / "one", jobs=1, report=False, **ARGS)
    assert one["complete"]
    out = tmp_path / "cluster"
    s = compare(dataset=npz, out=out, launcher="local", jobs=2, **ARGS)
    assert s["submitted"]["tasks"] == 2 and len(s["submitted"]["jobs"]) == 2
    assert s["submitted"]["watch"] == f"poolstride status {out}"
    victim = s.jobs[0]
    deadline = time.time() + 180  # kill task 0 once it has saved an epoch of its first run
    while not list(out.glob("runs/max/seed0/metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.05)
    # SIGKILL, as a node failure would (cancel() sends SIGINT, which a shell's background job ignores)
    proc = getattr(victim, "_process", None)
    assert proc is not None, "submitit's LocalJob no longer exposes its process"
    for pid in [*_descendants(proc.pid), proc.pid]:  # submitit's local controller runs the task in a child
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for j in s.jobs[1:]:
        j.wait()
    if proc is not None:
        proc.wait(timeout=60)
    st = status(out)
    assert not st["complete"] and st["done"] >= 2, st  # task 1's shard finished; task 0's did not
    again = compare(dataset=npz, out=out, launcher="local", jobs=2, retry_failed=True, **ARGS)
    for j in again.jobs:
        j.result()
    assert status(out)["complete"]
    assert _metrics(out) == _metrics(tmp_path / "one")
    assert (out / "report" / "index.html").exists()  # written by the task that completed the study


def test_launcher_errors_are_one_line(npz, tmp_path, capsys):
    assert parse_params("partition=gpu,gpus_per_task=1,time=60") == {"partition": "gpu", "gpus_per_task": 1,
                                                                      "time": 60}  # fmt: skip
    with pytest.raises(PoolstrideError, match="bad --slurm item"):
        parse_params("partition")
    base = ["compare", "--dataset", npz, "--variants", "max", "--seeds", "1", "--epochs", "1"]
    for extra, match in (
        (["--launcher", "pbs"], "unknown --launcher 'pbs'"),
        (["--launcher", "local", "--shard", "0/2"], "--shard and --launcher do not mix"),
        (["--launcher", "local", "--jobs", "0"], "bad --jobs 0"),
    ):
        assert main([*base, "--out", str(tmp_path / "x"), *extra]) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err
        assert not (tmp_path / "x").exists()
