"""Where a study came from: the command, the software, the machine (recorded in study.json, shown by the report).

A colleague who gets a study directory can see how it was made and replay it (``poolstride compare --from DIR
--out NEW``); a reviewer can see the versions and the hardware the numbers come from.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .. import __version__


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the checkout poolstride runs from (``+dirty`` with uncommitted changes), or None when
    installed from a wheel."""
    here = Path(path or Path(__file__).resolve().parents[3])
    if not (here / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("+dirty" if dirty else "")) or None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: the arguments of the running ``poolstride`` command (set by the CLI's main; None when called from Python)
_cli_args: list[str] | None = None


def set_cli_args(args: list[str] | None) -> None:
    global _cli_args
    _cli_args = None if args is None else list(args)


def command_line(call: str | None = None) -> str:
    """The exact command (``poolstride compare ...``) when run from the CLI, else the Python call given."""
    if _cli_args is not None:
        return shlex.join(["poolstride", *_cli_args])
    return call or shlex.join([sys.executable, *sys.argv])


def record(device: torch.device, amp_dtype: str, threads: int, call: str | None = None) -> dict[str, Any]:
    cuda = torch.version.cuda if torch.cuda.is_available() else None
    cudnn = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "command": command_line(call),
        "cwd": os.getcwd(),
        "poolstride": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": cuda,
        "cudnn": cudnn,
        "device": str(device),
        "device_name": dev_name,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "autocast": amp_dtype,
        "host": platform.node(),
    }


__all__ = ["command_line", "cpu_model", "git_commit", "record"]
