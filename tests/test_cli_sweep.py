"""Sweep of malformed invocations, every subcommand: each is a user error, so each must end with exit status 2 and
at most 3 lines on stderr (one `error: ...` line, or click's usage error), never a traceback, and must write nothing
(every case runs in a fresh copy of the same directory, as the current directory; --out points inside it).

None of these cases trains: each fails before training (a pytest timeout guards against one that would not).
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from _usermodel import MYNET
from poolstride import models
from poolstride.cli import main

# The names of the optional model packages, kept out of the test functions' code: conftest marks a test that
# names them as a `vision` test.
_TV, _TIMM = "torchvision", "timm"

# (command line, what stderr must contain: a string, or a tuple of strings one of which it must contain). Fixtures
# in the directory each case runs in: mynet.py (a user's model file: build, avgnet, broken...), afile (a plain
# file), junk.pt (text), empty.pt (0 bytes), trunc.pt (half a checkpoint), list.pt (a checkpoint of a list),
# resnet20.pt (another model's state_dict), notstudy/ (a directory with a file), study/ (a complete fake study),
# badstudy/ (a study whose study.json is corrupted), outdir/alias.json/ (a directory where a file will be written).
NOT_INSTALLED_OR_UNKNOWN_TV = ("torchvision is not installed; install it: pip install torchvision",
                               "unknown torchvision model 'resnt18'; did you mean resnet18")  # fmt: skip
NOT_INSTALLED_OR_UNKNOWN_TIMM = ("timm is not installed; install it: pip install timm",
                                 "unknown timm model 'resnt18'")  # fmt: skip
POLICY = "pool->conv(k=3)"
CASES: list[tuple[str, str | tuple[str, ...]]] = [
    # ---- compare
    ("compare --model nosuch --out s", "unknown model 'nosuch'"),
    ("compare --variants max,[ --out s", "unbalanced bracket in 'max,['"),
    ("compare --variants max,,avg --out s", "empty entry in list 'max,,avg'"),
    ("compare --variants a=max,a=avg --out s", "variant 'a' is given twice"),
    (f"compare --variants '{POLICY}[colour=red]' --out s", "bad selector 'colour=red'"),
    ("compare --variants pool->warp --out s", "unknown operator 'warp'"),
    ("compare --variants 'max,blur(size=' --out s", "unbalanced"),
    ("compare --seeds 0 --out s", "need at least one seed"),
    ("compare --seeds x --out s", "bad --seeds 'x'"),
    ("compare --seeds 3-1 --out s", "bad --seeds '3-1'"),
    ("compare --shard 2/2 --out s", "bad --shard 2/2"),
    ("compare --shard x --out s", "bad --shard 'x'"),
    ("compare --jobs 0 --out s", "bad --jobs 0"),
    ("compare --jobs x --out s", "bad --jobs 'x'"),
    ("compare --epochs 0 --out s", "Invalid value for '--epochs'"),
    ("compare --out afile/s", "afile/s"),
    ("compare --weights junk.pt --out s", "cannot load weights junk.pt: not a readable state_dict"),
    ("compare --weights empty.pt --out s", "empty or truncated"),
    ("compare --weights nothere.pt --out s", "cannot load weights nothere.pt: no such file"),
    ("compare -O bogus=1 --out s", "unexpected keyword argument 'bogus'"),
    ("compare --model mynet:build -O bogus=1 --out s", "calling build() failed: TypeError"),
    ("compare --model mynet:broken --out s", "factory exploded"),
    ("compare --model mynet:avgnet --variants shortcut->avg+1x1 --out s", "matches no site"),
    ("compare --recipe nope --out s", "unknown recipe 'nope'"),
    ("compare --dataset nope --out s", "unknown dataset 'nope'"),
    ("compare --dataset npz:junk.pt --out s", "not a valid .npz archive"),
    ("compare --device bogus --out s", "bad --device 'bogus'"),
    ("compare --amp fp8 --out s", "amp='fp8' is not valid"),
    ("compare --lr -1 --out s", "must be > 0"),
    ("compare --launcher nope --out s", "unknown --launcher 'nope'"),
    ("compare --per-site pool->warp --out s", "unknown operator 'warp'"),
    ("compare --model torchvision:resnt18 --out s", NOT_INSTALLED_OR_UNKNOWN_TV),
    ("compare --model timm:resnt18 --out s", NOT_INSTALLED_OR_UNKNOWN_TIMM),
    # ---- train
    ("train --model nosuch --out r", "unknown model 'nosuch'"),
    ("train --variant max,avg --out r", "cannot parse spec 'max,avg'"),
    ("train --variant max --downsample avg --out r", "not both"),
    (f"train --variant '{POLICY}[colour=red]' --out r", "bad selector 'colour=red'"),
    ("train --weights junk.pt --out r", "cannot load weights junk.pt: not a readable state_dict"),
    ("train --weights list.pt --out r", "it holds a list, not a state_dict"),
    ("train --weights resnet20.pt --out r", "do not fit this model"),
    ("train --epochs 0 --out r", "Invalid value for '--epochs'"),
    ("train --seed -1 --out r", "Invalid value for '--seed'"),
    ("train --out afile/r", "cannot create run directory afile/r"),
    ("train --recipe nope --out r", "unknown recipe 'nope'"),
    ("train -O bogus=1 --out r", "unexpected keyword argument 'bogus'"),
    ("train --model mynet:build -O bogus=1", "calling build() failed: TypeError"),  # default --out: runs/...
    ("train --model mynet:broken --out r", "factory exploded"),
    ("train --model mynet:avgnet --variant shortcut->avg+1x1 --out r", "matches no site"),
    # ---- report / status
    ("report notstudy", "notstudy is not a poolstride study directory"),
    ("report nothere", "no such study directory: nothere"),
    ("report afile", "not a directory: afile"),
    ("report badstudy", "cannot read badstudy/study.json"),
    ("report study --baseline nope", "unknown baseline 'nope'"),
    ("report study --test x", "unknown --test 'x'"),
    ("report study --margin -5", "must be a positive number"),
    ("report", "Missing argument 'STUDY_DIR'"),
    ("status notstudy", "notstudy is not a study directory"),
    ("status nothere", "nothere is not a study directory"),
    ("status badstudy", "badstudy/study.json is unreadable"),
    ("status afile", "unreadable"),
    ("status", "Missing argument 'STUDY_DIR'"),
    # ---- ops / models
    ("ops bogus", "unexpected extra argument"),
    ("ops --bogus", "No such option: --bogus"),
    ("models nosuch", "unknown model 'nosuch'"),
    ("models tiny --downsample warp", "unknown operator 'warp'"),
    ("models tiny --downsample blur(size=9)", "size=9 is out of range"),
    ("models resnet20:Z", "shortcut='Z' is not valid"),
    # ---- inspect
    ("inspect tiny --input 3x0", "bad --input '3x0'"),
    ("inspect tiny --input 1x4x4", "tiny cannot run on a 1x4x4 input (--input)"),
    ("inspect resnet20 --input 1x32x32", "to have 3 channels, but got 1 channels"),
    ("inspect resnet18 --input 1x64x64", "resnet18 cannot run on a 1x64x64 input"),
    ("inspect tiny --input 3x2x2", "too small"),
    ("inspect allcnn-c --input 3x2x2", "allcnn-c cannot run on a 3x2x2 input"),
    ("inspect mynet:avgnet --input 3x1x1", "Output size is too small"),
    ("inspect mynet:avgnet --input 1x32x32", "mynet:avgnet cannot run on a 1x32x32 input"),
    ("inspect tiny -O bogus=1", "tiny: bad option"),
    ("inspect mynet:build -O bogus=1", "calling build() failed: TypeError"),
    ("inspect mynet:nosuch", "module 'mynet' has no attribute 'nosuch'"),
    ("inspect nosuch", "unknown model 'nosuch'"),
    ("inspect torchvision:resnt18", NOT_INSTALLED_OR_UNKNOWN_TV),
    ("inspect timm:resnt18", NOT_INSTALLED_OR_UNKNOWN_TIMM),
    ("inspect tiny --downsample blur(size=", "cannot parse spec"),
    ("inspect tiny --batch 0", "Invalid value for '--batch'"),
    ("inspect", "Missing argument 'model'"),
    # ---- cost
    ("cost tiny --input 3x2x2 --no-latency", "too small"),
    ("cost mynet:avgnet --input 3x1x1 --no-latency", "cannot run on 3x1x1 input"),
    ("cost tiny -O bogus=1 --no-latency", "tiny: bad option"),
    ("cost mynet:build -O bogus=1 --no-latency", "calling build() failed: TypeError"),
    ("cost tiny --variants max,[ --no-latency", "unbalanced bracket"),
    ("cost tiny --variants max,,avg --no-latency", "empty entry"),
    ("cost tiny --variants a=max,a=avg --no-latency", "given twice"),
    (f"cost tiny --variants '{POLICY}[colour=red]' --no-latency", "bad selector 'colour=red'"),
    ("cost tiny --variants pool->warp --no-latency", "unknown operator 'warp'"),
    ("cost tiny --num-classes 0 --no-latency", "Invalid value for '--num-classes'"),
    # ---- explain
    ("explain warp", "unknown operator 'warp'"),
    ("explain stemm", "unknown operator 'stemm'"),
    ("explain blur(size=", "unbalanced '('"),
    ("explain conv(k=0)", "k=0 is out of range"),
    ("explain lp(p=-1)", "p=-1 is out of range"),
    ("explain max --input 0x0", "bad --input '0x0'"),
    ("explain max --input 3x", "bad --input '3x'"),
    # ---- gradflow
    ("gradflow tiny --input 1x4x4", "tiny cannot run on a 1x4x4 input"),
    ("gradflow tiny --input 3x2x2", "too small"),
    ("gradflow mynet:avgnet --input 3x1x1", "Output size is too small"),
    ("gradflow resnet20 --input 3x1x1 --batch 1", "Expected more than 1 value per channel"),
    ("gradflow tiny --checkpoint junk.pt", "cannot load checkpoint junk.pt: not a readable state_dict"),
    ("gradflow tiny --checkpoint empty.pt", "empty or truncated"),
    ("gradflow tiny --checkpoint trunc.pt", "failed reading zip archive"),
    ("gradflow tiny --checkpoint list.pt", "it holds a list, not a state_dict"),
    ("gradflow tiny --checkpoint resnet20.pt", "checkpoint does not fit the model"),
    ("gradflow tiny --checkpoint nothere.pt", "cannot load checkpoint nothere.pt: no such file"),
    ("gradflow tiny --checkpoint notstudy", "notstudy: it is a directory"),
    ("gradflow tiny -O bogus=1", "tiny: bad option"),
    ("gradflow tiny --erf afile/x.png", "afile is a file, not a directory"),
    ("gradflow tiny --erf notstudy", "--erf notstudy: is a directory"),
    ("gradflow tiny --erf erf.txt", "give a file name ending in .png"),
    ("gradflow tiny --batch 0", "Invalid value for '--batch'"),
    # ---- convert
    (f"convert tiny --policy {POLICY} --input 1x32x32", "to have 3 channels, but got 1 channels"),
    (f"convert tiny --policy {POLICY} --input 3x2x2", "too small"),
    (f"convert tiny --policy {POLICY} --input 3x0", "bad --input '3x0'"),
    (f"convert tiny --policy {POLICY} -O bogus=1", "tiny: bad option"),
    (f"convert mynet:build --policy {POLICY} -O bogus=1", "calling build() failed: TypeError"),
    (f"convert mynet:broken --policy {POLICY}", "factory exploded"),
    (f"convert tiny --policy {POLICY} --out afile/x.pt", "afile is a file, not a directory"),
    (f"convert tiny --policy {POLICY} --out notstudy", "--out notstudy: is a directory"),
    ("convert tiny --policy pool->warp", "unknown operator 'warp'"),
    (f"convert tiny --policy '{POLICY}[colour=red]'", "bad selector 'colour=red'"),
    (f"convert tiny --policy {POLICY} --init bogus", "init='bogus' is not valid"),
    (f"convert tiny --policy {POLICY} --stage x", "bad selector"),
    ("convert tiny", "Missing option '--policy'"),
    # ---- reproduce
    ("reproduce nope", "unknown reproduction 'nope'"),
    ("reproduce allcnn --budget huge", "unknown --budget 'huge'"),
    ("reproduce stem --epochs 3", "trains nothing and reads no data; drop --epochs"),
    ("reproduce allcnn --families z", "bad --families 'z'"),
    ("reproduce resnet-shortcuts --depths 7", "depths must be 6n+2"),
    ("reproduce blurpool --sizes 0", "--sizes must be filter sizes"),
    ("reproduce stem --models nope", "unknown model 'nope'"),
    ("reproduce allcnn --seeds 0", "Invalid value for '--seeds'"),
    ("reproduce allcnn --epochs 0", "Invalid value for '--epochs'"),
    ("reproduce allcnn --lr 0", "--lr 0.0: must be > 0"),
    ("reproduce allcnn --dataset nope", "unknown dataset 'nope'"),
    ("reproduce allcnn --dataset textures --epochs 1 --out afile/x", "cannot write to output directory afile/x"),
    # ---- alias
    ("alias warp", "unknown operator or model 'warp'"),
    ("alias blur(size=9)", "size=9 is out of range"),
    ("alias --freqs 0.7", "bad --freqs '0.7'"),
    ("alias max --stride 0", "Invalid value for '--stride'"),
    ("alias max --size 3", "must be a multiple of the stride"),
    ("alias max --input 3x8x8", "apply to a MODEL, not to operators"),
    ("alias tiny --input 1x32x32", "to have 3 channels, but got 1 channels"),
    ("alias tiny --input 3x2x2", "too small"),
    ("alias tiny --checkpoint junk.pt", "cannot load checkpoint junk.pt: not a readable state_dict"),
    ("alias tiny --checkpoint empty.pt", "empty or truncated"),
    ("alias tiny --checkpoint nothere.pt", "cannot load checkpoint nothere.pt: no such file"),
    ("alias tiny -O bogus=1", "tiny: bad option"),
    ("alias torchvision:resnt18", NOT_INSTALLED_OR_UNKNOWN_TV),
    ("alias max --out afile", "--out afile: is a file, not a directory"),
    ("alias max --out afile/x", "afile is a file, not a directory"),
    ("alias tiny --out outdir", "outdir/alias.json: Is a directory"),  # an OSError on a given path (main's table)
    ("alias --study notstudy", "not a study directory"),
    ("alias --study badstudy", "not a study directory"),
    # ---- the command itself
    ("nosuchcommand", "No such command 'nosuchcommand'"),
    ("--bogus", "No such option: --bogus"),
]


def _command(line: str) -> str:
    first = shlex.split(line)[0]
    return first if not first.startswith("-") and first != "nosuchcommand" else "(none)"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The directory every case starts from (copied fresh for each)."""
    from _fake_study import make_study

    d = tmp_path_factory.mktemp("sweep-template")
    (d / "mynet.py").write_text(MYNET)
    (d / "afile").write_text("a plain file\n")
    (d / "junk.pt").write_text("not a checkpoint\n")
    (d / "empty.pt").write_bytes(b"")
    torch.save({"w": torch.zeros(64)}, d / "whole.pt")
    blob = (d / "whole.pt").read_bytes()
    (d / "trunc.pt").write_bytes(blob[: len(blob) // 2])
    (d / "whole.pt").unlink()
    torch.save([torch.zeros(2)], d / "list.pt")
    torch.save(models.build("resnet20").state_dict(), d / "resnet20.pt")
    (d / "notstudy").mkdir()
    (d / "notstudy" / "readme.txt").write_text("not a study\n")
    make_study(d / "study")
    make_study(d / "badstudy")
    (d / "badstudy" / "study.json").write_text("{broken")
    (d / "outdir" / "alias.json").mkdir(parents=True)
    return d


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture()
def casedir(template, tmp_path, monkeypatch) -> Iterator[Path]:
    """A fresh copy of the template as the current directory; imports write no bytecode there, caches go
    elsewhere, and the user's module is imported afresh."""
    d = tmp_path / "case"
    shutil.copytree(template, d)
    monkeypatch.chdir(d)
    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(d))])
    sys.modules.pop("mynet", None)
    yield d
    sys.modules.pop("mynet", None)


