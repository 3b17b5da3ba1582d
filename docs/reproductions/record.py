"""Run a reproduction and record its Markdown result in its docs page (between the results markers).

    python docs/reproductions/record.py PAGE.md [--append] -- poolstride reproduce NAME ... --markdown

``--append`` keeps the blocks already recorded and adds this one after them.

The block states when and where it ran, the exact command and the wall time of the whole command (data
loading included). The command's progress (stderr) goes to PAGE.log next to the page's name in /tmp.

Run it from the checkout root. The recorded command and output name every path relative to the checkout
(``--data-dir ../shared/data/cifar10 --out runs/NAME``) so that a reader can paste the command into their own
checkout: absolute paths are rewritten (``os.path.relpath`` from the checkout), and a warning names any path that
lies outside the checkout's parent folder (e.g. ``/tmp/...``; prefer ``--out runs/NAME``).
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ROOT = Path(__file__).resolve().parents[2]  # the checkout: docs/reproductions/record.py -> repository root


def relative_arg(arg: str, root: Path = ROOT, warn: bool = True) -> str:
    """``arg`` with an absolute path (``/x/y`` or ``--opt=/x/y``) written relative to ``root``."""
    head, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    if not os.path.isabs(value):
        return arg
    rel = os.path.relpath(os.path.normpath(value), root)
    if warn and rel.startswith(os.pardir + os.sep + os.pardir):
        print(f"warning: {value} lies outside {root.parent}; recorded as {rel}", file=sys.stderr)
    return f"{head}{eq}{rel}"


def relative_command(cmd: list[str], root: Path = ROOT) -> list[str]:
    """The command as recorded: the program's name (``poolstride``, not ``.venv/bin/...``), paths relative."""
    return [Path(cmd[0]).name, *(relative_arg(a, root) for a in cmd[1:])]


def relative_text(text: str, cmd: list[str], root: Path = ROOT) -> str:
    """The command's output with the absolute paths it echoes (study directory, ...) written as in the command."""
    for a in cmd[1:]:
        value = a.partition("=")[2] if a.startswith("-") else a
        if os.path.isabs(value):
            text = text.replace(os.path.normpath(value), relative_arg(os.path.normpath(value), root, warn=False))
    text = text.replace(str(root) + os.sep, "")
    return text.replace(str(root.parent) + os.sep, os.pardir + os.sep)


def main(argv: list[str]) -> int:
    append = "--append" in argv[: argv.index("--")] if "--" in argv else False
    head = [a for a in argv[: argv.index("--")] if a != "--append"] if "--" in argv else []
    if len(head) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    page = Path(head[0])
    cmd = argv[argv.index("--") + 1 :]
    log = Path("/tmp") / (page.stem + ".log")
    start = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"command failed with status {proc.returncode}; see {log}", file=sys.stderr)
        return proc.returncode
    shown = " ".join(shlex.quote(c) for c in relative_command(cmd))
    out = relative_text(proc.stdout.strip(), cmd)
    block = (
        f"Run on {start:%Y-%m-%d %H:%M} UTC on `{platform.node()}` (the project's shared 2-core CPU machine), "
        f"wall time of the whole command {wall / 60:.1f} min:\n\n```\n{shown}\n```\n\n{out}\n"
    )
    text = page.read_text(encoding="utf-8")

    def put(m: re.Match[str]) -> str:
        old = m.group(1).strip()
        keep = old + "\n\n" if append and old and not old.startswith("not yet run here") else ""
        return f"{BEGIN}\n{keep}{block}{END}"

    new = re.sub(re.escape(BEGIN) + r"(.*?)" + re.escape(END), put, text, flags=re.S)
    page.write_text(new, encoding="utf-8")
    print(f"{page}: recorded ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
