"""Run a reproduction and record its Markdown result in its docs page (between the results markers).

    python docs/reproductions/record.py PAGE.md [--append] -- poolstride reproduce NAME ... --markdown

``--append`` keeps the blocks already recorded and adds this one after them.

The block states when and where it ran, the exact command and the wall time of the whole command (data
loading included). The command's progress (stderr) goes to PAGE.log next to the page's name in /tmp.
"""

from __future__ import annotations

import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


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
    shown = " ".join(shlex.quote(c) for c in [Path(cmd[0]).name, *cmd[1:]])  # `poolstride`, not .venv/bin/...
    block = (
        f"Run on {start:%Y-%m-%d %H:%M} UTC on `{platform.node()}` (the project's shared 2-core CPU machine), "
        f"wall time of the whole command {wall / 60:.1f} min:\n\n```\n{shown}\n```\n\n{proc.stdout.strip()}\n"
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