def _check(rc: int, err: str, needle: str | tuple[str, ...]) -> None:
    needles = (needle,) if isinstance(needle, str) else needle
    lines = err.strip().splitlines()
    assert rc == 2, f"exit status {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert 1 <= len(lines) <= 3, f"{len(lines)} stderr lines:\n{err}"
    assert any(n in err for n in needles), f"none of {needles} in:\n{err}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("line", "needle"), CASES, ids=[c[0] for c in CASES])
def test_malformed_invocation_is_one_short_error(casedir, capsys, line, needle):
    before = _snapshot(casedir)
    rc = main(shlex.split(line))
    _, err = capsys.readouterr()
    _check(rc, err, needle)
    assert _snapshot(casedir) == before, "the directory changed"


def test_the_sweep_covers_every_subcommand():
    import typer.main

    from poolstride.cli.common import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    per = {c: sum(_command(line) == c for line, _ in CASES) for c in commands}
    assert len(CASES) >= 60
    assert all(n >= 2 for n in per.values()), per


# ------------------------------------------------------------------------------------- the real process, exit code
SUBPROCESS = [
    ("inspect tiny --input 1x4x4", "tiny cannot run on a 1x4x4 input"),
    ("gradflow tiny --checkpoint empty.pt", "empty or truncated"),  # was: "interrupted (SIGINT)", exit 130
    (f"convert tiny --policy {POLICY} --out afile/x.pt", "afile is a file, not a directory"),
    ("alias tiny --out outdir", "outdir/alias.json: Is a directory"),
    ("nosuchcommand", "No such command"),
]


