"""The default study at ``--jobs 1`` vs ``--jobs N``: wall time side by side, and every per-run metric compared.

    python benchmarks/bench_study.py                 # the default study (tiny net, textures, 15 runs), jobs 1 vs 2
    python benchmarks/bench_study.py --jobs 4 --args "--model resnet20 --epochs 2"

Each configuration is a fresh ``poolstride compare`` process writing into its own temporary directory (no
report), timed as a whole (interpreter and torch start-up included, as a user waits for it). The two are run
alternately ``--rounds`` times and the best time of each is reported with the ratio. Per-run metrics (accuracy,
loss, both shift-consistencies, params, MACs, initial-weights hash) must be identical: each run keeps its own
seed and one torch thread in both configurations.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEYS = ("acc", "loss", "shift_consistency", "shift_consistency_circular", "params", "macs", "init_sha256")


def run(jobs: str, extra: list[str], out: Path) -> float:
    cmd = [sys.executable, "-m", "poolstride", "compare", "--jobs", jobs, "--out", str(out), "--no-report",
           "--json", *extra]  # fmt: skip
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return dt


def metrics(out: Path) -> dict[str, tuple]:
    res = {}
    for p in sorted(out.rglob("result.json")):
        r = json.loads(p.read_text())
        res[f"{r['variant']}/{r['seed']}"] = tuple(r.get(k) for k in KEYS)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", default="2", help="the parallel configuration (default 2)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--args", default="", help="extra `poolstride compare` arguments")
    a = ap.parse_args()
    extra = shlex.split(a.args)
    times: dict[str, list[float]] = {"1": [], a.jobs: []}
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        last: dict[str, dict[str, tuple]] = {}
        for r in range(a.rounds):
            for jobs in ("1", a.jobs):
                out = Path(tmp) / f"j{jobs}-r{r}"
                times[jobs].append(run(jobs, extra, out))
                last[jobs] = metrics(out)
                print(f"round {r + 1}: --jobs {jobs}: {times[jobs][-1]:.1f} s ({len(last[jobs])} runs)", flush=True)
        same = last["1"] == last[a.jobs]
    b1, bn = min(times["1"]), min(times[a.jobs])
    print(f"--jobs 1: {b1:.1f} s   --jobs {a.jobs}: {bn:.1f} s   speed-up x{b1 / bn:.2f} (best of {a.rounds})")
    print(f"per-run metrics identical: {same} ({len(last['1'])} runs; {', '.join(KEYS)})")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
