"""Ctrl-C and SIGTERM during `poolstride compare`: exit 130 / 143, one line that says what was kept and the
command that resumes; the resumed study ends with the metrics of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from poolstride.train import synthetic


@pytest.fixture()
def npz(tmp_path):
    d = synthetic(n_train=384, n_test=32, num_classes=3, size=16, seed=0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=d.x_train.permute(0, 2, 3, 1).numpy(), y_train=d.y_train.numpy(),
             x_test=d.x_test.permute(0, 2, 3, 1).numpy(), y_test=d.y_test.numpy())  # fmt: skip
    return f"npz:{path}"


def _metrics(d: Path) -> dict:
    out = {}
    for p in sorted(d.rglob("result.json")):
        r = json.loads(p.read_text())
        out[f"{r['variant']}/{r['seed']}"] = (r["acc"], r["loss"], r["shift_consistency"])
    return out


def test_sigint_and_sigterm_exit_codes_resume_line_and_identical_resume(npz, tmp_path):
    env = {**os.environ, "POOLSTRIDE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONHASHSEED": "0"}

    def argv(out: Path) -> list[str]:
        return ["compare", "--dataset", npz, "--variants", "max,avg", "--seeds", "1", "--epochs", "4",
                "--batch-size", "32", "--no-report", "--jobs", "1", "--out", str(out)]  # fmt: skip

    out = tmp_path / "cut"
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        # SIG_DFL for SIGINT in the child: a background job of a non-interactive shell (how CI may run us)
        # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
        proc = subprocess.Popen([sys.executable, "-m", "poolstride", *argv(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        deadline = time.time() + 120

        def epochs() -> int:
            return sum(len(p.read_text().splitlines()) for p in out.rglob("metrics.jsonl")) if out.exists() else 0

        n0 = epochs()
        while time.time() < deadline and proc.poll() is None and epochs() <= n0:  # a new epoch checkpoint
            time.sleep(0.05)
        assert proc.poll() is None, "the study finished before it could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, (sig, proc.returncode, err)
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "resume with: poolstride compare" in lines[0] and str(out) in lines[0]
        assert not list(out.rglob(".lock"))  # released on the way out
    done = subprocess.run([sys.executable, "-m", "poolstride", *argv(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    full = subprocess.run([sys.executable, "-m", "poolstride", *argv(tmp_path / "full")], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert full.returncode == 0, full.stderr
    assert len(_metrics(out)) == 2 and _metrics(out) == _metrics(tmp_path / "full")