@pytest.mark.timeout(300)
def test_real_process_exit_status(template, tmp_path):
    d = tmp_path / "case"
    shutil.copytree(template, d)
    before = _snapshot(d)
    env = {**os.environ, "POOLSTRIDE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    for line, needle in SUBPROCESS:
        p = subprocess.run(
            [sys.executable, "-m", "poolstride", *shlex.split(line)],
            cwd=d, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        _check(p.returncode, p.stderr, needle)
        assert _snapshot(d) == before, line


# ------------------------------------------------------------------------------ main()'s table, and real bugs
def test_broken_optional_install_says_which_package_and_how_to_fix(casedir, capsys, monkeypatch):
    fake = types.ModuleType(_TV)
    fake.__path__ = []  # a package whose submodules are gone: a broken install
    monkeypatch.setitem(sys.modules, _TV, fake)
    monkeypatch.delitem(sys.modules, f"{_TV}.models", raising=False)
    rc = main(["inspect", f"{_TV}:resnet18"])
    _, err = capsys.readouterr()
    _check(rc, err, f"{_TV} is installed but broken")
    assert f"pip install --force-reinstall {_TV}" in err


def test_import_error_of_a_package_is_one_line_with_the_fix(casedir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ModuleNotFoundError
    rc = main(["gradflow", "tiny", "--erf", "erf.png"])
    _, err = capsys.readouterr()
    _check(rc, err, "the package matplotlib is not installed; fix: pip install")
    assert not (casedir / "erf.png").exists()


def test_os_error_table_only_for_paths_on_the_command_line():
    from poolstride.cli import _known_user_error

    given = NotADirectoryError(errno.ENOTDIR, "Not a directory", "afile/x")
    assert _known_user_error(given, ["convert", "tiny", "--out", "afile/x/y.pt"]) == "afile/x: Not a directory"
    assert _known_user_error(given, ["convert", "--out=afile/x"]) == "afile/x: Not a directory"
    assert _known_user_error(given, ["compare", "--dataset", "npz:afile/x/d.npz"]) == "afile/x: Not a directory"
    internal = FileNotFoundError(errno.ENOENT, "No such file or directory", "/usr/share/poolstride/x")
    assert _known_user_error(internal, ["inspect", "tiny"]) is None
    assert _known_user_error(ModuleNotFoundError("No module named 'poolstride.x'", name="poolstride.x"), []) is None
    assert _known_user_error(KeyError("x"), []) is None


@pytest.mark.parametrize("exc", [KeyError("internal"), EOFError()])
def test_a_bug_keeps_its_traceback_and_asks_for_a_report(casedir, capsys, monkeypatch, exc):
    """An exception poolstride raised on a valid input is not a user error: traceback, a line asking to report
    it, exit status 1 (an EOFError is not Ctrl-C either)."""
    import poolstride.analysis

    def broken(*a, **k):
        raise exc

    monkeypatch.setattr(poolstride.analysis, "inspect", broken)
    rc = main(["inspect", "tiny"])
    _, err = capsys.readouterr()
    assert rc == 1, err
    assert "Traceback" in err and type(exc).__name__ in err
    assert err.strip().splitlines()[-1].startswith("this is a bug in poolstride")
    assert "poolstride inspect tiny" in err and "interrupted" not in err


def test_one_meaning_per_short_flag_across_commands():
    """-o is always --out, -O always a model option, -d always --dataset, -b always --batch (issue 12)."""
    import typer.main

    from poolstride.cli.common import app

    meaning: dict[str, set[str]] = {}
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        for p in cmd.params:
            longs = sorted(o for o in p.opts if o.startswith("--"))
            for short in (o for o in p.opts if len(o) == 2 and o.startswith("-")):
                meaning.setdefault(short, set()).add(longs[0] if longs else p.name or name)
    clashes = {k: v for k, v in meaning.items() if len(v) > 1 and not v <= {"--variant", "--variants"}}
    assert not clashes, clashes
