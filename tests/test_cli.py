"""CLI basics: --version, --help, ops, models, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from poolstride import __version__, ops
from poolstride.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_version_and_help(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and __version__ in out
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "ops" in out and "models" in out


def test_ops_lists_all_operators_with_json(capsys):
    rc, out, _ = run(capsys, "ops", "--json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == len(ops.names()) >= 8
    assert {"name", "learnable", "params", "onnx", "source"} <= set(rows[0])
    rc, out, _ = run(capsys, "ops")
    assert rc == 0 and "blur" in out


def test_models_table_and_sites_json(capsys):
    rc, out, _ = run(capsys, "models")
    assert rc == 0 and "allcnn-c" in out and "resnet20" in out
    rc, out, _ = run(capsys, "models", "resnet20", "--downsample", "blur", "--json")
    rec = json.loads(out)[0]
    assert rec["params"] > 0
    assert [s["op"] for s in rec["sites"] if s["kind"] == "conv"] == ["blur", "blur"]
    assert rec["sites"][0]["in_size"] == [32, 32]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["models", "nosuchnet"], "valid models"),
        (["models", "tiny", "--downsample", "blur(size=9)"], "out of range"),
        (["models", "tiny", "--downsample", "warp"], "valid operators"),
        (["models", "allcnn-c:zigzag"], "variant"),
        (["inspect", "tiny", "--input", "3x8x8", "-O", "downsample=blur(base=max,k=7)"], "too small"),
        (["inspect", "tiny", "-O", "downsample=max", "--downsample", "avg"], "twice"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, args, needle):
    rc, out, err = run(capsys, *args)
    assert rc == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_exit_status():
    p = subprocess.run(
        [sys.executable, "-m", "poolstride", "models", "nosuchnet"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2
    assert p.stderr.startswith("error: unknown model") and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "poolstride", "bogus-command"], capture_output=True, text=True)
    assert p.returncode == 2
