"""DDP: one run under torchrun with 2 CPU processes (gloo) matches a 1-process run with the same global batch.

Tolerance: per-epoch train loss within 1e-4 (absolute), final test loss within 1e-4 and test accuracy
within 2 points. The processes see exactly the same batches and augmentation (each takes its half of every
global batch) and batch norm is synchronised across them, so the only differences are floating-point
reduction order (all-reduced gradients and BN statistics computed as E[x^2]-E[x]^2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poolstride.train import synthetic

pytestmark = pytest.mark.timeout(240)


def _poolstride_exe() -> str:
    exe = Path(sys.executable).with_name("poolstride")
    return str(exe) if exe.exists() else shutil.which("poolstride") or "poolstride"


def test_two_processes_match_one(tmp_path):
    d = synthetic(n_train=256, n_test=64, num_classes=4, size=16, seed=3)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=d.x_train.permute(0, 2, 3, 1).numpy(), y_train=d.y_train.numpy(),
             x_test=d.x_test.permute(0, 2, 3, 1).numpy(), y_test=d.y_test.numpy())  # fmt: skip
    env = {**os.environ, "POOLSTRIDE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = ["train", "--dataset", f"npz:{path}", "--model", "tiny", "--downsample", "max", "--recipe", "fast",
            "--epochs", "2", "--batch-size", "32", "--threads", "1", "--json",
            "--amp", "off"]  # fp32: the tolerance below is about DDP, not bf16 rounding  # fmt: skip
    exe = _poolstride_exe()
    one = subprocess.run([exe, *args, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
         exe, *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    r1 = json.loads(one.stdout)
    r2 = json.loads(two.stdout[two.stdout.index("{") :])
    assert r1["world_size"] == 1 and r2["world_size"] == 2 and r2["status"] == "ok"
    l1 = [h["train_loss"] for h in r1["history"]]
    l2 = [h["train_loss"] for h in r2["history"]]
    assert np.allclose(l1, l2, atol=1e-4, rtol=0), (l1, l2)
    assert abs(r1["loss"] - r2["loss"]) < 1e-4, (r1["loss"], r2["loss"])
    assert abs(r1["acc"] - r2["acc"]) <= 2.0, (r1["acc"], r2["acc"])
    print("DDP 1 vs 2 processes: train loss", l1, l2, "test loss", r1["loss"], r2["loss"], "acc", r1["acc"], r2["acc"])
    assert (tmp_path / "two" / "result.json").exists() and (tmp_path / "two" / "checkpoint.pt").exists()
